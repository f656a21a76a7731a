import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { secondsAndNanos } from '../clock';
import { fail } from '../fuse/errno';
import { isDir, isFile, isSymlink, O_PATH, sys, type Stat } from '../native/sys';
import { isPrivateXattr } from '../overlay/format';
import { major, minor } from './devices';

const E = os.constants.errno;
const C = fs.constants;

/** A file in a layer: a directory descriptor and a name in it ('' when the descriptor is the file's own). */
export interface Place {
  readonly dirfd: number;
  readonly name: Buffer | '';
}

/** Where a copy goes: a name in a directory descriptor. */
export interface Target {
  readonly dirfd: number;
  readonly name: Buffer;
}

/**
 * Regular files of this many bytes or more have their data copied on
 * libuv's pool (see Copier), so that the thread goes on serving every
 * mount meanwhile; smaller ones are copied on the thread, in less time
 * than the trip to the pool and back takes.
 */
export const ASYNC_COPY_BYTES = 1 << 20;

/**
 * Makes `dst` a copy of the file at `src` (one entry, not a tree): data
 * with its holes, or the symlink, device or empty directory; then owner,
 * mode, extended attributes and nanosecond times. The copy is assembled in
 * directory `work` and renamed into place, so nobody ever sees half of
 * it. Every step is a descriptor or one name in one: nothing is followed,
 * and `src` is resolved once, data and metadata read from that one file.
 */
export function copyEntry(src: Place, st: Stat, dst: Target, work: number): void {
  const tmp = tmpName();
  const from = openIn(src, O_PATH);
  try {
    if (isDir(st)) sys.mkdirAt(work, tmp, 0o700);
    else if (isSymlink(st)) sys.symlinkAt(sys.readlinkAt(from, ''), work, tmp);
    else if (isFile(st)) copyData(from, st, work, tmp);
    else sys.mknodAt(work, tmp, st.mode, major(st.rdev), minor(st.rdev));
    copyMetadata(from, st, work, tmp);
    sys.renameAt(work, tmp, dst.dirfd, dst.name, 0);
  } catch (err) {
    discard(work, tmp, isDir(st));
    throw err;
  } finally {
    fs.closeSync(from);
  }
}

/**
 * Thrown by Copier.copy while a file's data is being copied off the
 * thread: what asked for the copy is to be asked again once `done`
 * settles (it then finds the copy made), and `unclaimed` called after.
 */
export class CopyPending extends Error {
  constructor(
    readonly done: Promise<void>,
    /** Discards the copy if nobody put it in place meanwhile (what asked for it no longer needed it). */
    readonly unclaimed: () => void,
  ) {
    super('a copy-up is in progress');
  }
}

/** A whole copy of a big file being made in the work directory, or made and waiting to be put in place. */
interface Staged {
  /** Its own descriptor of the work directory: the mount's may be closed while the copy runs. */
  readonly work: number;
  readonly tmp: string;
  /** Settles once the copy is whole, data and metadata, or failed (and is gone). */
  readonly done: Promise<void>;
  ready: boolean;
}

/**
 * The copy-ups of one writable tree into its work directory `work`. A
 * regular file of ASYNC_COPY_BYTES or more is copied whole into the work
 * directory first, its data on libuv's pool: one copy per file (`key`, its
 * node), however many ask for it meanwhile. Until that copy is made,
 * copy() throws CopyPending; the first call after puts it in place, as
 * that call's caller then sees things (the file may have been renamed or
 * removed meanwhile: the copy goes where it is asked to, or nowhere).
 */
export class Copier {
  private readonly staged = new Map<number, Staged>();
  private closed = false;
  /** Bytes of regular files copied up and put in place so far. */
  copiedBytes = 0;

  constructor(private readonly work: number) {}

  /** Makes `dst` a copy of file `key` at `src`, as copyEntry does; a big regular file's data first off the thread (see above). */
  copy(key: number, src: Place, st: Stat, dst: Target): void {
    if (!isFile(st) || st.size < ASYNC_COPY_BYTES) {
      copyEntry(src, st, dst, this.work);
      if (isFile(st)) this.copiedBytes += st.size;
      return;
    }
    const staged = this.staged.get(key) ?? this.stage(key, src, st);
    if (!staged.ready) throw new CopyPending(staged.done, () => this.drop(key, staged));
    this.staged.delete(key);
    try {
      sys.renameAt(staged.work, staged.tmp, dst.dirfd, dst.name, 0);
      this.copiedBytes += st.size;
    } catch (err) {
      discard(staged.work, staged.tmp, false);
      throw err;
    } finally {
      fs.closeSync(staged.work);
    }
  }

