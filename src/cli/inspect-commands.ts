import type { Command } from 'commander';
import { wantsJson, withSnapshotter } from './context';

/**
 * cat, changes, and `ls KEY [PATH]`: a snapshot's content, read without
 * mounting it. What they do is in inspect.ts, loaded when one runs.
 */
export function registerInspectCommands(program: Command): void {
  program
    .command('cat <key> <path>')
    .description("print a file of a snapshot's merged tree (symlinks followed inside the snapshot)")
    .option('--escaped', 'PATH holds \\xHH escapes for bytes (names that are not UTF-8)')
    .action(async (key: string, p: string, opts: { escaped?: boolean }, cmd: Command) => {
      const { catFile } = await import('./inspect');
      await withSnapshotter(cmd, (s) => catFile(s, key, p, opts.escaped === true));
    });

  program
    .command('changes <key>')
    .description("what a snapshot's own layer adds (A), changes (C) and deletes (D), as docker diff prints it")
    .option('--json', 'print JSON')
    .action(async (key: string, _opts: unknown, cmd: Command) => {
      const { printChanges } = await import('./inspect');
      await withSnapshotter(cmd, (s) => printChanges(s, key, wantsJson(cmd)));
    });
}
