import type { UsageProgress } from '../overlay/usage';
import { humanBytes } from './output';

/**
 * A status line on stderr while a tree is measured (or a layer packed or
 * unpacked: `unit` counts its entries), shown only on a terminal and only
 * once the work turns out to be long; erased at the end.
 */
export function usageProgress(what: string, unit = 'inodes'): { update: UsageProgress; done(): void } {
  if (process.stderr.isTTY !== true) return { update: () => undefined, done: () => undefined };
  // Required only here: without a terminal (scripts, containerd) the bar and its dependencies are never loaded.
  const { SingleBar } = require('cli-progress') as typeof import('cli-progress');
  const bar = new SingleBar({
    format: `{what}: {inodes} ${unit}, {size}`,
    stream: process.stderr,
    clearOnComplete: true,
    linewrap: true,
    gracefulExit: true,
    fps: 10,
  });
  let started = false;
  return {
    update: ({ size, inodes }) => {
      const payload = { what, inodes, size: humanBytes(size) };
      if (!started) bar.start(0, 0, payload);
      else bar.update(0, payload);
      started = true;
    },
    done: () => {
      if (started) bar.stop();
    },
  };
}
