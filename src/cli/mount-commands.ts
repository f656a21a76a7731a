import type { Command } from 'commander';
import * as path from 'node:path';
import { notImplemented } from '../errors';
import { launch, runDaemon } from '../mount/launch';
import { withSnapshotter } from './context';

/** mount: serve a snapshot as a FUSE file system. */
export function registerMountCommands(program: Command): void {
  program
    .command('mount <key> <mountpoint>')
    .description('mount a snapshot (views and committed snapshots: read-only); returns once the mount is live')
    .option('-f, --foreground', 'stay in the foreground until unmounted')
    .action(async (key: string, mountpoint: string, opts: { foreground?: boolean }, cmd: Command) => {
      // The database is closed before mounting: a daemon never holds it.
      const stack = await withSnapshotter(cmd, (s) => s.layers(key));
      if (stack.kind === 'active') {
        throw notImplemented(`snapshot ${JSON.stringify(key)}: read-write mounts of active snapshots are not available yet; mount a view of its parent`);
      }
      const request = { layers: stack.lowers, mountpoint: path.resolve(mountpoint), allowOther: process.getuid?.() === 0 };
      await launch(request, { foreground: opts.foreground === true, logFile: path.join(stack.work, 'snapfs.log') });
      // libfuse's handles keep the event loop alive after the unmount.
      if (opts.foreground === true) process.exit(0);
    });

  program.command('__serve <request>', { hidden: true }).action(async (request: string) => {
    await runDaemon(request);
    process.exit(0);
  });
}
