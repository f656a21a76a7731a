#!/usr/bin/env node
import { EXIT_CODES, invalidArgument, kindOf, messageOf, systemFailure } from '../errors';
import { isMountCommandLine, parseMountCommandLine } from '../mount/cmdline';
import { COMMAND_NAMES } from './command-names';

/**
 * The snapfs command. What runs for a mount is told apart first, from argv
 * alone, and loads only the mount code: fuse-overlayfs's command line
 * (mount(8) runs us so for `mount -t fuse.snapfs`) and the hidden entry
 * points of the daemons that serve mounts. Anything else is a command:
 * commander is loaded then, and each command loads its own modules when it
 * runs (program.ts).
 */
async function main(argv: readonly string[]): Promise<number> {
  const args = argv.slice(2);
  try {
    if (args[0] === '__serve') {
      // launch() started us to serve one mount (src/mount/launch.ts).
      const request = args[1];
      if (request === undefined) throw invalidArgument('__serve: no mount request given');
      const { runDaemon } = await import('../mount/launch');
      await runDaemon(request);
      // libfuse's handles keep the event loop alive after the unmount.
      process.exit(0);
    }
    if (args[0] === '__daemon') {
      // A mount helper started us as the user's mount daemon (src/mount/daemon-client.ts).
      const { idleSecondsFromEnv, runMountDaemon } = await import('../mount/daemon');
      await runMountDaemon({ idleSeconds: idleSecondsFromEnv() });
      return 0;
    }
    if (isMountCommandLine(args, COMMAND_NAMES)) {
      await mountFromCommandLine(args);
      return 0;
    }
    const { runProgram } = await import('./program');
    return await runProgram(argv);
  } catch (err) {
    const known = systemFailure(err) ?? err;
    const kind = kindOf(known);
    // A bug gets its stack trace; everything else one line.
    const text = kind === 'Unknown' && known instanceof Error && known.stack !== undefined ? known.stack : messageOf(known).split('\n')[0];
    process.stderr.write(`snapfs: ${text}\n`);
    return EXIT_CODES[kind];
  }
}

/** fuse-overlayfs's and mount.fuse's command lines (see src/mount/cmdline.ts). */
async function mountFromCommandLine(args: readonly string[]): Promise<void> {
  const { launch } = await import('../mount/launch');
  const { foreground, ...request } = parseMountCommandLine(args);
  await launch(request, { foreground });
  if (foreground) process.exit(0);
}

// stdout may be a pipe closed early (`snapfs ls | head`): that is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

void main(process.argv).then((code) => {
  process.exitCode = code;
});
