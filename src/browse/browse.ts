import type { FuseOperations, FuseStat } from 'fuse-native';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { kindOf } from '../errors';
import { mergedLayers, MergedTree, ownLayer } from '../inspect/tree';
import { answering } from '../layerfs/callbacks';
import { NAME_MAX } from '../layerfs/format';
import { LayerFS } from '../layerfs/layerfs';
import { pathComponents } from '../layerfs/resolver';
import { sys } from '../native/sys';
import type { LayerStack, Snapshotter } from '../snapshotter/snapshotter';
import { keyOfName, nameOfKey } from './names';

const E = os.constants.errno;
/** Where each snapshot's own layer is shown, as it is on disk (whiteouts included). */
export const LAYERS_DIR = '.layers';
/**
 * How long a snapshot's view is used before it is checked against the
 * metastore: an active snapshot's layer may change under the mount, and a
 * key may be removed and made again.
 */
const ACTIVE_VIEW_MS = 1000;
const VIEW_MS = 10_000;

type Ops = Required<Pick<FuseOperations, 'getattr' | 'readdir' | 'readlink' | 'open' | 'release' | 'getxattr' | 'listxattr'>>;

interface View {
  readonly ops: Ops;
  /** The snapshot's merged tree, to resolve symlink targets in. */
  readonly tree: MergedTree;
  /** Its layer directories when it was made: a key removed and made again has others. */
  readonly layers: string;
  expires: number;
}

/**
 * One read-only file system showing every snapshot of a root: `/NAME` is
 * the merged tree of the snapshot whose key NAME encodes (see names.ts),
 * `/.layers/NAME` its own layer as stored. Snapshots made or removed while
 * mounted come and go. Symlinks are shown so that following them stays in
 * the snapshot they belong to: an absolute target, or one climbing above
 * the snapshot's root, is given as a path under the mount point.
 */
export class BrowseFS {
  private readonly views = new Map<string, View>();
  /** Open files: a view's handles are descriptors, which fuse-native reads itself (fdHandles). */
  private readonly handles = new Map<number, Ops>();
  private readonly rootStat: FuseStat;

  constructor(
    private readonly snapshotter: Snapshotter,
    private readonly root: string,
    private readonly mountpoint: string,
  ) {
    const now = BigInt(Date.now()) * 1_000_000n;
    this.rootStat = { mode: fs.constants.S_IFDIR | 0o555, nlink: 2, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, size: 0, atimeNs: now, mtimeNs: now, ctimeNs: now };
  }

  operations(): FuseOperations {
    return {
      getattr: (p, cb) =>
        this.route(p, cb, () => cb(0, this.rootStat), (v, inner, name) =>
          v.ops.getattr(inner, (err, st) => {
            if (err !== 0 || st === undefined || (Number(st.mode) & fs.constants.S_IFMT) !== fs.constants.S_IFLNK) return cb(err, st);
            // A symlink's size is the length of the target it is shown with.
            v.ops.readlink(inner, (e, target) => cb(e, e === 0 && target !== undefined ? { ...st, size: Buffer.byteLength(this.confined(v, name, inner, target)) } : st));
          }),
        ),
      readdir: (p, cb) =>
        this.route(
          p,
          cb,
          (layers) => {
            let names: string[];
            try {
              names = this.names(layers);
            } catch {
              return cb(-E.EIO);
            }
            cb(0, ['.', '..', ...(layers ? [] : [LAYERS_DIR]), ...names]);
          },
          (v, inner) => v.ops.readdir(inner, cb),
        ),
      readlink: (p, cb) =>
        this.route(p, cb, () => cb(-E.EINVAL), (v, inner, name) =>
          v.ops.readlink(inner, (err, target) => (err !== 0 || target === undefined ? cb(err) : cb(0, this.confined(v, name, inner, target)))),
        ),
      open: (p, flags, cb) =>
        this.route(p, cb, () => cb(-E.EISDIR), (v, inner) =>
          v.ops.open(inner, flags, (err, handle) => {
            if (err !== 0 || handle === undefined) return cb(err);
            this.handles.set(handle, v.ops);
            cb(0, handle);
          }),
        ),
      release: (p, handle, cb) => {
        const ops = this.handles.get(handle);
        this.handles.delete(handle);
        if (ops === undefined) return cb(0);
        ops.release(this.split(p).inner, handle, cb);
      },
      getxattr: (p, name, position, cb) => this.route(p, cb, () => cb(-E.ENODATA), (v, inner) => v.ops.getxattr(inner, name, position, cb)),
      listxattr: (p, cb) => this.route(p, cb, () => cb(0, []), (v, inner) => v.ops.listxattr(inner, cb)),
      statfs: (_p, cb) => {
        const s = fs.statfsSync(this.root);
        cb(0, { bsize: s.bsize, frsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, favail: s.ffree, fsid: 0, flag: 0, namemax: NAME_MAX });
      },
    };
  }

