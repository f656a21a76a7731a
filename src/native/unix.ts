import * as fs from 'node:fs';
import { sys, type Watch } from './sys';

/**
 * Unix sockets that carry descriptors (SCM_RIGHTS) and say who is on the
 * other end (SO_PEERCRED): how a mount helper hands a mount to a daemon.
 * Messages (SOCK_SEQPACKET) arrive whole, with their descriptors.
 */

export interface Message {
  readonly data: Buffer;
  /** Descriptors that came with the message, now this process's (close-on-exec): the receiver closes them. */
  readonly fds: readonly number[];
}

/** Who connected, as the kernel saw them at connect(2). */
export interface Peer {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

/** One connection accepted by a Listener: messages as they come, on the event loop. */
export class Connection {
  readonly peer: Peer;
  private watch: Watch | undefined;

  constructor(
    private readonly fd: number,
    onMessage: (conn: Connection, msg: Message) => void,
    onClose: (conn: Connection) => void,
  ) {
    const [pid, uid, gid] = sys.unixPeer(fd);
    this.peer = { pid, uid, gid };
    this.watch = sys.watchReadable(fd, () => {
      for (;;) {
        let msg: Message | null | undefined;
        try {
          msg = sys.unixReceive(fd);
        } catch {
          msg = null; // a broken connection ends like a closed one
        }
        if (msg === undefined) return;
        if (msg === null) {
          this.close();
          onClose(this);
          return;
        }
        onMessage(this, msg);
        if (this.watch === undefined) return; // closed by onMessage
      }
    });
  }

  /**
   * Sends a message; `fds` stay open here too. Errors (the peer left) are
   * thrown, and so is sending on a closed connection: its descriptor's
   * number may be another connection's by now.
   */
  send(data: Buffer, fds: readonly number[] = []): void {
    if (this.watch === undefined) throw Object.assign(new Error('EPIPE: the connection is closed'), { code: 'EPIPE' });
    sys.unixSend(this.fd, data, fds);
  }

  close(): void {
    if (this.watch === undefined) return;
    sys.unwatch(this.watch);
    this.watch = undefined;
    fs.closeSync(this.fd);
  }
}

/** A listening socket, accepting on the event loop: bound at a path, or one made by another (systemd's socket activation) given as a descriptor. */
export class Listener {
  private watch: Watch | undefined;
  private readonly fd: number;
  /** Where the socket is bound. */
  readonly path: string;

  constructor(at: string | { readonly fd: number }, onConnection: (fd: number) => void) {
    if (typeof at === 'string') {
      this.fd = sys.unixListen(at, 64);
      this.path = at;
    } else {
      this.path = sys.unixAdopt(at.fd);
      this.fd = at.fd;
    }
    this.watch = sys.watchReadable(this.fd, () => {
      for (let fd = sys.unixAccept(this.fd); fd >= 0; fd = sys.unixAccept(this.fd)) onConnection(fd);
    });
  }

  close(): void {
    if (this.watch === undefined) return;
    sys.unwatch(this.watch);
    this.watch = undefined;
    fs.closeSync(this.fd);
  }
}

/**
 * A client's one exchange, blocking: connects to `path`, sends `data` with
 * `fds`, and waits `timeoutMs` at most for one reply. For short-lived
 * clients (a mount helper), never on the thread of a process serving the
 * socket.
 */
export function exchange(path: string, data: Buffer, fds: readonly number[], timeoutMs: number): Message {
  const fd = sys.unixConnect(path, timeoutMs);
  try {
    sys.unixSend(fd, data, fds);
    const reply = sys.unixReceive(fd);
    if (reply === undefined) throw Object.assign(new Error(`ETIMEDOUT: no answer within ${timeoutMs} ms, recvmsg '${path}'`), { code: 'ETIMEDOUT' });
    if (reply === null) throw Object.assign(new Error(`ECONNRESET: closed without an answer, recvmsg '${path}'`), { code: 'ECONNRESET' });
    return reply;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * A client's one exchange that never blocks the thread: connects to `path`
 * (failing at once, EAGAIN, if the listener is behind), sends `data`, and
 * resolves with the one reply, or rejects once `timeoutMs` passed without
 * one. `expectUid`: the listener must be that user's (its credentials as
 * the kernel took them at listen(2)), or nothing is sent. For a process
 * with other work meanwhile, asking sockets others made (snapfs serve
 * asking users' mount daemons for their metrics).
 */
export function exchangeAsync(path: string, data: Buffer, timeoutMs: number, expectUid?: number): Promise<Message> {
  let fd: number;
  try {
    fd = sys.unixConnect(path, 0);
  } catch (err) {
    return Promise.reject(err as Error);
  }
  try {
    const [, uid] = sys.unixPeer(fd);
    if (expectUid !== undefined && uid !== expectUid) throw Object.assign(new Error(`EPERM: listened on by uid ${uid}, not ${expectUid}, connect '${path}'`), { code: 'EPERM' });
    sys.unixSend(fd, data, []);
  } catch (err) {
    fs.closeSync(fd);
    return Promise.reject(err as Error);
  }
  return new Promise((resolve, reject) => {
    let watch: Watch | undefined;
    const finish = (err: Error | undefined, reply?: Message): void => {
      clearTimeout(timer);
      if (watch !== undefined) sys.unwatch(watch);
      fs.closeSync(fd);
      if (err !== undefined) reject(err);
      else resolve(reply!);
    };
    const timer = setTimeout(() => finish(Object.assign(new Error(`ETIMEDOUT: no answer within ${timeoutMs} ms, recvmsg '${path}'`), { code: 'ETIMEDOUT' })), timeoutMs);
    try {
      watch = sys.watchReadable(fd, () => {
        let reply: Message | null | undefined;
        try {
          reply = sys.unixReceive(fd);
        } catch (err) {
          return finish(err as Error);
        }
        if (reply === undefined) return;
        if (reply === null) return finish(Object.assign(new Error(`ECONNRESET: closed without an answer, recvmsg '${path}'`), { code: 'ECONNRESET' }));
        reply.fds.forEach((d) => fs.closeSync(d));
        finish(undefined, { data: reply.data, fds: [] });
      });
    } catch (err) {
      finish(err as Error);
    }
  });
}

/** Whether something listens on the socket at `path` (a connection is made, then closed). */
export function listening(path: string): boolean {
  try {
    fs.closeSync(sys.unixConnect(path, 1000));
    return true;
  } catch {
    return false;
  }
}
