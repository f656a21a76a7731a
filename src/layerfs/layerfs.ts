import * as fs from 'node:fs';
import * as os from 'node:os';
import { failurePoint, faultsArmed } from '../faults';
import { fail } from '../fuse/errno';
import type { Answer, AttrAnswer, Backing, DirEntry, Entry, FileSystem, Opened, Request, SetAttr, SetTime, StatFs } from '../fuse/session';
import type { Attr } from '../fuse/protocol';
import { DT_DIR, fstat, isDir, O_PATH, readdirFd, statAt, sys, type Stat } from '../native/sys';
import { isPrivateXattr, isReservedName, NAME_MAX, probe, upperFormat, type UpperFormat } from '../overlay/format';
import type { LayerStack } from '../overlay/stack';
import { messageOf } from '../errors';
import { diskUsageOf } from '../overlay/usage';
import { copyEntry, Copier, CopyPending, setTimes } from './copyup';
import { ENTRY_BYTES, UpperSpace } from './space';
import { major, minor } from './devices';
import { IDENTITY, type IdMap } from './idmap';
import type { Inode } from './inode';
import { IoModes } from './io-modes';
import { Tree, type TreeOptions } from './tree';

const E = os.constants.errno;
const C = fs.constants;
const WRITE_FLAGS = C.O_WRONLY | C.O_RDWR | C.O_TRUNC | C.O_APPEND;
/**
 * What an open(2) asks that the file system does itself, or that makes no
 * sense on a layer's file: O_DIRECT among them, since the kernel hands
 * direct I/O to the session in buffers of its own, which the layer's file
 * system would refuse (EINVAL) for their alignment.
 */
const OPEN_IGNORED = C.O_CREAT | C.O_EXCL | C.O_NOCTTY | C.O_DIRECT;
const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_IXGRP = 0o010;
const S_IFMT = 0o170000;
const NO_CHANGE = -1;
const RENAME_NOREPLACE = 1;
const RENAME_EXCHANGE = 2;
/** A day: what never changes behind the kernel's back may be kept that long. */
const DAY = 86_400;

/** What a mount's options may ask of LayerFS beyond its layers (fuse-overlayfs's options of those names). */
export type LayerTweaks = Pick<LayerFSOptions, 'squashUid' | 'squashGid' | 'staticNlink' | 'volatile' | 'maxSize'>;

export interface LayerFSOptions {
  /** Show every file as owned by this uid, and this gid (fuse-overlayfs's squash_to_uid=, squash_to_gid=; squash_to_root is 0 and 0). */
  readonly squashUid?: number;
  readonly squashGid?: number;
  /** Directories show a link count of 1 (fuse-overlayfs's static_nlink), which tools take as "count nothing on it". */
  readonly staticNlink?: boolean;
  /** fsync is not passed on (fuse-overlayfs's volatile, fsync=0): nobody needs the data to outlive a crash. */
  readonly volatile?: boolean;
  /** The bytes the upper layer may take, all told (max_size=): a change past it is ENOSPC. */
  readonly maxSize?: number;
  /** Ids as shown through the mount ↔ as stored in the layers (uidmapping/gidmapping). */
  readonly uids?: IdMap;
  readonly gids?: IdMap;
  /**
   * Seconds the kernel may keep names and attributes (a day by default).
   * On a writable mount, attributes of set-ID files are never kept: their
   * bits go on writes the kernel does not see as changes of the mode.
   */
  readonly cacheSeconds?: number;
  /** The smallest file a read-only open passes through, where the kernel agreed to passthrough (io-modes.ts). */
  readonly passthroughMinBytes?: number;
}

export type { TreeOptions };

/** A lower file with several names, once one was copied up or removed. */
interface LinkGroup {
  /** Its one copy, in the work directory's index, once copied up. */
  index: Buffer | undefined;
  /**
   * The link count the merged tree shows (as overlayfs's index=on keeps
   * it): the lower count, plus links made, minus names removed.
   */
  nlink: number;
}

/**
 * The merged file system of a layer stack, as overlayfs presents it, by
 * node id (see Tree): reads resolve through the layers; every change lands
 * in the upper layer, after copying the entry (and its parent
 * directories) up from below; deletions of what the layers below hold
 * leave whiteouts. Without an upper layer, or once frozen, every change is
 * EROFS. Handles of open files are their descriptors in the layer that
 * holds them: reads and writes go straight to them (the FUSE session
 * serves them in C).
 *
 * Every method works on layer directories, never on the mount: so it can
 * be used in process, without a mount (inspect, browse, tests). Each
 * answers at once, but for one that must copy a big file up (see Copier):
 * that one answers with a Promise, and is done again from the start once
 * the file's data is copied, off the thread.
 */
