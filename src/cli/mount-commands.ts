import type { Command } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { invalidArgument } from '../errors';
import { maxSizeOf } from '../snapshotter/mounts';
import type { Snapshotter } from '../snapshotter/snapshotter';
import { wantsJson, withSnapshotter } from './context';
import { printJson, printLines, table } from './output';

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
      const { stack, maxSize } = await withSnapshotter(cmd, (s) => ({ stack: s.layers(key), maxSize: maxSizeOf(s.stat(key).labels) }));
      // An active snapshot without parents has only its upper layer: an empty lower stands in.
      const lowers = stack.lowers.length > 0 || stack.upper === undefined ? stack.lowers : [emptyDir(stack.work)];
      const request = {
        stack: { lowers, upper: stack.upper, work: stack.upper === undefined ? undefined : stack.work },
        mountpoint: path.resolve(mountpoint),
        snapshot: key,
        ...(maxSize === undefined || stack.upper === undefined ? {} : { tweaks: { maxSize } }),
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
    .option('--dedicated', "served by a process of its own, not the user's mount daemon")
    .action(async (mountpoint: string, opts: { foreground?: boolean; dedicated?: boolean }, cmd: Command) => {
      const { root } = cmd.optsWithGlobals<{ root: string }>();
      const { launch } = await import('../mount/launch');
      const request = { browse: path.resolve(root), mountpoint: path.resolve(mountpoint), ...(opts.dedicated === true ? { dedicated: true } : {}) };
      await launch(request, { foreground: opts.foreground === true });
      if (opts.foreground === true) process.exit(0);
    });

  program
    .command('mounted')
    .description("list the mounts the user's mount daemon serves: mount point, snapshot (of --root) where known, layers (or the root a browse mount shows), requests answered")
    .option('--json', 'print JSON')
    .action(async (_opts: unknown, cmd: Command) => {
      const { liveMounts } = await import('../mount/daemon-client');
      const mounts = liveMounts();
      const unnamed = mounts.filter((m) => m.snapshot === undefined && m.upper !== undefined);
      const keys = unnamed.length === 0 ? new Map<string, string>() : await withSnapshotter(cmd, activeByUpper);
      const rows = mounts.map((m) => ({ ...m, snapshot: m.snapshot ?? (m.upper === undefined ? undefined : keys.get(m.upper)) ?? null, since: new Date(m.since).toISOString() }));
      if (wantsJson(cmd)) return printJson(rows);
      printLines([
        table(
          ['MOUNTPOINT', 'SNAPSHOT', 'LAYERS', 'REQUESTS', 'SINCE'],
          rows.map((r) => [r.mountpoint, r.snapshot ?? '-', r.browse !== undefined ? `browse ${r.browse}` : `${r.lowers.length}${r.upper === undefined ? ' ro' : '+upper'}`, String(r.requests), r.since]),
        ),
      ]);
    });

  program
    .command('daemon')
    .description("serve mounts as the user's mount daemon, in the foreground (as a service; mount helpers start one on demand otherwise)")
    .option('--idle-exit <seconds>', 'exit after this many seconds without a mount (default: never)', (v: string) => seconds(v))
    .action(async (opts: { idleExit?: number }) => {
      const { runMountDaemon } = await import('../mount/daemon');
      await runMountDaemon(opts.idleExit === undefined ? {} : { idleSeconds: opts.idleExit });
    });
}

/**
 * The active snapshots of the root by their upper directory: what names a
 * mount made from `snapfs prepare`'s mount options (by containerd, say). A
 * read-only mount made so is not named: views of one parent share their layers.
 */
function activeByUpper(s: Snapshotter): Map<string, string> {
  const keys = new Map<string, string>();
  for (const info of s.walk(['kind==active'])) {
    const { upper } = s.layers(info.name);
    if (upper !== undefined) keys.set(upper, info.name);
  }
  return keys;
}

function seconds(value: string): number {
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(n)) throw invalidArgument(`--idle-exit ${JSON.stringify(value)}: not a whole number of seconds`);
  return n;
}

function emptyDir(work: string): string {
  const dir = path.join(work, 'empty');
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  return dir;
}
