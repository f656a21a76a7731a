import type { FuseOperations, FuseStat, FuseTime } from 'fuse-native';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { sys } from '../native/sys';
import { answering, fail } from './callbacks';
import { copyEntry, setTimes } from './copyup';
import { major, minor } from './devices';
import { isPrivateXattr, NAME_MAX, upperFormat, WHITEOUT_PREFIX, type UpperFormat } from './format';
import { IDENTITY, type IdMap } from './idmap';
import { InodeTable, inodeKey } from './inodes';
import { childPath, parentOf, Resolver, type Node } from './resolver';

const E = os.constants.errno;
const WRITE_FLAGS = fs.constants.O_WRONLY | fs.constants.O_RDWR | fs.constants.O_TRUNC | fs.constants.O_APPEND;
const NO_CHANGE = 0xffffffff; // chown's "leave as is" (-1 as an unsigned 32-bit number)
const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_IXGRP = 0o010;

export interface LayerFSOptions {
  /** Show every file as owned by root (fuse-overlayfs's squash_to_root). */
  readonly squashToRoot?: boolean;
  /** Ids as shown through the mount ↔ as stored in the layers (uidmapping/gidmapping). */
  readonly uids?: IdMap;
  readonly gids?: IdMap;
  /**
   * Who made the request being handled, and whether it asks that set-ID
   * bits go (a truncate or O_TRUNC open by a caller without CAP_FSETID).
   */
  readonly caller?: () => Caller | undefined;
}

export interface Caller {
  readonly uid: number;
  readonly gid: number;
  readonly killSuidgid?: boolean;
}

/** What fuse-overlayfs takes: read-only layers (topmost first), and where writes go. */
export interface LayerStack {
  readonly lowers: readonly string[];
  readonly upper?: string;
  readonly work?: string;
}

/**
 * The merged file system of a layer stack, as overlayfs presents it: reads
 * resolve through the layers; every change lands in the upper layer, after
 * copying the entry (and its parent directories) up from below; deletions
 * of what the layers below hold leave whiteouts. Without an upper layer,
 * or once frozen, every change is EROFS.
 *
 * Every method is synchronous on layer directories, never on the mount.
 * Handles of open files are their descriptors in the upper or a lower
 * layer: reads and writes go straight to them (fuse-native's fdHandles).
 */
export class LayerFS {
  private readonly merged: Resolver;
  private readonly upper: string | undefined;
  private readonly work: string | undefined;
  private readonly format: UpperFormat | undefined;
  private readonly inodes: InodeTable;
  private readonly files = new Set<number>(); // descriptors handed out as handles
  /**
   * Files unlinked while open. libfuse keeps them reachable under a
   * `.fuse_hiddenNNN` name it renames them to; they are kept in the work
   * directory instead, so that the upper layer never holds them.
   */
  private readonly hidden = new Map<string, string>();
  /**
   * Lower inodes with several names, once one name was copied up or
   * removed: the upper file all names now share ('' while none is up), and
   * the link count the merged tree shows
   * (as overlayfs's index=on keeps it: the lower count, plus links made,
   * minus names removed, however many names were brought up so far).
   */
  private readonly linkGroups = new Map<string, { upper: string; nlink: number }>();
  /** Upper inodes of those groups → the lower inode's key. */
  private readonly upperOfGroup = new Map<string, string>();
  private frozen = false;
  private readonly asRoot = process.getuid?.() === 0;
  private readonly squashToRoot: boolean;
  private readonly uids: IdMap;
  private readonly gids: IdMap;
  private readonly caller: () => Caller | undefined;

  /**
   * `caller` tells who made the request being handled: what it creates is
   * theirs, as on any file system (only a daemon running as root can give
   * it away; a rootless one owns all it makes).
   */
  constructor(stack: LayerStack, opts: LayerFSOptions = {}) {
    this.squashToRoot = opts.squashToRoot === true;
    this.uids = opts.uids ?? IDENTITY;
    this.gids = opts.gids ?? IDENTITY;
    this.caller = opts.caller ?? (() => undefined);
    if (stack.upper !== undefined && stack.work === undefined) throw new Error('an upper layer needs a work directory');
    this.upper = stack.upper;
    this.work = stack.work;
    this.merged = stack.upper === undefined ? new Resolver(stack.lowers) : new Resolver([stack.upper, ...stack.lowers], true);
    this.format = this.work === undefined ? undefined : upperFormat(this.work);
    this.inodes = new InodeTable(fs.lstatSync(this.merged.layers[0]!, { bigint: true }));
  }