export class LayerFS implements FileSystem {
  readonly tree: Tree;
  private readonly format: UpperFormat | undefined;
  /** Descriptors handed out as handles, by the node they are of. */
  private readonly files = new Map<number, number>();
  /** How each open file is read and written: through the page cache, or passed through. */
  private readonly io: IoModes;
  /** Handles open per node: a file unlinked while open is kept through a descriptor of its own. */
  private readonly openCount = new Map<number, number>();
  private readonly groups = new Map<number, LinkGroup>();
  private readonly copier: Copier | undefined;
  /** The upper layer's space, when limited (the session counts writes in it too). */
  readonly space: UpperSpace | undefined;
  private frozen = false;
  private closed = false;
  private readonly asRoot = process.getuid?.() === 0;
  private readonly squashUid: number | undefined;
  private readonly squashGid: number | undefined;
  private readonly staticNlink: boolean;
  private readonly volatile: boolean;
  private readonly uids: IdMap;
  private readonly gids: IdMap;
  private readonly cache: number;

  constructor(layers: LayerStack, opts: LayerFSOptions & TreeOptions = {}) {
    this.squashUid = opts.squashUid;
    this.squashGid = opts.squashGid;
    this.staticNlink = opts.staticNlink === true;
    this.volatile = opts.volatile === true;
    this.uids = opts.uids ?? IDENTITY;
    this.gids = opts.gids ?? IDENTITY;
    this.cache = opts.cacheSeconds ?? DAY;
    this.io = new IoModes(opts.passthroughMinBytes);
    this.tree = new Tree(layers, opts);
    this.format = this.tree.work === undefined ? undefined : upperFormat(this.tree.work, true);
    this.copier = this.tree.work === undefined ? undefined : new Copier(this.tree.work);
    // What the layer holds already counts: measured once, here.
    // Measured through the tree's own descriptor of the upper layer: the directory it serves, whatever its path names now.
    this.space = opts.maxSize === undefined || !this.tree.writable ? undefined : new UpperSpace(opts.maxSize, upperUsage(this.tree.roots[0]!));
  }

  get readOnly(): boolean {
    return !this.tree.writable;
  }

  /** Bytes of regular files copied up from the lower layers so far. */
  get copiedUpBytes(): number {
    return this.copier?.copiedBytes ?? 0;
  }

  /**
   * From now on every change is EROFS (writes are refused by the session).
   * The commit that asked drops the work directory's index: what this
   * mount reached through it, it keeps by descriptors, and names of lower
   * hard links not copied up yet show the lower file, as in the layer.
   */
  freeze(): void {
    this.frozen = true;
    this.tree.unindex();
    for (const group of this.groups.values()) group.index = undefined;
  }

  /** Closes every descriptor (open files included): the file system is not used again. */
  close(): void {
    this.closed = true;
    this.copier?.close();
    for (const fd of this.files.keys()) fs.closeSync(fd);
    this.files.clear();
    this.tree.close();
  }

  beginRequest(): void {
    Tree.begin();
  }

  passthrough(backing: Backing): void {
    this.io.enable(backing);
  }

  // Names and attributes

  lookup(_req: Request, parent: number, name: Buffer): Entry {
    if (name.length > NAME_MAX) fail(E.ENAMETOOLONG);
    if (faultsArmed) failurePoint(`lookup:${name.toString('latin1')}`);
    const dir = this.tree.inode(parent);
    // The layer format's own names are no entries of the merged tree.
    const found = isReservedName(name) && !this.tree.raw ? undefined : this.find(dir, name);
    if (found === undefined) return { ino: 0, entryTimeout: this.cache, attrTimeout: 0 };
    this.materialize(dir, name, found.inode, found.layer);
    return this.entry(found.inode, found.st);
  }

  forget(ino: number, nlookup: number): void {
    this.tree.forget(ino, nlookup);
  }

  getattr(_req: Request, ino: number): AttrAnswer {
    const inode = this.tree.inode(ino);
    const st = this.tree.stat(inode);
    return { attr: this.attr(inode, st), timeout: this.attrTimeout(st) };
  }

  readlink(_req: Request, ino: number): Buffer {
    const at = this.tree.place(this.tree.inode(ino));
    return sys.readlinkAt(at.dirfd, at.name);
  }

  statfs(): StatFs {
    const s = fs.statfsSync(`/proc/self/fd/${this.tree.roots[0]!}`);
    return { blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, bsize: s.bsize, namelen: NAME_MAX, frsize: s.bsize };
  }

  getxattr(_req: Request, ino: number, name: Buffer): Buffer {
    if (isPrivateXattr(name) && !this.tree.raw) fail(E.ENODATA);
    // The kernel asks for security.capability before a file's first write and before a chown:
    // by name in its directory, that is one system call.
    const at = this.tree.place(this.tree.inode(ino));
    return (at.name === '' ? sys.getxattr(at.dirfd, name) : sys.getxattrAt(at.dirfd, at.name, name)) ?? fail(E.ENODATA);
  }

  listxattr(_req: Request, ino: number): Buffer[] {
    return this.withPath(this.tree.inode(ino), (fd) => sys.listxattr(fd)).filter((n) => this.tree.raw || !isPrivateXattr(n));
  }

  // Open files and directories

