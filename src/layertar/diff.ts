import { isUtf8 } from 'node:buffer';
import * as fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import type { Writable } from 'node:stream';
import * as zlib from 'node:zlib';
import * as tar from 'tar-stream';
import { isOpaque, isPrivateXattr, OPAQUE_MARKER, WHITEOUT_PREFIX } from '../overlay/format';
import { sys } from '../native/sys';
import type { UsageProgress } from '../snapshotter/usage';
import { major, minor } from '../layerfs/devices';

const SLASH = Buffer.from('/');
const OPAQUE_NAME = Buffer.from(OPAQUE_MARKER);
const WHITEOUT_NAME = Buffer.from(WHITEOUT_PREFIX);

/**
 * Writes layer directory `layer` as an OCI image layer tar to `out`:
 * whiteouts as `.wh.NAME` entries, opaque directories as a
 * `.wh..wh..opq` entry, files with several names in the layer as one file
 * and hard links, extended attributes (overlay's own aside) as PAX
 * `SCHILY.xattr.` records. Entries come in path order (of bytes), each
 * directory before what it holds. Names are written as the bytes they are.
 */
export async function writeLayerTar(layer: string, out: Writable, opts: { gzip?: boolean; onProgress?: UsageProgress } = {}): Promise<void> {
  // latin1 carries names to tar-stream a byte a char; it writes each char back as its byte.
  const pack = tar.pack({ filenameEncoding: 'latin1' });
  const done = opts.gzip === true ? pipeline(pack, zlib.createGzip(), out) : pipeline(pack, out);
  // Awaited at the end; a failure before then must not go unhandled.
  done.catch(() => undefined);
  const seen = new Map<string, string>(); // dev:ino → first name, for hard links
  let size = 0;
  let inodes = 0;

  const add = async (header: tar.Headers, xattrs: Map<string, Buffer>, body?: Buffer): Promise<void> => {
    // Values as bytes: tar-stream is patched to write Buffers as they are.
    if (xattrs.size > 0) header = { ...header, pax: Object.fromEntries([...xattrs].map(([k, v]) => [`SCHILY.xattr.${k}`, v])) } as tar.Headers;
    if (body === undefined) await entry(pack, header);
    else {
      let written: Promise<void> = Promise.resolve();
      const entered = new Promise<void>((resolve, reject) => {
        const sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
        // A file that changed size meanwhile ("Size mismatch") or a read error fails the whole tar.
        written = pipeline(fs.createReadStream(body), sink);
      });
      await Promise.all([entered, written]);
    }
    size += header.size ?? 0;
    inodes++;
    opts.onProgress?.({ size, inodes });
  };

  /** `dirFd`: directory `dir` open, for the native calls to reach what it holds when its path is not UTF-8. */
  const walk = async (dir: Buffer, dirFd: number, rel: string): Promise<void> => {
    const names = fs.readdirSync(dir, { encoding: 'buffer' }).sort(Buffer.compare);
    for (const name of names) {
      const real = Buffer.concat([dir, SLASH, name]);
      const at = rel === '' ? name.toString('latin1') : `${rel}/${name.toString('latin1')}`;
      const st = fs.lstatSync(real);
      const base = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: st.mtime };
      if (name.equals(OPAQUE_NAME) || name.subarray(0, WHITEOUT_NAME.length).equals(WHITEOUT_NAME)) {
        await add({ ...base, name: at, type: 'file', size: 0 }, new Map());
        continue;
      }
      if (st.isCharacterDevice() && st.rdev === 0) {
        await add({ ...base, name: rel === '' ? WHITEOUT_PREFIX + at : `${rel}/${WHITEOUT_PREFIX}${name.toString('latin1')}`, type: 'file', size: 0, mode: 0o644 }, new Map());
        continue;
      }
      if (st.isDirectory()) {
        const fd = fs.openSync(real, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
        try {
          const self = isUtf8(real) ? real.toString() : `/proc/self/fd/${fd}/.`;
          await add({ ...base, name: `${at}/`, type: 'directory' }, attributesOf(self));
          // The kernel's opaque form is an attribute; the tar form is a marker entry inside.
          if (isOpaque(fd) && !fs.existsSync(Buffer.concat([real, SLASH, OPAQUE_NAME]))) await add({ ...base, name: `${at}/${OPAQUE_MARKER}`, type: 'file', size: 0, mode: 0o644 }, new Map());
          await walk(real, fd, at);
        } finally {
          fs.closeSync(fd);
        }
        continue;
      }
      // The native calls take UTF-8 paths and never follow a final symlink: a
      // file whose own name is not UTF-8 is out of their reach, and its
      // attributes are left out. Its directory's path is reached through its descriptor.
      const native = isUtf8(real) ? real.toString() : isUtf8(name) ? `/proc/self/fd/${dirFd}/${name.toString()}` : undefined;
      const xattrs = native === undefined ? new Map<string, Buffer>() : attributesOf(native);
      if (st.isFile()) {
        const key = `${st.dev}:${st.ino}`;
        const first = st.nlink > 1 ? seen.get(key) : undefined;
        if (first !== undefined) await add({ ...base, name: at, type: 'link', linkname: first, size: 0 }, xattrs);
        else {
          if (st.nlink > 1) seen.set(key, at);
          await add({ ...base, name: at, type: 'file', size: st.size }, xattrs, real);
        }
      } else if (st.isSymbolicLink()) {
        await add({ ...base, name: at, type: 'symlink', linkname: fs.readlinkSync(real, { encoding: 'buffer' }).toString('latin1') }, xattrs);
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        await add({ ...base, name: at, type: st.isCharacterDevice() ? 'character-device' : 'block-device', devmajor: major(st.rdev), devminor: minor(st.rdev) }, xattrs);
      } else if (st.isFIFO()) {
        await add({ ...base, name: at, type: 'fifo' }, xattrs);
      }
      // Sockets have no tar form: skipped, as tar(1) does.
    }
  };

  try {
    const rootFd = fs.openSync(layer, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    try {
      await walk(Buffer.from(layer), rootFd, '');
    } finally {
      fs.closeSync(rootFd);
    }
    pack.finalize();
  } catch (err) {
    pack.destroy(err as Error);
  }
  await done;
}

/** An entry without data: a file entry of this kind is empty. */
function entry(pack: tar.Pack, header: tar.Headers): Promise<void> {
  return new Promise((resolve, reject) => {
    const cb = (err?: Error | null): void => (err ? reject(err) : resolve());
    if (header.type === 'file') pack.entry(header, Buffer.alloc(0), cb);
    else pack.entry(header, cb);
  });
}

/** Every extended attribute of `file` but overlay's own. */
function attributesOf(file: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let names: Buffer[];
  try {
    names = sys.listxattr(file);
  } catch {
    return out;
  }
  for (const name of names.sort(Buffer.compare)) {
    if (isPrivateXattr(name)) continue;
    try {
      const value = sys.getxattr(file, name);
      if (value !== undefined) out.set(name.toString(), value);
    } catch {
      // gone, or not readable by us
    }
  }
  return out;
}

