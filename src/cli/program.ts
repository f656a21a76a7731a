import { Command, CommanderError } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EXIT_CODES } from '../errors';
import { firstWord } from '../mount/cmdline';
import { groupOf, type CommandGroup } from './command-names';
import { defaultRoot } from '../snapshotter/root';

type Register = (program: Command) => void;

/** Each group's declarations, loaded when it is declared. */
const REGISTER: Record<CommandGroup, () => Register> = {
  snapshot: () => (require('./snapshot-commands') as typeof import('./snapshot-commands')).registerSnapshotCommands,
  listing: () => (require('./listing-commands') as typeof import('./listing-commands')).registerListingCommands,
  root: () => (require('./root-commands') as typeof import('./root-commands')).registerRootCommands,
  mount: () => (require('./mount-commands') as typeof import('./mount-commands')).registerMountCommands,
  serve: () => (require('./serve-command') as typeof import('./serve-command')).registerServeCommand,
  inspect: () => (require('./inspect-commands') as typeof import('./inspect-commands')).registerInspectCommands,
  layer: () => (require('./layer-commands') as typeof import('./layer-commands')).registerLayerCommands,
};

/**
 * The commands, declared with commander: all of them, or those of group
 * `only` (when the command line names one of its commands, only that
 * group's file is loaded). Declaring them loads little: each command's
 * action loads what it does (the snapshotter and SQLite, the tar code, the
 * mount code, gRPC) when it runs.
 */
export function buildProgram(only?: CommandGroup): Command {
  const program = new Command('snapfs')
    .description('containerd-style snapshotter: copy-on-write snapshots in a SQLite-indexed root')
    .version(version())
    .option('--root <dir>', 'snapshotter root directory', defaultRoot())
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`snapfs: ${text.replace(/^error: /, '')}`) });
  for (const group of only === undefined ? (Object.keys(REGISTER) as CommandGroup[]) : [only]) REGISTER[group]()(program);
  for (const cmd of program.commands) cmd.exitOverride();
  return program;
}

/** Runs the command `argv` names; its exit code. Errors other than commander's are the caller's to report. */
export async function runProgram(argv: readonly string[]): Promise<number> {
  try {
    await buildProgram(groupOf(firstWord(argv.slice(2)) ?? '')).parseAsync(argv);
    return 0;
  } catch (err) {
    // Commander has printed the message already; help and version are not failures.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : EXIT_CODES.InvalidArgument;
    throw err;
  }
}

function version(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}
