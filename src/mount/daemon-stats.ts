import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LATENCY_BOUNDS } from '../fuse/session';
import { inInitialUserNamespace } from '../namespaces';
import { fstat, O_PATH, sys } from '../native/sys';
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
const { O_DIRECTORY, O_NOFOLLOW, O_RDONLY } = fs.constants;

/** A mount daemon's socket, found through descriptors, and the user it must be listened on by. */
export interface DaemonSocket {
  /** Where it is, to name it. */
  readonly socket: string;
  readonly uid: number;
  /**
   * An O_PATH descriptor of the socket itself: daemonStats connects
   * through it (/proc/self/fd), never by the path, which its owner may
   * have changed meanwhile, and closes it.
   */
  readonly fd: number;
}

/**
 * The mount daemons this process may ask what their mounts cost: its
 * user's (one per user namespace, in its runtime directory), and for root
 * of the host, every user's too, in their runtime directories' usual
 * places (/run/user/UID/snapfs, /tmp/snapfs-UID). Those are the users'
 * own: each step is a descriptor and one name opened without following a
 * symlink, a place is looked into only if it is a directory of that
 * user's, writable by nobody else, no mount point, with no FUSE mount at,
 * above or below it (whose server could keep a call waiting), and only
 * sockets of that user's in it are asked. Mounts served by a process of
 * their own (`dedicated`) have no daemon to ask. The caller passes every
 * one returned to daemonStats (which closes its descriptor).
 */
export function reachableDaemons(): DaemonSocket[] {
  const uid = process.geteuid?.() ?? 0;
  const own = runtimeDir();
  const found: DaemonSocket[] = [];
  try {
    // Our own runtime directory: private (runtimeDir checked it), nobody else's to change; never a symlink, as runtimeDir found it.
    withFd(fs.openSync(own, O_RDONLY | O_DIRECTORY | O_NOFOLLOW), (dirfd) => found.push(...socketsIn(dirfd, own, uid, MAX_DAEMONS)));
    if (process.env.SNAPFS_RUNTIME_DIR === undefined && uid === 0 && inInitialUserNamespace()) {
      const fuse = fuseMountPoints().map((m) => m.toString('latin1'));
      const nearFuse = (dir: string): boolean => fuse.some((m) => m === dir || m.startsWith(`${dir}/`) || dir.startsWith(`${m === '/' ? '' : m}/`));
      // A user's directory `name` of `parentFd`: its sockets go to `found`.
      const lookIn = (parentFd: number, dir: string, name: string, owner: number, ownMount: boolean, then: (dirfd: number) => void): void => {
        if (found.length < MAX_DAEMONS && !nearFuse(path.join(dir, name))) withFd(openUsersDir(parentFd, name, owner, ownMount), then);
      };
      const collect = (dir: string, owner: number) => (dirfd: number): void => {
        found.push(...socketsIn(dirfd, dir, owner, MAX_DAEMONS - found.length));
      };
      // /run/user/UID is a mount of its own (systemd's tmpfs); its snapfs directory is not.
      withFd(openOrUndefined('/run/user'), (runUser) => {
        for (const n of namesIn(runUser)) {
          if (!/^[1-9][0-9]{0,9}$/.test(n)) continue;
          const home = path.join('/run/user', n);
          lookIn(runUser, '/run/user', n, Number(n), true, (userFd) => lookIn(userFd, home, 'snapfs', Number(n), false, collect(path.join(home, 'snapfs'), Number(n))));
        }
      });
      withFd(openOrUndefined(os.tmpdir()), (tmp) => {
        for (const n of namesIn(tmp)) {
          const owner = Number(/^snapfs-([1-9][0-9]{0,9})$/.exec(n)?.[1]);
          if (owner > 0) lookIn(tmp, os.tmpdir(), n, owner, false, collect(path.join(os.tmpdir(), n), owner));
        }
      });
    }
  } catch (err) {
    for (const d of found) fs.closeSync(d.fd);
    throw err;
  }
  return found;
}

/** What the daemon at `d` says its mounts have cost, checked field by field (it may be another user's). Closes `d.fd`. */
export async function daemonStats(d: DaemonSocket): Promise<DaemonStats> {
  let asked: Promise<{ data: Buffer }>;
  try {
    // Connected at once, through the socket's own descriptor: the path is not looked up again.
    asked = exchangeAsync(`/proc/self/fd/${d.fd}`, Buffer.from(JSON.stringify({ op: 'stats' } satisfies DaemonRequest)), STATS_MS, d.uid);
  } finally {
    fs.closeSync(d.fd);
  }
  const reply = await asked;
  let answer: DaemonAnswer;
  try {
    answer = JSON.parse(reply.data.toString()) as DaemonAnswer;
  } catch {
    throw new Error('stats: not JSON');
  }
  if ('error' in answer) throw new Error(String(answer.error));
  return parseDaemonStats(answer.stats, LATENCY_BOUNDS.length + 1);
}

/**
 * Directory `name` of `parentFd`, opened without following a symlink, if
 * it is `owner`'s alone (theirs, writable by nobody else) and, unless it
 * is a mount of its own (`ownMount`), on its parent's file system.
 */
function openUsersDir(parentFd: number, name: string, owner: number, ownMount: boolean): number | undefined {
  let fd: number;
  try {
    fd = sys.openAt(parentFd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
  } catch {
    return undefined; // gone, no directory, or a symlink
  }
  const st = fstat(fd);
  if (st.uid === owner && (st.mode & 0o022) === 0 && (ownMount || st.dev === fstat(parentFd).dev)) return fd;
  fs.closeSync(fd);
  return undefined;
}

/** The daemon sockets of `owner` in directory `dirfd` (at `dir`), `max` at most. */
function socketsIn(dirfd: number, dir: string, owner: number, max: number): DaemonSocket[] {
  const found: DaemonSocket[] = [];
  for (const name of namesIn(dirfd)) {
    if (found.length >= max) break;
    if (!DAEMON_SOCKET.test(name)) continue;
    let fd: number;
    try {
      fd = sys.openAt(dirfd, name, O_PATH | O_NOFOLLOW, 0);
    } catch {
      continue;
    }
    const st = fstat(fd);
    if ((st.mode & 0o170000) === 0o140000 && st.uid === owner) found.push({ socket: path.join(dir, name), uid: owner, fd });
    else fs.closeSync(fd);
  }
  return found;
}

/**
 * The first MAX_ENTRIES names in directory `dirfd`, read through the
 * descriptor, as bytes taken one character a byte (latin1): names a socket
 * can have are ASCII, and any other comes back as it was.
 */
function namesIn(dirfd: number): string[] {
  let d: fs.Dir | undefined;
  const names: string[] = [];
  try {
    d = fs.opendirSync(`/proc/self/fd/${dirfd}`, { encoding: 'buffer' as BufferEncoding });
    for (let e = d.readSync(); e !== null && names.length < MAX_ENTRIES; e = d.readSync()) names.push((e.name as unknown as Buffer).toString('latin1'));
  } catch {
    // Unreadable: nothing there.
  } finally {
    d?.closeSync();
  }
  return names;
}

function openOrUndefined(dir: string): number | undefined {
  try {
    return fs.openSync(dir, O_RDONLY | O_DIRECTORY);
  } catch {
    return undefined;
  }
}

/** Runs `use` with descriptor `fd` (if there is one), closing it after. */
function withFd(fd: number | undefined, use: (fd: number) => void): void {
  if (fd === undefined) return;
  try {
    use(fd);
  } finally {
    fs.closeSync(fd);
  }
}
