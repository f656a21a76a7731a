import type { FuseOperations, FuseStat } from 'fuse-native';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { sys } from '../native/sys';
import { isPrivateXattr } from './format';
import { InodeTable } from './inodes';
import { Resolver } from './resolver';

const E = os.constants.errno;

/** A FUSE callback's error: the negative errno. */
function errno(err: unknown): number {
  const n = (err as { errno?: unknown }).errno;
  if (typeof n === 'number') return n < 0 ? n : -n;
  const code = (err as { code?: unknown }).code;
  const known = typeof code === 'string' ? (E as Record<string, number>)[code] : undefined;
  return known === undefined ? -E.EIO : -known;
}

/**
 * The FUSE operations of a read-only merged view of `layers` (topmost
 * first). Writes never reach it: the mount is made read-only, so the kernel
 * answers them with EROFS.
 */
export function readOnlyOperations(layers: readonly string[]): FuseOperations {
  const resolver = new Resolver(layers);
  const inodes = new InodeTable(fs.lstatSync(layers[0]!, { bigint: true }));
  const files = new Map<number, number>(); // handle → file descriptor in a layer
  let nextHandle = 1;

  const attr = (st: fs.BigIntStats): FuseStat => ({
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
    size: st.size,
    nlink: st.nlink,
    ino: inodes.of(st),
    rdev: st.rdev,
    blksize: st.blksize,
    blocks: st.blocks,
    atimeNs: st.atimeNs,
    mtimeNs: st.mtimeNs,
    ctimeNs: st.ctimeNs,
  });

  // Each operation is a small synchronous function on the layers; `run`
  // turns its result or exception into the FUSE callback.
  const run = <T>(cb: (err: number, value?: T) => void, fn: () => T): void => {
    let value: T;
    try {
      value = fn();
    } catch (err) {
      return cb(errno(err));
    }
    cb(0, value);
  };
  const mustLookup = (p: string) => {
    const node = resolver.lookup(p);
    if (node === undefined) throw Object.assign(new Error('ENOENT'), { errno: -E.ENOENT });
    return node;
  };

  return {
    getattr: (p, cb) => run(cb, () => attr(mustLookup(p).stat)),
    fgetattr: (p, fd, cb) => run(cb, () => (files.has(fd) ? attr(fs.fstatSync(files.get(fd)!, { bigint: true })) : attr(mustLookup(p).stat))),
    readdir: (p, cb) =>
      run(cb, () => {
        const dir = mustLookup(p);
        if (!dir.stat.isDirectory()) throw Object.assign(new Error('ENOTDIR'), { errno: -E.ENOTDIR });
        return ['.', '..', ...resolver.readdir(dir, p)];
      }),
    readlink: (p, cb) => run(cb, () => fs.readlinkSync(mustLookup(p).real)),
    open: (p, flags, cb) =>
      run(cb, () => {
        const fd = fs.openSync(mustLookup(p).real, flags & ~(fs.constants.O_CREAT | fs.constants.O_TRUNC));
        const handle = nextHandle++;
        files.set(handle, fd);
        return handle;
      }),
    read: (_p, handle, buf, len, pos, cb) => {
      const fd = files.get(handle);
      if (fd === undefined) return cb(-E.EBADF);
      try {
        cb(fs.readSync(fd, buf, 0, len, pos));
      } catch (err) {
        cb(errno(err));
      }
    },
    release: (_p, handle, cb) =>
      run(cb, () => {
        const fd = files.get(handle);
        files.delete(handle);
        if (fd !== undefined) fs.closeSync(fd);
      }),
    statfs: (_p, cb) =>
      run(cb, () => {
        const s = fs.statfsSync(layers[0]!);
        return { bsize: s.bsize, frsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, favail: s.ffree, fsid: 0, flag: 0, namemax: 255 };
      }),
    getxattr: (p, name, _position, cb) =>
      run(cb, () => {
        if (isPrivateXattr(name)) throw Object.assign(new Error('ENODATA'), { errno: -E.ENODATA });
        return sys.getxattr(mustLookup(p).real, name);
      }),
    listxattr: (p, cb) => run(cb, () => sys.listxattr(mustLookup(p).real).filter((n) => !isPrivateXattr(n))),
  };
}
