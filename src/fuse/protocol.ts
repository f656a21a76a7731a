/**
 * The kernel's FUSE protocol (include/uapi/linux/fuse.h), as much of it as
 * snapfs speaks: opcodes, flags, and the byte layout of requests and
 * answers. Requests are parsed out of the shared request buffer (copying
 * what is kept); answers are packed into Buffers that the native session
 * writes out. Layouts are those of protocol 7.23 and later.
 */

export const Op = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  ACCESS: 34,
  CREATE: 35,
  DESTROY: 38,
  BATCH_FORGET: 42,
  READDIRPLUS: 44,
  RENAME2: 45,
} as const;

/** Every opcode's name in <linux/fuse.h> (lowercase, FUSE_ dropped), those the native side serves and those nobody does included. */
const OP_NAMES: readonly (string | undefined)[] = [
  undefined, 'lookup', 'forget', 'getattr', 'setattr', 'readlink', 'symlink', undefined, 'mknod', 'mkdir',
  'unlink', 'rmdir', 'rename', 'link', 'open', 'read', 'write', 'statfs', 'release', undefined,
  'fsync', 'setxattr', 'getxattr', 'listxattr', 'removexattr', 'flush', 'init', 'opendir', 'readdir', 'releasedir',
  'fsyncdir', 'getlk', 'setlk', 'setlkw', 'access', 'create', 'interrupt', 'bmap', 'destroy', 'ioctl',
  'poll', 'notify_reply', 'batch_forget', 'fallocate', 'readdirplus', 'rename2', 'lseek', 'copy_file_range', 'setupmapping', 'removemapping',
  'syncfs', 'tmpfile', 'statx',
];

/** An opcode's name, as metrics label it; one the kernel may add later is `other`. */
export function opName(opcode: number): string {
  return OP_NAMES[opcode] ?? 'other';
}

/** Whether `name` is one opName gives. */
export function isOpName(name: string): boolean {
  return name === 'other' || OP_NAMES.includes(name);
}

/** INIT flags (fuse_init_in.flags and, shifted by 32, flags2). */
export const Init = {
  ASYNC_READ: 1 << 0,
  ATOMIC_O_TRUNC: 1 << 3,
  BIG_WRITES: 1 << 5,
  AUTO_INVAL_DATA: 1 << 12,
  DO_READDIRPLUS: 1 << 13,
  READDIRPLUS_AUTO: 1 << 14,
  PARALLEL_DIROPS: 1 << 18,
  MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23,
  HANDLE_KILLPRIV_V2: 1 << 28,
  /** flags2 is read (the flags below). */
  INIT_EXT: 1 << 30,
} as const;

/** INIT flags of flags2 (the protocol's bits 32 and up). */
export const Init2 = {
  /** Opens may hand the kernel a backing file to read and write itself (7.40). */
  PASSTHROUGH: 1 << 5,
} as const;

/** fuse_open_out.open_flags */
export const FOPEN_KEEP_CACHE = 1 << 1;
export const FOPEN_CACHE_DIR = 1 << 3;
export const FOPEN_PASSTHROUGH = 1 << 7;

/** fuse_setattr_in.valid */
export const Fattr = {
  MODE: 1 << 0,
  UID: 1 << 1,
  GID: 1 << 2,
  SIZE: 1 << 3,
  ATIME: 1 << 4,
  MTIME: 1 << 5,
  FH: 1 << 6,
  ATIME_NOW: 1 << 7,
  MTIME_NOW: 1 << 8,
  CTIME: 1 << 10,
  KILL_SUIDGID: 1 << 11,
} as const;

export const FUSE_GETATTR_FH = 1;
export const FUSE_OPEN_KILL_SUIDGID = 1;
export const FUSE_FSYNC_FDATASYNC = 1;

/** The oldest kernel protocol spoken: its layouts are the ones below. */
const MIN_MINOR = 26;
/** The newest spoken (an older kernel's is taken). */
const MAX_MINOR = 40;

export const IN_HEADER = 40;
const ATTR_SIZE = 88;
const ENTRY_OUT = 40 + ATTR_SIZE;
const ATTR_OUT = 16 + ATTR_SIZE;
const OPEN_OUT = 16;
const DIRENT_HEADER = 24;

/** What every request starts with. */
export interface Header {
  readonly opcode: number;
  readonly unique: number;
  readonly nodeid: number;
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
}

export function parseHeader(buf: Buffer): Header {
  return {
    opcode: buf.readUInt32LE(4),
    unique: Number(buf.readBigUInt64LE(8)),
    nodeid: Number(buf.readBigUInt64LE(16)),
    uid: buf.readUInt32LE(24),
    gid: buf.readUInt32LE(28),
    pid: buf.readUInt32LE(32),
  };
}

