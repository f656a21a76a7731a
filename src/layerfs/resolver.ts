import * as fs from 'node:fs';
import * as path from 'node:path';
import { isOpaqueDir, isWhiteoutStat, OPAQUE_MARKER, WHITEOUT_PREFIX } from './format';

/** Where an entry of the merged tree lives. */
export interface Node {
  /** Index into the layer list (0 = topmost). */
  readonly layer: number;
  /** Its path in that layer. */
  readonly real: string;
  readonly isDir: boolean;
  /** Directories only: the layers whose copies of it are merged, top first. */
  readonly dirLayers: readonly number[];
}

/**
 * Resolves paths of the merged tree through a stack of layer directories
 * (topmost first), as overlayfs does: the first layer holding a name wins;
 * a whiteout hides the name in the layers below; directories merge down to
 * the first opaque one or the first non-directory.
 *
 * Where an entry lives is cached per path, so that a lookup costs one map
 * probe however deep the chain. Only a writable top layer (layer 0) can
 * change while mounted, and only through the file system that owns this
 * resolver, which updates the cache (`set`, `forget`) as it changes it.
 *
 * The layers that cannot change are read a directory at a time: the first
 * lookup in a directory lists that directory in each of them, so a cold
 * walk of a tree costs a readdir per directory and layer instead of
 * probes for every name in every layer (fuse-overlayfs does the same).
 */
export class Resolver {
  private readonly cache = new Map<string, Node | null>();
  /** Per `layer:dir`, what each name in that layer's copy of dir is. */
  private readonly listings = new Map<string, Map<string, EntryKind>>();

  /** `writableTop`: layer 0 changes while mounted, so it is never listed ahead. */
  constructor(
    readonly layers: readonly string[],
    private readonly writableTop = false,
  ) {
    if (layers.length === 0) throw new Error('a layer stack needs at least one layer');
  }

  lookup(p: string): Node | undefined {
    const hit = this.cache.get(p);
    if (hit !== undefined) return hit ?? undefined;
    const node = p === '/' ? this.root() : this.lookupChild(parentOf(p), path.posix.basename(p));
    this.cache.set(p, node ?? null);
    return node;
  }

  /** Records what `p` now is (undefined: nothing). */
  set(p: string, node: Node | undefined): void {
    this.cache.set(p, node ?? null);
  }

  /** Forgets `p` and, with `subtree`, everything below it. */
  forget(p: string, subtree = false): void {
    this.cache.delete(p);
    if (!subtree) return;
    const prefix = p === '/' ? '/' : `${p}/`;
    for (const key of this.cache.keys()) if (key.startsWith(prefix)) this.cache.delete(key);
  }

  /** The names in a merged directory, each once, whiteouts and markers hidden. */
  readdir(dir: Node, p: string): string[] {
    const names: string[] = [];
    const taken = new Set<string>();
    for (const layer of dir.dirLayers) {
      const real = this.realPath(layer, p);
      let entries: fs.Dirent[];
      try {
        entries = fs.readdirSync(real, { withFileTypes: true });
      } catch {
        continue;
      }
      const hidden: string[] = [];
      for (const e of entries) {
        const entry = classify(real, e);
        if (entry === undefined) continue;
        if (entry.kind === 'whiteout') hidden.push(entry.name);
        else if (!taken.has(e.name)) {
          taken.add(e.name);
          names.push(e.name);
        }
      }
      // A layer's whiteouts hide the layers below it, not itself.
      for (const name of hidden) taken.add(name);
    }
    return names;
  }

  realPath(layer: number, p: string): string {
    return p === '/' ? this.layers[layer]! : path.join(this.layers[layer]!, p);
  }

  private root(): Node {
    const dirLayers: number[] = [];
    for (let i = 0; i < this.layers.length; i++) {
      dirLayers.push(i);
      if (isOpaqueDir(this.layers[i]!)) break;
    }
    return { layer: 0, real: this.layers[0]!, isDir: true, dirLayers };
  }

  /** What layer `layer` holds at `p`: an entry, a whiteout hiding the layers below, or nothing. */
  entryIn(layer: number, p: string): EntryKind | undefined {
    if (layer === 0 && this.writableTop) return this.probe(layer, p);
    return this.listing(layer, parentOf(p)).get(path.posix.basename(p));
  }

  private probe(layer: number, p: string): EntryKind | undefined {
    const real = this.realPath(layer, p);
    const st = fs.lstatSync(real, { bigint: true, throwIfNoEntry: false });
    if (st !== undefined) return isWhiteoutStat(st) ? 'whiteout' : st.isDirectory() ? 'dir' : 'other';
    return fs.existsSync(path.join(path.dirname(real), WHITEOUT_PREFIX + path.posix.basename(p))) ? 'whiteout' : undefined;
  }

  private listing(layer: number, dir: string): Map<string, EntryKind> {
    const key = `${layer}:${dir}`;
    let names = this.listings.get(key);
    if (names !== undefined) return names;
    names = new Map();
    const real = this.realPath(layer, dir);
    let entries: fs.Dirent[] = [];
    try {
      entries = fs.readdirSync(real, { withFileTypes: true });
    } catch {
      // not a directory in this layer, or not there
    }
    for (const e of entries) {
      const entry = classify(real, e);
      // An entry beats a `.wh.` file of the same name, as a probe finds the entry first.
      if (entry !== undefined && !(entry.kind === 'whiteout' && names.has(entry.name))) names.set(entry.name, entry.kind);
    }
    this.listings.set(key, names);
    return names;
  }

  private lookupChild(parentPath: string, name: string): Node | undefined {
    const parent = this.lookup(parentPath);
    if (parent === undefined || !parent.isDir) return undefined;
    const p = childPath(parentPath, name);
    let found: Node | undefined;
    const dirLayers: number[] = [];
    for (const layer of parent.dirLayers) {
      const kind = this.entryIn(layer, p);
      if (kind === 'whiteout') break;
      if (kind === undefined) continue;
      const real = this.realPath(layer, p);
      if (found === undefined) {
        if (kind !== 'dir') return { layer, real, isDir: false, dirLayers };
        found = { layer, real, isDir: true, dirLayers };
      } else if (kind !== 'dir') {
        break;
      }
      dirLayers.push(layer);
      if (isOpaqueDir(real)) break;
    }
    return found;
  }
}

/** What a layer holds under a name. */
export type EntryKind = 'dir' | 'other' | 'whiteout';

/**
 * A directory entry of a layer as the merged tree sees it: a whiteout
 * (a 0/0 character device, or a `.wh.NAME` file) hides NAME below; the
 * opaque marker file is no entry at all.
 */
export function classify(dir: string, e: fs.Dirent): { name: string; kind: EntryKind } | undefined {
  if (e.name.startsWith(WHITEOUT_PREFIX)) return e.name === OPAQUE_MARKER ? undefined : { name: e.name.slice(WHITEOUT_PREFIX.length), kind: 'whiteout' };
  if (e.isCharacterDevice() && isWhiteoutStat(fs.lstatSync(path.join(dir, e.name), { bigint: true }))) return { name: e.name, kind: 'whiteout' };
  return { name: e.name, kind: e.isDirectory() ? 'dir' : 'other' };
}

/** A path's names, with the empty ones and `.` left out (`..` kept). */
export function pathComponents(p: string): string[] {
  return p.split('/').filter((c) => c !== '' && c !== '.');
}

export function parentOf(p: string): string {
  return path.posix.dirname(p);
}

export function childPath(parent: string, name: string): string {
  return parent === '/' ? `/${name}` : `${parent}/${name}`;
}
