import * as fs from 'node:fs';
import * as os from 'node:os';
import { kindOf } from '../errors';
import { fail } from '../fuse/errno';
import type { Answer, Attr, AttrAnswer, DirEntry, Entry, FileSystem, Opened, Request, StatFs } from '../fuse/session';
import { MergedTree, pathComponents } from '../inspect/tree';
import { Tree } from '../layerfs/tree';
import { NAME_MAX } from '../overlay/format';
import { mergedLayers, ownLayer, type SnapshotStack } from '../overlay/stack';
import { S_IFLNK } from '../native/sys';
import type { Snapshotter } from '../snapshotter/snapshotter';
import { keyOfName, nameOfKey } from './names';

const E = os.constants.errno;
/** Where each snapshot's own layer is shown, as it is on disk (whiteouts included). */
const LAYERS_DIR = '.layers';
const S_IFMT = 0o170000;
const ROOT = 1;
const LAYERS = 2;
/** Node ids of a view's files: its serial number, then the file's own node id in the view. */
const SPAN = 2 ** 32;
/** Snapshots come and go while mounted: names and attributes are kept briefly. */
const CACHE_SECONDS = 1;
/**
 * How long a snapshot's view is used before it is checked against the
 * metastore (a key may be removed and made again, over other layers).
 */
const ACTIVE_VIEW_MS = 1000;
const VIEW_MS = 10_000;

/** One snapshot as a directory: its merged tree, or its own layer as stored. */
interface View {
  readonly serial: number;
  readonly tree: MergedTree;
  /** The directory name of its snapshot, to place confined symlink targets under. */
  readonly name: string;
  /** Its layer directories when it was made: a key removed and made again has others. */
  readonly signature: string;
  expires: number;
  /** Entries of it the kernel holds; a view replaced meanwhile is closed once none is left. */
  lookups: number;
  current: boolean;
}

/**
 * One read-only file system showing every snapshot of a root: `/NAME` is
 * the merged tree of the snapshot whose key NAME encodes (see names.ts),
 * `/.layers/NAME` its own layer as stored. Snapshots made or removed while
 * mounted come and go. Each snapshot is a view (a MergedTree) whose files
 * are reached by descriptors only; symlinks are shown so that following
 * them stays in the snapshot they belong to: an absolute target, or one
 * climbing above the snapshot's root, is given as a path under the mount
 * point.
 */
export class BrowseFS implements FileSystem {
  private readonly views = new Map<string, View>();
  private readonly bySerial = new Map<number, View>();
  private readonly freeSerials: number[] = [];
  private nextSerial = 1;
  private readonly rootAttr: Attr;
  private readonly mountpoint: Buffer;

  constructor(
    private readonly snapshotter: Snapshotter,
    private readonly root: string,
    mountpoint: string,
  ) {
    this.mountpoint = Buffer.from(mountpoint);
    const now = BigInt(Date.now()) * 1_000_000n;
    const st = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
    this.rootAttr = { ino: ROOT, size: 0, blocks: 0, atimeNs: now, mtimeNs: now, ctimeNs: now, mode: fs.constants.S_IFDIR | 0o555, nlink: 2, uid: st.uid, gid: st.gid, rdev: 0, blksize: 4096 };
  }

  close(): void {
    for (const view of this.bySerial.values()) view.tree.close();
    this.bySerial.clear();
    this.views.clear();
  }

  beginRequest(): void {
    Tree.begin();
  }

  lookup(req: Request, parent: number, name: Buffer): Entry {
    if (parent === ROOT || parent === LAYERS) {
      if (parent === ROOT && name.toString('latin1') === LAYERS_DIR) return { ino: LAYERS, attr: { ...this.rootAttr, ino: LAYERS }, entryTimeout: CACHE_SECONDS, attrTimeout: CACHE_SECONDS };
      const view = this.view(name.toString('latin1'), parent === LAYERS);
      if (view === undefined) return { ino: 0, entryTimeout: CACHE_SECONDS, attrTimeout: 0 };
      const { attr } = view.tree.fs.getattr(req, 1);
      view.lookups++;
      return { ino: view.serial * SPAN + 1, attr: { ...attr, ino: view.serial * SPAN + 1 }, entryTimeout: CACHE_SECONDS, attrTimeout: CACHE_SECONDS };
    }
    const [view, inner] = this.inside(parent);
    const e = view.tree.fs.lookup(req, inner, name);
    if (e.ino === 0 || e.attr === undefined) return e;
    view.lookups++;
    return { ...e, ino: view.serial * SPAN + e.ino, attr: this.shown(view, e.attr) };
  }

