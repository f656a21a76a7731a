import * as path from 'node:path';

/**
 * System calls Node.js lacks, from src/native/sys.c (built at install by
 * scripts/build-native). Each acts on the path itself, never following a
 * final symlink, and throws Node-style errors (code, errno, syscall, path).
 * Synchronous: use them on layer directories only, never on a mount that
 * this process serves.
 */
export interface Sys {
  mknod(file: string, mode: number, major: number, minor: number): void;
  /** Seconds and nanoseconds; UTIME_OMIT (or UTIME_NOW, as FUSE passes them) for nanoseconds leaves a time unchanged (or sets now). */
  utimens(file: string, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void;
  /** undefined when the file has no such attribute. */
  getxattr(file: string, name: string): Buffer | undefined;
  setxattr(file: string, name: string, value: Buffer, flags: number): void;
  listxattr(file: string): string[];
  removexattr(file: string, name: string): void;
  /** Copies `size` bytes of data between file descriptors, keeping holes. */
  copyData(srcFd: number, dstFd: number, size: number): void;
  /** A new file (never replacing anything) with content, owner (when `chown`), mode and mtime, in one call. */
  createFile(file: string, data: Buffer, mode: number, chown: boolean, uid: number, gid: number, mtimeSec: number, mtimeNsec: number): void;
  /** clock_gettime(CLOCK_REALTIME) in nanoseconds. */
  realtimeNs(): bigint;
  readonly UTIME_OMIT: number;
}

// dist/src/native → the package root, where the build lives.
export const sys = require(path.join(__dirname, '..', '..', '..', 'src', 'native', 'build', 'Release', 'snapfs_sys.node')) as Sys;
