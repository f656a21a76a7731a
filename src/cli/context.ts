import type { Command } from 'commander';
import { Snapshotter } from '../snapshotter/snapshotter';

/** Runs `fn` with a snapshotter over the root named by the global --root. */
export async function withSnapshotter<T>(cmd: Command, fn: (s: Snapshotter) => T | Promise<T>): Promise<T> {
  const { root } = cmd.optsWithGlobals<{ root: string }>();
  const snapshotter = new Snapshotter(root);
  try {
    return await fn(snapshotter);
  } finally {
    snapshotter.close();
  }
}

export function wantsJson(cmd: Command): boolean {
  return cmd.opts<{ json?: boolean }>().json === true;
}