  open(req: Request, ino: number, flags: number, killSuidgid: boolean): Answer<Opened> {
    return this.retrying(() => {
      const inode = this.tree.inode(ino);
      const writing = (flags & WRITE_FLAGS) !== 0;
      if (writing) this.copyUp(inode);
      if (this.io.boundElsewhere(ino, writing ? undefined : inode.layer)) {
        // The kernel retries an open that found ESTALE with a fresh lookup, which finds the new node
        // (one made through /proc/PID/fd/N cannot look up afresh: it gets ESTALE).
        if (!inode.superseded) this.tree.split(inode);
        fail(E.ESTALE);
      }
      const at = this.tree.place(inode);
      // O_TRUNC is the open's own (ATOMIC_O_TRUNC): what it frees is given back here.
      const blocks = this.space !== undefined && writing && (flags & C.O_TRUNC) !== 0 ? this.tree.stat(inode).blocks : undefined;
      const fd = sys.openFile(at.dirfd, at.name, flags & ~OPEN_IGNORED);
      if (blocks !== undefined) this.space!.add((fstat(fd).blocks - blocks) * 512);
      try {
        if ((flags & C.O_TRUNC) !== 0 && killSuidgid) this.killSetIds(fd, req);
      } catch (err) {
        fs.closeSync(fd);
        throw err;
      }
      this.handOut(fd, ino);
      return { fh: fd, keepCache: true, ...this.io.opened(ino, fd, inode.layer, !writing) };
    });
  }

  release(_req: Request, _ino: number, fh: number): void {
    const ino = this.files.get(fh);
    if (ino === undefined) return;
    this.files.delete(fh);
    this.io.released(fh);
    fs.closeSync(fh);
    const left = (this.openCount.get(ino) ?? 1) - 1;
    if (left > 0) this.openCount.set(ino, left);
    else this.openCount.delete(ino);
  }

  private handOut(fd: number, ino: number): void {
    this.files.set(fd, ino);
    this.openCount.set(ino, (this.openCount.get(ino) ?? 0) + 1);
  }

  fsync(_req: Request, _ino: number, fh: number, datasync: boolean): void {
    if (!this.files.has(fh)) fail(E.EBADF);
    if (this.volatile) return;
    if (datasync) fs.fdatasyncSync(fh);
    else fs.fsyncSync(fh);
  }

  // No opendir: the kernel opens directories itself and keeps what it lists. A listing changes
  // only through this mount (one writer per upper layer), and every change made through it makes
  // the kernel list again.

  /** A directory's merged listing, `.` and `..` first. */
  readdir(_req: Request, ino: number): DirEntry[] {
    const dir = this.tree.inode(ino);
    if (!dir.isDir) fail(E.ENOTDIR);
    const dot = (name: string, of: Inode): DirEntry => ({ name: Buffer.from(name), ino: this.tree.numbers.shown(of.number), mode: 0o040000 });
    return [dot('.', dir), dot('..', dir.parent ?? dir), ...this.tree.readdir(dir).map((e) => ({ name: e.name, ino: e.ino, mode: e.type << 12 }))];
  }

  /** The merged names of a directory, without opening it (for in-process readers). */
  names(ino: number): Buffer[] {
    return this.tree.readdir(this.tree.inode(ino)).map((e) => e.name);
  }

  // Changes

  create(req: Request, parent: number, name: Buffer, mode: number, flags: number): { entry: Entry; opened: Opened } {
    const { dir, up } = this.makeRoom(parent, name);
    const fd = sys.openAt(up, name, (flags & ~OPEN_IGNORED) | C.O_CREAT | C.O_EXCL, mode);
    let inode: Inode;
    let st: Stat;
    try {
      this.giveToCaller(up, name, req);
      st = fstat(fd);
      inode = this.tree.adopt(dir, name, 0, st, []);
    } catch (err) {
      fs.closeSync(fd);
      sys.unlinkAt(up, name, false);
      throw err;
    }
    this.handOut(fd, inode.ino);
    // Just made where `st` was taken: the entry's attributes are those.
    return { entry: this.entry(inode, st), opened: { fh: fd, keepCache: true, ...this.io.opened(inode.ino, fd, 0, false) } };
  }

  mkdir(req: Request, parent: number, name: Buffer, mode: number): Entry {
    // Before anything changes: making room may remove a whiteout.
    this.space?.check(ENTRY_BYTES);
    const { dir, up, overWhiteout } = this.makeRoom(parent, name);
    sys.mkdirAt(up, name, mode);
    return this.made(req, dir, up, name, true, () => {
      // A directory made where the layers below had something must not show it.
      if (!overWhiteout) return;
      const fd = sys.openAt(up, name, O_PATH | C.O_DIRECTORY, 0);
      try {
        this.format!.markOpaque(fd);
      } finally {
        fs.closeSync(fd);
      }
    });
  }

  mknod(req: Request, parent: number, name: Buffer, mode: number, rdev: number): Entry {
    // A character device 0/0 is a whiteout in the layer format.
    if ((mode & S_IFMT) === C.S_IFCHR && rdev === 0) fail(E.EPERM);
    const { dir, up } = this.makeRoom(parent, name);
    sys.mknodAt(up, name, mode, major(rdev), minor(rdev));
    return this.made(req, dir, up, name, false);
  }

  symlink(req: Request, parent: number, name: Buffer, target: Buffer): Entry {
    this.space?.check(ENTRY_BYTES);
    const { dir, up } = this.makeRoom(parent, name);
    sys.symlinkAt(target, up, name);
    return this.made(req, dir, up, name, false);
  }

