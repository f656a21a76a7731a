import { Command, CommanderError } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EXIT_CODES } from '../errors';
import { defaultRoot } from '../snapshotter/root';
import { registerInspectCommands } from './inspect-commands';
import { registerLayerCommands } from './layer-commands';
import { registerListingCommands } from './listing-commands';
import { registerMountCommands } from './mount-commands';
import { registerRootCommands } from './root-commands';
import { registerServeCommand } from './serve-command';
import { registerSnapshotCommands } from './snapshot-commands';

/**
 * The commands, declared with commander. Declaring them loads little:
 * each command's action loads what it does (the snapshotter and SQLite,
 * the tar code, the mount code, gRPC) when it runs.
 */
export function buildProgram(): Command {
  const program = new Command('snapfs')
    .description('containerd-style snapshotter: copy-on-write snapshots in a SQLite-indexed root')
    .version(version())
    .option('--root <dir>', 'snapshotter root directory', defaultRoot())
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`snapfs: ${text.replace(/^error: /, '')}`) });
  registerSnapshotCommands(program);
  registerListingCommands(program);
  registerRootCommands(program);
  registerMountCommands(program);
  registerServeCommand(program);
  registerInspectCommands(program);
  registerLayerCommands(program);
  for (const cmd of program.commands) cmd.exitOverride();
  return program;
}

/** Runs the command `argv` names; its exit code. Errors other than commander's are the caller's to report. */
export async function runProgram(argv: readonly string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
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
