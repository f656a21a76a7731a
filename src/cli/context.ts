import type { Command } from 'commander';
import { servedBy } from '../grpc/owner';
import { Snapshotter } from '../snapshotter/snapshotter';

/**
 * Runs `fn` with a snapshotter over the root named by the global --root.
 * `writes`: the command changes the root, so say so first if a live
 * `snapfs serve` owns it (containerd removes snapshots it did not make).
 */
export async function withSnapshotter<T>(cmd: Command, fn: (s: Snapshotter) => T | Promise<T>, opts: { writes?: boolean } = {}): Promise<T> {
  const { root } = cmd.optsWithGlobals<{ root: string }>();
  if (opts.writes === true) warnIfServed(root);
  const snapshotter = new Snapshotter(root);
  try {
    return await fn(snapshotter);
  } finally {
    snapshotter.close();
  }
}

function warnIfServed(root: string): void {
  const owner = servedBy(root);
  if (owner === undefined) return;
  process.stderr.write(
    `snapfs: warning: root ${root} is served to containerd by snapfs serve (pid ${owner.pid}, ${owner.address}); containerd removes snapshots it does not know of\n`,
  );
}

export function wantsJson(cmd: Command): boolean {
  return cmd.opts<{ json?: boolean }>().json === true;
}
