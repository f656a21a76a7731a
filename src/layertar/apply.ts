import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import type { Readable } from 'node:stream';
import { invalidArgument } from '../errors';
import { fstat, isDir, isFile, O_PATH, statAt } from '../native/sys';
import { NAME_MAX, OPAQUE_MARKER, WHITEOUT_PREFIX, type UpperFormat } from '../overlay/format';
import { quoted } from '../names';
import type { UsageProgress } from '../overlay/usage';
import { systemFailureAt } from './failures';
import { LayerEntries, type EntryMetadata, type NewEntry, type Refuse } from './layer-entries';
import { LayerPlaces, type Place } from './places';
import { entryRefusal, readTar, type TarEntry, type TarNaming } from './tar-entries';

/** How an import names things in its messages. */
export interface ImportNaming {
  /** The tar as a whole: "layer.tar", "stdin", "layer 2 of img.tar". */
  readonly tar: string;
  /** Put before messages on one entry: "", or "layer 2 of img.tar: " within an image. */
  readonly entries: string;
  /** Put before the system's failures (a full disk, say): "import NAME", or "layer 2 of img.tar". */
  readonly failures: string;
}

export interface ApplyOptions {
  /** Device nodes, set-id bits, ownership and attributes outside user.* are kept only for root. */
  readonly privileged: boolean;
  readonly onProgress?: UsageProgress;
  /** The sha256 the uncompressed tar must have (an image's diff ID); checked at the end. */
  readonly diffId?: string;
  readonly naming: ImportNaming;
}

const SETID = 0o6000;
/** Layer tars are read in chunks this big: fewer trips to libuv's threads than the default 64 KiB. */
export const READ_CHUNK = 1 << 20;
/** The longest symlink target Linux takes, in bytes (PATH_MAX less its NUL). */
const TARGET_MAX = 4095;
const SLASH = 0x2f;
const OPAQUE_NAME = Buffer.from(OPAQUE_MARKER);
const WHITEOUT_NAME = Buffer.from(WHITEOUT_PREFIX);
const DOT = Buffer.from('.');
const DOTDOT = Buffer.from('..');

/**
 * Unpacks an OCI or Docker image layer tar (plain or gzip) into an empty
 * layer directory, turning `.wh.` entries into the layer format's
 * whiteouts and opaque markers. Names are bytes, kept as the tar has them.
 * Nothing may land outside the layer: entries naming `..`, or reaching
 * through a symlink (one the tar made earlier, say), and hard links to
 * anything but a file already in the layer are refused, naming the entry.
 * Absolute names are taken as relative to the layer, as containerd and
 * docker do.
 */
