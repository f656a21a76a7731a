import * as fs from 'node:fs';
import * as path from 'node:path';
import { isOpaqueDir } from '../layerfs/format';
import { childPath, classify, Resolver } from '../layerfs/resolver';

/** A path of a layer as `docker diff` reports it: Added, Changed or Deleted against the layers below. */
export interface Change {
  readonly kind: 'A' | 'C' | 'D';
  readonly path: string;
}

/**
 * What layer directory `own` changes in the tree of the layers `below` it
 * (topmost first), in path order: entries it adds or replaces, whiteouts
 * as deletions, and for an opaque directory every name below it hides.
 */
export function layerChanges(own: string, below: readonly string[]): Change[] {
  const lower = below.length === 0 ? undefined : new Resolver(below);
  const existsBelow = (p: string): boolean => lower?.lookup(p) !== undefined;
  const byPath = (a: { change: Change }, b: { change: Change }): number => (a.change.path < b.change.path ? -1 : a.change.path > b.change.path ? 1 : 0);
  const walk = (dir: string, at: string): Change[] => {
    const items: { change: Change; subdir?: string }[] = [];
    const named = new Set<string>();
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const entry = classify(dir, e);
      if (entry === undefined) continue;
      named.add(entry.name);
      const p = childPath(at, entry.name);
      if (entry.kind === 'whiteout') items.push({ change: { kind: 'D', path: p } });
      else items.push({ change: { kind: existsBelow(p) ? 'C' : 'A', path: p }, ...(entry.kind === 'dir' ? { subdir: path.join(dir, e.name) } : {}) });
    }
    // An opaque directory hides every name the layers below hold there.
    const hidden = lower !== undefined && isOpaqueDir(dir) ? lower.lookup(at) : undefined;
    if (hidden?.isDir) for (const name of lower!.readdir(hidden, at)) if (!named.has(name)) items.push({ change: { kind: 'D', path: childPath(at, name) } });
    return items.sort(byPath).flatMap((i) => [i.change, ...(i.subdir === undefined ? [] : walk(i.subdir, i.change.path))]);
  };
  return walk(own, '/');
}
