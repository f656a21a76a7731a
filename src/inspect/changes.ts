import * as fs from 'node:fs';
import { O_PATH, readdirFd, sys } from '../native/sys';
import { classify, isOpaque } from '../overlay/format';
import { MergedTree } from './tree';

/** A path of a layer as `docker diff` reports it: Added, Changed or Deleted against the layers below. */
export interface Change {
  readonly kind: 'A' | 'C' | 'D';
  readonly path: Buffer;
}

const child = (at: Buffer, name: Buffer): Buffer => Buffer.concat([at.length === 1 ? Buffer.alloc(0) : at, Buffer.from('/'), name]);

/**
 * What layer directory `own` changes in the tree of the layers `below` it
 * (topmost first), in path order: entries it adds or replaces, whiteouts
 * as deletions, and for an opaque directory every name below it hides.
 * The layer is walked by descriptors, never following what it holds.
 */
export function layerChanges(own: string, below: readonly string[]): Change[] {
  const lower = below.length === 0 ? undefined : new MergedTree(below, 'below');
  const lowerAt = (p: Buffer): ReturnType<MergedTree['resolve']> | undefined => {
    try {
      return lower?.resolve(p, false);
    } catch {
      return undefined;
    }
  };
  const walk = (dirfd: number, at: Buffer): Change[] => {
    const items: { change: Change; subdir?: Buffer }[] = [];
    const named = new Set<string>();
    for (const e of readdirFd(dirfd)) {
      const entry = classify(dirfd, e);
      if (entry === undefined) continue;
      named.add(entry.name.toString('latin1'));
      const p = child(at, entry.name);
      if (entry.kind === 'whiteout') items.push({ change: { kind: 'D', path: p } });
      else items.push({ change: { kind: lowerAt(p) !== undefined ? 'C' : 'A', path: p }, ...(entry.kind === 'dir' ? { subdir: Buffer.from(entry.name) } : {}) });
    }
    // An opaque directory hides every name the layers below hold there.
    const hidden = lower !== undefined && isOpaque(dirfd) ? lowerAt(at) : undefined;
    if (hidden?.inode.isDir === true) {
      for (const name of lower!.list(hidden)) if (!named.has(name.toString('latin1'))) items.push({ change: { kind: 'D', path: child(at, name) } });
    }
    return items
      .sort((a, b) => Buffer.compare(a.change.path, b.change.path))
      .flatMap((i) => {
        if (i.subdir === undefined) return [i.change];
        const fd = sys.openAt(dirfd, i.subdir, O_PATH | fs.constants.O_DIRECTORY, 0);
        try {
          return [i.change, ...walk(fd, i.change.path)];
        } finally {
          fs.closeSync(fd);
        }
      });
  };
  const root = fs.openSync(own, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    return walk(root, Buffer.from('/'));
  } finally {
    fs.closeSync(root);
    lower?.close();
  }
}
