import * as fs from 'node:fs';
import * as os from 'node:os';
import { fail } from '../fuse/errno';
import { DT_DIR, DT_UNKNOWN, fstat, isDir, O_PATH, readdirFd, statAt, sys, type Dirent, type Stat } from '../native/sys';
import { classify, isOpaque, probe, WORK_INDEX, type EntryKind } from '../overlay/format';
import { mergedLayers, type LayerStack } from '../overlay/stack';
import { Inode, InodeNumbers, keyOf, type Listed } from './inode';

const E = os.constants.errno;
const O_DIR = O_PATH | fs.constants.O_DIRECTORY;
/** Directory descriptors kept open at most (others are opened again when needed). */
const OPEN_DIRS = 128;

/**
 * Descriptors borrowed while serving one request are never closed before
 * the next begins (see Tree.begin): an operation may hold several, and ask
 * for many more while it holds them (copying up a deep tree), and a number
 * closed and handed out again by the kernel would be another directory.
 */
let epoch = 0;

/** How a tree reads its layers. */
export interface TreeOptions {
  /** One layer, shown as stored: whiteouts, markers and all (no merging). */
  readonly raw?: boolean;
  /**
   * The top layer may change behind the tree's back (an active snapshot's,
   * written through its own mount): it is asked, never listed ahead.
   */
  readonly changingTop?: boolean;
  /**
   * Files show the numbers of this tree, in order of first sight, not those
   * of their layers (browse puts many trees in one range of numbers).
   */
  readonly ownNumbers?: boolean;
}

/** One entry of a merged directory. */
export interface MergedEntry {
  readonly name: Buffer;
  readonly ino: number;
  /** DT_* */
  readonly type: number;
}

/**
 * The merged tree of a stack of layers, as overlayfs presents it, by
 * inode: the first layer holding a name wins; a whiteout hides the name
 * in the layers below; directories merge down to the first opaque one or
 * the first that is not a directory.
 *
 * Every layer is entered through its root's descriptor only: each step
 * below is one name in a directory descriptor (the *at calls, never
 * following a symlink), so nothing a layer holds can lead out of it, and
 * a directory replaced by a symlink meanwhile is just gone. Directory
 * descriptors are kept for a while (the last OPEN_DIRS used).
 *
 * The layers that cannot change (all but a writable top) are read a
 * directory at a time: the first lookup in a directory lists it, once per
 * layer, instead of probing every layer for every name (fuse-overlayfs
 * does the same).
 */
export class Tree {
  /** Layer roots, topmost first: 0 is the upper layer when `writable`. */
  readonly roots: readonly number[];
  readonly writable: boolean;
  /** The work directory of a writable mount. */
  readonly work: number | undefined;
  readonly root: Inode;
  readonly numbers: InodeNumbers;
  readonly raw: boolean;
  /** Layer 0 is asked for each name, not listed ahead (it changes). */
  private readonly probedTop: boolean;
  private readonly devs: readonly bigint[];
  private readonly live = new Map<number, Inode>();
  /** Files given a new node (split): their number, and the node that stands for them now. */
  private readonly moved = new Map<number, number>();
  /** Open directory descriptors by `ino:layer`, least recently used first, and the request that last used each. */
  private readonly dirs = new Map<string, { fd: number; epoch: number }>();
  private index: number | undefined;

  constructor(layers: LayerStack, opts: TreeOptions = {}) {
    if (layers.upper !== undefined && layers.work === undefined) throw new Error('an upper layer needs a work directory');
    const paths = mergedLayers(layers);
    if (paths.length === 0) throw new Error('a layer stack needs at least one layer');
    // Layer directories are the caller's own (a mount's options, a root's layout): they are followed.
    this.roots = paths.map((p) => fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY));
    this.writable = layers.upper !== undefined;
    this.raw = opts.raw === true;
    if (this.raw && paths.length !== 1) throw new Error('a raw tree shows one layer');
    this.probedTop = this.writable || opts.changingTop === true;
    this.work = layers.work === undefined || !this.writable ? undefined : fs.openSync(layers.work, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    this.devs = this.roots.map((fd) => fstat(fd).dev);
    const top = fstat(this.roots[0]!);
    const oneDevice = this.devs.every((d) => d === this.devs[0]) && opts.ownNumbers !== true;
    this.numbers = new InodeNumbers(top.dev, top.ino, oneDevice ? top.dev : undefined);
    const dirLayers: number[] = [];
    for (let i = 0; i < this.roots.length; i++) {
      dirLayers.push(i);
      if (this.raw || isOpaque(this.roots[i]!)) break;
    }
    this.root = new Inode(1, undefined, Buffer.alloc(0), 0, true, dirLayers);
    this.root.lookups = 1; // the kernel's reference to the root is never forgotten
    this.live.set(1, this.root);
  }

