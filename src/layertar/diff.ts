import * as fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import type { Readable, Writable } from 'node:stream';
import * as zlib from 'node:zlib';
import * as tar from 'tar-stream';
import { isOpaque, isPrivateXattr, OPAQUE_MARKER, WHITEOUT_PREFIX } from '../overlay/format';
import { secondsAndNanos } from '../clock';
import { fstat, isDir, isFile, isSymlink, isWhiteout, O_PATH, readdirFd, statAt, sys } from '../native/sys';
import type { UsageProgress } from '../overlay/usage';
import { major, minor } from '../layerfs/devices';

const { S_IFMT, S_IFCHR, S_IFBLK, S_IFIFO } = fs.constants;
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

  const add = async (header: tar.Headers, xattrs: Map<string, Buffer>, body?: Readable): Promise<void> => {
    // Values as bytes: tar-stream is patched to write Buffers as they are.
    if (xattrs.size > 0) header = { ...header, pax: Object.fromEntries([...xattrs].map(([k, v]) => [`SCHILY.xattr.${k}`, v])) } as tar.Headers;
    if (body === undefined) await entry(pack, header);
    else {
      let written: Promise<void> = Promise.resolve();
      const entered = new Promise<void>((resolve, reject) => {
        const sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
        // A file that changed size meanwhile ("Size mismatch") or a read error fails the whole tar.
        written = pipeline(body, sink);
      });
      await Promise.all([entered, written]);
    }
    size += header.size ?? 0;
    inodes++;
    opts.onProgress?.({ size, inodes });
  };

  /**
   * Walks directory `dirFd` (at `rel` in the tar) by descriptors, one name
   * at a time, never following a symlink: a layer being written meanwhile
   * (a container's) cannot lead the walk, or the data read, outside it.
   */
  const walk = async (dirFd: number, rel: string): Promise<void> => {
    const names = readdirFd(dirFd)
      .map((e) => Buffer.from(e.name))
      .sort(Buffer.compare);
    for (const name of names) {
      const at = rel === '' ? name.toString('latin1') : `${rel}/${name.toString('latin1')}`;
      const st = statAt(dirFd, name);
      if (st === undefined) continue; // removed meanwhile
      const base = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: dateOf(st.mtimeNs) };
      if (name.equals(OPAQUE_NAME) || name.subarray(0, WHITEOUT_NAME.length).equals(WHITEOUT_NAME)) {
        await add({ ...base, name: at, type: 'file', size: 0 }, new Map());
        continue;
      }
      if (isWhiteout(st)) {
        await add({ ...base, name: rel === '' ? WHITEOUT_PREFIX + at : `${rel}/${WHITEOUT_PREFIX}${name.toString('latin1')}`, type: 'file', size: 0, mode: 0o644 }, new Map());
        continue;
      }
      if (isDir(st)) {
        const fd = sys.openAt(dirFd, name, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY, 0);
        try {
          await add({ ...base, name: `${at}/`, type: 'directory' }, attributesOf(fd));
          // The kernel's opaque form is an attribute; the tar form is a marker entry inside.
          if (isOpaque(fd) && statAt(fd, OPAQUE_NAME) === undefined) await add({ ...base, name: `${at}/${OPAQUE_MARKER}`, type: 'file', size: 0, mode: 0o644 }, new Map());
          await walk(fd, at);
        } finally {
          fs.closeSync(fd);
        }
        continue;
      }
      if (isFile(st)) {
        const key = `${st.dev}:${st.ino}`;
        const first = st.nlink > 1 ? seen.get(key) : undefined;
        // Only a regular file's data is opened (a name swapped for a fifo or a device is refused), and read from that descriptor.
        const fd = sys.openFile(dirFd, name, fs.constants.O_RDONLY);
        let body: fs.ReadStream | undefined;
        try {
          const xattrs = attributesOf(fd);
          if (first !== undefined) await add({ ...base, name: at, type: 'link', linkname: first, size: 0 }, xattrs);
          else {
            if (st.nlink > 1) seen.set(key, at);
            body = fs.createReadStream('', { fd, start: 0 });
            await add({ ...base, name: at, type: 'file', size: fstat(fd).size }, xattrs, body);
          }
        } finally {
          if (body === undefined) fs.closeSync(fd);
          else body.destroy();
        }
        continue;
      }
      // The rest is never opened: attributes through a descriptor that opens nothing.
      const fd = sys.openAt(dirFd, name, O_PATH, 0);
      const type = st.mode & S_IFMT;
      try {
        const xattrs = attributesOf(fd);
        if (isSymlink(st)) await add({ ...base, name: at, type: 'symlink', linkname: sys.readlinkAt(dirFd, name).toString('latin1') }, xattrs);
        else if (type === S_IFCHR || type === S_IFBLK) await add({ ...base, name: at, type: type === S_IFCHR ? 'character-device' : 'block-device', devmajor: major(st.rdev), devminor: minor(st.rdev) }, xattrs);
        else if (type === S_IFIFO) await add({ ...base, name: at, type: 'fifo' }, xattrs);
        // Sockets have no tar form: skipped, as tar(1) does.
      } finally {
        fs.closeSync(fd);
      }
    }
  };

  try {
    const rootFd = fs.openSync(layer, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    try {
      await walk(rootFd, '');
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

/** A file's time as tar-stream takes it (milliseconds; before 1970 they round down). */
function dateOf(ns: bigint): Date {
  const [seconds, nanos] = secondsAndNanos(ns);
  return new Date(Number(seconds) * 1000 + Math.floor(nanos / 1e6));
}

/** Every extended attribute of the file open as `file` but overlay's own. */
function attributesOf(file: number): Map<string, Buffer> {
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

