import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { secondsAndNanos } from '../clock';
import { sys } from '../native/sys';
import { isPrivateXattr } from './format';

/**
 * Makes `dst` a copy of `src` (one entry, not a tree): data with its holes,
 * or the symlink, device or empty directory; then owner, mode, extended
 * attributes and nanosecond times. The copy is assembled in `work` and
 * renamed into place, so nobody ever sees half of it.
 */
export function copyEntry(src: string, st: fs.BigIntStats, dst: string, work: string): void {
  const tmp = path.join(work, `.copyup-${randomBytes(6).toString('hex')}`);
  try {
    if (st.isDirectory()) {
      fs.mkdirSync(tmp, { mode: 0o700 });
    } else if (st.isSymbolicLink()) {
      fs.symlinkSync(fs.readlinkSync(src), tmp);
    } else if (st.isFile()) {
      copyFile(src, tmp, Number(st.size));
    } else {
      sys.mknod(tmp, Number(st.mode), Number(st.rdev >> 8n) & 0xfff, Number((st.rdev & 0xffn) | ((st.rdev >> 12n) & 0xfff00n)));
    }
    copyMetadata(src, st, tmp);
    fs.renameSync(tmp, dst);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

function copyFile(src: string, dst: string, size: number): void {
  const from = fs.openSync(src, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  try {
    const to = fs.openSync(dst, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
    try {
      sys.copyData(from, to, size);
    } finally {
      fs.closeSync(to);
    }
  } finally {
    fs.closeSync(from);
  }
}

/** Owner, then mode (chown clears set-id bits), attributes, and times last. */
function copyMetadata(src: string, st: fs.BigIntStats, dst: string): void {
  if (process.getuid?.() === 0 || st.uid !== BigInt(process.getuid?.() ?? -1)) {
    try {
      fs.lchownSync(dst, Number(st.uid), Number(st.gid));
    } catch (err) {
      // Rootless: a file of another owner becomes ours, as in fuse-overlayfs without mappings.
      if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
    }
  }
  if (!st.isSymbolicLink()) fs.chmodSync(dst, Number(st.mode) & 0o7777);
  for (const name of listXattrs(src)) {
    if (isPrivateXattr(name)) continue;
    const value = sys.getxattr(src, name);
    if (value === undefined) continue;
    try {
      sys.setxattr(dst, name, value, 0);
    } catch (err) {
      // trusted.* and security.* need privileges the rootless copy does not have.
      if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
    }
  }
  setTimes(dst, st);
}

export function setTimes(file: string, st: fs.BigIntStats): void {
  const [as, an] = secondsAndNanos(st.atimeNs);
  const [ms, mn] = secondsAndNanos(st.mtimeNs);
  sys.utimens(file, Number(as), an, Number(ms), mn);
}

function listXattrs(file: string): string[] {
  try {
    return sys.listxattr(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTSUP') return [];
    throw err;
  }
}