  /** A new request (or in-process call) begins: the descriptors the last one borrowed may be closed. */
  static begin(): void {
    epoch++;
  }

  /** Closes every descriptor: the tree is not used again. */
  close(): void {
    for (const { fd } of this.dirs.values()) fs.closeSync(fd);
    this.dirs.clear();
    for (const inode of this.live.values()) if (inode.pinned !== undefined) fs.closeSync(inode.pinned);
    for (const fd of [...this.roots, this.work, this.index]) if (fd !== undefined) fs.closeSync(fd);
  }

  /** The live inode numbered `ino` (a node id the kernel holds). */
  inode(ino: number): Inode {
    return this.live.get(ino) ?? fail(E.ESTALE);
  }

  /**
   * A descriptor of directory `dir`'s copy in `layer`, borrowed: valid
   * until the request being served ends; never closed by the caller.
   */
  dirFd(dir: Inode, layer: number): number {
    if (dir === this.root) return this.roots[layer]!;
    const key = `${dir.ino}:${layer}`;
    const kept = this.dirs.get(key);
    if (kept !== undefined) {
      this.dirs.delete(key);
      kept.epoch = epoch;
      this.dirs.set(key, kept);
      return kept.fd;
    }
    const parent = dir.parent ?? fail(E.ENOENT);
    let fd: number;
    try {
      fd = sys.openAt(this.dirFd(parent, layer), dir.name, O_DIR, 0);
    } catch (err) {
      // Replaced by something else (a symlink, say) since it was seen: it is not there.
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ELOOP' || code === 'ENOTDIR') fail(E.ENOENT);
      throw err;
    }
    this.keepDirFd(key, fd);
    return fd;
  }

  private keepDirFd(key: string, fd: number): void {
    this.dirs.set(key, { fd, epoch });
    // The least recently used go first; none borrowed by the request being served.
    for (const [oldest, entry] of this.dirs) {
      if (this.dirs.size <= OPEN_DIRS || entry.epoch === epoch) break;
      this.dirs.delete(oldest);
      fs.closeSync(entry.fd);
    }
  }

  /** Forgets the kept descriptors of directory `dir`'s copies (removed, or replaced). */
  dropDirFds(dir: Inode): void {
    for (const layer of dir.dirLayers) {
      const key = `${dir.ino}:${layer}`;
      const kept = this.dirs.get(key);
      if (kept === undefined) continue;
      this.dirs.delete(key);
      fs.closeSync(kept.fd);
    }
  }

  /**
   * Where a non-directory's topmost copy is: a directory descriptor
   * (borrowed) and a name in it, '' when the descriptor is the file's own.
   */
  place(inode: Inode): { dirfd: number; name: Buffer | '' } {
    if (inode.pinned !== undefined) return { dirfd: inode.pinned, name: '' };
    if (inode.index !== undefined) return { dirfd: this.indexDir(), name: inode.index };
    if (inode.isDir) return { dirfd: this.dirFd(inode, inode.layer), name: '' };
    return { dirfd: this.dirFd(inode.parent ?? fail(E.ENOENT), inode.layer), name: inode.name };
  }

  /** Whether `inode` is reached as entry `name` of `dir`'s copy in `layer` (not through a descriptor or the index). */
  isAt(inode: Inode, dir: Inode, name: Buffer, layer: number): boolean {
    if (inode.pinned !== undefined || inode.index !== undefined || inode.layer !== layer) return false;
    return inode.parent === dir && inode.name.equals(name);
  }

  /** An O_PATH descriptor of the file itself (the caller closes it). */
  openPath(inode: Inode): number {
    const at = this.place(inode);
    return at.name === '' ? sys.reopen(at.dirfd, O_PATH) : sys.openAt(at.dirfd, at.name, O_PATH, 0);
  }

