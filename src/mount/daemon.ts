import * as fs from 'node:fs';
import * as path from 'node:path';
import { alreadyExists, invalidArgument } from '../errors';
import { unmount } from '../fuse/mount';
import { fileKey } from '../layerfs/inode';
import { Connection, Listener, listening, type Message } from '../native/unix';
import { onStopSignals } from '../signals';
import { dirCount, notAppliedNote, parseRequest, type BrowseHandOver, type DaemonAnswer, type DaemonRequest, type HandOver, type LiveMount } from './handover';
import { inInitialUserNamespace, mountNamespace } from '../namespaces';
import { removeStale, runtimeDir } from './runtime';
import { Threads } from './threads';

/**
 * The mount daemon: one process per user (and user namespace) serving
 * every snapfs mount a helper hands it, each a session of its own on the
 * /dev/fuse descriptor the helper made, over layer directories the helper
 * opened. It listens on RUNTIME/daemon.sock, takes requests only from its
 * own user, and exits once it has served no mount for a while.
 */

/**
 * RUNTIME/daemon.sock, .log and .lock (the lock orders helpers that start
 * one). One daemon per user namespace: chowning to the ids a namespace maps
 * needs a daemon inside it, so outside the initial namespace the names carry
 * the namespace's inode number (daemon-userns-INO.sock).
 */
export function sharedDaemonFiles(): { socket: string; log: string; lock: string } {
  const dir = runtimeDir();
  const base = path.join(dir, inInitialUserNamespace() ? 'daemon' : `daemon-userns-${fs.statSync('/proc/self/ns/user').ino}`);
  return { socket: `${base}.sock`, log: `${base}.log`, lock: `${base}.lock` };
}

/** Seconds without a mount before a daemon started on demand exits (SNAPFS_DAEMON_IDLE_SECONDS; default 60). */
export function idleSecondsFromEnv(): number {
  const given = Number(process.env.SNAPFS_DAEMON_IDLE_SECONDS);
  return process.env.SNAPFS_DAEMON_IDLE_SECONDS !== undefined && Number.isFinite(given) && given >= 0 ? given : 60;
}

export interface DaemonOptions {
  /** Seconds without a mount before exiting; undefined: never (a service). */
  readonly idleSeconds?: number;
}

interface Serving {
  /** Its id on the serving threads. */
  readonly id: number;
  readonly info: Omit<LiveMount, 'requests'>;
  /** Whether its mount point is in this process's mount namespace, so that unmounting it by path here unmounts that very mount. */
  readonly here: boolean;
}