  forget(ino: number, nlookup: number): void {
    if (ino === ROOT || ino === LAYERS) return;
    const view = this.bySerial.get(Math.floor(ino / SPAN));
    if (view === undefined) return;
    if (ino % SPAN !== 1) view.tree.fs.forget(ino % SPAN, nlookup);
    view.lookups -= nlookup;
    this.closeIfUnused(view);
  }

  getattr(req: Request, ino: number): AttrAnswer {
    if (ino === ROOT || ino === LAYERS) return { attr: { ...this.rootAttr, ino }, timeout: CACHE_SECONDS };
    const [view, inner] = this.inside(ino);
    return { attr: this.shown(view, view.tree.fs.getattr(req, inner).attr), timeout: CACHE_SECONDS };
  }

  readlink(req: Request, ino: number): Buffer {
    if (ino === ROOT || ino === LAYERS) fail(E.EINVAL);
    const [view, inner] = this.inside(ino);
    return this.confined(view, inner, view.tree.fs.readlink(req, inner));
  }

  open(req: Request, ino: number, flags: number): Answer<Opened> {
    if (ino === ROOT || ino === LAYERS) fail(E.EISDIR);
    const [view, inner] = this.inside(ino);
    return view.tree.fs.open(req, inner, flags, false);
  }

  release(req: Request, ino: number, fh: number): void {
    const view = this.bySerial.get(Math.floor(ino / SPAN));
    view?.tree.fs.release(req, ino % SPAN, fh);
  }

  /** The kernel keeps the listings of snapshots' directories, not those of the two it lists from the root's metadata (they change as snapshots come and go). */
  opendir(_req: Request, ino: number): Opened {
    return { fh: 0, keepCache: ino !== ROOT && ino !== LAYERS };
  }

  readdir(req: Request, ino: number): DirEntry[] {
    if (ino !== ROOT && ino !== LAYERS) {
      const [view, inner] = this.inside(ino);
      return view.tree.fs.readdir(req, inner).map((d) => ({ ...d, ino: view.serial * SPAN + d.ino }));
    }
    const dots: DirEntry[] = ['.', '..'].map((n) => ({ name: Buffer.from(n), ino: ROOT, mode: fs.constants.S_IFDIR }));
    const extra: DirEntry[] = ino === ROOT ? [{ name: Buffer.from(LAYERS_DIR), ino: LAYERS, mode: fs.constants.S_IFDIR }] : [];
    let names: string[];
    try {
      names = this.names(ino === LAYERS);
    } catch {
      fail(E.EIO);
    }
    return [...dots, ...extra, ...names.map((n) => ({ name: Buffer.from(n), ino: ROOT, mode: fs.constants.S_IFDIR }))];
  }

  /**
   * The snapshots are listed by name alone: looking one up makes its view
   * (its layers opened), which `ls` of a root of thousands should not.
   */
  plainListing(ino: number): boolean {
    return ino === ROOT || ino === LAYERS;
  }

  getxattr(req: Request, ino: number, name: Buffer): Buffer {
    if (ino === ROOT || ino === LAYERS) fail(E.ENODATA);
    const [view, inner] = this.inside(ino);
    return view.tree.fs.getxattr(req, inner, name);
  }

  listxattr(req: Request, ino: number): Buffer[] {
    if (ino === ROOT || ino === LAYERS) return [];
    const [view, inner] = this.inside(ino);
    return view.tree.fs.listxattr(req, inner);
  }

  statfs(): StatFs {
    const s = fs.statfsSync(this.root);
    return { blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, bsize: s.bsize, namelen: NAME_MAX, frsize: s.bsize };
  }

  /** The view and its own node id of a node id below a snapshot's directory. */
  private inside(ino: number): [View, number] {
    const view = this.bySerial.get(Math.floor(ino / SPAN)) ?? fail(E.ESTALE);
    return [view, ino % SPAN];
  }

  /** A view's attributes as this mount shows them: its node ids, and a symlink's size that of the target shown. */
  private shown(view: View, attr: Attr): Attr {
    const ino = view.serial * SPAN + attr.ino;
    if ((attr.mode & S_IFMT) !== S_IFLNK) return { ...attr, ino };
    const target = this.confined(view, attr.ino, view.tree.readlink(view.tree.fs.tree.inode(attr.ino)));
    return { ...attr, ino, size: target.length };
  }

