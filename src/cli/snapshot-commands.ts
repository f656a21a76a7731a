import type { Command } from 'commander';
import { formatNs } from '../clock';
import { invalidArgument } from '../errors';
import type { Mount } from '../snapshotter/snapshotter';
import { collect, parseLabels } from './args';
import { wantsJson, withSnapshotter } from './context';
import { formatLabels, infoJson, mountCommand, printJson, printLines, table } from './output';
import { usageProgress } from './progress';

const DEFAULT_TARGET = '/mnt';

/** prepare, view, mounts, commit, rm, info, label: one snapshot at a time. */
export function registerSnapshotCommands(program: Command): void {
  for (const kind of ['prepare', 'view'] as const) {
    program
      .command(`${kind} <key> [parent]`)
      .description(kind === 'prepare' ? 'create an active snapshot; print its mounts' : 'create a read-only view; print its mounts')
      .option('--label <k=v>', 'set a label (repeatable)', collect, [])
      .option('--target <dir>', 'mount point to print in the mount command', DEFAULT_TARGET)
      .option('--json', 'print JSON')
      .action(async (key: string, parent: string | undefined, opts: { label: string[]; target: string }, cmd: Command) => {
        const labels = parseLabels(opts.label, false);
        await withSnapshotter(
          cmd,
          (s) => {
            const mounts = kind === 'prepare' ? s.prepare(key, parent, labels) : s.view(key, parent, labels);
            printMounts(cmd, mounts, opts.target);
          },
          { writes: true },
        );
      });
  }

  program
    .command('mounts <key> [target]')
    .description('print the mounts of an active snapshot or view')
    .option('--json', 'print JSON')
    .action(async (key: string, target: string | undefined, _opts: unknown, cmd: Command) => {
      await withSnapshotter(cmd, (s) => printMounts(cmd, s.mounts(key), target ?? DEFAULT_TARGET));
    });

  program
    .command('commit <name> <key>')
    .description('freeze active snapshot KEY as committed snapshot NAME')
    .option('--label <k=v>', 'set a label on the committed snapshot (repeatable)', collect, [])
    .option('--parent <parent>', 'rebase: commit a snapshot prepared without parent as a child of committed snapshot PARENT')
    .action(async (name: string, key: string, opts: { label: string[]; parent?: string }, cmd: Command) => {
      const labels = parseLabels(opts.label, false);
      const progress = usageProgress(`measuring ${key}`);
      try {
        await withSnapshotter(cmd, (s) => s.commit(name, key, labels, { parent: opts.parent, onProgress: progress.update }), { writes: true });
      } finally {
        progress.done();
      }
    });

  program
    .command('rm <key...>')
    .alias('remove')
    .description('remove snapshots in the order given, all or none (refused while one has children)')
    .action(async (keys: string[], _opts: unknown, cmd: Command) => {
      await withSnapshotter(cmd, (s) => s.remove(...keys), { writes: true });
    });

  program
    .command('info <key>')
    .alias('stat')
    .description('show a snapshot: name, parent, kind, labels, times')
    .option('--json', 'print JSON')
    .action(async (key: string, _opts: unknown, cmd: Command) => {
      await withSnapshotter(cmd, (s) => {
        const info = s.stat(key);
        if (wantsJson(cmd)) return printJson(infoJson(info));
        const labels = formatLabels(info.labels);
        printLines([
          table(
            ['NAME', info.name],
            [
              ['PARENT', info.parent],
              ['KIND', info.kind],
              ['CREATED', formatNs(info.created)],
              ['UPDATED', formatNs(info.updated)],
              ...labels.map((l, i) => [i === 0 ? 'LABELS' : '', l]),
            ],
          ),
        ]);
      });
    });

  program
    .command('label <key> [k=v...]')
    .description('set labels (k=v) or remove them (k=); --replace drops all others')
    .option('--replace', 'replace all labels with the ones given')
    .option('--json', 'print JSON')
    .action(async (key: string, pairs: string[], opts: { replace?: boolean }, cmd: Command) => {
      if (pairs.length === 0 && opts.replace !== true) throw invalidArgument('label: give k=v or k= pairs, or --replace to drop all labels');
      const labels = parseLabels(pairs, true);
      const paths = opts.replace === true ? [] : Object.keys(labels).map((k) => `labels.${k}`);
      await withSnapshotter(
        cmd,
        (s) => {
          const info = s.update(key, labels, paths);
          if (wantsJson(cmd)) printJson(infoJson(info));
          else printLines(formatLabels(info.labels));
        },
        { writes: true },
      );
    });
}

function printMounts(cmd: Command, mounts: readonly Mount[], target: string): void {
  if (wantsJson(cmd)) printJson(mounts);
  else printLines(mounts.map((m) => mountCommand(m, target)));
}