  stat(inode: Inode): Stat {
    const at = this.place(inode);
    return statAt(at.dirfd, at.name) ?? fail(E.ENOENT);
  }

  /** The work directory's `index`, where copied-up lower hard links keep their one copy. */
  indexDir(): number {
    if (this.index !== undefined) return this.index;
    const work = this.work ?? fail(E.EROFS);
    if (statAt(work, WORK_INDEX) === undefined) sys.mkdirAt(work, WORK_INDEX, 0o700);
    this.index = sys.openAt(work, WORK_INDEX, O_DIR, 0);
    return this.index;
  }

  // Resolution

  /** What layer `layer` holds under `name` in `dir`: an entry, a whiteout hiding the layers below, or nothing. */
  entryIn(dir: Inode, layer: number, name: Buffer): EntryKind | undefined {
    if (layer === 0 && this.probedTop) {
      const fd = this.dirFd(dir, 0);
      if (!this.raw) return probe(fd, name);
      const st = statAt(fd, name);
      return st === undefined ? undefined : isDir(st) ? 'dir' : 'other';
    }
    return this.listing(dir, layer).get(keyOf(name))?.kind;
  }

  private listing(dir: Inode, layer: number): Map<string, Listed> {
    dir.listings ??= new Map();
    let names = dir.listings.get(layer);
    if (names !== undefined) return names;
    names = new Map();
    let fd: number | undefined;
    try {
      fd = this.dirFd(dir, layer);
    } catch {
      // gone from that layer: nothing there
    }
    if (fd !== undefined) {
      for (const e of readdirFd(fd)) {
        const entry = this.classify(fd, e);
        if (entry === undefined) continue;
        const key = keyOf(entry.name);
        // An entry beats a `.wh.` file of the same name, as a probe finds the entry first.
        if (entry.kind === 'whiteout' && names.has(key)) continue;
        names.set(key, { name: entry.name, kind: entry.kind, type: e.type, ino: e.ino });
      }
    }
    dir.listings.set(layer, names);
    return names;
  }

  /**
   * What `name` in directory `dir` stands for: its inode, and the layer
   * the name was found in; undefined for nothing. It is not counted as a
   * lookup. A live inode of the same file is the one returned (hard links
   * share it). `st` is what the entry found in `layer` was as it was found.
   */
  lookup(dir: Inode, name: Buffer): { inode: Inode; layer: number; st: Stat } | undefined {
    if (!dir.isDir) fail(E.ENOTDIR);
    let top: number | undefined;
    let topIsDir = false;
    const dirLayers: number[] = [];
    // The copies of a directory are opened to see whether they are opaque, and kept for what comes next.
    const opened: [number, number][] = [];
    try {
      for (const layer of dir.dirLayers) {
        const kind = this.entryIn(dir, layer, name);
        if (kind === 'whiteout') break;
        if (kind === undefined) continue;
        if (top === undefined) {
          top = layer;
          topIsDir = kind === 'dir';
          if (!topIsDir) break;
        } else if (kind !== 'dir') break;
        const fd = this.openChildDir(dir, layer, name);
        // Not a directory after all (replaced meanwhile): nothing from there on shows.
        if (fd === undefined) break;
        opened.push([layer, fd]);
        dirLayers.push(layer);
        if (!this.raw && isOpaque(fd)) break;
      }
      if (top === undefined || (topIsDir && opened.length === 0)) return undefined;
      const st = topIsDir ? fstat(opened[0]![1]) : statAt(this.dirFd(dir, top), name);
      // A directory where no directory was seen came meanwhile (it was a symlink, say): it is not
      // there, as a directory gone meanwhile is not. Adopted as a file, it would take a live
      // directory's inode and leave it no layers: nothing in it would show any more.
      if (st === undefined || (!topIsDir && isDir(st))) return undefined;
      const inode = this.adopt(dir, name, top, st, topIsDir ? dirLayers : []);
      for (const [layer, fd] of opened.splice(0)) {
        const key = `${inode.ino}:${layer}`;
        if (this.dirs.has(key)) fs.closeSync(fd);
        else this.keepDirFd(key, fd);
      }
      return { inode, layer: top, st };
    } finally {
      for (const [, fd] of opened) fs.closeSync(fd);
    }
  }

