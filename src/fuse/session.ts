import * as os from 'node:os';
import { sys } from '../native/sys';
import { errnoOf } from './errno';
import {
  attrOut,
  createOut,
  direntSize,
  entryOut,
  Fattr,
  FOPEN_CACHE_DIR,
  FOPEN_KEEP_CACHE,
  FOPEN_PASSTHROUGH,
  FUSE_FSYNC_FDATASYNC,
  FUSE_GETATTR_FH,
  FUSE_OPEN_KILL_SUIDGID,
  IN_HEADER,
  Init2,
  initOut,
  nameAt,
  opName,
  Op,
  openOut,
  parseHeader,
  putDirent,
  statfsOut,
  u32,
  u64,
  xattrSizeOut,
  type Attr,
  type DirEntry,
  type Entry,
  type StatFs,
} from './protocol';

export type { Attr, DirEntry, Entry, StatFs };

const E = os.constants.errno;

/** Who asked: the calling process and its ids. */
export interface Request {
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
}

/** An operation's answer, now or later. */
export type Answer<T> = T | Promise<T>;

/** An open file or directory: `fh` is the file's own descriptor (reads and writes go straight to it). */
export interface Opened {
  readonly fh: number;
  /** The kernel may keep the pages it read (of a file), or what it listed (of a directory). */
  readonly keepCache?: boolean;
  /** The kernel reads and writes this backing file itself (Backing.open's id): no request reaches the session. */
  readonly backingId?: number;
}

/**
 * FUSE passthrough, once the kernel agreed to it: a file registered with
 * `open` is read and written by the kernel itself for every open answered
 * with its id. The kernel takes one backing file per node at a time, and
 * none for a node open through the page cache meanwhile.
 */
export interface Backing {
  /** Registers the file of descriptor `fd`; throws (EPERM without CAP_SYS_ADMIN, ELOOP stacked too deep). */
  open(fd: number): number;
  /** The id is not handed out again; opens made with it keep their file. */
  close(id: number): void;
}

export interface AttrAnswer {
  readonly attr: Attr;
  /** Seconds the kernel may keep them. */
  readonly timeout: number;
}

/** A time to set: nanoseconds since the epoch, or the current time. */
export type SetTime = bigint | 'now';

/** What a setattr changes; absent fields stay as they are. */
export interface SetAttr {
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
  readonly size?: number;
  readonly atime?: SetTime;
  readonly mtime?: SetTime;
  /** The open file this comes through (ftruncate, futimens, fchmod…). */
  readonly fh?: number;
  /** The change time is to be updated (chown(f, -1, -1) asks for nothing else). */
  readonly touchCtime: boolean;
  /** The caller lacks CAP_FSETID: set-ID bits go (a truncate). */
  readonly killSuidgid: boolean;
}

/**
 * A file system by node id, as the kernel sees it. Node 1 is the root.
 * Each answer with an entry (lookup, mknod, mkdir, symlink, link, create,
 * and each entry of readdirplus) counts one lookup of that node, which
 * `forget` takes back; a node may be dropped once all its lookups are.
 * Names are bytes. An operation fails by throwing (see errno.ts); one not
 * implemented answers ENOSYS.
 */
