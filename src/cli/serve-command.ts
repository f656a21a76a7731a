import { InvalidArgumentError, Option, type Command } from 'commander';
import * as fs from 'node:fs';
import { defaultAddress, LOG_LEVELS, type LogLevel } from '../grpc/options';

/** serve: the Snapshots gRPC API for containerd's proxy_plugins. */
export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description("serve the root to containerd: the Snapshots gRPC API on a unix socket (containerd's proxy_plugins)")
    .option('--address <path>', 'unix socket to listen on', defaultAddress())
    .option('--group <name|gid>', 'let this group use the socket (mode 0660 instead of 0600)', parseGroup)
    .addOption(new Option('--log-level <level>', 'debug logs one line per call').choices(LOG_LEVELS).default('info'))
    .option('--metrics-address <host:port>', 'serve Prometheus metrics (GET /metrics) on this TCP address, e.g. 127.0.0.1:9420')
    .action(async (opts: { address: string; group?: number; logLevel: LogLevel; metricsAddress?: string }, cmd: Command) => {
      const { root } = cmd.optsWithGlobals<{ root: string }>();
      // gRPC is loaded by this command alone.
      const { serveSnapshots } = await import('../grpc/server');
      await serveSnapshots({
        root,
        address: opts.address,
        logLevel: opts.logLevel,
        log: (line) => process.stderr.write(`${new Date().toISOString()} snapfs serve: ${line}\n`),
        ...(opts.group === undefined ? {} : { group: opts.group }),
        ...(opts.metricsAddress === undefined ? {} : { metricsAddress: opts.metricsAddress }),
      });
    });
}

function parseGroup(value: string): number {
  if (/^[0-9]+$/.test(value)) return Number(value);
  const line = fs
    .readFileSync('/etc/group', 'utf8')
    .split('\n')
    .find((l) => l.split(':')[0] === value);
  if (line === undefined) throw new InvalidArgumentError(`no group named ${JSON.stringify(value)}`);
  return Number(line.split(':')[2]);
}
