import * as fs from 'node:fs';
import * as path from 'node:path';
import { invalidArgument, notFound } from '../errors';
import { pathComponents, Resolver, type Node } from '../layerfs/resolver';
import type { LayerStack } from '../snapshotter/snapshotter';

/** Linux's limit on symlinks followed while resolving one path. */
const MAX_SYMLINKS = 40;

/** The layers of a snapshot's merged tree, topmost first. */
export function mergedLayers(stack: LayerStack): string[] {
  return stack.upper === undefined ? [...stack.lowers] : [stack.upper, ...stack.lowers];
}

/** A snapshot's own layer (none for a view) and the layers below it. */
export function ownLayer(stack: LayerStack): { own: string | undefined; below: string[] } {
  if (stack.upper !== undefined) return { own: stack.upper, below: [...stack.lowers] };
  if (stack.kind === 'committed') return { own: stack.lowers[0], below: stack.lowers.slice(1) };
  return { own: undefined, below: [...stack.lowers] };
}

export interface Entry {
  /** Its path in the merged tree, symlinks resolved. */
  readonly path: string;
  readonly node: Node;
  readonly st: fs.Stats;
}

/**
 * A snapshot's merged tree, read without mounting it. Paths resolve as if
 * the process were chrooted into the tree: `..` stops at its root, an
 * absolute symlink target starts from its root, and nothing on the host
 * outside the layers is ever looked at (each layer is entered only through
 * directories that layer holds as directories).
 */
export class MergedTree {
  private readonly resolver: Resolver;

  constructor(
    layers: readonly string[],
    private readonly label: string,
  ) {
    this.resolver = new Resolver(layers);
  }

  /** Resolves `p` (relative paths start at the root); `followLast` follows a final symlink too. */
  resolve(p: string, followLast = true): Entry {
    const todo = pathComponents(p);
    const done: string[] = [];
    let links = 0;
    for (;;) {
      const name = todo.shift();
      if (name === undefined) break;
      if (name === '..') {
        done.pop();
        continue;
      }
      const at = `/${[...done, name].join('/')}`;
      const node = this.resolver.lookup(at) ?? this.fail(p, 'no such file or directory', notFound);
      const st = fs.lstatSync(node.real);
      if (st.isSymbolicLink() && (todo.length > 0 || followLast)) {
        if (++links > MAX_SYMLINKS) this.fail(p, 'too many levels of symbolic links', invalidArgument);
        const target = fs.readlinkSync(node.real);
        if (target.startsWith('/')) done.length = 0;
        todo.unshift(...pathComponents(target));
        continue;
      }
      if (todo.length > 0 && !node.isDir) this.fail(p, 'not a directory', invalidArgument);
      done.push(name);
    }
    const at = `/${done.join('/')}`;
    const node = this.resolver.lookup(at)!;
    return { path: at, node, st: fs.lstatSync(node.real) };
  }

  /** The names in merged directory `dir` (an entry from resolve), sorted. */
  list(dir: Entry): string[] {
    if (!dir.node.isDir) return [path.posix.basename(dir.path)];
    return this.resolver.readdir(dir.node, dir.path).sort();
  }

  /** The entry `name` of directory `dir`, not following it. */
  child(dir: Entry, name: string): Entry {
    return this.resolve(`${dir.path}/${name}`, false);
  }

  private fail(p: string, why: string, kind: (m: string) => Error): never {
    throw kind(`${this.label}: ${JSON.stringify(p)}: ${why}`);
  }
}
