import type { Kind } from '../metastore/snapshots';

/**
 * The directories a merged tree is made of: read-only layers, topmost
 * first, and for a writable tree the upper layer, where writes go, with
 * the work directory of whatever serves it. What a mount serves (LayerFS),
 * and what inspect, browse and the tar code read.
 */
export interface LayerStack {
  readonly lowers: readonly string[];
  readonly upper?: string;
  readonly work?: string;
}

/**
 * What snapshot K stacks (Snapshotter.layers): a committed snapshot's own
 * layer over its parents; a view's parents (its own empty layer when it
 * has none); an active snapshot's parents under its upper layer.
 */
export interface SnapshotStack extends LayerStack {
  readonly kind: Kind;
  readonly work: string;
}

/** The layers of the merged tree, topmost first. */
export function mergedLayers(stack: LayerStack): string[] {
  return stack.upper === undefined ? [...stack.lowers] : [stack.upper, ...stack.lowers];
}

/** A snapshot's own layer (none for a view) and the layers below it. */
export function ownLayer(stack: SnapshotStack): { own: string | undefined; below: string[] } {
  if (stack.upper !== undefined) return { own: stack.upper, below: [...stack.lowers] };
  if (stack.kind === 'committed') return { own: stack.lowers[0], below: stack.lowers.slice(1) };
  return { own: undefined, below: [...stack.lowers] };
}