  /** Sends `p` to the listing of `/` or `/.layers` (`top`), or to a snapshot's view with the path inside it. */
  private route(p: string, fail: (err: number) => void, top: (layers: boolean) => void, inView: (view: View, inner: string, name: string) => void): void {
    const at = this.split(p);
    if (at.name === undefined) return top(at.layers);
    let view: View | undefined;
    try {
      view = this.view(at.name, at.layers);
    } catch (err) {
      return fail(kindOf(err) === 'NotFound' ? -E.ENOENT : -E.EIO);
    }
    if (view === undefined) return fail(-E.ENOENT);
    inView(view, at.inner, at.name);
  }

  /** `/NAME/rest` or `/.layers/NAME/rest` → NAME and `/rest`; the listings have no name. */
  private split(p: string): { layers: boolean; name?: string; inner: string } {
    const parts = p.split('/').filter((c) => c !== '');
    const layers = parts[0] === LAYERS_DIR;
    if (layers) parts.shift();
    const name = parts.shift();
    if (name === undefined) return { layers, inner: '/' };
    return { layers, name, inner: `/${parts.join('/')}` };
  }

  private names(layers: boolean): string[] {
    const infos = this.snapshotter.walk();
    // Views of snapshots gone since are dropped here, where every key is at hand.
    const keys = new Set(infos.map((info) => info.name));
    for (const id of this.views.keys()) if (!keys.has(id.slice(id.indexOf(':') + 1))) this.views.delete(id);
    return infos.filter((info) => !layers || info.kind !== 'view').map((info) => nameOfKey(info.name));
  }

  private view(name: string, layers: boolean): View | undefined {
    const key = keyOfName(name);
    if (key === undefined) return undefined;
    const id = `${layers ? 'layer' : 'merged'}:${key}`;
    const cached = this.views.get(id);
    if (cached !== undefined && cached.expires > Date.now()) return cached;
    let stack: LayerStack;
    try {
      stack = this.snapshotter.layers(key);
    } catch (err) {
      this.views.delete(id);
      throw err;
    }
    const expires = Date.now() + (stack.kind === 'active' ? ACTIVE_VIEW_MS : VIEW_MS);
    const signature = JSON.stringify(stack);
    // Unchanged (the same layer directories, and not an active layer that may have changed): keep its caches.
    if (cached !== undefined && cached.layers === signature && stack.kind !== 'active') {
      cached.expires = expires;
      return cached;
    }
    const own = ownLayer(stack).own;
    if (layers && own === undefined) return undefined;
    const tree = new MergedTree(mergedLayers(stack), `snapshot ${JSON.stringify(key)}`);
    const view: View = { ops: layers ? rawOperations(own!) : mergedOperations(stack), tree, layers: signature, expires };
    this.views.set(id, view);
    return view;
  }

  /**
   * A symlink's target as shown. A relative target without `..` only
   * descends (each symlink on its way is itself shown confined): as it is.
   * Any other is resolved as if chrooted into the snapshot's merged tree
   * and given as a path under the mount point, where the kernel finds the
   * same thing; a target that does not resolve is placed there lexically.
   */
  private confined(view: View, name: string, linkPath: string, target: string): string {
    const parts = target.split('/');
    if (!target.startsWith('/') && !parts.includes('..')) return target;
    const from = target.startsWith('/') ? target : `${path.posix.dirname(linkPath)}/${target}`;
    let resolved: string;
    try {
      resolved = view.tree.resolve(from, false).path;
    } catch {
      resolved = lexical(from);
    }
    return path.posix.join(this.mountpoint, name, ...resolved.split('/').filter((c) => c !== ''));
  }
}

/** `p` with `.` and `..` applied as words, `..` stopping at the root. */
function lexical(p: string): string {
  const out: string[] = [];
  for (const c of pathComponents(p)) {
    if (c === '..') out.pop();
    else out.push(c);
  }
  return `/${out.join('/')}`;
}

/** A snapshot's merged tree, read-only, as a mount of it shows it. */
function mergedOperations(stack: LayerStack): Ops {
  return new LayerFS({ lowers: mergedLayers(stack) }).operations() as Ops;
}

/** A layer directory exactly as stored: whiteouts and markers included, overlay's attributes too. */
function rawOperations(dir: string): Ops {
  const real = (p: string): string => path.join(dir, p);
  const files = new Set<number>();
  return {
    getattr: answering((p: string): FuseStat => {
      const st = fs.lstatSync(real(p), { bigint: true });
      return { mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, nlink: st.nlink, rdev: st.rdev, blksize: st.blksize, blocks: st.blocks, atimeNs: st.atimeNs, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
    }),
    readdir: answering((p: string) => ['.', '..', ...fs.readdirSync(real(p))]),
    readlink: answering((p: string) => fs.readlinkSync(real(p))),
    open: answering((p: string, _flags: number) => {
      const fd = fs.openSync(real(p), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
      files.add(fd);
      return fd;
    }),
    release: answering((_p: string, fd: number) => {
      if (files.delete(fd)) fs.closeSync(fd);
    }),
    getxattr: answering((p: string, name: string, _position: number) => sys.getxattr(real(p), name)),
    listxattr: answering((p: string) => sys.listxattr(real(p))),
  };
}
