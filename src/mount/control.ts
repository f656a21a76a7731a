import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { unavailable } from '../errors';
import { isRunning } from '../liveness';
import { fitsSocketAddress, MAX_SOCKET_PATH } from '../unix-socket';
import { isMounted } from './mountinfo';
import { daemonFiles, readOwnFile, removeIfEmpty, removeStale, writeOwnFile } from './runtime';

/**
 * The control socket of a writable mount, in the runtime directory and
 * named by its work directory (see daemonFiles): it lets a commit freeze
 * the mount's writers without the file system knowing about the
 * snapshotter or SQLite. The one request is `freeze`: the mount turns
 * read-only (every later change is EROFS) and answers `frozen` once the
 * changes in flight, and pages dirtied through mmap, have landed in the
 * upper layer.
 */
const FREEZE_TIMEOUT_MS = 10_000;
const MAX_REQUEST = 64;

/**
 * The daemon serving a work directory, if one is: its pid file holds its
 * pid and mount point while it serves. Two daemons writing one upper layer
 * would corrupt it; one whose mount is gone is on its way out.
 */
export function servingPid(work: string): number | undefined {
  const record = readOwnFile(daemonFiles(work).pid);
  if (record === undefined) return undefined;
  const [first = '', ...rest] = record.split('\n');
  const pid = Number(first);
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || !isMounted(rest.join('\n'))) return undefined;
  return isRunning(pid) ? pid : undefined;
}

/** Refuses a work directory whose control socket cannot be made: a runtime directory that is not private, or whose path is too long. */
export function checkControlSocket(work: string): void {
  const { socket } = daemonFiles(work);
  if (!fitsSocketAddress(socket)) throw unavailable(`control socket ${socket}: longer than the ${MAX_SOCKET_PATH} bytes a unix socket path holds (the runtime directory's path is too long)`);
}

/** Serves the control socket for a mount; `freeze` is called at most once. Returns a closer. */
export function serveControl(work: string, mountpoint: string, freeze: () => void): () => Promise<void> {
  checkControlSocket(work);
  const { socket: socketPath, pid: pidFile, log: logFile } = daemonFiles(work);
  // Whatever a daemon that died left is stale: launch() found no live one serving `work`.
  writeOwnFile(pidFile, `${process.pid}\n${mountpoint}`);
  removeStale(socketPath, 'socket');
  const open = new Set<net.Socket>();
  const idle = new Set<net.Socket>();
  const server = net.createServer((conn) => {
    open.add(conn);
    idle.add(conn);
    // A client that says nothing, or never hangs up, must not keep the daemon alive.
    conn.setTimeout(FREEZE_TIMEOUT_MS, () => conn.destroy());
    conn.on('close', () => {
      open.delete(conn);
      idle.delete(conn);
    });
    conn.setEncoding('utf8');
    let request = '';
    const answer = (text: string): void => void conn.end(text, () => conn.destroy());
    conn.on('data', (chunk: string) => {
      if (request.includes('\n')) return; // one request per connection
      request += chunk;
      if (request.length > MAX_REQUEST) return conn.destroy();
      if (!request.includes('\n')) return;
      if (request.split('\n')[0]!.trim() !== 'freeze') return answer('error unknown request\n');
      idle.delete(conn);
      // Pages written through mmap are still the kernel's: have them
      // written back (through this very mount, from another process)
      // before changes are refused. Operations run one at a time on this
      // thread, so once `freeze` runs none is in flight.
      execFile('sync', ['-f', mountpoint], () => {
        freeze();
        answer('frozen\n');
      });
    });
    conn.on('error', () => undefined);
  });
  server.on('error', (err) => console.error(`snapfs: control socket ${socketPath}:`, err));
  // Only the owner (and root) may freeze the mount; the runtime directory already keeps others out.
  server.listen(socketPath, () => fs.chmodSync(socketPath, 0o600));
  // On the way out: read-only first (a lazily detached mount may still be written through), then
  // freeze requests being answered finish, idle connections go, an empty log goes, and the pid file goes last.
  return () =>
    new Promise<void>((resolve) => {
      freeze();
      for (const conn of idle) conn.destroy();
      const cut = setTimeout(() => open.forEach((conn) => conn.destroy()), FREEZE_TIMEOUT_MS);
      server.close(() => {
        clearTimeout(cut);
        fs.rmSync(socketPath, { force: true });
        removeIfEmpty(logFile);
        fs.rmSync(pidFile, { force: true });
        resolve();
      });
    });
}

/**
 * Asks the mount serving `work`, if there is one, to freeze. Resolves true
 * once frozen, false when no mount serves it (no socket, or a stale one).
 */
export function freezeMount(work: string): Promise<boolean> {
  const socketPath = daemonFiles(work).socket;
  if (fs.lstatSync(socketPath, { throwIfNoEntry: false })?.isSocket() !== true) return Promise.resolve(false);
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(socketPath);
    let reply = '';
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new Error(`${work}: its mount did not answer freeze within ${FREEZE_TIMEOUT_MS / 1000} s`));
    }, FREEZE_TIMEOUT_MS);
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write('freeze\n'));
    conn.on('data', (chunk: string) => (reply += chunk));
    conn.on('end', () => {
      clearTimeout(timer);
      if (reply.trim() === 'frozen') resolve(true);
      // Hung up without an answer: a daemon whose mount is gone, on its way out, has nothing to freeze.
      else if (reply === '' && servingPid(work) === undefined) resolve(false);
      else reject(new Error(`${work}: its mount answered freeze with ${JSON.stringify(reply.trim())}`));
    });
    conn.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      // A socket left by a daemon that died: nothing to freeze. Cut off by one on its way out, with its mount gone: the same.
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve(false);
      else if ((err.code === 'ECONNRESET' || err.code === 'EPIPE') && servingPid(work) === undefined) resolve(false);
      else reject(err);
    });
  });
}
