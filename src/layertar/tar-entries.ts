import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import * as tar from 'tar-stream';
import { invalidArgument, messageOf, SnapfsError } from '../errors';
import { quoted } from '../names';

/** One entry of a tar, its names as the bytes the tar holds. */
export interface TarEntry {
  /** From the ustar name and prefix, a GNU long name or a PAX path record. */
  readonly name: Buffer;
  readonly linkname: Buffer | undefined;
  /** Type, mode, owner, time, size and device numbers. */
  readonly header: tar.Headers;
  /** The entry's PAX records; SCHILY.xattr.* values are latin1 strings, whose char codes are the bytes. */
  readonly pax: Readonly<Record<string, string>>;
  /** The entry's data: read it, or resume it to skip it. */
  readonly body: Readable;
}

/** How a tar and its entries are named in messages. */
export interface TarNaming {
  /** The tar as a whole: "layer.tar", "stdin", "image img.tar". */
  readonly tar: string;
  /** What the tar was taken for: "a layer tar" gives "layer.tar: not a layer tar (...)". */
  readonly kind: string;
  /** Put before messages on one entry: "", or "layer 2 of img.tar: " within an image. */
  readonly entries: string;
}

/** An entry refused, in one line naming it. */
export function entryRefusal(naming: TarNaming, name: Buffer, why: string): SnapfsError {
  return invalidArgument(`${naming.entries}entry ${quoted(name)}: ${why}`);
}

/**
 * Reads a tar (plain or gzip) entry by entry, one `onEntry` at a time.
 * Every way this can fail settles the promise, so that whoever prepared
 * something for the tar removes it again: what `onEntry` throws, as it is;
 * an entry whose size is no size (negative, not a number, past what can be
 * counted exactly), refused before tar-stream counts with it; a tar that
 * ends early, or is no tar, as InvalidArgument; the system's failures
 * reading `input`, as they are. `onData` sees the tar's bytes, gunzipped.
 */
export async function readTar(input: Readable, naming: TarNaming, onEntry: (entry: TarEntry) => Promise<void>, onData?: (chunk: Buffer) => void): Promise<void> {
  // latin1: each byte of a name one char, so that no two names come out alike.
  const extract = tar.extract({ filenameEncoding: 'latin1' });
  let failure: unknown;
  let last: Buffer | undefined;
  const fail = (err: unknown): void => {
    failure ??= err;
    extract.destroy(err as Error);
  };
  extract.on('entry', (header, body, next) => {
    const name = Buffer.from(header.name, 'latin1');
    last = name;
    // Its failures are the tar's, reported once by the pipeline.
    body.on('error', () => undefined);
    const pax = (header as tar.Headers & { pax?: Record<string, string> | null }).pax ?? {};
    const problem = sizeProblem(header.size, pax.size) ?? numbersProblem(header);
    if (problem !== undefined) {
      body.resume();
      return fail(entryRefusal(naming, name, problem));
    }
    const linkname = header.linkname === null || header.linkname === undefined ? undefined : Buffer.from(header.linkname, 'latin1');
    onEntry({ name, linkname, header, pax, body }).then(
      () => {
        body.resume();
        next();
      },
      (err: unknown) => {
        body.resume();
        fail(err);
      },
    );
  });
  try {
    const first = await firstBytes(input);
    // The bytes read to tell gzip from a plain tar, then the rest.
    const replay = new PassThrough();
    replay.write(first);
    const gunzip = first[0] === 0x1f && first[1] === 0x8b ? zlib.createGunzip() : undefined;
    if (onData !== undefined) (gunzip ?? replay).on('data', onData);
    await (gunzip === undefined ? pipeline(input, replay, extract) : pipeline(input, replay, gunzip, extract));
  } catch (err) {
    // An entry's data cut short fails the entry's reader with the tar's own error.
    throw shapeFailure(failure ?? err, naming, last);
  }
}

/** Why a size (the header's, after a PAX size record) cannot be read as one, if it cannot. */
function sizeProblem(size: number | undefined, paxSize: string | undefined): string | undefined {
  const given = paxSize === undefined ? `size ${String(size)}` : `PAX size ${JSON.stringify(paxSize)}`;
  if ((paxSize !== undefined && !/^[0-9]+$/.test(paxSize)) || size === undefined || Number.isNaN(size)) return `${given} is not a number of bytes`;
  if (size < 0) return `${given} is negative`;
  // Past 2^53 tar-stream's arithmetic loses bytes.
  if (!Number.isSafeInteger(size)) return `${given} is too large`;
  return undefined;
}

/** Which of the header's other numbers, if any, is out of its range (or no number: octal fields of junk). */
function numbersProblem(header: tar.Headers): string | undefined {
  // 2^32 - 1 is no owner: chown's "leave it as it is".
  const ranges: [string, number | undefined, number][] = [
    ['mode', header.mode, Number.MAX_SAFE_INTEGER],
    ['uid', header.uid, 0xfffffffe],
    ['gid', header.gid, 0xfffffffe],
    ['device major', header.devmajor, 0xffffffff],
    ['device minor', header.devminor, 0xffffffff],
  ];
  for (const [field, value, max] of ranges) if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0 && value <= max)) return `its ${field} ${String(value)} is out of range`;
  if (header.mtime !== undefined && !Number.isSafeInteger(header.mtime.getTime())) return 'its modification time is out of range';
  return undefined;
}

/** A failure of the tar's own shape as InvalidArgument; the system's failures as they are. */
function shapeFailure(err: unknown, naming: TarNaming, last: Buffer | undefined): unknown {
  if (err instanceof SnapfsError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return err;
  // tar-stream's words for it, and zlib's.
  if (messageOf(err) === 'Unexpected end of data' || code === 'Z_BUF_ERROR') return invalidArgument(`${naming.tar}: ends early${last === undefined ? '' : ` (the last entry begun is ${quoted(last)})`}`);
  return invalidArgument(`${naming.tar}: not ${naming.kind} (${messageOf(err)})`);
}

/** The first two bytes of `input` (fewer if it has fewer), read off it. */
function firstBytes(input: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const onReadable = (): void => {
      const chunk = input.read(2) as Buffer | null;
      if (chunk === null && !input.readableEnded) return;
      input.off('readable', onReadable);
      input.off('error', reject);
      resolve(chunk ?? Buffer.alloc(0));
    };
    input.on('readable', onReadable);
    input.on('error', reject);
    input.once('end', onReadable);
  });
}