  /**
   * A copy of a directory's child directory, opened to be read (its
   * attributes, its listing), or only as a path where it may not be read;
   * undefined when it is not a directory.
   */
  private openChildDir(dir: Inode, layer: number, name: Buffer): number | undefined {
    const parent = this.dirFd(dir, layer);
    try {
      return sys.openAt(parent, name, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY, 0);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTDIR' || code === 'ELOOP' || code === 'ENOENT') return undefined;
      if (code !== 'EACCES') throw err;
    }
    try {
      return sys.openAt(parent, name, O_DIR, 0);
    } catch {
      return undefined;
    }
  }

  /** An entry as the merged tree sees it (see format.ts); a raw tree sees every entry as it is. */
  private classify(dirfd: number, e: Dirent): { name: Buffer; kind: EntryKind } | undefined {
    if (!this.raw) return classify(dirfd, e);
    if (e.type !== DT_UNKNOWN) return { name: e.name, kind: e.type === DT_DIR ? 'dir' : 'other' };
    const st = statAt(dirfd, e.name);
    return st === undefined ? undefined : { name: e.name, kind: isDir(st) ? 'dir' : 'other' };
  }

  /** The inode for a file found at `name` in `dir`'s copy in `layer`: the live one of that file, or a new one. */
  adopt(dir: Inode, name: Buffer, layer: number, st: Stat, dirLayers: number[]): Inode {
    let ino = this.numbers.of(st.dev, st.ino);
    let node = this.moved.get(ino) ?? ino;
    let known = this.live.get(node);
    if (known?.superseded === true) {
      // Split from its file, and held by the kernel still: the file needs a node again.
      known = undefined;
      node = this.numbers.fresh();
    }
    if (known !== undefined && known.isDir !== isDir(st)) {
      // Another file under the same device and inode number: one whose storage was freed
      // behind the tree's back (by the writer of a changing top layer), and its number reused.
      this.numbers.drop(st.dev, st.ino);
      this.moved.delete(ino);
      ino = this.numbers.of(st.dev, st.ino);
      node = ino;
    } else if (known !== undefined) {
      // A file whose last known name went is reached again through another (a lower hard link).
      if (known !== this.root && known.parent === undefined) {
        known.parent = dir;
        dir.children++;
        known.name = Buffer.from(name);
        known.layer = layer;
        known.unlinked = false;
      }
      if (isDir(st)) known.dirLayers = dirLayers;
      return known;
    }
    const inode = new Inode(node, dir, Buffer.from(name), layer, isDir(st), dirLayers);
    inode.number = ino;
    if (node !== ino) this.moved.set(ino, node);
    dir.children++;
    this.live.set(node, inode);
    return inode;
  }

  /** The names of merged directory `dir`, each once, with their inode numbers; whiteouts and markers hidden. */
  readdir(dir: Inode): MergedEntry[] {
    const out: MergedEntry[] = [];
    const taken = new Set<string>();
    for (const layer of dir.dirLayers) {
      let entries: Iterable<Listed>;
      if (layer === 0 && this.probedTop) {
        const fd = this.dirFd(dir, 0);
        entries = readdirFd(fd).flatMap((e) => {
          const entry = this.classify(fd, e);
          return entry === undefined ? [] : [{ name: entry.name, kind: entry.kind, type: e.type, ino: e.ino }];
        });
      } else entries = this.listing(dir, layer).values();
      const hidden: string[] = [];
      for (const e of entries) {
        const key = keyOf(e.name);
        if (e.kind === 'whiteout') hidden.push(key);
        else if (!taken.has(key)) {
          taken.add(key);
          out.push({ name: e.name, ino: this.numbers.shown(this.numbers.of(this.devs[layer]!, e.ino)), type: e.kind === 'dir' ? DT_DIR : e.type });
        }
      }
      // A layer's whiteouts hide the layers below it, not itself.
      for (const key of hidden) taken.add(key);
    }
    return out;
  }

  /** Whether the layers below the upper one show something at `name` in `dir`. */
  visibleBelow(dir: Inode, name: Buffer): boolean {
    for (const layer of dir.dirLayers) {
      if (layer === 0 && this.writable) continue;
      const kind = this.entryIn(dir, layer, name);
      if (kind !== undefined) return kind !== 'whiteout';
    }
    return false;
  }