  /** The tree is closing: copies made are discarded now, those still being made once made. */
  close(): void {
    this.closed = true;
    for (const [key, staged] of this.staged) this.drop(key, staged);
  }

  private stage(key: number, src: Place, st: Stat): Staged {
    // Opened now: `src` is a descriptor borrowed for this request only.
    const from = openIn(src, O_PATH);
    let work: number;
    try {
      work = sys.reopen(this.work, O_PATH);
    } catch (err) {
      fs.closeSync(from);
      throw err;
    }
    const tmp = tmpName();
    const staged: Staged = {
      work,
      tmp,
      ready: false,
      done: stageFile(from, st, work, tmp).then(
        () => {
          staged.ready = true;
          if (this.closed) {
            this.drop(key, staged);
            fail(E.ENOTCONN);
          }
        },
        (err: unknown) => {
          this.staged.delete(key);
          fs.closeSync(work);
          throw err;
        },
      ),
    };
    // Whoever waits for the copy gets its failure; one nobody waits for any more must not end the process.
    staged.done.catch(() => undefined);
    this.staged.set(key, staged);
    return staged;
  }

  /** Discards a copy made that nobody put in place (none still being made: the pool is writing it). */
  private drop(key: number, staged: Staged): void {
    if (!staged.ready || this.staged.get(key) !== staged) return;
    this.staged.delete(key);
    discard(staged.work, staged.tmp, false);
    fs.closeSync(staged.work);
  }
}

/** Copies regular file `from` (an O_PATH descriptor, closed here) to `tmp` in `work`: its data on libuv's pool, then its metadata. */
async function stageFile(from: number, st: Stat, work: number, tmp: string): Promise<void> {
  try {
    const [data, to] = openData(from, work, tmp);
    try {
      await sys.copyDataAsync(data, to, st.size);
    } finally {
      fs.closeSync(data);
      fs.closeSync(to);
    }
    copyMetadata(from, st, work, tmp);
  } catch (err) {
    discard(work, tmp, false);
    throw err;
  } finally {
    fs.closeSync(from);
  }
}

function tmpName(): string {
  return `.copyup-${randomBytes(6).toString('hex')}`;
}

function openIn(at: Place, flags: number): number {
  return at.name === '' ? sys.reopen(at.dirfd, flags) : sys.openAt(at.dirfd, at.name, flags, 0);
}

/** The data of regular file `from` (an O_PATH descriptor) to read, and a new file `tmp` in `work` to write. */
function openData(from: number, work: number, tmp: string): [number, number] {
  const data = sys.openFile(from, '', C.O_RDONLY);
  try {
    return [data, sys.openAt(work, tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL, 0o600)];
  } catch (err) {
    fs.closeSync(data);
    throw err;
  }
}

function copyData(from: number, st: Stat, work: number, tmp: string): void {
  const [data, to] = openData(from, work, tmp);
  try {
    sys.copyData(data, to, st.size);
  } finally {
    fs.closeSync(data);
    fs.closeSync(to);
  }
}

/** Owner, then mode (chown clears set-id bits), attributes, and times last: from `from` (an O_PATH descriptor) to `tmp` in `work`. */
function copyMetadata(from: number, st: Stat, work: number, tmp: string): void {
  if (process.getuid?.() === 0 || st.uid !== process.getuid?.()) {
    try {
      sys.chownAt(work, tmp, st.uid, st.gid);
    } catch (err) {
      // Rootless: a file of another owner becomes ours, as in fuse-overlayfs without mappings.
      if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
    }
  }
  const to = sys.openAt(work, tmp, O_PATH, 0);
  try {
    if (!isSymlink(st)) sys.chmodFd(to, st.mode & 0o7777);
    for (const name of sys.listxattr(from)) {
      if (isPrivateXattr(name)) continue;
      const value = sys.getxattr(from, name);
      if (value === undefined) continue;
      try {
        sys.setxattr(to, name, value, 0);
      } catch (err) {
        // trusted.* and security.* need privileges the rootless copy does not have.
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EPERM' && code !== 'EOPNOTSUPP') throw err;
      }
    }
    setTimes(to, st);
  } finally {
    fs.closeSync(to);
  }
}

/** Gives the file of descriptor `fd` the access and modification times of `st`. */
export function setTimes(fd: number, st: Stat): void {
  const [as, an] = secondsAndNanos(st.atimeNs);
  const [ms, mn] = secondsAndNanos(st.mtimeNs);
  sys.utimens(fd, Number(as), an, Number(ms), mn);
}

function discard(work: number, tmp: string, dir: boolean): void {
  try {
    sys.unlinkAt(work, tmp, dir);
  } catch {
    // never made, or already gone
  }
}
