import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { unavailable } from '../errors';
import { hostUid, inInitialUserNamespace } from '../namespaces';

/**
 * The runtime directory, where mount daemons keep their own files (control
 * sockets, pid files, logs): $SNAPFS_RUNTIME_DIR if set (a separate set of
 * daemons, as the tests run), else /run/snapfs for root, else
 * $XDG_RUNTIME_DIR/snapfs, else /tmp/snapfs-UID. Root means the host's root
 * here: uid 0 of a user namespace (rootless podman's or buildah's, which run
 * the mount program as their uid 0, or RootlessKit's) is a user without
 * privileges on the host, who cannot make /run/snapfs.
 *
 * It, and every directory below it, is made 0700 and checked before each
 * use: a directory of this user's that nobody else may write, so that
 * nobody else can put a symlink where one of our files goes. A work
 * directory offers no such thing: whoever owns it may fill it, and a
 * daemon running as root would write wherever what they put there points.
 */
export function runtimeDir(): string {
  const given = process.env.SNAPFS_RUNTIME_DIR;
  if (given) return privateDir(path.resolve(given));
  const uid = process.geteuid?.();
  if (uid === 0 && inInitialUserNamespace()) return privateDir('/run/snapfs');
  const xdg = process.env.XDG_RUNTIME_DIR;
  // Named by the host's uid: rootless users' namespaces all call them 0.
  return privateDir(xdg ? path.join(xdg, 'snapfs') : path.join(os.tmpdir(), `snapfs-${hostUid()}`));
}

/** What the daemon serving a work directory keeps: its control socket, its pid file and its log. */
export interface DaemonFiles {
  readonly socket: string;
  readonly pid: string;
  readonly log: string;
}

/**
 * RUNTIME/mounts/DEV-INO.sock, .pid and .log, by the work directory's
 * device and inode numbers rather than its path: a work directory of any
 * length gives a socket path that fits a unix socket, and every spelling of
 * one directory (through symlinks, relative or not) gives the same names.
 */
export function daemonFiles(work: string): DaemonFiles {
  const { dev, ino } = fs.statSync(work, { bigint: true });
  const base = path.join(privateDir(path.join(runtimeDir(), 'mounts')), `${dev}-${ino}`);
  return { socket: `${base}.sock`, pid: `${base}.pid`, log: `${base}.log` };
}

const { O_RDONLY, O_WRONLY, O_APPEND, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;

/**
 * Opens the log `file` for appending: made 0600, or, when there already,
 * opened as long as it is a regular file of ours. A symlink is never
 * followed.
 */
export function openLog(file: string): number {
  try {
    return fs.openSync(file, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
  } catch (err) {
    if (codeOf(err) !== 'EEXIST') throw err;
  }
  return openOwnFile(file, O_WRONLY | O_APPEND);
}

/** The content of our file `file`, or undefined if there is none. */
export function readOwnFile(file: string): string | undefined {
  let fd: number;
  try {
    fd = openOwnFile(file, O_RDONLY);
  } catch (err) {
    if (codeOf(err) === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return fs.readFileSync(fd, 'utf8');
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Writes `content` to a new file `file`, mode 0600, in place of a stale one
 * (see removeStale). Made with O_EXCL and O_NOFOLLOW: never through a
 * symlink, never into a file someone else opened.
 */
export function writeOwnFile(file: string, content: string): void {
  removeStale(file, 'file');
  const fd = fs.openSync(file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
  try {
    fs.writeFileSync(fd, content);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Removes what a daemon that is gone left at `file`: a regular file or a
 * socket of ours. Anything else there was put by someone else (root), and
 * is refused rather than removed.
 */
export function removeStale(file: string, kind: 'file' | 'socket'): void {
  const st = fs.lstatSync(file, { throwIfNoEntry: false });
  if (st === undefined) return;
  const problem = notOurs(st, kind);
  if (problem !== undefined) throw unavailable(`${file}: ${problem}`);
  fs.unlinkSync(file);
}

/**
 * Removes the log `file` of a daemon on its way out if nothing was written
 * to it: named by work directory, logs would otherwise pile up, one for
 * every directory ever mounted.
 */
export function removeIfEmpty(file: string): void {
  const st = fs.lstatSync(file, { throwIfNoEntry: false });
  if (st !== undefined && st.size === 0 && notOurs(st, 'file') === undefined) fs.unlinkSync(file);
}

/** Opens an existing file of ours, never through a symlink, and checks what it is once open. */
function openOwnFile(file: string, flags: number): number {
  let fd: number;
  try {
    fd = fs.openSync(file, flags | O_NOFOLLOW);
  } catch (err) {
    if (codeOf(err) === 'ELOOP') throw unavailable(`${file}: a symbolic link, not a file of snapfs's`);
    throw err;
  }
  const problem = notOurs(fs.fstatSync(fd), 'file');
  if (problem === undefined) return fd;
  fs.closeSync(fd);
  throw unavailable(`${file}: ${problem}`);
}

/** Why `st` is not a file (or socket) of this user's, if it is not. */
function notOurs(st: fs.Stats, kind: 'file' | 'socket'): string | undefined {
  const uid = process.geteuid?.();
  if (st.isSymbolicLink()) return `a symbolic link, not a ${kind} of snapfs's`;
  if (kind === 'file' ? !st.isFile() : !st.isSocket()) return `not a ${kind === 'file' ? 'regular file' : 'socket'}`;
  if (st.uid !== uid) return `owned by uid ${st.uid}, not by this user (uid ${uid})`;
  return undefined;
}

/** Makes `dir` (0700) unless it exists, and refuses it unless it is a directory that only this user may write. */
function privateDir(dir: string): string {
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    const code = codeOf(err);
    if (code === 'ENOENT') throw unavailable(`runtime directory ${dir}: cannot be made, ${path.dirname(dir)} does not exist`);
    if (code !== 'EEXIST') throw unavailable(`runtime directory ${dir}: cannot be made (${causeOf(err)})`);
  }
  const problem = notPrivate(fs.lstatSync(dir));
  if (problem !== undefined) throw unavailable(`runtime directory ${dir}: ${problem}`);
  return dir;
}

function notPrivate(st: fs.Stats): string | undefined {
  const uid = process.geteuid?.();
  if (st.isSymbolicLink()) return 'a symbolic link, not a directory of its own';
  if (!st.isDirectory()) return 'not a directory';
  if (st.uid !== uid) return `owned by uid ${st.uid}, not by this user (uid ${uid})`;
  if ((st.mode & 0o022) !== 0) return `writable by group or others (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}), not private to its owner`;
  return undefined;
}

function codeOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

/** "permission denied" from Node's "EACCES: permission denied, mkdir '…'", which names the path again. */
function causeOf(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return /^E[A-Z]+: ([^,]+),/.exec(message)?.[1] ?? message;
}
