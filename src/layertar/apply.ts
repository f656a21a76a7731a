import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import * as tar from 'tar-stream';
import { invalidArgument, messageOf, SnapfsError, systemFailure } from '../errors';
import { OPAQUE_MARKER, WHITEOUT_PREFIX, type UpperFormat } from '../overlay/format';
import { sys } from '../native/sys';
import type { UsageProgress } from '../snapshotter/usage';

export interface ApplyOptions {
  /** Device nodes, set-id bits and ownership are kept only for root. */
  readonly privileged: boolean;
  readonly onProgress?: UsageProgress;
  /** The sha256 the uncompressed tar must have (an image's diff ID); checked at the end. */
  readonly diffId?: string;
  /** What the tar is called in messages. */
  readonly source?: string;
}

const SETID = 0o6000;
/** Layer tars are read in chunks this big: fewer trips to libuv's threads than the default 64 KiB. */
export const READ_CHUNK = 1 << 20;
/** Files up to this size are read whole and made in one call. */
const SMALL_FILE = 1 << 20;

/**
 * Unpacks an OCI or Docker image layer tar (plain or gzip) into an empty
 * layer directory, turning `.wh.` entries into the layer format's
 * whiteouts and opaque markers. Nothing may land outside `layer`: entries
 * naming `..`, or reaching through a symlink (one the tar made earlier, say),
 * and hard links to anything but a file already in the layer are refused,
 * naming the entry. Absolute names are taken as relative to the layer, as
 * containerd and docker do.
 */
export async function applyLayerTar(input: Readable, layer: string, format: UpperFormat, opts: ApplyOptions): Promise<void> {
  const extract = tar.extract();
  const writer = new LayerWriter(layer, format, opts.privileged);
  let size = 0;
  let inodes = 0;
  const unpacked = new Promise<void>((resolve, reject) => {
    extract.on('entry', (header, stream, next) => {
      writer.apply(header, stream).then(
        () => {
          size += header.size ?? 0;
          inodes++;
          opts.onProgress?.({ size, inodes });
          next();
        },
        (err: unknown) => {
          stream.resume();
          extract.destroy(err as Error);
          reject(err);
        },
      );
    });
    extract.on('finish', resolve);
    extract.on('error', reject);
  });
  const tarStream = await decompressed(input);
  const hash = createHash('sha256');
  if (opts.diffId !== undefined) tarStream.on('data', (chunk: Buffer) => hash.update(chunk));
  try {
    await Promise.all([pipeline(tarStream, extract), unpacked]);
  } catch (err) {
    // Our own refusals and the system's failures say what they are; the rest is the tar's shape.
    if (err instanceof SnapfsError || systemFailure(err) !== undefined) throw err;
    throw invalidArgument(`${opts.source ?? 'input'}: not a layer tar (${messageOf(err)})`);
  }
  if (opts.diffId !== undefined) {
    const digest = `sha256:${hash.digest('hex')}`;
    if (digest !== opts.diffId) throw invalidArgument(`${opts.source ?? 'input'}: content is ${digest}, not its diff ID ${opts.diffId}`);
  }
  writer.finish();
}

