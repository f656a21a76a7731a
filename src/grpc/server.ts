import * as grpc from '@grpc/grpc-js';
import * as fs from 'node:fs';
import type * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { alreadyExists, invalidArgument, messageOf, unavailable } from '../errors';
import { freezeMount } from '../mount/control';
import { onStopSignals } from '../signals';
import { claimRoot, releaseRoot } from '../snapshotter/owner';
import { Snapshotter } from '../snapshotter/snapshotter';
import { fitsSocketAddress, MAX_SOCKET_PATH } from '../unix-socket';
import { LOG_LEVELS, type LogLevel } from './options';
import { CallMetrics, parseListenAddress, serveMetrics } from './metrics';
import { snapshotsService, type CallLog } from './service';

export interface ServeOptions {
  readonly root: string;
  readonly address: string;
  /** Group allowed to use the socket (mode 0660); else only the owner (0600). */
  readonly group?: number;
  readonly logLevel: LogLevel;
  readonly log: (line: string) => void;
  /** HOST:PORT to serve Prometheus metrics on (GET /metrics); none if undefined. */
  readonly metricsAddress?: string;
}

/** In-flight calls get this long to finish after SIGTERM (longer than a commit waits for a mount to freeze); then they are cut. */
const SHUTDOWN_GRACE_MS = 30_000;

/**
 * A socket path is free, or made free: a socket nobody answers on is a
 * leftover of a server that died, and is removed. A live server's socket,
 * or anything that is not a socket, is left alone and refused.
 */
async function freeSocketPath(address: string): Promise<void> {
  if (!fitsSocketAddress(address)) throw invalidArgument(`socket ${address}: path longer than ${MAX_SOCKET_PATH} bytes`);
  const st = fs.lstatSync(address, { throwIfNoEntry: false });
  if (st === undefined) return;
  if (!st.isSocket()) throw alreadyExists(`socket ${address}: exists and is not a socket`);
  // Only a refused connection means nobody listens; anything else may be a live server.
  const refused = await new Promise<string | undefined>((resolve) => {
    const probe = net.connect(address);
    probe.once('connect', () => {
      probe.destroy();
      resolve('in use by a running server');
    });
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED' ? undefined : `cannot tell whether a server uses it (${err.code ?? err.message})`));
  });
  if (refused !== undefined) throw alreadyExists(`socket ${address}: ${refused}`);
  fs.unlinkSync(address);
}

async function bind(server: grpc.Server, address: string, group: number | undefined): Promise<void> {
  fs.mkdirSync(path.dirname(address), { recursive: true, mode: 0o711 });
  // The socket is born private (no window in which others could connect), then opened to the group.
  const umask = process.umask(0o177);
  try {
    await new Promise<number>((resolve, reject) =>
      server.bindAsync(`unix:${address}`, grpc.ServerCredentials.createInsecure(), (err, port) => (err === null ? resolve(port) : reject(err))),
    );
  } catch (err) {
    throw unavailable(`socket ${address}: ${messageOf(err)}`);
  } finally {
    process.umask(umask);
  }
  if (group !== undefined) {
    fs.chownSync(address, -1, group);
    fs.chmodSync(address, 0o660);
  }
}

/** Directories mount(8) searches for helpers, whatever the caller's PATH. */
const MOUNT_HELPER_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

function onPath(dirs: readonly string[], name: string): boolean {
  return dirs.some((dir) => {
    try {
      fs.accessSync(path.join(dir, name), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** Why containerd could not mount fuse.snapfs snapshots, if it could not. */
export function mountHelperProblems(dirs: readonly string[] = MOUNT_HELPER_PATH): string[] {
  const problems: string[] = [];
  if (!onPath(dirs, 'snapfs')) problems.push(`no snapfs on mount(8)'s PATH (${dirs.join(':')}): containerd cannot mount fuse.snapfs snapshots (see the README: npm install -g, or a link in /usr/local/bin)`);
  if (!onPath(dirs, 'mount.fuse3') && !onPath(dirs, 'mount.fuse')) problems.push('no mount.fuse3 or mount.fuse: install the fuse3 package');
  return problems;
}

/**
 * Serves the Snapshots API for `opts.root` on a unix socket until SIGTERM
 * or SIGINT: then no new calls are taken, calls in flight finish, the
 * database is closed and the socket removed. Resolves once stopped.
 */
export async function serveSnapshots(opts: ServeOptions): Promise<void> {
  const rank = LOG_LEVELS.indexOf(opts.logLevel);
  const say = (level: LogLevel, text: string): void => {
    if (LOG_LEVELS.indexOf(level) >= rank) opts.log(`level=${level} ${text}`);
  };
  const metrics = opts.metricsAddress === undefined ? undefined : new CallMetrics();
  const logCall: CallLog = (method, request, code, outcome, ms) => {
    metrics?.observe(method, code, ms / 1000);
    say('debug', `call=${method} ${request}${request ? ' ' : ''}result=${JSON.stringify(outcome)} ms=${ms.toFixed(1)}`);
  };

  // A metrics address that cannot be one is refused before anything is bound.
  if (opts.metricsAddress !== undefined) parseListenAddress(opts.metricsAddress);
  // Signals are caught from the start: a client may connect, and its owner stop us, as soon as we bind.
  let stopListening: () => void = () => undefined;
  const stopped = new Promise<NodeJS.Signals>((resolve) => {
    stopListening = onStopSignals((signal) => {
      stopListening();
      resolve(signal);
    });
  });
  // A commit freezes the mount of its snapshot, if there is one, before measuring it.
  const snapshotter = new Snapshotter(opts.root, {
    freeze: async (workDir) => {
      await freezeMount(workDir);
    },
  });
  const server = new grpc.Server();
  const service = snapshotsService(snapshotter, logCall);
  server.addService(service.definition, service.implementation);
  let metricsServer: http.Server | undefined;
  try {
    await freeSocketPath(opts.address);
    claimRoot(opts.root, opts.address);
    try {
      await bind(server, opts.address, opts.group);
      if (metrics !== undefined) metricsServer = await serveMetrics(opts.metricsAddress!, metrics, (line) => say('debug', line));
    } catch (err) {
      server.forceShutdown();
      fs.rmSync(opts.address, { force: true });
      releaseRoot(opts.root);
      throw err;
    }
  } catch (err) {
    stopListening();
    snapshotter.close();
    throw err;
  }
  for (const problem of mountHelperProblems()) say('warn', problem);
  say('info', `serving root=${JSON.stringify(path.resolve(opts.root))} address=${JSON.stringify(opts.address)}${metricsServer === undefined ? '' : ` metrics=${JSON.stringify(opts.metricsAddress)}`}`);

  const signal = await stopped;
  say('info', `${signal}: finishing calls in flight`);
  metricsServer?.close();
  await new Promise<void>((resolve) => {
    const cut = setTimeout(() => server.forceShutdown(), SHUTDOWN_GRACE_MS);
    server.tryShutdown(() => {
      clearTimeout(cut);
      resolve();
    });
  });
  // A call cut off by forceShutdown may still be working (a commit waiting for a mount): let it end first.
  await service.idle();
  snapshotter.close();
  fs.rmSync(opts.address, { force: true });
  releaseRoot(opts.root);
  say('info', 'stopped');
}