  link(_req: Request, ino: number, newParent: number, newName: Buffer): Answer<Entry> {
    return this.retrying(() => {
      const inode = this.tree.inode(ino);
      if (inode.isDir) fail(E.EPERM);
      this.copyUp(inode);
      const { up } = this.makeRoom(newParent, newName);
      const fd = this.tree.openPath(inode);
      try {
        sys.linkAt(fd, up, newName);
      } finally {
        fs.closeSync(fd);
      }
      const group = this.groups.get(inode.number);
      if (group !== undefined) group.nlink++;
      return this.entry(inode);
    });
  }

  unlink(_req: Request, parent: number, name: Buffer): void {
    this.remove(parent, name, false);
  }

  rmdir(_req: Request, parent: number, name: Buffer): void {
    this.remove(parent, name, true);
  }

  rename(_req: Request, parent: number, name: Buffer, newParent: number, newName: Buffer, flags: number): Answer<void> {
    return this.retrying(() => {
      this.writable();
      if (flags === RENAME_EXCHANGE) return this.exchange(parent, name, newParent, newName);
      if ((flags & ~RENAME_NOREPLACE) !== 0) fail(E.EINVAL);
      if (isReservedName(newName)) fail(E.EINVAL);
      if (newName.length > NAME_MAX) fail(E.ENAMETOOLONG);
      const src = this.tree.inode(parent);
      const dst = this.tree.inode(newParent);
      if (src === dst && name.equals(newName)) return;
      const from = this.find(src, name) ?? fail(E.ENOENT);
      const to = this.find(dst, newName);
      if (to !== undefined && (flags & RENAME_NOREPLACE) !== 0) fail(E.EEXIST);
      const moving = from.inode;
      const replaced = to?.inode;
      // Two names of one file: rename(2) does nothing.
      if (replaced === moving && !moving.isDir) return;
      if (replaced !== undefined) {
        if (moving.isDir && !replaced.isDir) fail(E.ENOTDIR);
        if (!moving.isDir && replaced.isDir) fail(E.EISDIR);
        if (replaced.isDir && this.tree.readdir(replaced).length > 0) fail(E.ENOTEMPTY);
      }
      for (let i: Inode | undefined = dst; moving.isDir && i !== undefined; i = i.parent) if (i === moving) fail(E.EINVAL);
      const hideSrc = this.tree.visibleBelow(src, name);
      const dstHadBelow = this.tree.visibleBelow(dst, newName);
      // The upper copy must hold the whole merged content before it moves.
      if (moving.isDir) this.copyUpTree(moving);
      else this.copyUpName(src, name, moving);
      const srcUp = this.upperDir(src);
      const { up: dstUp } = this.makeRoom(newParent, newName);
      let pin: number | undefined;
      if (replaced !== undefined) {
        const st = this.tree.stat(replaced);
        if (to!.layer === 0) this.freed(replaced, st);
        if (to!.layer === 0 && (replaced.isDir || st.nlink <= 1)) this.space?.add(-st.blocks * 512);
        if (!replaced.isDir) this.countUnlink(replaced);
        if (to!.layer === 0 && replaced.isDir) this.removeUpperDir(dstUp, newName);
        else if (to!.layer === 0) pin = this.pinIfUsed(replaced, dstUp, newName, st.nlink > 1);
      }
      sys.renameAt(srcUp, name, dstUp, newName, 0);
      // What the layers below hold at the destination must not show through.
      if (moving.isDir && dstHadBelow) this.markOpaque(dstUp, newName);
      if (hideSrc) this.format!.whiteout(srcUp, name);
      if (replaced !== undefined && replaced !== moving) this.gone(replaced, to!.layer, pin);
      this.tree.rename(moving, dst, newName);
      if (moving.isDir) this.tree.movedAway(moving);
    });
  }

  /**
   * renameat2(RENAME_EXCHANGE): both names are copied up whole (a
   * directory with all it merges), swapped in the upper layer, and each
   * directory made opaque where it now stands over something of the layers
   * below. Neither name ever shows what lies beneath it.
   */
  private exchange(parent: number, name: Buffer, newParent: number, newName: Buffer): void {
    if (isReservedName(name) || isReservedName(newName)) fail(E.EINVAL);
    const src = this.tree.inode(parent);
    const dst = this.tree.inode(newParent);
    const a = (this.find(src, name) ?? fail(E.ENOENT)).inode;
    const b = (this.find(dst, newName) ?? fail(E.ENOENT)).inode;
    if (a === b) return;
    // Neither may end up inside itself.
    for (let i: Inode | undefined = dst; a.isDir && i !== undefined; i = i.parent) if (i === a) fail(E.EINVAL);
    for (let i: Inode | undefined = src; b.isDir && i !== undefined; i = i.parent) if (i === b) fail(E.EINVAL);
    const belowA = this.tree.visibleBelow(src, name);
    const belowB = this.tree.visibleBelow(dst, newName);
    for (const [dir, n, inode] of [[src, name, a], [dst, newName, b]] as const) {
      if (inode.isDir) this.copyUpTree(inode);
      else this.copyUpName(dir, n, inode);
    }
    const srcUp = this.upperDir(src);
    const dstUp = this.upperDir(dst);
    sys.renameAt(srcUp, name, dstUp, newName, RENAME_EXCHANGE);
    if (a.isDir && belowB) this.markOpaque(dstUp, newName);
    if (b.isDir && belowA) this.markOpaque(srcUp, name);
    this.tree.rename(b, src, name);
    this.tree.rename(a, dst, newName);
    if (a.isDir) this.tree.movedAway(a);
    if (b.isDir) this.tree.movedAway(b);
  }

