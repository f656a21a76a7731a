import * as fs from 'node:fs';
import { invalidArgument, notFound } from '../errors';
import type { Inode } from '../layerfs/inode';
import { LayerFS, type TreeOptions } from '../layerfs/layerfs';
import { Tree } from '../layerfs/tree';
import { showName } from '../names';
import { isFile, isSymlink, sys, type Stat } from '../native/sys';

/** Linux's limit on symlinks followed while resolving one path. */
const MAX_SYMLINKS = 40;
const SLASH = 0x2f;

/** A path's names, with the empty ones and `.` left out (`..` kept). */
export function pathComponents(p: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= p.length; i++) {
    if (i < p.length && p[i] !== SLASH) continue;
    const c = p.subarray(start, i);
    if (c.length > 0 && !(c.length === 1 && c[0] === 0x2e)) out.push(c);
    start = i + 1;
  }
  return out;
}

/** The last name of a path. */
export function basename(p: Buffer): Buffer {
  return p.subarray(p.lastIndexOf(SLASH) + 1);
}

const isDotDot = (c: Buffer): boolean => c.length === 2 && c[0] === 0x2e && c[1] === 0x2e;
const joined = (names: readonly Buffer[]): Buffer => Buffer.concat(names.flatMap((n) => [Buffer.from('/'), n]));

export interface Entry {
  /** Its path in the merged tree, symlinks resolved (`/` for the root). */
  readonly path: Buffer;
  readonly inode: Inode;
  readonly st: Stat;
}

/**
 * A snapshot's merged tree, read without mounting it. Paths resolve as if
 * the process were chrooted into the tree: `..` stops at its root, an
 * absolute symlink target starts from its root, and nothing on the host
 * outside the layers is ever looked at: each step is one name in one
 * directory descriptor of a layer (see src/layerfs/tree.ts), each symlink
 * on the way is read by snapfs and followed hop by hop, never by the
 * kernel.
 */
export class MergedTree {
  readonly fs: LayerFS;

  constructor(
    layers: readonly string[],
    private readonly label: string,
    opts: TreeOptions & { cacheSeconds?: number } = {},
  ) {
    this.fs = new LayerFS({ lowers: layers }, opts);
  }

  close(): void {
    this.fs.close();
  }

  get root(): Entry {
    const inode = this.fs.tree.root;
    return { path: Buffer.from('/'), inode, st: this.fs.tree.stat(inode) };
  }

  /** Resolves `p` (relative paths start at the root); `followLast` follows a final symlink too. */
  resolve(p: Buffer, followLast = true): Entry {
    Tree.begin();
    const tree = this.fs.tree;
    const todo = pathComponents(p);
    const done: { inode: Inode; name: Buffer }[] = [];
    let links = 0;
    for (;;) {
      const name = todo.shift();
      if (name === undefined) break;
      if (isDotDot(name)) {
        done.pop();
        continue;
      }
      const dir = done[done.length - 1]?.inode ?? tree.root;
      if (!dir.isDir) this.fail(p, 'not a directory', invalidArgument);
      const found = tree.lookup(dir, name) ?? this.fail(p, 'no such file or directory', notFound);
      const st = tree.stat(found.inode);
      if (isSymlink(st) && (todo.length > 0 || followLast)) {
        if (++links > MAX_SYMLINKS) this.fail(p, 'too many levels of symbolic links', invalidArgument);
        const target = this.readlink(found.inode);
        if (target[0] === SLASH) done.length = 0;
        todo.unshift(...pathComponents(target));
        continue;
      }
      done.push({ inode: found.inode, name });
    }
    const inode = done[done.length - 1]?.inode ?? tree.root;
    return { path: done.length === 0 ? Buffer.from('/') : joined(done.map((d) => d.name)), inode, st: tree.stat(inode) };
  }

  /** The names in merged directory `dir` (an entry from resolve), in byte order. */
  list(dir: Entry): Buffer[] {
    Tree.begin();
    if (!dir.inode.isDir) return [basename(dir.path)];
    return this.fs.names(dir.inode.ino).sort(Buffer.compare);
  }

  /** The entry `name` of directory `dir`, not following it. */
  child(dir: Entry, name: Buffer): Entry {
    return this.resolve(Buffer.concat([dir.path, Buffer.from('/'), name]), false);
  }

  readlink(inode: Inode): Buffer {
    Tree.begin();
    const at = this.fs.tree.place(inode);
    return sys.readlinkAt(at.dirfd, at.name);
  }

  /** The path of a file in the merged tree, by the names it was reached through. */
  pathOf(inode: Inode): Buffer {
    const names: Buffer[] = [];
    for (let i: Inode | undefined = inode; i !== undefined && i !== this.fs.tree.root; i = i.parent) names.unshift(i.name);
    return names.length === 0 ? Buffer.from('/') : joined(names);
  }

  /** A descriptor to read a regular file of the tree (the caller closes it). */
  openFile(e: Entry, p: Buffer): number {
    if (!isFile(e.st)) this.fail(p, 'not a regular file', invalidArgument);
    Tree.begin();
    const at = this.fs.tree.place(e.inode);
    return sys.openFile(at.dirfd, at.name, fs.constants.O_RDONLY);
  }

  private fail(p: Buffer, why: string, kind: (m: string) => Error): never {
    throw kind(`${this.label}: "${showName(p)}": ${why}`);
  }
}
