import type { Command } from 'commander';
import { invalidArgument, kindOf } from '../errors';
import type { Info, Snapshotter, Usage, UsageProgress } from '../snapshotter/snapshotter';
import { collect } from './args';
import { wantsJson, withSnapshotter } from './context';
import { humanBytes, infoJson, printJson, printLines, table } from './output';
import { usageProgress } from './progress';

/** ls, tree, usage: many snapshots at a time. */
export function registerListingCommands(program: Command): void {
  program
    .command('ls [key] [path]')
    .alias('list')
    .description("list snapshots (Walk; several --filter match any of them), or with KEY the files at PATH of that snapshot's merged tree")
    .option('--filter <expr>', 'containerd filter, e.g. kind==committed,labels."k"==v (repeatable)', collect, [])
    .option('-l, --long', 'with KEY: mode, links, owner, size, time')
    .option('--escaped', 'with KEY: PATH holds \\xHH escapes for bytes (names that are not UTF-8)')
    .option('--json', 'print JSON')
    .action(async (key: string | undefined, p: string | undefined, opts: { filter: string[]; long?: boolean; escaped?: boolean }, cmd: Command) => {
      if (key !== undefined) {
        if (opts.filter.length > 0) throw invalidArgument('ls: --filter lists snapshots; it does not go with KEY');
        // A snapshot's files need the merged-tree code; a listing of snapshots does not.
        const { listSnapshotPath, pathArg } = await import('./inspect');
        return withSnapshotter(cmd, (s) => listSnapshotPath(s, key, pathArg(p ?? '/', opts.escaped === true), opts.long === true, wantsJson(cmd)));
      }
      await withSnapshotter(cmd, (s) => {
        const infos = s.walk(opts.filter);
        if (wantsJson(cmd)) return printJson(infos.map(infoJson));
        printLines([table(['KEY', 'PARENT', 'KIND'], infos.map((i) => [i.name, i.parent, i.kind]))]);
      });
    });

  program
    .command('tree')
    .description('print the parent/child forest')
    .option('--json', 'print JSON')
    .action(async (_opts: unknown, cmd: Command) => {
      await withSnapshotter(cmd, (s) => {
        const forest = buildForest(s.walk());
        if (wantsJson(cmd)) return printJson(forest);
        printLines(forest.flatMap((n) => drawTree(n, '')));
      });
    });

  program
    .command('usage [key]')
    .alias('du')
    .description('disk usage (size, inodes) of one snapshot, or of all')
    .option('--json', 'print JSON')
    .action(async (key: string | undefined, _opts: unknown, cmd: Command) => {
      await withSnapshotter(cmd, (s) => {
        const progress = usageProgress('measuring');
        let rows: [string, Usage][];
        try {
          rows = usageRows(s, key, progress.update);
        } finally {
          progress.done();
        }
        if (wantsJson(cmd)) {
          const out = rows.map(([name, u]) => ({ name, size: u.size, inodes: u.inodes }));
          return printJson(key === undefined ? out : out[0]);
        }
        printLines([table(['KEY', 'SIZE', 'INODES'], rows.map(([name, u]) => [name, humanBytes(u.size), String(u.inodes)]))]);
      });
    });
}

function usageRows(s: Snapshotter, key: string | undefined, onProgress: UsageProgress): [string, Usage][] {
  if (key !== undefined) return [[key, s.usage(key, onProgress)]];
  const rows: [string, Usage][] = [];
  for (const info of s.walk()) {
    try {
      rows.push([info.name, s.usage(info.name, onProgress)]);
    } catch (err) {
      // Removed by another process since the walk: not an error of this listing.
      if (kindOf(err) !== 'NotFound') throw err;
    }
  }
  return rows;
}

interface TreeNode {
  name: string;
  kind: Info['kind'];
  children: TreeNode[];
}

function buildForest(infos: readonly Info[]): TreeNode[] {
  const nodes = new Map(infos.map((i) => [i.name, { name: i.name, kind: i.kind, children: [] as TreeNode[] }]));
  const roots: TreeNode[] = [];
  for (const i of infos) {
    const node = nodes.get(i.name)!;
    const parent = i.parent === '' ? undefined : nodes.get(i.parent);
    (parent?.children ?? roots).push(node);
  }
  return roots;
}

/** ctr's layout: each child on its own line under its parent, marked `\_`. */
function drawTree(node: TreeNode, indent: string): string[] {
  const label = node.kind === 'committed' ? node.name : `${node.name} (${node.kind})`;
  const line = indent === '' ? label : `${indent}\\_ ${label}`;
  const childIndent = indent === '' ? ' ' : `${indent}   `;
  return [line, ...node.children.flatMap((c) => drawTree(c, childIndent))];
}
