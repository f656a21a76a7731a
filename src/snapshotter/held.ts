import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { fstat, readdirFd, sys } from '../native/sys';

/**
 * Locks that say "this snapshot is a live process's work": one file per
 * held snapshot in ROOT/held, named by its key, with an exclusive flock on
 * it for as long as the work goes on. The kernel lets go of a flock when its
 * process ends, however it ends, so a lock file that can be locked belongs to
 * nobody any more: its snapshot was left by a process killed mid-way.
 */

// openAt and openFile add O_NOFOLLOW and O_CLOEXEC themselves.
const O_LOCK = fs.constants.O_RDWR;

/** A lock taken in `dir` under a fresh key `${prefix}-<16 hex digits>`. */
export interface HeldLock {
  readonly key: string;
  readonly fd: number;
}

/**
 * Makes and locks a new lock file. A cleanup may lock and remove a lock file
 * between its creation and our flock (it takes it for a leftover): then the
 * file we hold is unlinked, and we start over under another key.
 */
export function takeLock(dir: string, prefix: string): HeldLock {
  fs.mkdirSync(dir, { mode: 0o700, recursive: true }); // made with the root; not in roots made before imports were held
  const dirfd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
  try {
    for (;;) {
      const key = `${prefix}-${randomBytes(8).toString('hex')}`;
      const fd = sys.openAt(dirfd, key, O_LOCK | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
      if (sys.tryLock(fd) && fstat(fd).nlink > 0) return { key, fd };
      fs.closeSync(fd);
    }
  } finally {
    fs.closeSync(dirfd);
  }
}

/** Removes the lock file (its snapshot is gone or committed), then lets go of the lock. */
export function dropLock(dir: string, lock: HeldLock): void {
  try {
    fs.unlinkSync(`${dir}/${lock.key}`);
  } finally {
    fs.closeSync(lock.fd);
  }
}

/**
 * The lock files in `dir` that nobody holds, each locked now by us, so that
 * no other cleanup takes it meanwhile: `settle` is given its key, and the
 * lock file is removed after it returns.
 */
export function settleAbandoned(dir: string, settle: (key: string) => void): void {
  let dirfd: number;
  try {
    dirfd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  try {
    for (const entry of readdirFd(dirfd)) {
      const key = entry.name.toString();
      if (!Buffer.from(key).equals(entry.name)) continue; // not a name takeLock makes
      let fd: number;
      try {
        fd = sys.openFile(dirfd, key, O_LOCK); // a regular file, or nothing opened
      } catch (err) {
        // Gone meanwhile, or not a lock file: nothing of ours.
        if (['ENOENT', 'ELOOP', 'EISDIR', 'ENXIO'].includes((err as NodeJS.ErrnoException).code ?? '')) continue;
        throw err;
      }
      try {
        if (!sys.tryLock(fd) || fstat(fd).nlink === 0) continue;
        settle(key);
        sys.unlinkAt(dirfd, key, false);
      } finally {
        fs.closeSync(fd);
      }
    }
  } finally {
    fs.closeSync(dirfd);
  }
}
