import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { invalidArgument } from '../errors';
import { isMounted } from './mountinfo';

/**
 * The control socket of a writable mount, `WORK/control.sock`: it lets a
 * commit freeze the mount's writers without the file system knowing about
 * the snapshotter or SQLite. The one request is `freeze`: the mount turns
 * read-only (every later change is EROFS) and answers `frozen` once the
 * changes in flight, and pages dirtied through mmap, have landed in the
 * upper layer.
 */
const SOCKET = 'control.sock';
const PID_FILE = 'snapfs.pid';
const FREEZE_TIMEOUT_MS = 10_000;
const MAX_REQUEST = 64;
/** sun_path holds 108 bytes; libuv would silently cut a longer path. */
const MAX_SOCKET_PATH = 107;

function controlSocketPath(work: string): string {
  return path.join(work, SOCKET);
}

/** Serves the control socket for a mount; `freeze` is called at most once. Returns a closer. */
/**
 * The daemon serving a work directory, if one is: WORK/snapfs.pid holds its
 * pid and mount point while it serves. Two daemons writing one upper layer
 * would corrupt it; one whose mount is gone is on its way out.
 */
export function servingPid(work: string): number | undefined {
  let pid: number;
  let mountpoint: string;
  try {
    const [first = '', ...rest] = fs.readFileSync(path.join(work, PID_FILE), 'utf8').split('\n');
    pid = Number(first);
    mountpoint = rest.join('\n');
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || !isMounted(mountpoint)) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
}

/** Refuses a work directory whose control socket path a unix socket cannot hold. */
export function checkControlSocket(work: string): void {
  const socketPath = controlSocketPath(work);
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) {
    throw invalidArgument(`${work}: work directory path too long for its control socket (at most ${MAX_SOCKET_PATH - SOCKET.length - 1} bytes)`);
  }
}

export function serveControl(work: string, mountpoint: string, freeze: () => void): () => Promise<void> {
  checkControlSocket(work);
  const socketPath = controlSocketPath(work);
  const pidFile = path.join(work, PID_FILE);
  fs.writeFileSync(pidFile, `${process.pid}\n${mountpoint}`, { mode: 0o600 });
  fs.rmSync(socketPath, { force: true });
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
  // Only the owner (and root) may freeze the mount.
  server.listen(socketPath, () => fs.chmodSync(socketPath, 0o600));
  // On the way out: read-only first (a lazily detached mount may still be written through), then
  // freeze requests being answered finish, idle connections go, and the pid file goes last.
  return () =>
    new Promise<void>((resolve) => {
      freeze();
      for (const conn of idle) conn.destroy();
      const cut = setTimeout(() => open.forEach((conn) => conn.destroy()), FREEZE_TIMEOUT_MS);
      server.close(() => {
        clearTimeout(cut);
        fs.rmSync(socketPath, { force: true });
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
  const socketPath = controlSocketPath(work);
  if (!fs.existsSync(socketPath)) return Promise.resolve(false);
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(socketPath);
    let reply = '';
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new Error(`${socketPath}: no answer to freeze within ${FREEZE_TIMEOUT_MS / 1000} s`));
    }, FREEZE_TIMEOUT_MS);
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write('freeze\n'));
    conn.on('data', (chunk: string) => (reply += chunk));
    conn.on('end', () => {
      clearTimeout(timer);
      if (reply.trim() === 'frozen') resolve(true);
      // Hung up without an answer: a daemon whose mount is gone, on its way out, has nothing to freeze.
      else if (reply === '' && servingPid(work) === undefined) resolve(false);
      else reject(new Error(`${socketPath}: unexpected answer ${JSON.stringify(reply.trim())}`));
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