export async function runMountDaemon(opts: DaemonOptions = {}): Promise<void> {
  // Modes arrive with the caller's umask applied already.
  process.umask(0);
  const { socket } = sharedDaemonFiles();
  const uid = process.getuid?.();
  const mounts = new Set<Serving>();
  let pending = 0;
  let idleTimer: NodeJS.Timeout | undefined;
  const connections = new Set<Connection>();
  const threads = new Threads();
  const ownNamespace = mountNamespace();
  /** The work directories (DEV:INO) of the writable mounts served or being started. */
  const writers = new Set<string>();

  const log = (line: string): void => console.error(`${new Date().toISOString()} ${line}`);

  const onConnection = (fd: number): void => {
    const conn = new Connection(fd, onMessage, (c) => connections.delete(c));
    connections.add(conn);
  };
  const activated = socketFromSystemd();
  const listener = activated === undefined ? listen(socket, onConnection) : new Listener({ fd: activated }, onConnection);
  if (listener.path !== socket) {
    listener.close();
    throw invalidArgument(`socket activation: the socket systemd passed is ${listener.path}; mount helpers look for ${socket}`);
  }
  const socketId = fs.statSync(socket, { bigint: true });
  log(`serving on ${socket} (pid ${process.pid}${activated === undefined ? '' : ', socket from systemd'})`);

  let stopping = false;
  const stop = (why: string): void => {
    if (stopping) return;
    stopping = true;
    log(why);
    // The socket goes first: a helper that finds it gone starts a new daemon. One of
    // systemd's stays: systemd listens on it and starts us again at the next connection.
    listener.close();
    const st = fs.statSync(socket, { bigint: true, throwIfNoEntry: false });
    if (activated === undefined && st !== undefined && st.dev === socketId.dev && st.ino === socketId.ino) fs.unlinkSync(socket);
    for (const c of connections) c.close();
    // A mount made in another namespace is not unmounted by its path here (which may name another mount):
    // its session ends, and it answers ENOTCONN until unmounted there, as when a daemon dies.
    const unmounted = [...mounts].map((m) => (m.here ? unmount(m.info.mountpoint).catch(() => undefined) : Promise.resolve(threads.close(m.id))));
    void Promise.all(unmounted).then(() => process.exit(0));
  };
  const idleCheck = (): void => {
    if (idleTimer !== undefined) clearTimeout(idleTimer);
    idleTimer = undefined;
    const idle = opts.idleSeconds;
    if (idle === undefined || mounts.size > 0 || pending > 0 || stopping) return;
    idleTimer = setTimeout(() => stop(`no mount for ${idle} s: exiting`), idle * 1000);
  };
  onStopSignals((signal) => stop(`${signal}: unmounting every mount`));
  idleCheck();

  function onMessage(conn: Connection, msg: Message): void {
    const answer = (a: DaemonAnswer): void => {
      try {
        conn.send(Buffer.from(JSON.stringify(a)));
      } catch {
        // The helper left: it has nothing more to hear.
      }
    };
    // Root may read what the mounts cost (snapfs serve's metrics), and do nothing else.
    if (conn.peer.uid !== uid && !(conn.peer.uid === 0 && msg.fds.length === 0 && isStatsRequest(msg.data))) {
      msg.fds.forEach((fd) => fs.closeSync(fd));
      log(`refused a request from uid ${conn.peer.uid} (pid ${conn.peer.pid})`);
      answer({ error: `refused: this daemon serves uid ${uid} only` });
      conn.close();
      connections.delete(conn);
      return;
    }
    let request: DaemonRequest;
    try {
      request = parseRequest(msg.data);
      const wanted = request.op === 'list' || request.op === 'stats' ? 0 : 1 + dirCount(request);
      if (msg.fds.length !== wanted) throw new Error(`request: ${msg.fds.length} descriptors for ${wanted}`);
    } catch (err) {
      msg.fds.forEach((fd) => fs.closeSync(fd));
      answer({ error: err instanceof Error ? err.message : String(err) });
      return;
    }
    if (request.op === 'list') {
      void threads.counts().then((counts) => answer({ ok: true, mounts: [...mounts].map((m) => ({ ...m.info, requests: counts.get(m.id) ?? 0 })) }));
      return;
    }
    if (request.op === 'stats') {
      void threads.stats().then((stats) => answer({ ok: true, stats }));
      return;
    }
    const h = request;
    // One upper layer, one writer: two helpers may both have found it free.
    const writer = h.op === 'mount' && h.upper !== undefined ? workKey(msg.fds[msg.fds.length - 1]!) : undefined;
    if (writer !== undefined && writers.has(writer)) {
      msg.fds.forEach((fd) => fs.closeSync(fd));
      answer({ error: `${h.op === 'mount' ? h.upper : h.mountpoint}: already mounted read-write by this daemon` });
      return;
    }
    if (writer !== undefined) writers.add(writer);
    pending++;
    let serving: Serving | undefined;
    const ended = (message: string | undefined): void => {
      if (writer !== undefined) writers.delete(writer);
      if (message !== undefined) log(`${h.mountpoint}: ${message}`);
      if (serving !== undefined) mounts.delete(serving);
      log(`unmounted ${h.mountpoint}`);
      idleCheck();
    };
    threads.serve(h, msg.fds, ended).then(
      (id) => {
        pending--;
        serving = { id, info: liveInfo(h), here: h.mountNamespace === undefined || h.mountNamespace === ownNamespace };
        mounts.add(serving);
        log(`mounted ${h.mountpoint}${h.op === 'mount' && h.notApplied !== undefined ? ` (${notAppliedNote(h.notApplied)})` : ''}`);
        answer({ ok: true });
        idleCheck();
      },
      (err: unknown) => {
        pending--;
        if (writer !== undefined) writers.delete(writer);
        const message = err instanceof Error ? err.message : String(err);
        log(`mount ${h.mountpoint}: ${message}`);
        answer({ error: message });
        idleCheck();
      },
    );
    idleCheck();
  }
}

function isStatsRequest(data: Buffer): boolean {
  try {
    return parseRequest(data).op === 'stats';
  } catch {
    return false;
  }
}

/** A work directory's identity, from the descriptor a helper sent of it. */
function workKey(fd: number): string {
  const st = fs.fstatSync(fd, { bigint: true });
  return fileKey(st.dev, st.ino);
}

/** What `snapfs mounted` shows of a mount, but its count of requests. */
function liveInfo(h: HandOver | BrowseHandOver): Omit<LiveMount, 'requests'> {
  if (h.op === 'browse') return { mountpoint: h.mountpoint, lowers: [], browse: h.root, since: Date.now() };
  return {
    mountpoint: h.mountpoint,
    lowers: h.lowers,
    ...(h.upper === undefined ? {} : { upper: h.upper, work: h.work! }),
    ...(h.snapshot === undefined ? {} : { snapshot: h.snapshot }),
    since: Date.now(),
  };
}

/**
 * The listening socket systemd passed (socket activation: LISTEN_PID is
 * this process, LISTEN_FDS 1, the socket at descriptor 3), if it did.
 * The socket unit must listen where the helpers look (RUNTIME/daemon.sock).
 */
function socketFromSystemd(): number | undefined {
  if (process.env.LISTEN_PID !== String(process.pid)) return undefined;
  if (process.env.LISTEN_FDS !== '1') throw invalidArgument(`socket activation: LISTEN_FDS=${process.env.LISTEN_FDS ?? ''}, the mount daemon takes one socket`);
  delete process.env.LISTEN_PID;
  delete process.env.LISTEN_FDS;
  return 3;
}

/**
 * Listens on `socket`, made 0600 (in the private runtime directory), in
 * place of one a daemon that died left; refuses if a live daemon listens
 * there (`snapfs daemon` run twice, or beside one started on demand).
 */
function listen(socket: string, onConnection: (fd: number) => void): Listener {
  if (listening(socket)) throw alreadyExists(`mount daemon ${socket}: one is running already`);
  removeStale(socket, 'socket');
  const old = process.umask(0o077);
  try {
    return new Listener(socket, onConnection);
  } catch (err) {
    // Another daemon bound it meanwhile.
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') throw alreadyExists(`mount daemon ${socket}: one is running already`);
    throw err;
  } finally {
    process.umask(old);
  }
}