  private markOpaque(up: number, name: Buffer): void {
    const fd = sys.openAt(up, name, O_PATH | C.O_DIRECTORY, 0);
    try {
      this.format!.markOpaque(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  setattr(req: Request, ino: number, set: SetAttr): Answer<AttrAnswer> {
    return this.retrying(() => {
      const inode = this.tree.inode(ino);
      this.copyUp(inode);
      // By name in its directory where it has one (the *at calls, never following a final
      // symlink); a directory, or a file kept by a descriptor, through that descriptor.
      const at = this.tree.place(inode);
      if (set.uid !== undefined || set.gid !== undefined) {
        const uid = set.uid === undefined ? NO_CHANGE : this.uids.stored(set.uid) ?? fail(E.EINVAL);
        const gid = set.gid === undefined ? NO_CHANGE : this.gids.stored(set.gid) ?? fail(E.EINVAL);
        sys.chownAt(at.dirfd, at.name, uid, gid);
      }
      // After the owner: chown drops set-ID bits.
      if (set.mode !== undefined) {
        if (at.name === '') sys.chmodFd(at.dirfd, set.mode & 0o7777);
        else sys.chmodAt(at.dirfd, at.name, set.mode & 0o7777);
      }
      if (set.size !== undefined) this.withPath(inode, (fd) => this.truncate(fd, set, req));
      if (set.atime !== undefined || set.mtime !== undefined) {
        const [as, an] = timeArgs(set.atime);
        const [ms, mn] = timeArgs(set.mtime);
        if (at.name === '') sys.utimens(at.dirfd, as, an, ms, mn);
        else sys.utimensAt(at.dirfd, at.name, as, an, ms, mn);
      }
      // chown(f, -1, -1) and the like change nothing but the change time.
      if (set.touchCtime && set.uid === undefined && set.gid === undefined && set.mode === undefined && set.size === undefined && set.atime === undefined && set.mtime === undefined) {
        sys.chownAt(at.dirfd, at.name, NO_CHANGE, NO_CHANGE);
      }
      const st = statAt(at.dirfd, at.name) ?? fail(E.ENOENT);
      return { attr: this.attr(inode, st), timeout: this.attrTimeout(st) };
    });
  }

  setxattr(_req: Request, ino: number, name: Buffer, value: Buffer, flags: number): Answer<void> {
    if (isPrivateXattr(name)) fail(E.EOPNOTSUPP);
    return this.retrying(() => {
      const inode = this.tree.inode(ino);
      this.copyUp(inode);
      this.withPath(inode, (fd) => sys.setxattr(fd, name, value, flags));
    });
  }

  removexattr(_req: Request, ino: number, name: Buffer): Answer<void> {
    if (isPrivateXattr(name)) fail(E.EOPNOTSUPP);
    return this.retrying(() => {
      const inode = this.tree.inode(ino);
      this.copyUp(inode);
      this.withPath(inode, (fd) => sys.removexattr(fd, name));
    });
  }

  // Removing

  /** unlink and rmdir: drop the upper copy, and hide what the layers below hold. */
  private remove(parent: number, name: Buffer, dir: boolean): void {
    this.writable();
    const p = this.tree.inode(parent);
    const found = this.find(p, name) ?? fail(E.ENOENT);
    const child = found.inode;
    if (dir && !child.isDir) fail(E.ENOTDIR);
    if (!dir && child.isDir) fail(E.EISDIR);
    if (dir && this.tree.readdir(child).length > 0) fail(E.ENOTEMPTY);
    const hideBelow = this.tree.visibleBelow(p, name);
    const st = found.st ?? this.tree.stat(child);
    // An upper file with other names keeps its storage, and is reached by them.
    const otherNames = !dir && found.layer === 0 && st.nlink > 1;
    let pin: number | undefined;
    if (found.layer === 0) {
      const up = this.tree.dirFd(p, 0);
      // An upper directory that looks empty may still hold whiteouts.
      if (dir) this.removeUpperDir(up, name);
      else {
        pin = this.pinIfUsed(child, up, name, otherNames);
        sys.unlinkAt(up, name, false);
      }
    } else if (!dir) {
      pin = this.pinIfUsed(child, this.tree.dirFd(p, found.layer), name, false);
    }
    if (!dir) this.countUnlink(child, st);
    if (hideBelow) this.format!.whiteout(this.upperDir(p), name);
    if (found.layer === 0) this.freed(child, st);
    // Its blocks come back with its last name (an open file's, once closed: counted now).
    if (found.layer === 0 && !otherNames) this.space?.add(-st.blocks * 512);
    this.gone(child, found.layer, pin);
  }

  /** An upper file lost a name: once it has none, its inode number may go to another file. */
  private freed(inode: Inode, st: Stat): void {
    if (inode.isDir || (st.nlink <= 1 && inode.index === undefined)) this.tree.numbers.drop(st.dev, st.ino);
  }

  /**
   * A name of `inode`, found in `layer`, is gone. A file still in use, or
   * with other names, keeps working through a descriptor held for it (an
   * unlinked open file needs no hidden name).
   */
  private gone(inode: Inode, layer: number, pin: number | undefined): void {
    if (inode.isDir) {
      this.tree.dropDirFds(inode);
      this.tree.detach(inode, undefined);
      return;
    }
    // A copied-up hard link is reached through the index; a lower one's
    // other names, and even this one's copy in its layer, reach it still.
    if (inode.index !== undefined || (layer > 0 && pin === undefined && this.groups.has(inode.number))) return;
    this.tree.detach(inode, pin);
  }

  /**
   * An O_PATH descriptor of a file losing its name while open (for what is
   * asked through its handles: fstat, fchmod…) or while it has other names
   * (which the kernel may not have looked up yet). One that is neither gets
   * none: its storage goes at once, as on any file system.
   */
  private pinIfUsed(inode: Inode, dirfd: number, name: Buffer, otherNames: boolean): number | undefined {
    if (inode.isDir || inode.index !== undefined || inode.pinned !== undefined) return undefined;
    if (!otherNames && !this.openCount.has(inode.ino)) return undefined;
    return sys.openAt(dirfd, name, O_PATH, 0);
  }

  /** Removes an upper directory that shows nothing: its whiteouts and markers go with it. */
  private removeUpperDir(up: number, name: Buffer): void {
    const fd = sys.openAt(up, name, O_PATH | C.O_DIRECTORY, 0);
    try {
      for (const e of readdirFd(fd)) sys.unlinkAt(fd, e.name, e.type === DT_DIR);
    } finally {
      fs.closeSync(fd);
    }
    sys.unlinkAt(up, name, true);
  }

  /** A name of a file goes: one link fewer, for lower hard links too. */
  private countUnlink(inode: Inode, st?: Stat): void {
    if (inode.isDir) return;
    let group = this.groups.get(inode.number);
    if (group === undefined && inode.layer > 0) {
      st ??= this.tree.stat(inode);
      if (st.nlink > 1) {
        group = { index: undefined, nlink: st.nlink };
        this.groups.set(inode.number, group);
      }
    }
    if (group !== undefined) group.nlink--;
  }

  // Copy-up and the upper layer

  /**
   * Does `act`, an operation that may copy up: at once, or, when it must
   * wait for a big file's data to be copied (CopyPending), from the start
   * again once it is: whatever it saw may have changed meanwhile, and what
   * it did before asking for the copy (parents copied up, other files of a
   * tree) is found done. Requests asking for the same file's copy meanwhile
   * wait for that one copy; the file's reads go to its lower copy until then.
   */
  private retrying<T>(act: () => T): Answer<T> {
    try {
      return act();
    } catch (err) {
      if (!(err instanceof CopyPending)) throw err;
      return err.done.then(() => {
        try {
          if (this.closed) fail(E.ENOTCONN);
          this.beginRequest();
          return this.retrying(act);
        } finally {
          err.unclaimed();
        }
      });
    }
  }

  /** Ensures the inode's file is in the upper layer (parents first). */
  private copyUp(inode: Inode): void {
    this.writable();
    if (inode.layer === 0 || inode.index !== undefined) return;
    if (inode.isDir) return void this.upperDir(inode);
    // A lower file whose names are all gone: nowhere to copy it to.
    const parent = inode.unlinked ? undefined : inode.parent;
    this.copyUpName(parent ?? fail(E.ENOENT), inode.name, inode);
  }

  /** Directory `dir`'s upper copy (made, parents first, if it has none yet). */
  private upperDir(dir: Inode): number {
    this.writable();
    if (dir.dirLayers[0] === 0) return this.tree.dirFd(dir, 0);
    const parent = dir.parent ?? fail(E.ENOENT);
    const up = this.upperDir(parent);
    const src = this.tree.dirFd(dir, dir.layer);
    this.keepingTimes(up, () => copyEntry({ dirfd: src, name: '' }, fstat(src), { dirfd: up, name: dir.name }, this.tree.work!));
    // Counted as what removing it gives back: small, and never refused (a copy-up beneath it was checked).
    if (this.space !== undefined) this.space.add((statAt(up, dir.name)?.blocks ?? 0) * 512);
    dir.dirLayers = [0, ...dir.dirLayers];
    dir.layer = 0;
    this.aliasUpper(dir, up, dir.name);
    return this.tree.dirFd(dir, 0);
  }

  /**
   * Ensures name `name` of file `inode` in `dir` is in the upper layer. Every
   * name of a lower hard link becomes a link to one copy, kept in the work
   * directory's index (as overlayfs's index=on): no rename or unlink of a
   * name can take it away from the others.
   */
  private copyUpName(dir: Inode, name: Buffer, inode: Inode): void {
    const st = this.tree.stat(inode);
    // Before anything changes (upperDir copies up the parent directories): the one check of this copy-up, to its index or not.
    if (this.space !== undefined && inode.layer > 0 && inode.index === undefined && !inode.isDir) this.space.check(st.blocks * 512);
    const up = this.upperDir(dir);
    const there = probe(up, name);
    if (there !== undefined && there !== 'whiteout') return;
    this.keepingTimes(up, () => {
      if (inode.index === undefined && inode.layer > 0 && st.nlink > 1) this.toIndex(inode, st);
      if (inode.index !== undefined) {
        const fd = this.tree.openPath(inode);
        try {
          sys.linkAt(fd, up, name);
        } finally {
          fs.closeSync(fd);
        }
        return;
      }
      this.copier!.copy(inode.number, this.tree.place(inode), st, { dirfd: up, name });
      // What the copy takes, which removing it gives back (the lower file's blocks may differ).
      if (this.space !== undefined) this.space.add((statAt(up, name)?.blocks ?? st.blocks) * 512);
      inode.layer = 0;
      this.aliasUpper(inode, up, name);
    });
  }

  /** A lower hard link's one copy, in the work directory's index. */
  private toIndex(inode: Inode, st: Stat): void {
    const index = Buffer.from(`${st.dev}-${st.ino}`);
    const dir = this.tree.indexDir();
    if (statAt(dir, index) === undefined) {
      this.copier!.copy(inode.number, this.tree.place(inode), st, { dirfd: dir, name: index });
      if (this.space !== undefined) this.space.add((statAt(dir, index)?.blocks ?? st.blocks) * 512);
    }
    let group = this.groups.get(inode.number);
    if (group === undefined) {
      group = { index: undefined, nlink: st.nlink };
      this.groups.set(inode.number, group);
    }
    group.index = index;
    inode.index = index;
    inode.layer = 0;
    this.aliasUpper(inode, dir, index);
  }

  /**
   * A lower name of a hard link whose other name was copied up must show
   * the copy: it is linked into the upper layer on first sight.
   */
  private materialize(dir: Inode, name: Buffer, inode: Inode, layer: number): void {
    if (layer === 0 || inode.isDir || inode.index === undefined || this.frozen || this.readOnly) return;
    this.copyUpName(dir, name, inode);
  }

  /** Copies up a directory and everything visible below it. */
  private copyUpTree(dir: Inode): void {
    this.upperDir(dir);
    // Held while its entries are copied: releasing the last of them must not release it too.
    this.tree.hold(dir, () => {
      for (const e of this.tree.readdir(dir)) {
        const found = this.find(dir, e.name);
        if (found === undefined) continue;
        // Released however the copy ends: one waiting for a big file's data is asked again (see retrying).
        try {
          if (found.inode.isDir) this.copyUpTree(found.inode);
          else this.copyUpName(dir, e.name, found.inode);
        } finally {
          this.tree.release(found.inode);
        }
      }
    });
  }

  /** The copy of `inode` at `name` in `dirfd` keeps the inode's number. */
  private aliasUpper(inode: Inode, dirfd: number, name: Buffer): void {
    const st = statAt(dirfd, name) ?? fail(E.ENOENT);
    this.tree.numbers.alias(st.dev, st.ino, inode.number);
  }

  /** Copying up is not a change of the parent: its times are kept, as overlayfs does. */
  private keepingTimes(dirfd: number, fn: () => void): void {
    const st = fstat(dirfd);
    fn();
    setTimes(dirfd, st);
  }

  /** Readies the upper directory for a new entry `name` in `parent`: parents copied up, any whiteout removed. */
  private makeRoom(parent: number, name: Buffer): { dir: Inode; up: number; overWhiteout: boolean } {
    this.writable();
    if (isReservedName(name)) fail(E.EINVAL);
    if (name.length > NAME_MAX) fail(E.ENAMETOOLONG);
    const dir = this.tree.inode(parent);
    if (!dir.isDir) fail(E.ENOTDIR);
    const up = this.upperDir(dir);
    const overWhiteout = this.format!.removeWhiteout(up, name);
    return { dir, up, overWhiteout };
  }

  /** The entry just made at `name` in upper directory `up`: the caller's, then known. */
  private made(req: Request, dir: Inode, up: number, name: Buffer, isDirectory: boolean, then?: () => void): Entry {
    try {
      this.giveToCaller(up, name, req);
      then?.();
    } catch (err) {
      sys.unlinkAt(up, name, isDirectory);
      throw err;
    }
    const st = statAt(up, name) ?? fail(E.ENOENT);
    this.space?.add(st.blocks * 512);
    return this.entry(this.tree.adopt(dir, name, 0, st, isDirectory ? [0] : []), st);
  }

  /** A new entry belongs to whoever made it; its group is the directory's in a set-group-ID one. */
  private giveToCaller(up: number, name: Buffer, req: Request): void {
    if (!this.asRoot) return;
    const uid = this.uids.stored(req.uid) ?? fail(E.EINVAL);
    const callerGid = this.gids.stored(req.gid) ?? fail(E.EINVAL);
    // Made by this daemon as root, the entry is root's already, with the
    // directory's group in a set-group-ID one.
    if (uid === 0 && callerGid === 0) return;
    const parent = fstat(up);
    const gid = (parent.mode & S_ISGID) !== 0 ? parent.gid : callerGid;
    const st = statAt(up, name) ?? fail(E.ENOENT);
    if (st.uid !== uid || st.gid !== gid) sys.chownAt(up, name, uid, gid);
  }

  private truncate(pathFd: number, set: SetAttr, req: Request): void {
    const fd = set.fh !== undefined && this.files.has(set.fh) ? set.fh : sys.openFile(pathFd, '', C.O_WRONLY);
    try {
      const before = this.space === undefined ? undefined : fstat(fd).blocks;
      fs.ftruncateSync(fd, set.size);
      if (before !== undefined) this.space!.add((fstat(fd).blocks - before) * 512);
      if (set.killSuidgid) this.killSetIds(fd, req);
    } finally {
      if (fd !== set.fh) fs.closeSync(fd);
    }
  }

  /**
   * The set-user-ID bit goes, and the set-group-ID bit of a file that is
   * group-executable or not of the caller's group, as on any Linux file
   * system (the session does the same for writes).
   */
  private killSetIds(fd: number, req: Request): void {
    const st = fstat(fd);
    let kill = st.mode & S_ISUID;
    if ((st.mode & S_ISGID) !== 0 && ((st.mode & S_IXGRP) !== 0 || st.gid !== this.gids.stored(req.gid))) kill |= S_ISGID;
    if (kill !== 0) sys.chmodFd(fd, st.mode & 0o7777 & ~kill);
  }

  private writable(): void {
    if (!this.tree.writable || this.frozen) fail(E.EROFS);
  }

  // Plumbing

  /**
   * What `name` in `dir` stands for (see Tree.lookup). A file of a copied-up
   * lower hard link is its copy in the index, however often the kernel
   * forgot it meanwhile. `st`: the node's attributes as the lookup saw them,
   * where the node is that very entry (not a hard link's copy, nor a file
   * kept by a descriptor); undefined otherwise.
   */
  private find(dir: Inode, name: Buffer): { inode: Inode; layer: number; st: Stat | undefined } | undefined {
    const found = this.tree.lookup(dir, name);
    if (found === undefined) return undefined;
    const { inode, layer } = found;
    const index = inode.isDir ? undefined : this.groups.get(inode.number)?.index;
    if (index !== undefined && inode.index === undefined) {
      inode.index = index;
      inode.layer = 0;
    }
    return { inode, layer, st: this.tree.isAt(inode, dir, name, layer) ? found.st : undefined };
  }

  /** Runs `fn` with an O_PATH descriptor of the inode's file. */
  private withPath<T>(inode: Inode, fn: (fd: number) => T): T {
    const at = this.tree.place(inode);
    if (at.name === '') return fn(at.dirfd);
    const fd = sys.openAt(at.dirfd, at.name, O_PATH, 0);
    try {
      return fn(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** An answer with an entry: the kernel counts it as one lookup. */
  private entry(inode: Inode, st = this.tree.stat(inode)): Entry {
    this.tree.counted(inode);
    return { ino: inode.ino, attr: this.attr(inode, st), entryTimeout: this.cache, attrTimeout: this.attrTimeout(st) };
  }

  private attrTimeout(st: Stat): number {
    return this.tree.writable && !isDir(st) && (st.mode & (S_ISUID | S_ISGID)) !== 0 ? 0 : this.cache;
  }

  private attr(inode: Inode, st: Stat): Attr {
    const group = inode.isDir ? undefined : this.groups.get(inode.number);
    const unlinked = inode.unlinked && inode.pinned === undefined;
    return {
      ino: this.tree.numbers.shown(inode.number),
      size: st.size,
      blocks: st.blocks,
      atimeNs: st.atimeNs,
      mtimeNs: st.mtimeNs,
      ctimeNs: st.ctimeNs,
      mode: st.mode,
      nlink: inode.isDir && this.staticNlink ? 1 : group?.nlink ?? (unlinked ? 0 : st.nlink),
      uid: this.squashUid ?? this.uids.shown(st.uid),
      gid: this.squashGid ?? this.gids.shown(st.gid),
      rdev: st.rdev,
      blksize: st.blksize,
    };
  }
}

/** UTIME_* arguments for a time to set (UTIME_OMIT: unchanged). */
function timeArgs(t: SetTime | undefined): [number, number] {
  if (t === undefined) return [0, sys.UTIME_OMIT];
  if (t === 'now') return [0, sys.UTIME_NOW];
  const nsec = ((t % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n;
  return [Number((t - nsec) / 1_000_000_000n), Number(nsec)];
}

/** What an upper layer held to a size holds already; one that cannot be measured is no mount. */
function upperUsage(upperFd: number): number {
  try {
    return diskUsageOf(upperFd).size;
  } catch (err) {
    throw new Error(`max_size: the upper layer cannot be measured: ${messageOf(err)}`);
  }
}