export interface FileSystem {
  /** A request, or one entry's lookup for readdirplus, is about to be served (what the file system borrowed for the last one may go). */
  beginRequest?(): void;
  /** The kernel agreed to passthrough (SessionOptions.passthrough): opens may answer with a backing file. */
  passthrough?(backing: Backing): void;
  /** Entry `ino` 0: there is no such name (and the kernel may keep that for entryTimeout). */
  lookup(req: Request, parent: number, name: Buffer): Answer<Entry>;
  forget?(ino: number, nlookup: number): void;
  getattr(req: Request, ino: number, fh: number | undefined): Answer<AttrAnswer>;
  setattr?(req: Request, ino: number, set: SetAttr): Answer<AttrAnswer>;
  readlink?(req: Request, ino: number): Answer<Buffer>;
  mknod?(req: Request, parent: number, name: Buffer, mode: number, rdev: number): Answer<Entry>;
  mkdir?(req: Request, parent: number, name: Buffer, mode: number): Answer<Entry>;
  unlink?(req: Request, parent: number, name: Buffer): Answer<void>;
  rmdir?(req: Request, parent: number, name: Buffer): Answer<void>;
  symlink?(req: Request, parent: number, name: Buffer, target: Buffer): Answer<Entry>;
  /** flags: RENAME_NOREPLACE, RENAME_EXCHANGE (renameat2). */
  rename?(req: Request, parent: number, name: Buffer, newParent: number, newName: Buffer, flags: number): Answer<void>;
  link?(req: Request, ino: number, newParent: number, newName: Buffer): Answer<Entry>;
  /** killSuidgid: an O_TRUNC open by a caller without CAP_FSETID. */
  open?(req: Request, ino: number, flags: number, killSuidgid: boolean): Answer<Opened>;
  release?(req: Request, ino: number, fh: number): Answer<void>;
  fsync?(req: Request, ino: number, fh: number, datasync: boolean): Answer<void>;
  statfs?(req: Request, ino: number): Answer<StatFs>;
  create?(req: Request, parent: number, name: Buffer, mode: number, flags: number): Answer<{ entry: Entry; opened: Opened }>;
  setxattr?(req: Request, ino: number, name: Buffer, value: Buffer, flags: number): Answer<void>;
  /** Throws ENODATA for an attribute the file does not have. */
  getxattr?(req: Request, ino: number, name: Buffer): Answer<Buffer>;
  listxattr?(req: Request, ino: number): Answer<readonly Buffer[]>;
  removexattr?(req: Request, ino: number, name: Buffer): Answer<void>;
  /**
   * Without it, directories are opened by the kernel alone (no OPENDIR or
   * RELEASEDIR is ever sent), each listing asked for with handle 0, and
   * every listing kept by the kernel until the directory changes: for file
   * systems whose directories change only through the mount.
   */
  opendir?(req: Request, ino: number, flags: number): Answer<Opened>;
  /**
   * The whole listing of a directory, `.` and `..` included, asked for as
   * a listing starts (offset 0); the session hands it out from the
   * kernel's offsets until the listing ends. For readdirplus, each entry
   * is also looked up.
   */
  readdir?(req: Request, ino: number, fh: number): Answer<readonly DirEntry[]>;
  /**
   * Whether readdirplus lists directory `ino` without its entries' lookups
   * (the kernel looks up those it needs): for a directory whose entries
   * cost much to look up and are seldom all wanted.
   */
  plainListing?(ino: number): boolean;
  releasedir?(req: Request, ino: number, fh: number): Answer<void>;
  fsyncdir?(req: Request, ino: number, fh: number, datasync: boolean): Answer<void>;
}

export interface SessionOptions {
  /** INIT flags asked for (Init.*), of those the kernel offers. */
  readonly initFlags: number;
  /** After answering, the device is polled this long before sleeping (0: sleep at once). */
  readonly spinMicros?: number;
  /** Ask the kernel for FUSE passthrough (of use to a process with CAP_SYS_ADMIN in the initial user namespace only). */
  readonly passthrough?: boolean;
  /** [limit, used] bytes of the upper layer, shared with the file system: writes past the limit are ENOSPC (UpperSpace). */
  readonly space?: Float64Array;
  /** INIT is answered: the mount is live. */
  readonly onInit?: () => void;
  /** The session is over: unmounted (err undefined), or the device failed. */
  readonly onEnd?: (err: Error | undefined) => void;
}

type Native = unknown;
interface SessionNative {
  fuseBuffer(buf: Buffer): void;
  sessionOpen(fd: number, dispatch: (length: number) => void, ended: (errno: number) => void, spinMicros: number): Native;
  sessionReply(session: Native, unique: number, error: number, body?: Buffer): boolean;
  sessionRefuseWrites(session: Native): void;
  sessionStats(session: Native): number[][];
  sessionLimitSpace(session: Native, space: Float64Array): void;
  sessionBackingOpen(session: Native, fd: number): number;
  sessionBackingClose(session: Native, id: number): void;
  sessionClose(session: Native): void;
  readonly FUSE_REQUEST_BYTES: number;
  readonly FUSE_MAX_WRITE: number;
  readonly FUSE_LATENCY_BOUNDS: readonly number[];
}
const native = sys as unknown as SessionNative;

/** The upper bounds, in seconds, of OpStats' latency buckets (a last bucket takes the slower). */
export const LATENCY_BOUNDS: readonly number[] = native.FUSE_LATENCY_BOUNDS;

/** A session's requests of one operation: how many, how many failed, their time from request to answer. */
export interface OpStats {
  readonly op: string;
  readonly count: number;
  readonly errors: number;
  readonly seconds: number;
  /** Answers per latency bucket (LATENCY_BOUNDS, then the slower): not cumulative. */
  readonly buckets: readonly number[];
}

