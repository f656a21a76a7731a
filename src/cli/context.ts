import type { Command } from 'commander';
import type { RootOwner } from '../snapshotter/owner';
import type { Snapshotter } from '../snapshotter/snapshotter';

/**
 * Runs `fn` with a snapshotter over the root named by the global --root.
 * `writes`: the command changes the root, so say so first if a live
 * `snapfs serve` owns it (containerd removes snapshots it did not make).
 * The snapshotter (and SQLite) is loaded here, when a command first needs
 * it, so that commands that never open a root do not pay for it.
 */
export async function withSnapshotter<T>(cmd: Command, fn: (s: Snapshotter) => T | Promise<T>, opts: { writes?: boolean } = {}): Promise<T> {
  const { root } = cmd.optsWithGlobals<{ root: string }>();
  if (opts.writes === true) {
    const { servedBy } = await import('../snapshotter/owner');
    warnIfServed(root, servedBy(root));
  }
  const { Snapshotter } = await import('../snapshotter/snapshotter');
  const snapshotter = new Snapshotter(root, { freeze: freezeMount });
  try {
    return await fn(snapshotter);
  } finally {
    snapshotter.close();
  }
}

/** A commit freezes the mount of its snapshot first, if there is one; the mount code is loaded only then. */
async function freezeMount(workDir: string): Promise<void> {
  const control = await import('../mount/control');
  await control.freezeMount(workDir);
}

function warnIfServed(root: string, owner: RootOwner | undefined): void {
  if (owner === undefined) return;
  process.stderr.write(
    `snapfs: warning: root ${root} is served to containerd by snapfs serve (pid ${owner.pid}, ${owner.address}); containerd removes snapshots it does not know of\n`,
  );
}

export function wantsJson(cmd: Command): boolean {
  return cmd.opts<{ json?: boolean }>().json === true;
}
