import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { secondsAndNanos } from '../clock';
import { isDir, isFile, isSymlink, O_PATH, sys, type Stat } from '../native/sys';
import { isPrivateXattr } from '../overlay/format';
import { major, minor } from './devices';

/** A file in a layer: a directory descriptor and a name in it ('' when the descriptor is the file's own). */
export interface Place {
  readonly dirfd: number;
  readonly name: Buffer | '';
}

/**
 * Makes `dst` a copy of the file at `src` (one entry, not a tree): data
 * with its holes, or the symlink, device or empty directory; then owner,
 * mode, extended attributes and nanosecond times. The copy is assembled in
 * directory `work` and renamed into place, so nobody ever sees half of
 * it. Every step is a descriptor or one name in one: nothing is followed.
 */
export function copyEntry(src: Place, st: Stat, dst: { dirfd: number; name: Buffer }, work: number): void {
  const tmp = `.copyup-${randomBytes(6).toString('hex')}`;
  try {
    if (isDir(st)) sys.mkdirAt(work, tmp, 0o700);
    else if (isSymlink(st)) sys.symlinkAt(sys.readlinkAt(src.dirfd, src.name), work, tmp);
    else if (isFile(st)) copyData(src, st, work, tmp);
    else sys.mknodAt(work, tmp, st.mode, major(st.rdev), minor(st.rdev));
    copyMetadata(src, st, work, tmp);
    sys.renameAt(work, tmp, dst.dirfd, dst.name, 0);
  } catch (err) {
    discard(work, tmp, isDir(st));
    throw err;
  }
}

function openIn(at: Place, flags: number): number {
  return at.name === '' ? sys.reopen(at.dirfd, flags) : sys.openAt(at.dirfd, at.name, flags, 0);
}

function copyData(src: Place, st: Stat, work: number, tmp: string): void {
  const from = sys.openFile(src.dirfd, src.name, fs.constants.O_RDONLY);
  try {
    const to = sys.openAt(work, tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
    try {
      sys.copyData(from, to, st.size);
    } finally {
      fs.closeSync(to);
    }
  } finally {
    fs.closeSync(from);
  }
}

/** Owner, then mode (chown clears set-id bits), attributes, and times last. */
function copyMetadata(src: Place, st: Stat, work: number, tmp: string): void {
  if (process.getuid?.() === 0 || st.uid !== process.getuid?.()) {
    try {
      sys.chownAt(work, tmp, st.uid, st.gid);
    } catch (err) {
      // Rootless: a file of another owner becomes ours, as in fuse-overlayfs without mappings.
      if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
    }
  }
  const to = sys.openAt(work, tmp, O_PATH, 0);
  const from = openIn(src, O_PATH);
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
    fs.closeSync(from);
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