/** The largest write asked for, and the most pages a request may carry. */
export const MAX_WRITE = native.FUSE_MAX_WRITE;
const MAX_PAGES = MAX_WRITE / 4096;

let requests: Buffer | undefined;

/** The buffer every session of this process reads requests into (the native side serves one at a time). */
function requestBuffer(): Buffer {
  if (requests === undefined) {
    requests = Buffer.allocUnsafeSlow(native.FUSE_REQUEST_BYTES);
    native.fuseBuffer(requests);
  }
  return requests;
}

const ok = (): undefined => undefined;

/**
 * Serves a FileSystem on a /dev/fuse descriptor until the file system is
 * unmounted. Reads and writes never come here: the native session serves
 * them on the open file's descriptor.
 */
export class Session {
  private readonly native: Native;
  private readonly buf = requestBuffer();
  private closed = false;
  /** Listings being read, by directory handle, and by node for directories opened without one. */
  private readonly byHandle = new Map<number, readonly DirEntry[]>();
  private readonly byNode = new Map<number, readonly DirEntry[]>();

  constructor(
    fd: number,
    private readonly fs: FileSystem,
    private readonly opts: SessionOptions,
  ) {
    this.native = native.sessionOpen(fd, (length) => this.dispatch(length), (errno) => this.ended(errno), opts.spinMicros ?? 0);
    if (opts.space !== undefined) native.sessionLimitSpace(this.native, opts.space);
  }

  /** Requests answered so far, those served natively (reads, writes) included: what stats() counts, interrupts aside (they get no answer). */
  get requests(): number {
    return this.stats().reduce((n, o) => (o.op === 'interrupt' ? n : n + o.count), 0);
  }

  /** Every operation's requests so far, as the native side timed them from read to answer. */
  stats(): OpStats[] {
    return native.sessionStats(this.native).map(([opcode, count, errors, seconds, ...buckets]) => ({ op: opName(opcode!), count: count!, errors: errors!, seconds: seconds!, buckets }));
  }

  /** From now on every write(2) is EROFS (the file system refuses every other change itself). */
  refuseWrites(): void {
    native.sessionRefuseWrites(this.native);
  }

  /** Stops serving: the mount, if still there, answers ENOTCONN from now on. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    native.sessionClose(this.native);
  }

  private ended(errno: number): void {
    this.closed = true;
    const code = Object.entries(E).find(([, n]) => n === errno)?.[0] ?? `errno ${errno}`;
    this.opts.onEnd?.(errno === 0 ? undefined : Object.assign(new Error(`/dev/fuse: reading requests failed (${code})`), { code }));
  }

  private reply(unique: number, body?: Buffer): void {
    native.sessionReply(this.native, unique, 0, body);
  }

  private error(unique: number, errno: number): void {
    native.sessionReply(this.native, unique, errno);
  }

  /** Answers with what `answer` gives, now or once it settles; a failure answers its errno. */
  private settle<T>(unique: number, answer: () => Answer<T>, pack: (value: T) => Buffer | undefined): void {
    let value: Answer<T>;
    try {
      value = answer();
    } catch (err) {
      return this.error(unique, errnoOf(err));
    }
    if (value instanceof Promise) {
      value.then(
        (v) => this.sendPacked(unique, v, pack),
        (err: unknown) => this.error(unique, errnoOf(err)),
      );
      return;
    }
    this.sendPacked(unique, value, pack);
  }

  private sendPacked<T>(unique: number, value: T, pack: (value: T) => Buffer | undefined): void {
    let body: Buffer | undefined;
    try {
      body = pack(value);
    } catch (err) {
      return this.error(unique, errnoOf(err));
    }
    this.reply(unique, body);
  }