/** The tar stream itself, gunzipped when it starts with gzip's magic. */
export async function decompressed(input: Readable): Promise<Readable> {
  const first: Buffer = await new Promise((resolve, reject) => {
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
  const replay = new PassThrough();
  replay.write(first);
  input.pipe(replay);
  return first[0] === 0x1f && first[1] === 0x8b ? replay.pipe(zlib.createGunzip()) : replay;
}

/** An entry's path inside the layer, as components; `..` is refused. */
function componentsOf(name: string, what: string): string[] {
  const parts = name.split('/').filter((c) => c !== '' && c !== '.');
  if (parts.includes('..')) throw invalidArgument(`${what} ${JSON.stringify(name)}: path leaves the layer`);
  return parts;
}

/** Writes a tar's entries into a layer directory; see applyLayerTar. */
class LayerWriter {
  /** Directories of the layer known to be real directories (not symlinks): no lstat per entry. */
  private readonly dirs = new Set<string>();
  /**
   * Every path this import made. The layer starts empty, so a name not in
   * here is free: no lstat to find out.
   */
  private readonly made = new Set<string>();
  /** Directories' modes and times, set last: a read-only directory could not take what it holds. */
  private readonly dirMeta: [string, number, Date][] = [];

  constructor(
    private readonly layer: string,
    private readonly format: UpperFormat,
    private readonly privileged: boolean,
  ) {}

  async apply(header: tar.Headers, body: Readable): Promise<void> {
    const parts = componentsOf(header.name, 'entry');
    if (parts.length === 0) {
      // The layer's root itself: only its time.
      if (header.type === 'directory') this.dirMeta.push([this.layer, -1, header.mtime ?? new Date()]);
      return void body.resume();
    }
    const real = this.place(parts, header.name, true);
    const base = parts[parts.length - 1]!;
    const dir = path.dirname(real);
    if (base === OPAQUE_MARKER) {
      withDir(dir, (fd) => this.format.markOpaque(fd));
      return void body.resume();
    }
    if (base.startsWith(WHITEOUT_PREFIX)) {
      const hidden = base.slice(WHITEOUT_PREFIX.length);
      if (hidden === '' || hidden === '.' || hidden === '..') throw invalidArgument(`entry ${JSON.stringify(header.name)}: a whiteout of ${JSON.stringify(hidden)} is no name`);
      this.clear(path.join(dir, hidden), false);
      withDir(dir, (fd) => this.format.whiteout(fd, Buffer.from(hidden)));
      // Either form may now be there.
      this.made.add(path.join(dir, hidden)).add(path.join(dir, WHITEOUT_PREFIX + hidden));
      return void body.resume();
    }
    const mode = (header.mode ?? 0o644) & (this.privileged ? 0o7777 : 0o7777 & ~SETID);
    switch (header.type) {
      case 'directory':
        this.clear(real, true);
        // Still made here after clear(): a directory this import made already.
        if (!this.made.has(real)) fs.mkdirSync(real);
        this.dirs.add(real);
        break;
      case 'file':
      case 'contiguous-file': {
        this.clear(real, false);
        this.made.add(real);
        const mtime = header.mtime ?? new Date();
        if ((header.size ?? 0) <= SMALL_FILE) {
          // Most layer files are small: read whole, made with one native call.
          const chunks: Buffer[] = [];
          for await (const chunk of body) chunks.push(chunk as Buffer);
          const ms = mtime.getTime();
          const sec = Math.floor(ms / 1000);
          withDir(dir, (fd) => sys.createFileAt(fd, path.basename(real), Buffer.concat(chunks), mode, this.privileged, header.uid ?? 0, header.gid ?? 0, sec, (ms - sec * 1000) * 1_000_000));
          setAttributes(real, paxOf(header), this.privileged);
          return;
        }
        // Large ones as their data arrives, set up through the descriptor.
        const fd = fs.openSync(real, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, mode);
        try {
          for await (const chunk of body) fs.writeSync(fd, chunk as Buffer);
          if (this.privileged) fs.fchownSync(fd, header.uid ?? 0, header.gid ?? 0);
          fs.fchmodSync(fd, mode);
          setAttributes(real, paxOf(header), this.privileged);
          fs.futimesSync(fd, mtime, mtime);
        } finally {
          fs.closeSync(fd);
        }
        return;
      }
      case 'symlink':
        this.clear(real, false);
        fs.symlinkSync(header.linkname ?? '', real);
        break;
      case 'link': {
        const target = this.place(componentsOf(header.linkname ?? '', `hard link ${JSON.stringify(header.name)} to`), header.name, false);
        const st = fs.lstatSync(target, { throwIfNoEntry: false });
        if (st === undefined || !st.isFile()) throw invalidArgument(`entry ${JSON.stringify(header.name)}: hard link to ${JSON.stringify(header.linkname)}, which is not a file of this layer`);
        this.clear(real, false);
        fs.linkSync(target, real);
        this.made.add(real);
        return void body.resume();
      }
      case 'character-device':
      case 'block-device':
        // Only root may make device nodes; an unprivileged import leaves them out.
        if (!this.privileged) return void body.resume();
        this.clear(real, false);
        sys.mknod(real, (header.type === 'character-device' ? fs.constants.S_IFCHR : fs.constants.S_IFBLK) | mode, header.devmajor ?? 0, header.devminor ?? 0);
        break;
      case 'fifo':
        this.clear(real, false);
        sys.mknod(real, fs.constants.S_IFIFO | mode, 0, 0);
        break;
      default:
        // Global headers and the like carry nothing for the layer.
        return void body.resume();
    }
    body.resume();
    this.made.add(real);
    // Owner before mode: chown clears set-id bits.
    if (this.privileged) fs.lchownSync(real, header.uid ?? 0, header.gid ?? 0);
    setAttributes(real, paxOf(header), this.privileged);
    if (header.type === 'directory') return void this.dirMeta.push([real, mode, header.mtime ?? new Date()]);
    if (header.type !== 'symlink') fs.chmodSync(real, mode);
    setMtime(real, header.mtime ?? new Date());
  }

  /**
   * Directory modes and times last, deepest first (creating what they hold
   * changed their times); a directory named twice takes its last entry's.
   */
  finish(): void {
    const done = new Set<string>();
    for (const [dir, mode, mtime] of this.dirMeta.reverse()) {
      if (done.has(dir)) continue;
      done.add(dir);
      if (mode >= 0) fs.chmodSync(dir, mode);
      setMtime(dir, mtime);
    }
  }

  /**
   * The real path of `parts` in the layer, making missing parent
   * directories; refuses a parent that is not a directory of the layer itself.
   */
  private place(parts: readonly string[], entryName: string, makeParents: boolean): string {
    let dir = this.layer;
    for (const part of parts.slice(0, -1)) {
      dir = path.join(dir, part);
      if (this.dirs.has(dir)) continue;
      const st = fs.lstatSync(dir, { throwIfNoEntry: false });
      const where = JSON.stringify(path.relative(this.layer, dir));
      if (st === undefined && makeParents) {
        fs.mkdirSync(dir, { mode: 0o755 });
        this.made.add(dir);
      } else if (st === undefined) throw invalidArgument(`entry ${JSON.stringify(entryName)}: ${JSON.stringify(parts.join('/'))} is not in the layer`);
      else if (st.isSymbolicLink()) throw invalidArgument(`entry ${JSON.stringify(entryName)}: path goes through a symlink (${where})`);
      else if (!st.isDirectory()) throw invalidArgument(`entry ${JSON.stringify(entryName)}: ${where} is not a directory`);
      this.dirs.add(dir);
    }
    return path.join(dir, parts[parts.length - 1] ?? '');
  }

  /** Makes room for a new entry at `real`: anything there goes, except a directory that stays one. */
  private clear(real: string, keepDir: boolean): void {
    if (!this.made.has(real)) return;
    const st = fs.lstatSync(real, { throwIfNoEntry: false });
    if (st === undefined || (keepDir && st.isDirectory())) return;
    fs.rmSync(real, { recursive: true, force: true });
    // It, and what was under it, are gone.
    for (const known of [this.made, this.dirs]) for (const p of known) if (p === real || p.startsWith(`${real}/`)) known.delete(p);
  }
}

function paxOf(header: tar.Headers): Record<string, string> {
  return (header as tar.Headers & { pax?: Record<string, string> }).pax ?? {};
}

function setAttributes(real: string, pax: Record<string, string>, privileged: boolean): void {
  for (const [key, value] of Object.entries(pax)) {
    if (!key.startsWith('SCHILY.xattr.')) continue;
    const name = key.slice('SCHILY.xattr.'.length);
    if (!privileged && !name.startsWith('user.')) continue;
    // tar-stream is patched to hand these over as latin1 strings: their char codes are the bytes.
    sys.setxattr(real, name, Buffer.from(value, 'latin1'), 0);
  }
}

function setMtime(real: string, mtime: Date): void {
  const ms = mtime.getTime();
  const sec = Math.floor(ms / 1000);
  sys.utimens(real, 0, sys.UTIME_OMIT, sec, (ms - sec * 1000) * 1_000_000);
}

/** Runs `fn` with a descriptor of directory `dir`. */
function withDir<T>(dir: string, fn: (fd: number) => T): T {
  const fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
  try {
    return fn(fd);
  } finally {
    fs.closeSync(fd);
  }
}
