import * as fs from 'node:fs';
import * as path from 'node:path';
import { unavailable } from '../errors';

/**
 * snapfs's native addon (src/native/*.c, built at install by
 * scripts/build-native): the file primitives Node.js lacks, and the FUSE
 * session (src/fuse/ wraps that part).
 *
 * Inside a layer, everything goes through descriptors: `dirfd` and one
 * entry name (a Buffer of bytes, or a string; never `.`, `..` or holding
 * `/`), or openBeneath for a walk of several names. Nothing follows a
 * symlink. Errors are thrown Node-style (code, errno, syscall).
 * Synchronous (but copyDataAsync): use them on layer directories only,
 * never on a mount that this process serves.
 */
export type Name = Buffer | string;

interface Native {
  openAt(dirfd: number, name: Name, flags: number, mode: number): number;
  openBeneath(dirfd: number, relative: Name, flags: number, mode: number): number;
  reopen(fd: number, flags: number): number;
  /** The data of a regular file only (see files.c): '' opens the file of an O_PATH `dirfd`. */
  openFile(dirfd: number, name: Name | '', flags: number): number;
  statAt(dirfd: number, name: Name, out: BigInt64Array): boolean;
  mkdirAt(dirfd: number, name: Name, mode: number): void;
  mknodAt(dirfd: number, name: Name, mode: number, major: number, minor: number): void;
  symlinkAt(target: Name, dirfd: number, name: Name): void;
  linkAt(fd: number, newDirfd: number, newName: Name): void;
  linkNameAt(dirfd: number, name: Name, newDirfd: number, newName: Name): void;
  unlinkAt(dirfd: number, name: Name, isDir: boolean): void;
  renameAt(oldDirfd: number, oldName: Name, newDirfd: number, newName: Name, flags: number): void;
  readlinkAt(dirfd: number, name: Name): Buffer;
  chownAt(dirfd: number, name: Name, uid: number, gid: number): void;
  chmodFd(fd: number, mode: number): void;
  /** Of entry `name` of dirfd itself (a final symlink not followed): one system call where the kernel has it. */
  chmodAt(dirfd: number, name: Name, mode: number): void;
  utimensAt(dirfd: number, name: Name, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void;
  getxattrAt(dirfd: number, name: Name, attr: Name): Buffer | undefined;
  utimens(target: number | Name, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void;
  mknod(file: Name, mode: number, major: number, minor: number): void;
  getxattr(target: number | Name, name: Name): Buffer | undefined;
  setxattr(target: number | Name, name: Name, value: Buffer, flags: number): void;
  removexattr(target: number | Name, name: Name): void;
  listxattr(target: number | Name): Buffer[];
  readdirFd(dirfd: number): Buffer;
  /** The first `size` bytes of a file's data, holes kept (see files.c). */
  copyData(srcFd: number, dstFd: number, size: number): void;
  /** copyData on libuv's pool: both descriptors must stay open until it settles; rejects as copyData throws. */
  copyDataAsync(srcFd: number, dstFd: number, size: number): Promise<void>;
  createFileAt(dirfd: number, name: Name, data: Buffer, mode: number, chown: boolean, uid: number, gid: number, mtimeSec: number, mtimeNsec: number): void;
  /** An exclusive flock without waiting: false when someone else holds it (released when its process ends). */
  tryLock(fd: number): boolean;
  realtimeNs(): bigint;
  unixListen(path: string, backlog: number): number;
  unixConnect(path: string, timeoutMs: number): number;
  unixAccept(fd: number): number;
  unixAdopt(fd: number): string;
  unixPeer(fd: number): [number, number, number];
  unixSend(fd: number, data: Buffer, fds: readonly number[]): void;
  unixReceive(fd: number): { data: Buffer; fds: number[] } | null | undefined;
  watchReadable(fd: number, callback: () => void): Watch;
  unwatch(watch: Watch): void;
  readonly UTIME_OMIT: number;
  readonly UTIME_NOW: number;
}

/** A descriptor libuv watches for the addon (see unix.c). */
export interface Watch {
  readonly __brand: 'Watch';
}

let addon: Native | undefined;
/**
 * The addon, loaded when first used: commands that never touch a layer
 * (`snapfs info`, `ls`, `--help`) do not pay for loading it.
 */
export const sys: Native = new Proxy({} as Native, {
  get: (_target, name: keyof Native) => {
    // dist/src/native → the package root, where the build lives.
    addon ??= require(path.join(__dirname, '..', '..', '..', 'src', 'native', 'build', 'Release', 'snapfs.node')) as Native;
    return addon[name];
  },
});

/** What fstatat says of a file, with nanosecond times. */
export interface Stat {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly mode: number;
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  readonly rdev: number;
  readonly size: number;
  readonly blksize: number;
  readonly blocks: number;
  readonly atimeNs: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
}

const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;

export const isDir = (st: Stat): boolean => (st.mode & S_IFMT) === S_IFDIR;
export const isFile = (st: Stat): boolean => (st.mode & S_IFMT) === S_IFREG;
export const isSymlink = (st: Stat): boolean => (st.mode & S_IFMT) === S_IFLNK;
/** An overlayfs whiteout: a character device 0/0. */
export const isWhiteout = (st: Stat): boolean => (st.mode & S_IFMT) === S_IFCHR && st.rdev === 0;

const fields = new BigInt64Array(13);

function toStat(f: BigInt64Array): Stat {
  return {
    dev: f[0]!,
    ino: BigInt.asUintN(64, f[1]!),
    mode: Number(f[2]),
    nlink: Number(f[3]),
    uid: Number(f[4]),
    gid: Number(f[5]),
    rdev: Number(f[6]),
    size: Number(f[7]),
    blksize: Number(f[8]),
    blocks: Number(f[9]),
    atimeNs: f[10]!,
    mtimeNs: f[11]!,
    ctimeNs: f[12]!,
  };
}

/** Entry `name` of directory `dirfd`, not followed; undefined when there is none. */
export function statAt(dirfd: number, name: Name): Stat | undefined {
  return sys.statAt(dirfd, name, fields) ? toStat(fields) : undefined;
}

/** The file a descriptor (O_PATH ones too) is open on. */
export function fstat(fd: number): Stat {
  if (!sys.statAt(fd, '', fields)) throw Object.assign(new Error('ENOENT: no such file or directory, fstat'), { code: 'ENOENT', errno: -2, syscall: 'fstat' });
  return toStat(fields);
}

/** One directory entry as getdents reads it. */
export interface Dirent {
  readonly name: Buffer;
  readonly ino: bigint;
  /** DT_* (DT_UNKNOWN when the file system does not say). */
  readonly type: number;
}

export const DT_UNKNOWN = 0;
export const DT_CHR = 2;
export const DT_DIR = 4;

/** The entries of directory `dirfd` (an O_PATH descriptor will do), `.` and `..` aside; names are views of one buffer. */
export function readdirFd(dirfd: number): Dirent[] {
  const packed = sys.readdirFd(dirfd);
  const out: Dirent[] = [];
  for (let at = 0; at < packed.length; ) {
    const len = packed[at + 9]!;
    out.push({ ino: packed.readBigUInt64LE(at), type: packed[at + 8]!, name: packed.subarray(at + 10, at + 10 + len) });
    at += 10 + len;
  }
  return out;
}

let openat2Checked = false;

/**
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS): a walk of several names
 * below `dirfd` that never leaves it nor follows a symlink. Needs Linux 5.6;
 * where it is missing, or a seccomp profile refuses it, that is said once,
 * plainly, rather than worked around.
 */
export function openBeneath(dirfd: number, relative: Name, flags: number, mode = 0): number {
  if (!openat2Checked) {
    try {
      fs.closeSync(sys.openBeneath(dirfd, '.', O_PATH, 0));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOSYS' || code === 'EPERM') throw unavailable('openat2: not available (Linux 5.6 or later is needed, and a seccomp profile must allow it)');
      throw err;
    }
    openat2Checked = true;
  }
  return sys.openBeneath(dirfd, relative, flags, mode);
}

export const O_PATH = 0o10000000;