/** The NUL-terminated name at `at` in a request of `end` bytes, copied; and where the next byte is. */
export function nameAt(buf: Buffer, at: number, end: number): [Buffer, number] {
  let nul = buf.indexOf(0, at);
  if (nul < 0 || nul >= end) nul = end;
  return [Buffer.from(buf.subarray(at, nul)), nul + 1];
}

export const u32 = (buf: Buffer, at: number): number => buf.readUInt32LE(IN_HEADER + at);
export const u64 = (buf: Buffer, at: number): number => Number(buf.readBigUInt64LE(IN_HEADER + at));

/** A file's attributes as the kernel takes them. */
export interface Attr {
  readonly ino: number;
  readonly size: number;
  readonly blocks: number;
  readonly atimeNs: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
  readonly mode: number;
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  readonly rdev: number;
  readonly blksize: number;
}

const NS = 1_000_000_000n;

/** Seconds (rounding down, before 1970 too) and nanoseconds of a time. */
function putTime(buf: Buffer, secAt: number, nsecAt: number, ns: bigint): void {
  const nsec = ((ns % NS) + NS) % NS;
  buf.writeBigInt64LE((ns - nsec) / NS, secAt);
  buf.writeUInt32LE(Number(nsec), nsecAt);
}

function putAttr(buf: Buffer, at: number, a: Attr): void {
  buf.writeBigUInt64LE(BigInt(a.ino), at);
  buf.writeBigUInt64LE(BigInt(a.size), at + 8);
  buf.writeBigUInt64LE(BigInt(a.blocks), at + 16);
  putTime(buf, at + 24, at + 48, a.atimeNs);
  putTime(buf, at + 32, at + 52, a.mtimeNs);
  putTime(buf, at + 40, at + 56, a.ctimeNs);
  buf.writeUInt32LE(a.mode >>> 0, at + 60);
  buf.writeUInt32LE(a.nlink >>> 0, at + 64);
  buf.writeUInt32LE(a.uid >>> 0, at + 68);
  buf.writeUInt32LE(a.gid >>> 0, at + 72);
  buf.writeUInt32LE(a.rdev >>> 0, at + 76);
  buf.writeUInt32LE(a.blksize >>> 0, at + 80);
  buf.writeUInt32LE(0, at + 84);
}

/** Seconds as the kernel takes timeouts: whole seconds and nanoseconds. */
function putTimeout(buf: Buffer, secAt: number, nsecAt: number, seconds: number): void {
  const whole = Math.floor(seconds);
  buf.writeBigUInt64LE(BigInt(whole), secAt);
  buf.writeUInt32LE(Math.round((seconds - whole) * 1e9), nsecAt);
}

/** A name the kernel may keep (`ino` 0: the name does not exist, and that may be kept). */
export interface Entry {
  readonly ino: number;
  readonly attr?: Attr;
  /** Seconds the kernel may keep the name, and the attributes. */
  readonly entryTimeout: number;
  readonly attrTimeout: number;
}

function putEntry(buf: Buffer, at: number, e: Entry): void {
  buf.writeBigUInt64LE(BigInt(e.ino), at);
  buf.writeBigUInt64LE(0n, at + 8); // generation: node ids are never reused
  putTimeout(buf, at + 16, at + 32, e.entryTimeout);
  putTimeout(buf, at + 24, at + 36, e.attrTimeout);
  if (e.attr !== undefined) putAttr(buf, at + 40, e.attr);
}

export function entryOut(e: Entry): Buffer {
  const buf = Buffer.alloc(ENTRY_OUT);
  putEntry(buf, 0, e);
  return buf;
}

export function attrOut(attr: Attr, timeout: number): Buffer {
  const buf = Buffer.alloc(ATTR_OUT);
  putTimeout(buf, 0, 8, timeout);
  putAttr(buf, 16, attr);
  return buf;
}

export function openOut(fh: number, flags: number, backingId = 0): Buffer {
  const buf = Buffer.alloc(OPEN_OUT);
  buf.writeBigUInt64LE(BigInt(fh), 0);
  buf.writeUInt32LE(flags, 8);
  buf.writeInt32LE(backingId, 12);
  return buf;
}

/** CREATE answers with the new entry and the open file. */
export function createOut(e: Entry, fh: number, flags: number, backingId?: number): Buffer {
  return Buffer.concat([entryOut(e), openOut(fh, flags, backingId)]);
}