export async function applyLayerTar(input: Readable, layer: string, format: UpperFormat, opts: ApplyOptions): Promise<void> {
  // The snapshot's own directory: the one path opened; everything below it through this descriptor.
  const root = fs.openSync(layer, O_PATH | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
  try {
    await applyBeneath(input, root, format, opts);
  } finally {
    fs.closeSync(root);
  }
}

/** applyLayerTar into the layer whose root directory is open as `root`. */
async function applyBeneath(input: Readable, root: number, format: UpperFormat, opts: ApplyOptions): Promise<void> {
  const naming: TarNaming = { tar: opts.naming.tar, kind: 'a layer tar', entries: opts.naming.entries };
  const entries = new LayerEntries(root, format);
  const writer = new LayerWriter(root, entries, opts.privileged, naming);
  try {
    await unpack(input, writer, naming, opts);
  } finally {
    writer.close();
  }
  try {
    entries.finish();
  } catch (err) {
    throw systemFailureAt(err, opts.naming.failures) ?? err;
  }
}

/** Every entry of the tar through `writer`, the tar checked against its diff ID if one is given. */
async function unpack(input: Readable, writer: LayerWriter, naming: TarNaming, opts: ApplyOptions): Promise<void> {
  const hash = opts.diffId === undefined ? undefined : createHash('sha256');
  let size = 0;
  let inodes = 0;
  await readTar(
    input,
    naming,
    async (entry) => {
      try {
        await writer.apply(entry);
      } catch (err) {
        throw entryFailure(err, naming, opts.naming.failures, entry.name);
      }
      size += entry.header.size ?? 0;
      inodes++;
      opts.onProgress?.({ size, inodes });
    },
    hash === undefined ? undefined : (chunk) => hash.update(chunk),
  );
  if (hash !== undefined) {
    const digest = `sha256:${hash.digest('hex')}`;
    if (digest !== opts.diffId) throw invalidArgument(`${naming.tar}: content is ${digest}, not its diff ID ${opts.diffId}`);
  }
}

/** A failure making an entry, as the user sees it: a path too long is the entry's; the system's, said of the import. */
function entryFailure(err: unknown, naming: TarNaming, failures: string, name: Buffer): unknown {
  if ((err as NodeJS.ErrnoException).code === 'ENAMETOOLONG') return entryRefusal(naming, name, 'its path is longer than the system takes');
  return systemFailureAt(err, failures, quoted(name)) ?? err;
}

/** `name` split at slashes, `.` and empty components dropped; `..`, NUL and components too long are refused. */
function componentsOf(name: Buffer, refuse: Refuse): Buffer[] {
  if (name.includes(0)) throw refuse('name holds a NUL byte');
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= name.length; i++) {
    if (i < name.length && name[i] !== SLASH) continue;
    const part = name.subarray(start, i);
    start = i + 1;
    if (part.length === 0 || part.equals(DOT)) continue;
    if (part.equals(DOTDOT)) throw refuse('path leaves the layer');
    if (part.length > NAME_MAX) throw refuse(`a name in it is ${part.length} bytes, more than ${NAME_MAX}`);
    parts.push(part);
  }
  return parts;
}

/** Sets of paths are kept as latin1 strings: a byte a char, so each path its own key. */
function keyOf(p: Buffer): string {
  return p.toString('latin1');
}

/** Writes a tar's entries into a layer directory: what each entry means; see applyLayerTar. */
class LayerWriter {
  /**
   * Every path this import made, below the layer's root. The layer starts
   * empty, so a name not in here is free: no lookup to find out.
   */
  private readonly made = new Set<string>();
  private readonly places: LayerPlaces;

  constructor(
    root: number,
    private readonly entries: LayerEntries,
    private readonly privileged: boolean,
    private readonly naming: TarNaming,
  ) {
    this.places = new LayerPlaces(root, (dirfd, name, path) => {
      this.entries.makeParent(dirfd, name);
      this.made.add(keyOf(path));
    });
  }

  async apply(entry: TarEntry): Promise<void> {
    const { header, name } = entry;
    const refuse: Refuse = (why) => entryRefusal(this.naming, name, why);
    const parts = componentsOf(name, refuse);
    const mtime = header.mtime ?? new Date();
    if (parts.length === 0) {
      // The layer's root itself: only its time.
      if (header.type === 'directory') this.entries.rootTime(mtime);
      return;
    }
    const at = this.places.place(parts, refuse);
    if (at.name.equals(OPAQUE_NAME)) return this.entries.markOpaque(at.dirfd);
    if (at.name.subarray(0, WHITEOUT_NAME.length).equals(WHITEOUT_NAME)) return this.whiteout(at, mtime, refuse);
    if (header.type === 'link') return this.hardLink(entry, at, refuse);
    const made = this.newEntry(entry, refuse);
    if (made === undefined) return;
    const existing = this.clear(at, made.type === 'directory');
    await this.entries.make(at, made, this.metadata(entry), existing, refuse);
    this.made.add(keyOf(at.path));
  }

