/**
 * Types for fuse-native 2.2.6 as patched by scripts/patches (64-bit inode
 * numbers and sizes, nanosecond times, utimens with both times, more options,
 * descriptor handles, set-ID kill requests).
 */
declare module 'fuse-native' {
  /** Numbers or bigints; times from `<x>timeNs` (bigint) when present, else `<x>time`. */
  export interface FuseStat {
    mode: number | bigint;
    uid?: number | bigint;
    gid?: number | bigint;
    size?: number | bigint;
    dev?: number | bigint;
    nlink?: number | bigint;
    ino?: number | bigint;
    rdev?: number | bigint;
    blksize?: number | bigint;
    blocks?: number | bigint;
    atimeNs?: bigint;
    mtimeNs?: bigint;
    ctimeNs?: bigint;
    atime?: Date | number;
    mtime?: Date | number;
    ctime?: Date | number;
  }

  export interface FuseStatfs {
    bsize: number;
    frsize: number;
    blocks: number;
    bfree: number;
    bavail: number;
    files: number;
    ffree: number;
    favail: number;
    fsid: number;
    flag: number;
    namemax: number;
  }

  /** Seconds and nanoseconds; nsec may be UTIME_NOW or UTIME_OMIT. */
  export interface FuseTime {
    sec: number;
    nsec: number;
  }

  /** Callbacks take 0 or a negative errno first. */
  type Cb<T extends unknown[] = []> = (err: number, ...result: T) => void;

  export interface FuseOperations {
    init?(cb: Cb): void;
    statfs?(path: string, cb: Cb<[FuseStatfs?]>): void;
    getattr?(path: string, cb: Cb<[FuseStat?]>): void;
    fgetattr?(path: string, fd: number, cb: Cb<[FuseStat?]>): void;
    access?(path: string, mode: number, cb: Cb): void;
    readdir?(path: string, cb: Cb<[string[]?, FuseStat[]?]>): void;
    readlink?(path: string, cb: Cb<[string?]>): void;
    open?(path: string, flags: number, cb: Cb<[number?]>): void;
    opendir?(path: string, flags: number, cb: Cb<[number?]>): void;
    release?(path: string, fd: number, cb: Cb): void;
    releasedir?(path: string, fd: number, cb: Cb): void;
    read?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void;
    write?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void;
    flush?(path: string, fd: number, cb: Cb): void;
    fsync?(path: string, datasync: boolean, fd: number, cb: Cb): void;
    fsyncdir?(path: string, datasync: boolean, fd: number, cb: Cb): void;
    truncate?(path: string, size: number, cb: Cb): void;
    ftruncate?(path: string, fd: number, size: number, cb: Cb): void;
    utimens?(path: string, atime: FuseTime, mtime: FuseTime, cb: Cb): void;
    chown?(path: string, uid: number, gid: number, cb: Cb): void;
    chmod?(path: string, mode: number, cb: Cb): void;
    mknod?(path: string, mode: number, dev: number, cb: Cb): void;
    setxattr?(path: string, name: string, value: Buffer, position: number, flags: number, cb: Cb): void;
    getxattr?(path: string, name: string, position: number, cb: Cb<[Buffer?]>): void;
    listxattr?(path: string, cb: Cb<[string[]?]>): void;
    removexattr?(path: string, name: string, cb: Cb): void;
    create?(path: string, mode: number, cb: Cb<[number?]>): void;
    unlink?(path: string, cb: Cb): void;
    rename?(src: string, dest: string, cb: Cb): void;
    link?(src: string, dest: string, cb: Cb): void;
    symlink?(target: string, path: string, cb: Cb): void;
    mkdir?(path: string, mode: number, cb: Cb): void;
    rmdir?(path: string, cb: Cb): void;
  }

  export interface FuseOptions {
    debug?: boolean;
    force?: boolean;
    mkdir?: boolean;
    allowOther?: boolean;
    defaultPermissions?: boolean;
    fsname?: string;
    subtype?: string;
    kernelCache?: boolean;
    autoCache?: boolean;
    entryTimeout?: number;
    attrTimeout?: number;
    negativeTimeout?: number;
    maxRead?: number;
    maxWrite?: number;
    bigWrites?: boolean;
    useIno?: boolean;
    atomicOTrunc?: boolean;
    extraOptions?: string[];
    /** Milliseconds before an unanswered operation fails with EIO; false for none. */
    timeout?: number | false;
    /**
     * open and create answer with an open descriptor of the file itself:
     * read and write then go straight to it, never to `read`/`write` here.
     */
    fdHandles?: boolean;
    /**
     * Seconds the kernel may keep the attributes of directories and of files
     * with one name, whatever attrTimeout says for the rest: libfuse gives
     * each name of a hard-linked file a kernel inode of its own.
     */
    singleNameAttrTimeout?: number;
    /** Directories never change: the kernel may keep what it read of them (FOPEN_CACHE_DIR). */
    cacheDirs?: boolean;
  }

  class Fuse {
    constructor(mnt: string, ops: FuseOperations, opts?: FuseOptions);
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    static unmount(mnt: string, cb: (err: Error | null) => void): void;
    /** With fdHandles: every write from now on is EROFS. */
    refuseWrites(): void;
    /**
     * Who made the request being handled (while an operation runs), and
     * whether it asks that set-ID bits go (open with O_TRUNC, truncate and
     * write by a caller without CAP_FSETID: the kernel leaves that to the
     * file system).
     */
    readonly caller?: { uid: number; gid: number; killSuidgid: boolean };
    static readonly ENOENT: number;
  }
  export default Fuse;
}