  private dispatch(length: number): void {
    const buf = this.buf;
    const h = parseHeader(buf);
    const fs = this.fs;
    const req: Request = { uid: h.uid, gid: h.gid, pid: h.pid };
    const ino = h.nodeid;
    const u = h.unique;
    const nosys = (): void => this.error(u, -E.ENOSYS);
    fs.beginRequest?.();
    const name = (at: number): Buffer => nameAt(buf, IN_HEADER + at, length)[0];
    switch (h.opcode) {
      case Op.INIT:
        return this.init(u);
      case Op.DESTROY:
        return this.reply(u);
      case Op.FORGET:
        return this.forget(ino, u64(buf, 0));
      case Op.BATCH_FORGET: {
        const count = u32(buf, 0);
        for (let i = 0; i < count; i++) this.forget(u64(buf, 8 + i * 16), u64(buf, 16 + i * 16));
        return;
      }
      case Op.LOOKUP:
        return this.settle(u, () => fs.lookup(req, ino, name(0)), entryOut);
      case Op.GETATTR: {
        const fh = (u32(buf, 0) & FUSE_GETATTR_FH) !== 0 ? u64(buf, 8) : undefined;
        return this.settle(u, () => fs.getattr(req, ino, fh), (a) => attrOut(a.attr, a.timeout));
      }
      case Op.SETATTR: {
        if (fs.setattr === undefined) return nosys();
        const set = parseSetattr(buf);
        return this.settle(u, () => fs.setattr!(req, ino, set), (a) => attrOut(a.attr, a.timeout));
      }
      case Op.READLINK:
        if (fs.readlink === undefined) return nosys();
        return this.settle(u, () => fs.readlink!(req, ino), (target) => target);
      case Op.MKNOD:
        if (fs.mknod === undefined) return nosys();
        return this.settle(u, () => fs.mknod!(req, ino, name(16), u32(buf, 0), u32(buf, 4)), entryOut);
      case Op.MKDIR:
        if (fs.mkdir === undefined) return nosys();
        return this.settle(u, () => fs.mkdir!(req, ino, name(8), u32(buf, 0)), entryOut);
      case Op.UNLINK:
        if (fs.unlink === undefined) return nosys();
        return this.settle(u, () => fs.unlink!(req, ino, name(0)), ok);
      case Op.RMDIR:
        if (fs.rmdir === undefined) return nosys();
        return this.settle(u, () => fs.rmdir!(req, ino, name(0)), ok);
      case Op.SYMLINK: {
        if (fs.symlink === undefined) return nosys();
        const [linkName, next] = nameAt(buf, IN_HEADER, length);
        const [target] = nameAt(buf, next, length);
        return this.settle(u, () => fs.symlink!(req, ino, linkName, target), entryOut);
      }
      case Op.RENAME:
      case Op.RENAME2: {
        if (fs.rename === undefined) return nosys();
        const two = h.opcode === Op.RENAME2;
        const [from, next] = nameAt(buf, IN_HEADER + (two ? 16 : 8), length);
        const [to] = nameAt(buf, next, length);
        const newParent = u64(buf, 0);
        const flags = two ? u32(buf, 8) : 0;
        return this.settle(u, () => fs.rename!(req, ino, from, newParent, to, flags), ok);
      }
      case Op.LINK:
        if (fs.link === undefined) return nosys();
        return this.settle(u, () => fs.link!(req, u64(buf, 0), ino, name(8)), entryOut);
      case Op.OPEN: {
        if (fs.open === undefined) return nosys();
        const flags = u32(buf, 0);
        const kill = (u32(buf, 4) & FUSE_OPEN_KILL_SUIDGID) !== 0;
        return this.settle(u, () => fs.open!(req, ino, flags, kill), (o) => openOut(o.fh, openFlags(o, false), o.backingId));
      }
      case Op.RELEASE:
        return this.settle(u, () => fs.release?.(req, ino, u64(buf, 0)), ok);
      case Op.FSYNC:
        if (fs.fsync === undefined) return nosys();
        return this.settle(u, () => fs.fsync!(req, ino, u64(buf, 0), (u32(buf, 8) & FUSE_FSYNC_FDATASYNC) !== 0), ok);
      case Op.STATFS:
        if (fs.statfs === undefined) return nosys();
        return this.settle(u, () => fs.statfs!(req, ino), statfsOut);
      case Op.CREATE: {
        if (fs.create === undefined) return nosys();
        const flags = u32(buf, 0);
        const mode = u32(buf, 4);
        return this.settle(u, () => fs.create!(req, ino, name(16), mode, flags), (c) => createOut(c.entry, c.opened.fh, openFlags(c.opened, false), c.opened.backingId));
      }
      case Op.SETXATTR: {
        if (fs.setxattr === undefined) return nosys();
        const size = u32(buf, 0);
        const flags = u32(buf, 4);
        const [attrName, at] = nameAt(buf, IN_HEADER + 8, length);
        const value = Buffer.from(buf.subarray(at, Math.min(at + size, length)));
        return this.settle(u, () => fs.setxattr!(req, ino, attrName, value, flags), ok);
      }
      case Op.GETXATTR: {
        if (fs.getxattr === undefined) return nosys();
        const size = u32(buf, 0);
        return this.settle(u, () => fs.getxattr!(req, ino, name(8)), (value) => sized(value, size));
      }
      case Op.LISTXATTR: {
        if (fs.listxattr === undefined) return nosys();
        const size = u32(buf, 0);
        return this.settle(u, () => fs.listxattr!(req, ino), (names) => sized(Buffer.concat(names.flatMap((n) => [n, Buffer.alloc(1)])), size));
      }
      case Op.REMOVEXATTR:
        if (fs.removexattr === undefined) return nosys();
        return this.settle(u, () => fs.removexattr!(req, ino, name(0)), ok);
      case Op.OPENDIR: {
        // ENOSYS: the kernel opens directories itself from now on, keeping what it lists.
        const flags = u32(buf, 0);
        if (fs.opendir === undefined) return nosys();
        return this.settle(u, () => fs.opendir!(req, ino, flags), (o) => openOut(o.fh, openFlags(o, true)));
      }
      case Op.READDIR:
      case Op.READDIRPLUS: {
        if (fs.readdir === undefined) return nosys();
        const fh = u64(buf, 0);
        const offset = u64(buf, 8);
        const size = u32(buf, 16);
        if (h.opcode === Op.READDIR) return this.settle(u, () => this.listing(req, ino, fh, offset), (list) => listing(list, offset, size));
        return this.settle(u, () => then(this.listing(req, ino, fh, offset), (list) => this.listingPlus(req, ino, list, offset, size)), (packed) => packed);
      }
      case Op.RELEASEDIR: {
        const fh = u64(buf, 0);
        this.byHandle.delete(fh);
        return this.settle(u, () => fs.releasedir?.(req, ino, fh), ok);
      }
      case Op.FSYNCDIR:
        if (fs.fsyncdir === undefined) return nosys();
        return this.settle(u, () => fs.fsyncdir!(req, ino, u64(buf, 0), (u32(buf, 8) & FUSE_FSYNC_FDATASYNC) !== 0), ok);
      default:
        // FLUSH among them: nothing is buffered here, and ENOSYS stops the kernel asking.
        return nosys();
    }
  }