  /** Whiteout entry `at` (`.wh.NAME`): NAME of this layer goes, and the layers below have it hidden. */
  private whiteout(at: Place, mtime: Date, refuse: Refuse): void {
    const hidden = at.name.subarray(WHITEOUT_NAME.length);
    if (hidden.length === 0 || hidden.equals(DOT) || hidden.equals(DOTDOT)) throw refuse(`a whiteout of ${quoted(hidden)} is no name`);
    const gone: Place = { dirfd: at.dirfd, name: hidden, path: Buffer.concat([at.path.subarray(0, at.path.length - at.name.length), hidden]) };
    this.clear(gone, false);
    this.entries.whiteout(at.dirfd, hidden, mtime);
    // Either form may now be there.
    this.made.add(keyOf(gone.path)).add(keyOf(at.path));
  }
  /** What the entry makes; undefined for what an import leaves out (devices without root, global headers). */
  private newEntry(entry: TarEntry, refuse: Refuse): NewEntry | undefined {
    const { header } = entry;
    switch (header.type) {
      case 'directory':
        return { type: 'directory' };
      case 'file':
      case 'contiguous-file':
        return { type: 'file', size: header.size ?? 0, body: entry.body };
      case 'symlink': {
        const target = entry.linkname ?? Buffer.alloc(0);
        if (target.length > TARGET_MAX) throw refuse(`its symlink target is ${target.length} bytes, more than ${TARGET_MAX}`);
        if (target.includes(0)) throw refuse('its symlink target holds a NUL byte');
        return { type: 'symlink', target };
      }
      case 'character-device':
      case 'block-device':
        // Only root may make device nodes; an import without root leaves them out.
        if (!this.privileged) return undefined;
        return { type: 'device', kind: header.type === 'character-device' ? fs.constants.S_IFCHR : fs.constants.S_IFBLK, major: header.devmajor ?? 0, minor: header.devminor ?? 0 };
      case 'fifo':
        return { type: 'fifo' };
      default:
        // Global headers and the like carry nothing for the layer.
        return undefined;
    }
  }

  private metadata(entry: TarEntry): EntryMetadata {
    const { header, pax } = entry;
    const xattrs = new Map<string, Buffer>();
    for (const [key, value] of Object.entries(pax)) {
      if (!key.startsWith('SCHILY.xattr.')) continue;
      const attr = key.slice('SCHILY.xattr.'.length);
      if (this.privileged || attr.startsWith('user.')) xattrs.set(attr, Buffer.from(value, 'latin1'));
    }
    return {
      mode: (header.mode ?? 0o644) & (this.privileged ? 0o7777 : 0o7777 & ~SETID),
      owner: this.privileged ? { uid: header.uid ?? 0, gid: header.gid ?? 0 } : undefined,
      mtime: header.mtime ?? new Date(),
      xattrs,
    };
  }

  private hardLink(entry: TarEntry, at: Place, refuse: Refuse): void {
    const linkname = entry.linkname ?? Buffer.alloc(0);
    const refuseTarget: Refuse = (why) => invalidArgument(`${this.naming.entries}hard link ${quoted(entry.name)} to ${quoted(linkname)}: ${why}`);
    const parts = componentsOf(linkname, refuseTarget);
    const notFile = (): Error => refuse(`hard link to ${quoted(linkname)}, which is not a file of this layer`);
    // No name at all is the layer's root: no file either.
    const target = parts.length === 0 ? undefined : this.places.find(parts, refuse);
    if (target === undefined) throw notFile();
    try {
      if (!isFile(fstat(target))) throw notFile();
      this.clear(at, false);
      this.entries.link(target, at);
    } finally {
      fs.closeSync(target);
    }
    this.made.add(keyOf(at.path));
  }

  /**
   * Makes room for a new entry at `at`: anything there goes, except a
   * directory that stays one (`keepDir`); says whether such a directory is there.
   */
  private clear(at: Place, keepDir: boolean): boolean {
    const key = keyOf(at.path);
    if (!this.made.has(key)) return false;
    const st = statAt(at.dirfd, at.name);
    if (st === undefined) return false;
    if (keepDir && isDir(st)) return true;
    this.entries.remove(at);
    this.places.removed(at.path);
    // It, and what was under it, are gone.
    for (const p of this.made) if (p === key || p.startsWith(`${key}/`)) this.made.delete(p);
    return false;
  }

  close(): void {
    this.places.close();
  }
}