  get readOnly(): boolean {
    return this.upper === undefined;
  }

  /**
   * From now on every change but a write is EROFS (writes, which never reach
   * here, are refused by fuse-native); changes in flight have completed
   * (calls are synchronous).
   */
  freeze(): void {
    this.frozen = true;
  }

  operations(): FuseOperations {
    const ops: FuseOperations = {
      getattr: answering((p: string) => this.getattr(p)),
      fgetattr: answering((p: string, handle: number) => this.fgetattr(p, handle)),
      readdir: answering((p: string) => this.readdir(p)),
      readlink: answering((p: string) => fs.readlinkSync(this.node(p).real)),
      open: answering((p: string, flags: number) => this.open(p, flags)),
      release: answering((_p: string, handle: number) => this.release(handle)),
      statfs: answering((_p: string) => this.statfs()),
      getxattr: answering((p: string, name: string, _position: number) => this.getxattr(p, name)),
      listxattr: answering((p: string) => sys.listxattr(this.node(p).real).filter((n) => !isPrivateXattr(n))),
    };
    if (this.readOnly) return ops;
    return {
      ...ops,
      create: answering((p: string, mode: number) => this.create(p, mode)),
      fsync: answering((_p: string, _datasync: boolean, handle: number) => this.fsync(handle)),
      truncate: answering((p: string, size: number) => this.truncate(p, size)),
      ftruncate: answering((_p: string, handle: number, size: number) => this.ftruncate(handle, size)),
      chmod: answering((p: string, mode: number) => fs.chmodSync(this.copyUp(p).real, mode)),
      chown: answering((p: string, uid: number, gid: number) => this.chown(p, uid, gid)),
      utimens: answering((p: string, atime: FuseTime, mtime: FuseTime) => this.utimens(p, atime, mtime)),
      mkdir: answering((p: string, mode: number) => this.mkdir(p, mode)),
      mknod: answering((p: string, mode: number, dev: number) => this.mknod(p, mode, dev)),
      symlink: answering((target: string, p: string) => this.symlink(target, p)),
      link: answering((src: string, dst: string) => this.link(src, dst)),
      unlink: answering((p: string) => this.remove(p, false)),
      rmdir: answering((p: string) => this.remove(p, true)),
      rename: answering((src: string, dst: string) => this.rename(src, dst)),
      setxattr: answering((p: string, name: string, value: Buffer, _pos: number, flags: number) => this.setxattr(p, name, value, flags)),
      removexattr: answering((p: string, name: string) => this.removexattr(p, name)),
    };
  }

  // Reading

  private getattr(p: string): FuseStat {
    const attr = this.attr(this.lstat(this.node(p)));
    // A hidden file's only names are gone; the one in the work directory does not count.
    return this.hidden.has(p) ? { ...attr, nlink: BigInt(attr.nlink ?? 1) - 1n } : attr;
  }

  private fgetattr(p: string, handle: number): FuseStat {
    if (!this.files.has(handle) || this.hidden.has(p)) return this.getattr(p);
    return this.attr(fs.fstatSync(handle, { bigint: true }));
  }

  private readdir(p: string): string[] {
    const dir = this.node(p);
    if (!dir.isDir) fail(E.ENOTDIR);
    return ['.', '..', ...this.merged.readdir(dir, p)];
  }

  private open(p: string, flags: number): number {
    const writing = (flags & WRITE_FLAGS) !== 0;
    if (writing) this.writable();
    const node = writing ? this.copyUp(p) : this.node(p);
    const fd = fs.openSync(node.real, flags & ~(fs.constants.O_CREAT | fs.constants.O_EXCL));
    if ((flags & fs.constants.O_TRUNC) !== 0) this.killSetIds(fd);
    return this.remember(fd);
  }