  private forget(ino: number, nlookup: number): void {
    this.byNode.delete(ino);
    this.fs.forget?.(ino, nlookup);
  }

  /**
   * The listing a READDIR at `offset` reads from: asked of the file system
   * as a listing starts, then kept until the kernel reads past its end (it
   * always does: an empty answer is its end), the directory is released,
   * or, opened without a handle, forgotten.
   */
  private listing(req: Request, ino: number, fh: number, offset: number): Answer<readonly DirEntry[]> {
    const kept = fh === 0 ? this.byNode : this.byHandle;
    const key = fh === 0 ? ino : fh;
    const held = offset === 0 ? undefined : kept.get(key);
    const keep = (list: readonly DirEntry[]): readonly DirEntry[] => {
      if (offset < list.length) kept.set(key, list);
      else kept.delete(key);
      return list;
    };
    return held !== undefined ? keep(held) : then(this.fs.readdir!(req, ino, fh), keep);
  }

  private init(unique: number): void {
    const passthrough = this.opts.passthrough === true && this.fs.passthrough !== undefined;
    const answer = initOut(this.buf, { flags: this.opts.initFlags, flags2: passthrough ? Init2.PASSTHROUGH : 0, maxWrite: MAX_WRITE, maxPages: MAX_PAGES });
    if (answer === undefined) {
      this.error(unique, -E.EPROTO);
      this.close();
      this.opts.onEnd?.(new Error('the kernel speaks a FUSE protocol older than 7.26'));
      return;
    }
    if ((answer.flags2 & Init2.PASSTHROUGH) !== 0) {
      this.fs.passthrough?.({
        open: (fd) => native.sessionBackingOpen(this.native, fd),
        close: (id) => native.sessionBackingClose(this.native, id),
      });
    }
    this.reply(unique, answer.out);
    this.opts.onInit?.();
  }

