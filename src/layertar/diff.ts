import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Writable } from 'node:stream';
import * as zlib from 'node:zlib';
import * as tar from 'tar-stream';
import { isOpaque, isPrivateXattr, OPAQUE_MARKER, WHITEOUT_PREFIX } from '../overlay/format';
import { sys } from '../native/sys';
import type { UsageProgress } from '../snapshotter/usage';
import { major, minor } from '../layerfs/devices';

/**
 * Writes layer directory `layer` as an OCI image layer tar to `out`:
 * whiteouts as `.wh.NAME` entries, opaque directories as a
 * `.wh..wh..opq` entry, files with several names in the layer as one file
 * and hard links, extended attributes (overlay's own aside) as PAX
 * `SCHILY.xattr.` records. Entries come in path order, each directory
 * before what it holds.
 */
export async function writeLayerTar(layer: string, out: Writable, opts: { gzip?: boolean; onProgress?: UsageProgress } = {}): Promise<void> {
  const pack = tar.pack();
  const done = opts.gzip === true ? pipeline(pack, zlib.createGzip(), out) : pipeline(pack, out);
  // Awaited at the end; a failure before then must not go unhandled.
  done.catch(() => undefined);
  const seen = new Map<string, string>(); // dev:ino → first name, for hard links
  let size = 0;
  let inodes = 0;

  const add = async (header: tar.Headers, xattrs: Map<string, Buffer>, body?: string): Promise<void> => {
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

  const walk = async (dir: string, rel: string): Promise<void> => {
    const names = fs.readdirSync(dir).sort();
    for (const name of names) {
      const real = path.join(dir, name);
      const at = rel === '' ? name : `${rel}/${name}`;
      const st = fs.lstatSync(real);
      const base = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: st.mtime };
      if (name === OPAQUE_MARKER || name.startsWith(WHITEOUT_PREFIX)) {
        await add({ ...base, name: at, type: 'file', size: 0 }, new Map());
        continue;
      }
      if (st.isCharacterDevice() && st.rdev === 0) {
        await add({ ...base, name: rel === '' ? WHITEOUT_PREFIX + name : `${rel}/${WHITEOUT_PREFIX}${name}`, type: 'file', size: 0, mode: 0o644 }, new Map());
        continue;
      }
      const xattrs = attributesOf(real);
      if (st.isDirectory()) {
        await add({ ...base, name: `${at}/`, type: 'directory' }, xattrs);
        // The kernel's opaque form is an attribute; the tar form is a marker entry inside.
        if (opaqueDir(real) && !fs.existsSync(path.join(real, OPAQUE_MARKER))) await add({ ...base, name: `${at}/${OPAQUE_MARKER}`, type: 'file', size: 0, mode: 0o644 }, new Map());
        await walk(real, at);
      } else if (st.isFile()) {
        const key = `${st.dev}:${st.ino}`;
        const first = st.nlink > 1 ? seen.get(key) : undefined;
        if (first !== undefined) await add({ ...base, name: at, type: 'link', linkname: first, size: 0 }, xattrs);
        else {
          if (st.nlink > 1) seen.set(key, at);
          await add({ ...base, name: at, type: 'file', size: st.size }, xattrs, real);
        }
      } else if (st.isSymbolicLink()) {
        await add({ ...base, name: at, type: 'symlink', linkname: fs.readlinkSync(real) }, xattrs);
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        await add({ ...base, name: at, type: st.isCharacterDevice() ? 'character-device' : 'block-device', devmajor: major(st.rdev), devminor: minor(st.rdev) }, xattrs);
      } else if (st.isFIFO()) {
        await add({ ...base, name: at, type: 'fifo' }, xattrs);
      }
      // Sockets have no tar form: skipped, as tar(1) does.
    }
  };

  try {
    await walk(layer, '');
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

function opaqueDir(dir: string): boolean {
  const fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
  try {
    return isOpaque(fd);
  } finally {
    fs.closeSync(fd);
  }
}
