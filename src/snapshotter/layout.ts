import * as path from 'node:path';

/**
 * Where things live under a root:
 *
 *   ROOT/metadata.db              SQLite metastore
 *   ROOT/snapshots/<id>/fs        the snapshot's own layer (upper directory)
 *   ROOT/snapshots/<id>/work      scratch space of the file system serving it
 *   ROOT/snapshots/.new-<id>-<pid>  being created, inside the write transaction
 *   ROOT/snapshots/.rm-<id>-<pid>   being deleted, after the metadata is gone
 */
export class Layout {
  readonly root: string;
  readonly db: string;
  readonly snapshots: string;

  constructor(root: string) {
    this.root = path.resolve(root);
    this.db = path.join(this.root, 'metadata.db');
    this.snapshots = path.join(this.root, 'snapshots');
  }

  dir(id: number): string {
    return path.join(this.snapshots, String(id));
  }
  fs(id: number): string {
    return path.join(this.dir(id), 'fs');
  }
  work(id: number): string {
    return path.join(this.dir(id), 'work');
  }
  creating(id: number): string {
    return path.join(this.snapshots, `.new-${id}-${process.pid}`);
  }
  removing(name: string): string {
    return path.join(this.snapshots, `.rm-${name}-${process.pid}`);
  }
}

/** What a name in ROOT/snapshots is: a snapshot's directory, or a transient one with its owner's pid. */
export function classifyEntry(name: string): { id: number } | { ownerPid: number } | undefined {
  if (/^[1-9][0-9]*$/.test(name)) return { id: Number(name) };
  const m = /^\.(?:new|rm)-.*-([0-9]+)$/.exec(name);
  return m === null ? undefined : { ownerPid: Number(m[1]) };
}