  private names(layers: boolean): string[] {
    const infos = this.snapshotter.walk();
    // Views of snapshots gone since are dropped here, where every key is at hand.
    const keys = new Set(infos.map((info) => info.name));
    for (const [id, view] of this.views) {
      if (keys.has(id.slice(id.indexOf(':') + 1))) continue;
      this.views.delete(id);
      this.retire(view);
    }
    return infos.filter((info) => !layers || info.kind !== 'view').map((info) => nameOfKey(info.name));
  }

  private view(name: string, layers: boolean): View | undefined {
    const key = keyOfName(name);
    if (key === undefined) return undefined;
    const id = `${layers ? 'layer' : 'merged'}:${key}`;
    const cached = this.views.get(id);
    if (cached !== undefined && cached.expires > Date.now()) return cached;
    let stack: SnapshotStack;
    try {
      stack = this.snapshotter.layers(key);
    } catch (err) {
      if (cached !== undefined) {
        this.views.delete(id);
        this.retire(cached);
      }
      if (kindOf(err) === 'NotFound') return undefined;
      fail(E.EIO);
    }
    const expires = Date.now() + (stack.kind === 'active' ? ACTIVE_VIEW_MS : VIEW_MS);
    const signature = JSON.stringify(stack);
    if (cached !== undefined && cached.signature === signature) {
      cached.expires = expires;
      return cached;
    }
    if (cached !== undefined) this.retire(cached);
    const own = ownLayer(stack).own;
    if (layers && own === undefined) return undefined;
    const serial = this.freeSerials.pop() ?? this.nextSerial++;
    // An active snapshot's layer is written through its own mount meanwhile: asked, never listed ahead.
    const tree = new MergedTree(layers ? [own!] : mergedLayers(stack), `snapshot ${JSON.stringify(key)}`, {
      raw: layers,
      changingTop: stack.kind === 'active',
      cacheSeconds: CACHE_SECONDS,
      // Each view's numbers are offset into a range of their own (SPAN).
      ownNumbers: true,
    });
    const view: View = { serial, tree, name, signature, expires, lookups: 0, current: true };
    this.views.set(id, view);
    this.bySerial.set(serial, view);
    return view;
  }

  /** A view no name leads to any more: closed once the kernel holds none of its files. */
  private retire(view: View): void {
    view.current = false;
    this.closeIfUnused(view);
  }

  private closeIfUnused(view: View): void {
    if (view.current || view.lookups > 0) return;
    this.bySerial.delete(view.serial);
    this.freeSerials.push(view.serial);
    view.tree.close();
  }

  /**
   * A symlink's target as shown. A relative target without `..` only
   * descends (each symlink on its way is itself shown confined): as it is.
   * Any other is resolved as if chrooted into the snapshot's merged tree
   * and given as a path under the mount point, where the kernel finds the
   * same thing; a target that does not resolve is placed there lexically.
   */
  private confined(view: View, inner: number, target: Buffer): Buffer {
    const absolute = target[0] === 0x2f;
    if (!absolute && !pathComponents(target).some(isDotDot)) return target;
    const linkPath = view.tree.pathOf(view.tree.fs.tree.inode(inner));
    const from = absolute ? target : Buffer.concat([dirname(linkPath), Buffer.from('/'), target]);
    let resolved: Buffer;
    try {
      resolved = view.tree.resolve(from, false).path;
    } catch {
      resolved = lexical(from);
    }
    const inside = resolved.length === 1 ? Buffer.alloc(0) : resolved;
    return Buffer.concat([this.mountpoint, Buffer.from(`/${view.name}`), inside]);
  }
}

const isDotDot = (c: Buffer): boolean => c.length === 2 && c[0] === 0x2e && c[1] === 0x2e;

function dirname(p: Buffer): Buffer {
  const at = p.lastIndexOf(0x2f);
  return at <= 0 ? Buffer.from('/') : p.subarray(0, at);
}

/** `p` with `.` and `..` applied as words, `..` stopping at the root. */
function lexical(p: Buffer): Buffer {
  const out: Buffer[] = [];
  for (const c of pathComponents(p)) {
    if (isDotDot(c)) out.pop();
    else out.push(c);
  }
  return Buffer.concat(out.length === 0 ? [Buffer.from('/')] : out.flatMap((c) => [Buffer.from('/'), c]));
}
