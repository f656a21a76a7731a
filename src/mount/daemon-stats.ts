import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LATENCY_BOUNDS } from '../fuse/session';
import { inInitialUserNamespace } from '../namespaces';
import { exchangeAsync } from '../native/unix';
import type { DaemonAnswer, DaemonRequest } from './handover';
import { fuseMountPoints } from './mountinfo';
import { runtimeDir } from './runtime';
import { parseDaemonStats, type DaemonStats } from './stats';

/** How long a daemon has to say what its mounts cost: a scrape must not wait on a stuck one. */
const STATS_MS = 2_000;
const DAEMON_SOCKET = /^daemon(-userns-[0-9]+)?\.sock$/;
/** Entries read of a runtime directory, and daemons asked in all, at most: a directory of a million files costs no more. */
const MAX_ENTRIES = 256;
const MAX_DAEMONS = 256;

/** A mount daemon's socket, and the user it must be listened on by. */
export interface DaemonSocket {
  readonly socket: string;
  readonly uid: number;
}

/**
 * The mount daemons this process may ask what their mounts cost: its
 * user's (one per user namespace, in its runtime directory), and for root
 * of the host, every user's too, in their runtime directories' usual
 * places (/run/user/UID/snapfs, /tmp/snapfs-UID). Those are the users'
 * own: a place is looked into only if it is a directory of that user's,
 * writable by nobody else, no symlink and no mount point, with no FUSE
 * mount at, above or below it (whose server could keep a lookup waiting),
 * and only sockets of that user's in it are asked. Mounts served by a
 * process of their own (`dedicated`) have no daemon to ask.
 */
export function reachableDaemons(): DaemonSocket[] {
  const uid = process.geteuid?.() ?? 0;
  const own = runtimeDir();
  const found: DaemonSocket[] = daemonSocketsIn(own, uid);
  if (process.env.SNAPFS_RUNTIME_DIR === undefined && uid === 0 && inInitialUserNamespace()) {
    const fuse = fuseMountPoints();
    const near = (dir: string): boolean => fuse.some((m) => m === dir || m.startsWith(`${dir}/`) || dir.startsWith(`${m === '/' ? '' : m}/`));
    const candidates = [
      ...namesIn('/run/user').map((n) => ({ parent: path.join('/run/user', n), dir: path.join('/run/user', n, 'snapfs'), owner: n })),
      ...namesIn(os.tmpdir()).flatMap((n) => (/^snapfs-[0-9]+$/.test(n) ? [{ parent: os.tmpdir(), dir: path.join(os.tmpdir(), n), owner: n.slice('snapfs-'.length) }] : [])),
    ];
    for (const c of candidates) {
      const owner = /^[0-9]{1,10}$/.test(c.owner) ? Number(c.owner) : NaN;
      if (!(owner > 0) || c.dir === own || near(c.dir) || !usersOwnDir(c.dir, c.parent, owner)) continue;
      found.push(...daemonSocketsIn(c.dir, owner));
    }
  }
  return found.slice(0, MAX_DAEMONS);
}

/** What the daemon at `socket` says its mounts have cost, checked field by field (it may be another user's). */
export async function daemonStats({ socket, uid }: DaemonSocket): Promise<DaemonStats> {
  const reply = await exchangeAsync(socket, Buffer.from(JSON.stringify({ op: 'stats' } satisfies DaemonRequest)), STATS_MS, uid);
  let answer: DaemonAnswer;
  try {
    answer = JSON.parse(reply.data.toString()) as DaemonAnswer;
  } catch {
    throw new Error('stats: not JSON');
  }
  if ('error' in answer) throw new Error(String(answer.error));
  return parseDaemonStats(answer.stats, LATENCY_BOUNDS.length + 1);
}

/** Whether `dir` (in `parent`) is `owner`'s own directory, as a daemon's runtime directory is. */
function usersOwnDir(dir: string, parent: string, owner: number): boolean {
  try {
    const up = fs.lstatSync(parent);
    const st = fs.lstatSync(dir);
    return st.isDirectory() && st.uid === owner && (st.mode & 0o022) === 0 && st.dev === up.dev;
  } catch {
    return false;
  }
}

/** The daemon sockets of `owner` in `dir`. */
function daemonSocketsIn(dir: string, owner: number): DaemonSocket[] {
  return namesIn(dir)
    .filter((n) => DAEMON_SOCKET.test(n))
    .flatMap((n) => {
      const socket = path.join(dir, n);
      const st = fs.lstatSync(socket, { throwIfNoEntry: false });
      return st?.isSocket() === true && st.uid === owner ? [{ socket, uid: owner }] : [];
    });
}

function namesIn(dir: string): string[] {
  let d: fs.Dir | undefined;
  const names: string[] = [];
  try {
    d = fs.opendirSync(dir);
    for (let e = d.readSync(); e !== null && names.length < MAX_ENTRIES; e = d.readSync()) names.push(e.name);
  } catch {
    // Gone, or not a directory of ours to read: nothing there.
  } finally {
    d?.closeSync();
  }
  return names;
}
