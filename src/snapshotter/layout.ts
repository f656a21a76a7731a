import { randomBytes } from 'node:crypto';
import * as path from 'node:path';

/**
 * Where things live under a root:
 *
 *   ROOT/metadata.db              SQLite metastore
 *   ROOT/served-by.json           the `snapfs serve` that owns the root, while it runs
 *   ROOT/snapshots/<id>/fs        the snapshot's own layer (upper directory)
 *   ROOT/snapshots/<id>/work      scratch space of the file system serving it
 *   ROOT/snapshots/.rm-<random>   being deleted, after the metadata is gone
 *   ROOT/held/<key>               locked by the process whose work active snapshot <key> is (held.ts)
 *   ROOT/empty                    an empty layer: the lower one of an id-mapped snapshot without parents
 */
export const OWNER_FILE = 'served-by.json';

export class Layout {
  readonly root: string;
  readonly db: string;
  readonly snapshots: string;
  readonly owner: string;
  readonly held: string;
  readonly empty: string;

  constructor(root: string) {
    this.root = path.resolve(root);
    this.db = path.join(this.root, 'metadata.db');
    this.snapshots = path.join(this.root, 'snapshots');
    this.owner = path.join(this.root, OWNER_FILE);
    this.held = path.join(this.root, 'held');
    this.empty = path.join(this.root, 'empty');
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
  /** A fresh name to move a doomed directory to before deleting it. */
  removing(): string {
    return path.join(this.snapshots, `.rm-${randomBytes(6).toString('hex')}`);
  }
}

/** The snapshot id a name in ROOT/snapshots stands for, if it is a snapshot's directory. */
export function snapshotIdOf(name: string): number | undefined {
  return /^[1-9][0-9]*$/.test(name) ? Number(name) : undefined;
}
