import type { Command } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { withSnapshotter } from './context';

/**
 * mount and browse: serve snapshots as FUSE file systems (the mount code is
 * loaded when one runs). The daemons' hidden entry points and
 * fuse-overlayfs's command line are no commands: main.ts runs them before
 * commander is loaded.
 */
export function registerMountCommands(program: Command): void {
  program
    .command('mount <key> <mountpoint>')
    .description('mount a snapshot: active ones read-write, views and committed ones read-only; returns once the mount is live')
    .option('-f, --foreground', 'stay in the foreground until unmounted')
    .option('--dedicated', "served by a process of its own, not the user's mount daemon")
    .action(async (key: string, mountpoint: string, opts: { foreground?: boolean; dedicated?: boolean }, cmd: Command) => {
      // The database is closed before mounting: a daemon never holds it.
      const stack = await withSnapshotter(cmd, (s) => s.layers(key));
      // An active snapshot without parents has only its upper layer: an empty lower stands in.
      const lowers = stack.lowers.length > 0 || stack.upper === undefined ? stack.lowers : [emptyDir(stack.work)];
      const request = {
        stack: { lowers, upper: stack.upper, work: stack.upper === undefined ? undefined : stack.work },
        mountpoint: path.resolve(mountpoint),
        ...(opts.dedicated === true ? { dedicated: true } : {}),
      };
      const { launch } = await import('../mount/launch');
      await launch(request, { foreground: opts.foreground === true });
      // libfuse's handles keep the event loop alive after the unmount.
      if (opts.foreground === true) process.exit(0);
    });

  program
    .command('browse <mountpoint>')
    .description('mount every snapshot read-only under MOUNTPOINT: /NAME (merged tree), /.layers/NAME (own layer); keys percent-encoded')
    .option('-f, --foreground', 'stay in the foreground until unmounted')
    .action(async (mountpoint: string, opts: { foreground?: boolean }, cmd: Command) => {
      const { root } = cmd.optsWithGlobals<{ root: string }>();
      const { launch } = await import('../mount/launch');
      await launch({ browse: path.resolve(root), mountpoint: path.resolve(mountpoint) }, { foreground: opts.foreground === true });
      if (opts.foreground === true) process.exit(0);
    });
}

function emptyDir(work: string): string {
  const dir = path.join(work, 'empty');
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  return dir;
}
