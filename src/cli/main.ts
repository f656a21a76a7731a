#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EXIT_CODES, kindOf, messageOf, systemFailure } from '../errors';
import { defaultRoot } from '../snapshotter/root';
import { registerRootCommands } from './root-commands';
import { registerListingCommands } from './listing-commands';
import { mountFromCommandLine, registerMountCommands } from './mount-commands';
import { isMountCommandLine } from '../mount/cmdline';
import { registerInspectCommands } from './inspect-commands';
import { registerLayerCommands } from './layer-commands';
import { registerServeCommand } from './serve-command';
import { registerSnapshotCommands } from './snapshot-commands';

function version(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

function buildProgram(): Command {
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

async function main(argv: readonly string[]): Promise<number> {
  try {
    const program = buildProgram();
    const commands = new Set(program.commands.flatMap((c) => [c.name(), ...c.aliases()]));
    if (isMountCommandLine(argv.slice(2), commands)) {
      await mountFromCommandLine(argv.slice(2));
      return 0;
    }
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has printed the message already; help and version are not failures.
      return err.exitCode === 0 ? 0 : EXIT_CODES.InvalidArgument;
    }
    const known = systemFailure(err) ?? err;
    const kind = kindOf(known);
    // A bug gets its stack trace; everything else one line.
    const text = kind === 'Unknown' && known instanceof Error && known.stack !== undefined ? known.stack : messageOf(known).split('\n')[0];
    process.stderr.write(`snapfs: ${text}\n`);
    return EXIT_CODES[kind];
  }
}

// stdout may be a pipe closed early (`snapfs ls | head`): that is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

void main(process.argv).then((code) => {
  process.exitCode = code;
});
