import type { Kind } from '../metastore/snapshots';
import type { Layout } from './layout';

/** One mount as containerd describes it: `mount -t TYPE SOURCE TARGET -o OPTIONS`. */
export interface Mount {
  readonly type: string;
  readonly source: string;
  readonly options: readonly string[];
}

const FUSE_TYPE = 'fuse.snapfs';

/**
 * The mounts of a snapshot, shaped as containerd's fuse-overlayfs
 * snapshotter shapes them, so that anything expecting that works unchanged:
 * - no parent: a bind mount of the snapshot's own directory (ro for a view),
 *   since there is nothing to merge;
 * - a view of a single parent: a read-only bind mount of that parent;
 * - otherwise fuse.snapfs with lowerdir= (nearest parent first), and for an
 *   active snapshot upperdir= and workdir=; a view adds `ro`.
 */
export function mountsOf(layout: Layout, kind: Kind, id: number, parentIds: readonly number[]): Mount[] {
  if (parentIds.length === 0) {
    return [{ type: 'bind', source: layout.fs(id), options: [kind === 'view' ? 'ro' : 'rw', 'rbind'] }];
  }
  if (kind === 'view' && parentIds.length === 1) {
    return [{ type: 'bind', source: layout.fs(parentIds[0]!), options: ['ro', 'rbind'] }];
  }
  const options = [`lowerdir=${parentIds.map((p) => layout.fs(p)).join(':')}`];
  if (kind === 'view') options.push('ro');
  else options.push(`upperdir=${layout.fs(id)}`, `workdir=${layout.work(id)}`);
  return [{ type: FUSE_TYPE, source: 'snapfs', options }];
}