  // References

  /** The kernel looked `inode` up (once more). */
  counted(inode: Inode): Inode {
    inode.lookups++;
    return inode;
  }

  /** The kernel forgets `n` lookups of `ino`. */
  forget(ino: number, n: number): void {
    const inode = this.live.get(ino);
    if (inode === undefined || inode === this.root) return;
    inode.lookups = Math.max(0, inode.lookups - n);
    this.release(inode);
  }

  /** Drops an inode nobody holds any more (its parent too, then, if nobody holds that). */
  release(inode: Inode): void {
    for (let i: Inode | undefined = inode; i !== undefined && i !== this.root && i.lookups === 0 && i.children === 0; ) {
      if (this.live.get(i.ino) === i) this.live.delete(i.ino);
      if (this.moved.get(i.number) === i.ino) this.moved.delete(i.number);
      if (i.isDir) this.dropDirFds(i);
      if (i.pinned !== undefined) fs.closeSync(i.pinned);
      i.pinned = undefined;
      i.listings = undefined;
      const parent: Inode | undefined = i.parent;
      i.parent = undefined;
      if (parent !== undefined) parent.children--;
      i = parent;
    }
  }

  /**
   * Runs `fn` with `inode` kept known, as a child of it keeps it: what `fn`
   * looks up and releases below it cannot release it meanwhile (a
   * directory nobody has looked up, whose last known child goes).
   */
  hold<T>(inode: Inode, fn: () => T): T {
    inode.children++;
    try {
      return fn();
    } finally {
      inode.children--;
    }
  }

  /**
   * Gives the file of `inode` (not a directory) a new node, which every
   * lookup of its names finds from now on, with the same number. The old
   * node keeps serving what the kernel holds of it, by a descriptor of the
   * file, with no name. FUSE passthrough binds a node to one backing file
   * while it is open: an open that must see another copy of the file (its
   * copy-up) is made on a new node.
   */
  split(inode: Inode): void {
    const parent = inode.parent ?? fail(E.ENOENT);
    const fresh = new Inode(this.numbers.fresh(), parent, inode.name, inode.layer, false, []);
    fresh.number = inode.number;
    fresh.index = inode.index;
    this.live.set(fresh.ino, fresh);
    this.moved.set(inode.number, fresh.ino);
    // The new node takes the old one's place in its parent.
    inode.pinned ??= this.openPath(inode);
    inode.parent = undefined;
    inode.superseded = true;
  }

  /**
   * The work directory's index is about to go (a commit): every live file
   * reached through it is kept by a descriptor of its own from now on.
   */
  unindex(): void {
    for (const inode of this.live.values()) {
      if (inode.index === undefined) continue;
      inode.pinned ??= this.openPath(inode);
      inode.index = undefined;
    }
  }

  /** `inode` is now named `name` in `dir`. */
  rename(inode: Inode, dir: Inode, name: Buffer): void {
    const old = inode.parent;
    if (old !== dir) {
      dir.children++;
      inode.parent = dir;
      if (old !== undefined) {
        old.children--;
        this.release(old);
      }
    }
    inode.name = Buffer.from(name);
  }

  /**
   * The last name of `inode` went: it is kept reachable through a
   * descriptor of its own while still in use, and leaves its parent.
   */
  detach(inode: Inode, pin: number | undefined): void {
    if (inode.pinned === undefined) inode.pinned = pin;
    else if (pin !== undefined) fs.closeSync(pin);
    inode.unlinked = true;
    const old = inode.parent;
    inode.parent = undefined;
    if (old !== undefined) {
      old.children--;
      this.release(old);
    }
    this.release(inode);
  }

  /**
   * Directory `dir` was renamed, its whole tree copied up first: it and
   * every directory below it now live in the upper layer alone (their
   * lower copies are at their old names, merged no more).
   */
  movedAway(dir: Inode): void {
    for (const inode of this.live.values()) {
      if (!inode.isDir) continue;
      let below = false;
      for (let i: Inode | undefined = inode; i !== undefined && !below; i = i.parent) below = i === dir;
      if (!below) continue;
      this.dropDirFds(inode);
      inode.listings = undefined;
      inode.dirLayers = [0];
      inode.layer = 0;
    }
  }
}
