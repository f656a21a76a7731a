import { isUtf8 } from 'node:buffer';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { secondsAndNanos } from '../clock';
import type { UpperFormat } from '../overlay/format';
import { sys } from '../native/sys';
import { LateDirectories } from './late-directories';

/** Files up to this size are read whole and made in one call. */
const SMALL_FILE = 1 << 20;

/** What an entry of a layer tar makes. */
export type NewEntry =
  | { readonly type: 'directory' }
  | { readonly type: 'file'; readonly size: number; readonly body: Readable }
  | { readonly type: 'symlink'; readonly target: Buffer }
  | { readonly type: 'fifo' }
  | { readonly type: 'device'; readonly kind: number; readonly major: number; readonly minor: number };

/** The rest of what the tar says of an entry, cut to what this import may set. */
export interface EntryMetadata {
  readonly mode: number;
  /** undefined: left as the process makes it (an import without root). */
  readonly owner: { readonly uid: number; readonly gid: number } | undefined;
  readonly mtime: Date;
  readonly xattrs: ReadonlyMap<string, Buffer>;
}

/** Makes the refusal of the entry being made, saying why. */
export type Refuse = (why: string) => Error;

/**
 * The file-system side of an import: every entry of the layer is made (or
 * removed for a later one) here, with its owner, mode, attributes and time,
 * and directories' late modes and times are set here. Names are bytes. The native calls take
 * UTF-8 paths only, so an entry whose path is not UTF-8 is made under a
 * staging name in the snapshot's scratch directory (the same file system)
 * and renamed into place.
 */
export class LayerEntries {
  private readonly late = new LateDirectories();
  private readonly staging: string;

  constructor(
    private readonly layer: Buffer,
    private readonly format: UpperFormat,
    scratch: string,
  ) {
    this.staging = path.join(scratch, 'import-staging');
  }

  /**
   * Makes `entry` at `target`, where nothing is, or gives directory
   * `target`, there already (`existing`), the new entry's metadata.
   */
  async make(target: Buffer, entry: NewEntry, meta: EntryMetadata, existing: boolean, refuse: Refuse): Promise<void> {
    const at = isUtf8(target) ? target.toString() : this.staging;
    if (existing && at === this.staging) fs.renameSync(target, at);
    switch (entry.type) {
      case 'directory':
        if (!existing) fs.mkdirSync(at);
        break;
      case 'file':
        await writeFile(at, entry.size, entry.body, meta);
        break;
      case 'symlink':
        fs.symlinkSync(entry.target, at);
        break;
      case 'fifo':
        sys.mknod(at, fs.constants.S_IFIFO | meta.mode, 0, 0);
        break;
      case 'device':
        sys.mknod(at, entry.kind | meta.mode, entry.major, entry.minor);
        break;
    }
    // Owner before mode: chown clears set-id bits. A file has both already.
    if (meta.owner !== undefined && entry.type !== 'file') fs.lchownSync(at, meta.owner.uid, meta.owner.gid);
    setAttributes(at, meta.xattrs, refuse);
    if (entry.type === 'fifo' || entry.type === 'device') fs.chmodSync(at, meta.mode);
    if (entry.type === 'fifo' || entry.type === 'device' || entry.type === 'symlink') setMtime(at, meta.mtime);
    if (at === this.staging) fs.renameSync(at, target);
    if (entry.type === 'directory') this.late.record(target, meta.mode, meta.mtime);
  }

  /** A directory the tar names only as a parent of its entries: the usual mode, no late metadata. */
  makeParent(dir: Buffer): void {
    fs.mkdirSync(dir, { mode: 0o755 });
  }

  /** A second name `target` for the file at `existing`. */
  link(existing: Buffer, target: Buffer): void {
    fs.linkSync(existing, target);
  }

  /** The layer's root takes the tar's time for it at the end (its mode is the snapshot's). */
  rootTime(mtime: Date): void {
    this.late.record(this.layer, undefined, mtime);
  }

  /** Hides `hidden` of the layers below, in directory `dir` of this layer. */
  whiteout(dir: Buffer, hidden: Buffer): void {
    withDir(dir, (fd) => this.format.whiteout(fd, hidden));
  }

  /** Hides everything of the layers below under directory `dir` of this layer. */
  markOpaque(dir: Buffer): void {
    withDir(dir, (fd) => this.format.markOpaque(fd));
  }

  /** Removes `target` and all below it, for a later entry of the same name; their late metadata too. */
  remove(target: Buffer): void {
    fs.rmSync(target, { recursive: true, force: true });
    this.late.forget(target);
  }

  /** Directories' modes and times, now that everything in them is made. */
  finish(): void {
    this.late.apply();
  }
}

/** Runs `fn` with a descriptor of directory `dir`, never following a symlink to it. */
function withDir<T>(dir: Buffer, fn: (fd: number) => T): T {
  const fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
  try {
    return fn(fd);
  } finally {
    fs.closeSync(fd);
  }
}

async function writeFile(at: string, size: number, body: Readable, meta: EntryMetadata): Promise<void> {
  if (size <= SMALL_FILE) {
    // Most layer files are small: read whole, made with one native call.
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    const [sec, nsec] = timespec(meta.mtime);
    const data = Buffer.concat(chunks);
    withDir(Buffer.from(path.dirname(at)), (fd) => sys.createFileAt(fd, path.basename(at), data, meta.mode, meta.owner !== undefined, meta.owner?.uid ?? 0, meta.owner?.gid ?? 0, sec, nsec));
    return;
  }
  // Large ones as their data arrives, set up through the descriptor.
  const fd = fs.openSync(at, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, meta.mode);
  try {
    for await (const chunk of body) fs.writeSync(fd, chunk as Buffer);
    if (meta.owner !== undefined) fs.fchownSync(fd, meta.owner.uid, meta.owner.gid);
    fs.fchmodSync(fd, meta.mode);
    fs.futimesSync(fd, meta.mtime, meta.mtime);
  } finally {
    fs.closeSync(fd);
  }
}

/** Attributes the file system refuses as values are the layer's fault; the rest is the system's. */
function setAttributes(at: string, xattrs: ReadonlyMap<string, Buffer>, refuse: Refuse): void {
  for (const [name, value] of xattrs) {
    try {
      sys.setxattr(at, name, value, 0);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EINVAL') throw refuse(`extended attribute ${JSON.stringify(name)}: not a value the system takes`);
      if (code === 'ERANGE' || code === 'E2BIG') throw refuse(`extended attribute ${JSON.stringify(name)}: too large`);
      throw err;
    }
  }
}

function setMtime(at: string, mtime: Date): void {
  sys.utimens(at, 0, sys.UTIME_OMIT, ...timespec(mtime));
}

/** A time as the seconds and nanoseconds the native calls take. */
function timespec(t: Date): [number, number] {
  const [sec, nsec] = secondsAndNanos(BigInt(t.getTime()) * 1_000_000n);
  return [Number(sec), nsec];
}
