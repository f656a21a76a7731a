import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LATENCY_BOUNDS } from '../fuse/session';
import { inInitialUserNamespace } from '../namespaces';
import { exchangeAsync } from '../native/unix';
import type { DaemonAnswer, DaemonRequest } from './handover';
import { runtimeDir } from './runtime';
import { parseDaemonStats, type DaemonStats } from './stats';

/** How long a daemon has to say what its mounts cost: a scrape must not wait on a stuck one. */
const STATS_MS = 2_000;
const DAEMON_SOCKET = /^daemon(-userns-[0-9]+)?\.sock$/;

/**
 * The sockets of the mount daemons this process may ask what their mounts
 * cost: its user's (one per user namespace, in its runtime directory), and
 * for root of the host, every user's too, in their runtime directories'
 * usual places (/run/user/UID/snapfs, /tmp/snapfs-UID). Mounts served by
 * a process of their own (`dedicated`) have no daemon to ask.
 */
export function reachableDaemons(): string[] {
  const dirs = [runtimeDir()];
  if (process.env.SNAPFS_RUNTIME_DIR === undefined && process.geteuid?.() === 0 && inInitialUserNamespace()) {
    for (const uid of namesIn('/run/user')) dirs.push(path.join('/run/user', uid, 'snapfs'));
    for (const name of namesIn(os.tmpdir())) if (/^snapfs-[0-9]+$/.test(name)) dirs.push(path.join(os.tmpdir(), name));
  }
  return [...new Set(dirs)].flatMap((dir) => namesIn(dir).filter((n) => DAEMON_SOCKET.test(n)).map((n) => path.join(dir, n)));
}

/** What the daemon at `socket` says its mounts have cost, checked field by field (it may be another user's). */
export async function daemonStats(socket: string): Promise<DaemonStats> {
  const reply = await exchangeAsync(socket, Buffer.from(JSON.stringify({ op: 'stats' } satisfies DaemonRequest)), STATS_MS);
  let answer: DaemonAnswer;
  try {
    answer = JSON.parse(reply.data.toString()) as DaemonAnswer;
  } catch {
    throw new Error('stats: not JSON');
  }
  if ('error' in answer) throw new Error(String(answer.error));
  return parseDaemonStats(answer.stats, LATENCY_BOUNDS.length + 1);
}

function namesIn(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}
