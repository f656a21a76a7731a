import type { Command } from 'commander';
import { Snapshotter } from '../snapshotter/snapshotter';

/** Runs `fn` with a snapshotter over the root named by the global --root. */
export async function withSnapshotter(cmd: Command, fn: (s: Snapshotter) => void | Promise<void>): Promise<void> {
  const { root } = cmd.optsWithGlobals<{ root: string }>();
  const snapshotter = new Snapshotter(root);
  try {
    await fn(snapshotter);
  } finally {
    snapshotter.close();
  }
}

export function wantsJson(cmd: Command): boolean {
  return cmd.opts<{ json?: boolean }>().json === true;
}