  /**
   * A READDIRPLUS answer: each entry packed with its lookup (which the
   * kernel counts). An entry that does not fit is not looked up, so no
   * lookup is ever lost. Lookups that answer later are waited for, in order.
   */
  private listingPlus(req: Request, dir: number, list: readonly DirEntry[], offset: number, size: number): Answer<Buffer> {
    const out = Buffer.alloc(size);
    const plain = this.fs.plainListing?.(dir) === true;
    const pack = (i: number, at: number): Answer<Buffer> => {
      for (; i < list.length; i++) {
        const d = list[i]!;
        if (at + direntSize(d.name.length, true) > size) break;
        const dots = d.name.length <= 2 && d.name.every((c) => c === 0x2e);
        // Each entry's lookup is served as a request of its own: what one borrowed may go before the
        // next, so that a listing of thousands of directories keeps no more of them open than lookups
        // of them one by one would.
        if (!dots && !plain) this.fs.beginRequest?.();
        const entry = dots || plain ? NO_ENTRY : this.entryFor(req, dir, d.name);
        if (entry instanceof Promise) return entry.then((e) => pack(i + 1, putDirent(out, at, d, i + 1, e)));
        at = putDirent(out, at, d, i + 1, entry);
      }
      return out.subarray(0, at);
    };
    return pack(offset, 0);
  }

  /** A readdirplus entry's lookup; one that fails leaves the entry without attributes. */
  private entryFor(req: Request, dir: number, name: Buffer): Answer<Entry> {
    const failed = (err: unknown): Entry => {
      errnoOf(err);
      return NO_ENTRY;
    };
    try {
      const entry = this.fs.lookup(req, dir, name);
      return entry instanceof Promise ? entry.catch(failed) : entry;
    } catch (err) {
      return failed(err);
    }
  }
}

/** No attributes for an entry (`.` and `..`, one of a plain listing, or one whose lookup failed): the kernel looks it up itself when it needs to. */
const NO_ENTRY: Entry = { ino: 0, entryTimeout: 0, attrTimeout: 0 };

/** `f` of an answer, now or once it settles. */
function then<T, U>(answer: Answer<T>, f: (value: T) => Answer<U>): Answer<U> {
  return answer instanceof Promise ? answer.then(f) : f(answer);
}

/** A READDIR answer: the entries from `offset` that fit in `size` bytes. */
function listing(list: readonly DirEntry[], offset: number, size: number): Buffer {
  const out = Buffer.alloc(size);
  let at = 0;
  for (let i = offset; i < list.length; i++) {
    const d = list[i]!;
    if (at + direntSize(d.name.length, false) > size) break;
    at = putDirent(out, at, d, i + 1);
  }
  return out.subarray(0, at);
}

/** getxattr/listxattr: size 0 asks how big; too small a buffer is ERANGE. */
function sized(value: Buffer, size: number): Buffer {
  if (size === 0) return xattrSizeOut(value.length);
  if (value.length > size) throw Object.assign(new Error('ERANGE'), { code: 'ERANGE' });
  return value;
}

function openFlags(o: Opened, dir: boolean): number {
  // The kernel takes no other flag with a passthrough open.
  if (o.backingId !== undefined) return FOPEN_PASSTHROUGH;
  return o.keepCache === true ? (dir ? FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE : FOPEN_KEEP_CACHE) : 0;
}

/** What a setattr may change, but the change time. */
const CHANGES = Fattr.MODE | Fattr.UID | Fattr.GID | Fattr.SIZE | Fattr.ATIME | Fattr.MTIME | Fattr.ATIME_NOW | Fattr.MTIME_NOW;

function parseSetattr(buf: Buffer): SetAttr {
  const valid = u32(buf, 0);
  const has = (bit: number): boolean => (valid & bit) !== 0;
  const time = (now: number, bit: number, secAt: number, nsecAt: number): SetTime | undefined => {
    if (has(now)) return 'now';
    if (!has(bit)) return undefined;
    return buf.readBigInt64LE(IN_HEADER + secAt) * 1_000_000_000n + BigInt(u32(buf, nsecAt));
  };
  const atime = time(Fattr.ATIME_NOW, Fattr.ATIME, 32, 56);
  const mtime = time(Fattr.MTIME_NOW, Fattr.MTIME, 40, 60);
  return {
    ...(has(Fattr.MODE) ? { mode: u32(buf, 68) } : {}),
    ...(has(Fattr.UID) ? { uid: u32(buf, 76) } : {}),
    ...(has(Fattr.GID) ? { gid: u32(buf, 80) } : {}),
    ...(has(Fattr.SIZE) ? { size: u64(buf, 16) } : {}),
    ...(atime !== undefined ? { atime } : {}),
    ...(mtime !== undefined ? { mtime } : {}),
    ...(has(Fattr.FH) ? { fh: u64(buf, 8) } : {}),
    killSuidgid: has(Fattr.KILL_SUIDGID),
    // Without the writeback cache the kernel sends chown(f, -1, -1) as a setattr that sets nothing.
    touchCtime: has(Fattr.CTIME) || (valid & CHANGES) === 0,
  };
}