  private release(handle: number): void {
    if (this.files.delete(handle)) fs.closeSync(handle);
  }

  private statfs(): { bsize: number; frsize: number; blocks: number; bfree: number; bavail: number; files: number; ffree: number; favail: number; fsid: number; flag: number; namemax: number } {
    const s = fs.statfsSync(this.merged.layers[0]!);
    return { bsize: s.bsize, frsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, favail: s.ffree, fsid: 0, flag: 0, namemax: NAME_MAX };
  }

  /** undefined: no such attribute (ENODATA), answered without an exception. */
  private getxattr(p: string, name: string): Buffer | undefined {
    return isPrivateXattr(name) ? undefined : sys.getxattr(this.node(p).real, name);
  }

  // Changing

  private create(p: string, mode: number): number {
    const real = this.makeRoom(p);
    const fd = fs.openSync(real, fs.constants.O_CREAT | fs.constants.O_RDWR, mode);
    this.merged.set(p, { layer: 0, real, isDir: false, dirLayers: [] });
    try {
      this.giveToCaller(real);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    return this.remember(fd);
  }

  private fsync(handle: number): void {
    if (!this.files.has(handle)) fail(E.EBADF);
    fs.fsyncSync(handle);
  }

  private truncate(p: string, size: number): void {
    const real = this.copyUp(p).real;
    fs.truncateSync(real, size);
    this.killSetIds(real);
  }

  private ftruncate(handle: number, size: number): void {
    this.writable();
    if (!this.files.has(handle)) fail(E.EBADF);
    fs.ftruncateSync(handle, size);
    this.killSetIds(handle);
  }

  /**
   * When the request asks for it (its caller lacks CAP_FSETID), the
   * set-user-ID bit goes, and the set-group-ID bit of a file that is
   * group-executable or not of the caller's group, as on any Linux file
   * system. (fuse-native does the same for writes.)
   */
  private killSetIds(file: number | string): void {
    const who = this.caller();
    if (who?.killSuidgid !== true) return;
    const st = typeof file === 'number' ? fs.fstatSync(file) : fs.statSync(file);
    let kill = st.mode & S_ISUID;
    if ((st.mode & S_ISGID) !== 0 && ((st.mode & S_IXGRP) !== 0 || st.gid !== this.gids.stored(who.gid))) kill |= S_ISGID;
    if (kill === 0) return;
    if (typeof file === 'number') fs.fchmodSync(file, st.mode & 0o7777 & ~kill);
    else fs.chmodSync(file, st.mode & 0o7777 & ~kill);
  }

  private chown(p: string, uid: number, gid: number): void {
    const toStored = (map: IdMap, id: number, current: bigint): number => (id === NO_CHANGE ? Number(current) : map.stored(id) ?? fail(E.EINVAL));
    const node = this.copyUp(p);
    const st = this.lstat(node);
    fs.lchownSync(node.real, toStored(this.uids, uid, st.uid), toStored(this.gids, gid, st.gid));
  }

  private utimens(p: string, atime: FuseTime, mtime: FuseTime): void {
    sys.utimens(this.copyUp(p).real, atime.sec, atime.nsec, mtime.sec, mtime.nsec);
  }

  private mkdir(p: string, mode: number): void {
    this.writable();
    refuseReservedName(p);
    const real = this.upperPathOf(p);
    this.copyUp(parentOf(p));
    const overWhiteout = this.format!.removeWhiteout(path.dirname(real), path.basename(real));
    fs.mkdirSync(real, { mode });
    this.giveToCaller(real);
    // A directory made where the layers below had something must not show it.
    if (overWhiteout) this.format!.markOpaque(real);
    this.merged.set(p, { layer: 0, real, isDir: true, dirLayers: [0] });
  }

  private mknod(p: string, mode: number, dev: number): void {
    // A character device 0/0 is a whiteout in the layer format.
    if ((mode & fs.constants.S_IFMT) === fs.constants.S_IFCHR && dev === 0) fail(E.EPERM);
    const real = this.makeRoom(p);
    sys.mknod(real, mode, major(dev), minor(dev));
    this.giveToCaller(real);
    this.merged.set(p, { layer: 0, real, isDir: false, dirLayers: [] });
  }

  private symlink(target: string, p: string): void {
    const real = this.makeRoom(p);
    fs.symlinkSync(target, real);
    this.giveToCaller(real);
    this.merged.set(p, { layer: 0, real, isDir: false, dirLayers: [] });
  }

  private link(src: string, dst: string): void {
    const from = this.copyUp(src);
    const real = this.makeRoom(dst);
    fs.linkSync(from.real, real);
    const group = this.groupOf(this.lstat(from));
    if (group !== undefined) group.nlink++;
    this.merged.set(dst, { layer: 0, real, isDir: false, dirLayers: [] });
  }

  /** unlink and rmdir: drop the upper copy, and hide what the layers below hold. */
  private remove(p: string, dir: boolean): void {
    this.writable();
    const hiddenAt = this.hidden.get(p);
    if (hiddenAt !== undefined) {
      this.hidden.delete(p);
      if (hiddenAt.startsWith(this.work! + path.sep)) fs.rmSync(hiddenAt, { force: true });
      return;
    }
    const node = this.node(p);
    if (dir && !node.isDir) fail(E.ENOTDIR);
    if (!dir && node.isDir) fail(E.EISDIR);
    if (dir && this.merged.readdir(node, p).length > 0) fail(E.ENOTEMPTY);
    const hideBelow = this.visibleBelow(p);
    if (!dir) this.countUnlink(node);
    if (node.layer === 0) {
      // An upper directory that looks empty may still hold whiteouts.
      if (dir) fs.rmSync(node.real, { recursive: true });
      else fs.unlinkSync(node.real);
    }
    if (hideBelow) {
      const parent = this.copyUp(parentOf(p));
      this.format!.whiteout(parent.real, path.posix.basename(p));
    }
    this.merged.forget(p, dir);
    this.merged.set(p, undefined);
  }

  private rename(src: string, dst: string): void {
    this.writable();
    refuseReservedName(dst);
    if (src === dst) return;
    const from = this.node(src);
    if (path.posix.basename(dst).startsWith('.fuse_hidden') && this.isOpen(from)) return this.hide(src, dst);
    const to = this.merged.lookup(dst);
    // Two names of one file: rename(2) does nothing.
    if (to !== undefined && !from.isDir && !to.isDir && inodeKey(this.lstat(from)) === inodeKey(this.lstat(to))) return;
    if (to !== undefined) {
      if (from.isDir && !to.isDir) fail(E.ENOTDIR);
      if (!from.isDir && to.isDir) fail(E.EISDIR);
      if (to.isDir && this.merged.readdir(to, dst).length > 0) fail(E.ENOTEMPTY);
    }
    const hideSrc = this.visibleBelow(src);
    const dstHadBelow = this.visibleBelow(dst);
    // A file replaced by the rename loses a name.
    if (to !== undefined && !to.isDir) this.countUnlink(to);
    // The upper copy must hold the whole merged content before it moves.
    const moving = from.isDir ? this.copyUpTree(src) : this.copyUp(src);
    const real = this.makeRoom(dst);
    if (to?.isDir === true && to.layer === 0) fs.rmSync(to.real, { recursive: true });
    fs.renameSync(moving.real, real);
    // What the layers below hold at the destination must not show through.
    if (from.isDir && dstHadBelow) this.format!.markOpaque(real);
    if (hideSrc) this.format!.whiteout(path.dirname(moving.real), path.posix.basename(src));
    this.merged.forget(src, true);
    this.merged.forget(dst, true);
    this.merged.set(src, undefined);
  }

  /** Unlink of an open file: it leaves the merged tree but stays reachable as `as`. */
  private hide(p: string, as: string): void {
    const node = this.node(p);
    if (node.isDir) fail(E.EISDIR);
    const hideBelow = this.visibleBelow(p);
    let real = node.real;
    if (node.layer === 0) {
      real = path.join(this.work!, `.unlinked-${path.posix.basename(as)}`);
      fs.renameSync(node.real, real);
    }
    if (hideBelow) this.format!.whiteout(this.copyUp(parentOf(p)).real, path.posix.basename(p));
    this.hidden.set(as, real);
    this.merged.set(p, undefined);
  }

  private setxattr(p: string, name: string, value: Buffer, flags: number): void {
    if (isPrivateXattr(name)) fail(E.EOPNOTSUPP);
    sys.setxattr(this.copyUp(p).real, name, value, flags);
  }

  private removexattr(p: string, name: string): void {
    if (isPrivateXattr(name)) fail(E.EOPNOTSUPP);
    sys.removexattr(this.copyUp(p).real, name);
  }

  // Copy-up and the upper layer

  /** Ensures `p` is in the upper layer (parents first) and returns it there. */
  private copyUp(p: string): Node {
    this.writable();
    const node = this.found(p);
    if (node.layer === 0) return node;
    const parent = this.copyUp(parentOf(p));
    const parentSt = this.lstat(parent);
    const st = this.lstat(node);
    const real = this.upperPathOf(p);
    const linkKey = !node.isDir && st.nlink > 1n ? inodeKey(st) : undefined;
    const group = linkKey === undefined ? undefined : this.linkGroups.get(linkKey);
    if (linkKey === undefined) {
      copyEntry(node.real, st, real, this.work!);
    } else {
      // Every name of a lower hard link becomes a link to one copy, kept
      // under the inode's key in the work directory (as overlayfs's index):
      // no rename or unlink of a name can take it away from the others.
      const index = path.join(this.work!, 'index', linkKey.replace(':', '-'));
      if (group === undefined || group.upper === '') {
        fs.mkdirSync(path.dirname(index), { recursive: true, mode: 0o700 });
        copyEntry(node.real, st, index, this.work!);
        this.linkGroups.set(linkKey, { upper: index, nlink: group?.nlink ?? Number(st.nlink) });
        this.upperOfGroup.set(inodeKey(fs.lstatSync(index, { bigint: true })), linkKey);
      }
      fs.linkSync(index, real);
    }
    // Copying up is not a change of the parent: keep its times, as overlayfs does.
    setTimes(parent.real, parentSt);
    this.inodes.alias(fs.lstatSync(real, { bigint: true }), st);
    const up: Node = { layer: 0, real, isDir: node.isDir, dirLayers: node.isDir ? [0, ...node.dirLayers] : [] };
    this.merged.set(p, up);
    return up;
  }

  /** Copies up a directory and everything visible below it. */
  private copyUpTree(p: string): Node {
    const node = this.copyUp(p);
    for (const name of this.merged.readdir(node, p)) {
      const child = childPath(p, name);
      if (this.node(child).isDir) this.copyUpTree(child);
      else this.copyUp(child);
    }
    return this.node(p);
  }

  /** A new entry belongs to whoever made it; its group is the directory's in a set-group-ID one. */
  private giveToCaller(real: string): void {
    const who = this.caller();
    if (who === undefined || !this.asRoot) return;
    const uid = this.uids.stored(who.uid) ?? fail(E.EINVAL);
    const callerGid = this.gids.stored(who.gid) ?? fail(E.EINVAL);
    // Made by this daemon as root, the entry is root's already, with the
    // directory's group in a set-group-ID one, as below.
    if (uid === 0 && callerGid === 0) return;
    const parent = fs.statSync(path.dirname(real));
    const gid = (parent.mode & S_ISGID) !== 0 ? parent.gid : callerGid;
    const st = fs.lstatSync(real);
    if (st.uid !== uid || st.gid !== gid) fs.lchownSync(real, uid, gid);
  }

  /** Whether some open handle is this node's file. */
  private isOpen(node: Node): boolean {
    const key = inodeKey(this.lstat(node));
    for (const fd of this.files) if (inodeKey(fs.fstatSync(fd, { bigint: true })) === key) return true;
    return false;
  }

  /** Readies the upper path of a new entry `p`: parents copied up, any whiteout removed. */
  private makeRoom(p: string): string {
    this.writable();
    refuseReservedName(p);
    const real = this.upperPathOf(p);
    this.copyUp(parentOf(p));
    this.format!.removeWhiteout(path.dirname(real), path.basename(real));
    return real;
  }

  /** Whether the layers below the upper one show something at `p`. */
  private visibleBelow(p: string): boolean {
    const parent = this.merged.lookup(parentOf(p));
    if (parent === undefined) return false;
    for (const layer of parent.dirLayers) {
      if (layer === 0) continue;
      const entry = this.merged.entryIn(layer, p);
      if (entry !== undefined) return entry !== 'whiteout';
    }
    return false;
  }

  private upperPathOf(p: string): string {
    return p === '/' ? this.upper! : path.join(this.upper!, p);
  }

  private writable(): void {
    if (this.upper === undefined || this.frozen) fail(E.EROFS);
  }

  // Plumbing

  /** What `p` is, with other names of copied-up hard links brought up. */
  private node(p: string): Node {
    return this.materializeLink(p, this.found(p));
  }

  private found(p: string): Node {
    // libfuse passes an empty path for a node whose name is gone.
    if (p === '') fail(E.ENOENT);
    const hiddenAt = this.hidden.get(p);
    if (hiddenAt !== undefined) return { layer: hiddenAt.startsWith(this.work! + path.sep) ? 0 : 1, real: hiddenAt, isDir: false, dirLayers: [] };
    return this.merged.lookup(p) ?? fail(E.ENOENT);
  }

  /**
   * A name of a lower inode whose other name was copied up must show the
   * copy: it is linked into the upper layer on first sight.
   */
  private materializeLink(p: string, node: Node): Node {
    if (node.layer === 0 || node.isDir || this.linkGroups.size === 0 || this.frozen) return node;
    const st = this.lstat(node);
    if (st.nlink > 1n && (this.linkGroups.get(inodeKey(st))?.upper ?? '') !== '') return this.copyUp(p);
    return node;
  }

  private lstat(node: Node): fs.BigIntStats {
    return fs.lstatSync(node.real, { bigint: true, throwIfNoEntry: false }) ?? fail(E.ENOENT);
  }

  /** A name of a file goes: one link fewer, for lower hard links too. */
  private countUnlink(node: Node): void {
    const st = this.lstat(node);
    let group = this.groupOf(st);
    if (group === undefined && node.layer > 0 && st.nlink > 1n) {
      group = { upper: '', nlink: Number(st.nlink) };
      this.linkGroups.set(inodeKey(st), group);
    }
    if (group !== undefined) group.nlink--;
  }

  /** The link group of a file (by its lower or upper inode), if it has one. */
  private groupOf(st: fs.BigIntStats): { upper: string; nlink: number } | undefined {
    if (this.linkGroups.size === 0 || st.isDirectory()) return undefined;
    const key = inodeKey(st);
    return this.linkGroups.get(this.upperOfGroup.get(key) ?? key);
  }

  private attr(st: fs.BigIntStats): FuseStat {
    return {
      mode: st.mode,
      uid: this.squashToRoot ? 0 : this.uids.shown(Number(st.uid)),
      gid: this.squashToRoot ? 0 : this.gids.shown(Number(st.gid)),
      size: st.size,
      nlink: this.groupOf(st)?.nlink ?? st.nlink,
      ino: this.inodes.of(st),
      rdev: st.rdev,
      blksize: st.blksize,
      blocks: st.blocks,
      atimeNs: st.atimeNs,
      mtimeNs: st.mtimeNs,
      ctimeNs: st.ctimeNs,
    };
  }

  private remember(fd: number): number {
    this.files.add(fd);
    return fd;
  }
}

/** `.wh.` names belong to the layer format: fuse-overlayfs refuses them too. */
function refuseReservedName(p: string): void {
  if (path.posix.basename(p).startsWith(WHITEOUT_PREFIX)) fail(E.EINVAL);
}
