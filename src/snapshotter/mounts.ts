import { invalidArgument } from '../errors';
import { parseIdMap } from '../layerfs/idmap';
import { parseByteCount } from '../layerfs/space';
import type { Kind, Labels } from '../metastore/snapshots';
import type { Layout } from './layout';

/** One mount as containerd describes it: `mount -t TYPE SOURCE TARGET -o OPTIONS`. */
export interface Mount {
  readonly type: string;
  readonly source: string;
  readonly options: readonly string[];
}

const FUSE_TYPE = 'fuse.snapfs';
/** containerd's labels for a user-namespaced container's snapshot: CONTAINER:HOST:COUNT entries joined by commas. */
export const UID_MAPPING_LABEL = 'containerd.io/snapshot/uidmapping';
export const GID_MAPPING_LABEL = 'containerd.io/snapshot/gidmapping';
/**
 * containerd 2.2's unpacker, unpacking layers side by side for a snapshotter
 * that can rebase, prepares each without parent and names the parent it
 * will get at commit in this label.
 */
export const PARENT_CHAIN_LABEL = 'containerd.io/snapshot/parent-chain-id';
/** containerd's limit of an active snapshot's size, in bytes (a decimal integer). */
export const MAX_SIZE_LABEL = 'containerd.io/snapshot/max-size';

/** The max-size label's bytes, if it has one; a label that is no size is refused (InvalidArgument). */
export function maxSizeOf(labels: Labels): number | undefined {
  const value = labels[MAX_SIZE_LABEL];
  if (value === undefined) return undefined;
  const n = parseByteCount(value);
  if (n === undefined) throw invalidArgument(`label ${MAX_SIZE_LABEL}=${JSON.stringify(value)}: not a size in bytes`);
  return n;
}

/**
 * The mount options of containerd's id-mapping labels, as the
 * fuse-overlayfs snapshotter makes them: uidmapping=/gidmapping= with the
 * entries joined by colons (a comma would end the option). The container's
 * ids are the ones shown through the mount, the host's the ones stored.
 * A label that is no mapping is refused (InvalidArgument).
 */
export function idMappingOptions(labels: Labels): string[] {
  return [
    ['uidmapping', labels[UID_MAPPING_LABEL]],
    ['gidmapping', labels[GID_MAPPING_LABEL]],
  ].flatMap(([option, label]) => {
    if (label === undefined) return [];
    const value = label.replaceAll(',', ':');
    parseIdMap(option!, value);
    return [`${option}=${value}`];
  });
}

/**
 * The mount options `labels` ask for that only a FUSE mount can carry,
 * whatever the snapshot's parents: a bind mount can neither map ids nor
 * hold a layer to a size (an active snapshot's). A label that is no
 * mapping or no size is refused (InvalidArgument).
 */
export function fuseOnlyOptions(kind: Kind, labels: Labels): string[] {
  const limit = kind === 'active' ? maxSizeOf(labels) : undefined;
  return [...idMappingOptions(labels), ...(limit === undefined ? [] : [`max_size=${limit}`])];
}

/**
 * The mounts of a snapshot, shaped as containerd's fuse-overlayfs
 * snapshotter shapes them, so that anything expecting that works unchanged:
 * - no parent: a bind mount of the snapshot's own directory (ro for a view),
 *   since there is nothing to merge;
 * - a view of a single parent: a read-only bind mount of that parent;
 * - otherwise fuse.snapfs with lowerdir= (nearest parent first), and for an
 *   active snapshot upperdir= and workdir=; a view adds `ro`;
 * - with containerd's id-mapping labels, fuse.snapfs always (over an empty
 *   layer, ROOT/empty, for an active snapshot without parents), with
 *   uidmapping= and gidmapping=; likewise an active snapshot with
 *   containerd's max-size label, with max_size=;
 * - an active snapshot without parent that is to get one at commit
 *   (PARENT_CHAIN_LABEL), where containerd can write whiteouts in the
 *   kernel's form (`kernelWhiteouts`: root in the initial user namespace):
 *   an overlay mount over the empty layer.
 */
export function mountsOf(layout: Layout, kind: Kind, id: number, parentIds: readonly number[], labels: Labels, kernelWhiteouts: boolean): Mount[] {
  const fuseOnly = fuseOnlyOptions(kind, labels);
  if (kernelWhiteouts && kind === 'active' && parentIds.length === 0 && labels[PARENT_CHAIN_LABEL] !== undefined && fuseOnly.length === 0) {
    // A layer unpacked before its parent is there: a bind mount would lose
    // its whiteouts (deleting what is not there deletes nothing), so it is
    // shown as containerd's overlay snapshotter shows it, and containerd's
    // applier writes the tar straight into the layer, whiteouts as 0/0
    // devices and opaque directories as trusted.overlay.opaque: the
    // kernel's form, which snapfs reads.
    return [{ type: 'overlay', source: 'overlay', options: [`workdir=${layout.work(id)}`, `upperdir=${layout.fs(id)}`, `lowerdir=${layout.empty}`] }];
  }
  if (fuseOnly.length > 0) {
    const lowers = parentIds.length > 0 ? parentIds.map((p) => layout.fs(p)) : [kind === 'view' ? layout.fs(id) : layout.empty];
    const own = kind === 'view' ? ['ro'] : [`upperdir=${layout.fs(id)}`, `workdir=${layout.work(id)}`];
    return [{ type: FUSE_TYPE, source: 'snapfs', options: [`lowerdir=${lowers.join(':')}`, ...own, ...fuseOnly] }];
  }
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
