import * as fs from 'node:fs';
import type { Readable } from 'node:stream';
import { secondsAndNanos } from '../clock';
import type { UpperFormat } from '../overlay/format';
import { fstat, O_PATH, sys } from '../native/sys';
import { removeTreeAt } from '../snapshotter/dirs';
import { LateDirectories, type Timespec } from './late-directories';
import type { Place } from './places';

/** Files up to this size are read whole and made in one call. */
const SMALL_FILE = 1 << 20;
const EMPTY = Buffer.alloc(0);

/** What an entry of a layer tar makes. */
export type NewEntry =
  | { readonly type: 'directory' }
  | { readonly type: 'file'; readonly size: number; readonly body: Readable }
  | { readonly type: 'symlink'; readonly target: Buffer }
  | { readonly type: 'fifo' }
  | { readonly type: 'device'; readonly kind: number; readonly major: number; readonly minor: number };

/** An entry that is no regular file: made in one call, its metadata set afterwards. */
type NodeEntry = Exclude<NewEntry, { readonly type: 'file' }>;

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
 * and directories' late modes and times are set here. Everything is done
 * by descriptors: an entry is made by name in its parent's descriptor, and
 * its metadata set through a descriptor of the very file. Names are bytes.
 */
export class LayerEntries {
  private readonly late: LateDirectories;

  /** `root`: the layer's root directory, open. */
  constructor(
    private readonly root: number,
    private readonly format: UpperFormat,
  ) {
    this.late = new LateDirectories(root);
  }

  /**
   * Makes `entry` at `at`, where nothing is, or gives the directory there
   * already (`existing`) the new entry's metadata.
   */
  async make(at: Place, entry: NewEntry, meta: EntryMetadata, existing: boolean, refuse: Refuse): Promise<void> {
    if (entry.type === 'file') return writeFile(at, entry.size, entry.body, meta, refuse);
    if (!existing) makeNode(at, entry, meta);
    // O_PATH opens nothing (a fifo, a device) and, with O_NOFOLLOW, a symlink itself.
    const fd = sys.openAt(at.dirfd, at.name, O_PATH, 0);
    try {
      // Owner before mode: chown clears set-id bits.
      if (meta.owner !== undefined) sys.chownAt(fd, '', meta.owner.uid, meta.owner.gid);
      setAttributes(fd, meta.xattrs, refuse);
      if (entry.type === 'fifo' || entry.type === 'device') sys.chmodFd(fd, meta.mode);
      if (entry.type === 'directory') this.late.record(at.path, fstat(fd), meta.mode, timespec(meta.mtime));
      else sys.utimens(fd, 0, sys.UTIME_OMIT, ...timespec(meta.mtime));
    } finally {
      fs.closeSync(fd);
    }
  }

  /** A directory the tar names only as a parent of its entries: the usual mode, no late metadata. */
  makeParent(dirfd: number, name: Buffer): void {
    sys.mkdirAt(dirfd, name, 0o755);
  }

  /** A second name, at `at`, for the file open as `fd`. */
  link(fd: number, at: Place): void {
    sys.linkAt(fd, at.dirfd, at.name);
  }

  /** The layer's root takes the tar's time for it at the end (its mode is the snapshot's). */
  rootTime(mtime: Date): void {
    this.late.record(EMPTY, fstat(this.root), undefined, timespec(mtime));
  }

  /** Hides `hidden` of the layers below, in directory `dirfd` of this layer, with the whiteout entry's time. */
  whiteout(dirfd: number, hidden: Buffer, mtime: Date): void {
    sys.utimensAt(dirfd, this.format.whiteout(dirfd, hidden), 0, sys.UTIME_OMIT, ...timespec(mtime));
  }

  /** Hides everything of the layers below under directory `dirfd` of this layer. */
  markOpaque(dirfd: number): void {
    this.format.markOpaque(dirfd);
  }

  /** Removes what is at `at`, and all below it, for a later entry of the same name; their late metadata too. */
  remove(at: Place): void {
    removeTreeAt(at.dirfd, at.name);
    this.late.forget(at.path);
  }

  /** Directories' modes and times, now that everything in them is made. */
  finish(): void {
    this.late.apply();
  }
}

function makeNode(at: Place, entry: NodeEntry, meta: EntryMetadata): void {
  switch (entry.type) {
    case 'directory':
      return sys.mkdirAt(at.dirfd, at.name, 0o777);
    case 'symlink':
      return sys.symlinkAt(entry.target, at.dirfd, at.name);
    case 'fifo':
      return sys.mknodAt(at.dirfd, at.name, fs.constants.S_IFIFO | meta.mode, 0, 0);
    case 'device':
      return sys.mknodAt(at.dirfd, at.name, entry.kind | meta.mode, entry.major, entry.minor);
  }
}

async function writeFile(at: Place, size: number, body: Readable, meta: EntryMetadata, refuse: Refuse): Promise<void> {
  if (size <= SMALL_FILE) {
    // Most layer files are small: read whole, made with one native call.
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    sys.createFileAt(at.dirfd, at.name, Buffer.concat(chunks), meta.mode, meta.owner !== undefined, meta.owner?.uid ?? 0, meta.owner?.gid ?? 0, ...timespec(meta.mtime));
    // Few files have attributes: only those are opened again, by the name just made, never following it.
    if (meta.xattrs.size > 0) withFd(sys.openAt(at.dirfd, at.name, O_PATH, 0), (fd) => setAttributes(fd, meta.xattrs, refuse));
    return;
  }
  // Large ones as their data arrives, set up through the descriptor.
  const fd = sys.openAt(at.dirfd, at.name, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, meta.mode);
  try {
    for await (const chunk of body) fs.writeSync(fd, chunk as Buffer);
    if (meta.owner !== undefined) fs.fchownSync(fd, meta.owner.uid, meta.owner.gid);
    fs.fchmodSync(fd, meta.mode);
    fs.futimesSync(fd, meta.mtime, meta.mtime);
    // After the data and the owner: writing or chown drops security.capability.
    setAttributes(fd, meta.xattrs, refuse);
  } finally {
    fs.closeSync(fd);
  }
}

function withFd<T>(fd: number, fn: (fd: number) => T): T {
  try {
    return fn(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Attributes the file system refuses as values are the layer's fault; the rest is the system's. */
function setAttributes(fd: number, xattrs: ReadonlyMap<string, Buffer>, refuse: Refuse): void {
  for (const [name, value] of xattrs) {
    try {
      sys.setxattr(fd, name, value, 0);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EINVAL') throw refuse(`extended attribute ${JSON.stringify(name)}: not a value the system takes`);
      if (code === 'ERANGE' || code === 'E2BIG') throw refuse(`extended attribute ${JSON.stringify(name)}: too large`);
      throw err;
    }
  }
}

/** A time as the seconds and nanoseconds the native calls take. */
function timespec(t: Date): Timespec {
  const [sec, nsec] = secondsAndNanos(BigInt(t.getTime()) * 1_000_000n);
  return [Number(sec), nsec];
}