export interface StatFs {
  readonly blocks: number;
  readonly bfree: number;
  readonly bavail: number;
  readonly files: number;
  readonly ffree: number;
  readonly bsize: number;
  readonly namelen: number;
  readonly frsize: number;
}

export function statfsOut(s: StatFs): Buffer {
  const buf = Buffer.alloc(80);
  buf.writeBigUInt64LE(BigInt(s.blocks), 0);
  buf.writeBigUInt64LE(BigInt(s.bfree), 8);
  buf.writeBigUInt64LE(BigInt(s.bavail), 16);
  buf.writeBigUInt64LE(BigInt(s.files), 24);
  buf.writeBigUInt64LE(BigInt(s.ffree), 32);
  buf.writeUInt32LE(s.bsize, 40);
  buf.writeUInt32LE(s.namelen, 44);
  buf.writeUInt32LE(s.frsize, 48);
  return buf;
}

/** fuse_getxattr_out: the size an attribute value (or the list of names) needs. */
export function xattrSizeOut(size: number): Buffer {
  const buf = Buffer.alloc(8);
  buf.writeUInt32LE(size, 0);
  return buf;
}

/** One entry of a directory listing. */
export interface DirEntry {
  readonly name: Buffer;
  readonly ino: number;
  /** The file type bits of st_mode (S_IFDIR, …); the rest is ignored. */
  readonly mode: number;
}

const align8 = (n: number): number => (n + 7) & ~7;

/** The size of a listing entry: a dirent, or with `plus` a direntplus. */
export function direntSize(nameLength: number, plus: boolean): number {
  return (plus ? ENTRY_OUT : 0) + align8(DIRENT_HEADER + nameLength);
}

/** Packs entry `d` (whose successor is at offset `next`) at `at`; with `entry`, as a direntplus. */
export function putDirent(buf: Buffer, at: number, d: DirEntry, next: number, entry?: Entry): number {
  if (entry !== undefined) {
    putEntry(buf, at, entry);
    at += ENTRY_OUT;
  }
  buf.writeBigUInt64LE(BigInt(d.ino), at);
  buf.writeBigUInt64LE(BigInt(next), at + 8);
  buf.writeUInt32LE(d.name.length, at + 16);
  buf.writeUInt32LE((d.mode >>> 12) & 0xf, at + 20);
  d.name.copy(buf, at + DIRENT_HEADER);
  const end = at + align8(DIRENT_HEADER + d.name.length);
  buf.fill(0, at + DIRENT_HEADER + d.name.length, end);
  return end;
}

/** What the session asks for at INIT, of what the kernel offers. */
export interface InitOptions {
  readonly flags: number;
  /** Init2 flags asked for. */
  readonly flags2: number;
  readonly maxWrite: number;
  readonly maxPages: number;
}

/**
 * How deep a backing file's own file system may be stacked: 1, files of
 * plain file systems. The mount itself then counts as stacked once, so a
 * kernel overlay may still be put on it.
 */
const PASSTHROUGH_STACK_DEPTH = 1;

/** The answer to INIT; undefined for a kernel too old to speak to. */
export function initOut(request: Buffer, opts: InitOptions): { out: Buffer; minor: number; flags: number; flags2: number } | undefined {
  const major = u32(request, 0);
  const kernelMinor = u32(request, 4);
  const maxReadahead = u32(request, 8);
  const offered = u32(request, 12);
  if (major !== 7 || kernelMinor < MIN_MINOR) return undefined;
  const minor = Math.min(kernelMinor, MAX_MINOR);
  const offered2 = (offered & Init.INIT_EXT) !== 0 ? u32(request, 16) : 0;
  const flags2 = (offered2 & opts.flags2) >>> 0;
  const flags = ((offered & opts.flags) | (flags2 !== 0 ? Init.INIT_EXT : 0)) >>> 0;
  const out = Buffer.alloc(64);
  out.writeUInt32LE(7, 0);
  out.writeUInt32LE(minor, 4);
  out.writeUInt32LE(maxReadahead, 8);
  out.writeUInt32LE(flags, 12);
  out.writeUInt16LE(16, 16); // max_background, as libfuse
  out.writeUInt16LE(12, 18); // congestion_threshold
  out.writeUInt32LE(opts.maxWrite, 20);
  out.writeUInt32LE(1, 24); // time_gran: nanoseconds
  out.writeUInt16LE((flags & Init.MAX_PAGES) !== 0 ? opts.maxPages : 0, 28);
  out.writeUInt32LE(flags2, 32);
  if ((flags2 & Init2.PASSTHROUGH) !== 0) out.writeUInt32LE(PASSTHROUGH_STACK_DEPTH, 36);
  return { out, minor, flags, flags2 };
}
