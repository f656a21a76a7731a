import * as fs from 'node:fs';
import { DT_DIR, DT_UNKNOWN, fstat, isDir, O_PATH, readdirFd, statAt, sys, type Dirent, type Name } from '../native/sys';

const O_DIR = O_PATH | fs.constants.O_DIRECTORY;

/**
 * Removes a tree, even one holding directories without write permission
 * (layers unpacked from images have them). A tree that is already gone, or
 * that disappears meanwhile, is not an error. The tree is walked by
 * descriptors, one name at a time: a layer's content, whatever a container
 * wrote there, cannot lead the removal anywhere outside it.
 */
export function removeTree(dir: string): void {
  let fd: number;
  try {
    fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    // Not a directory (a file left where one was expected): removed as it is.
    if (code === 'ENOTDIR' || code === 'ELOOP') return fs.rmSync(dir, { force: true });
    throw err;
  }
  try {
    empty(fd);
  } finally {
    fs.closeSync(fd);
  }
  // Another process (a cleanup) may be removing the same tree: what is gone is gone.
  try {
    fs.rmdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * removeTree for entry `name` of directory `dirfd` (writable): a directory
 * with all it holds, or anything else. Nothing there is not an error.
 */
export function removeTreeAt(dirfd: number, name: Name): void {
  const st = statAt(dirfd, name);
  if (st === undefined) return;
  if (isDir(st)) {
    const fd = sys.openAt(dirfd, name, O_DIR, 0);
    try {
      empty(fd);
    } finally {
      fs.closeSync(fd);
    }
  }
  sys.unlinkAt(dirfd, name, isDir(st));
}

/** Removes everything directory `dirfd` holds. */
function empty(dirfd: number): void {
  let entries: Dirent[];
  try {
    entries = readdirFd(dirfd);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return; // removed meanwhile
    if (code !== 'EACCES') throw err;
    makeWritable(dirfd);
    entries = readdirFd(dirfd);
  }
  for (const e of entries) {
    let directory = e.type === DT_DIR;
    if (e.type === DT_UNKNOWN) {
      const st = statAt(dirfd, e.name);
      if (st === undefined) continue; // gone meanwhile
      directory = isDir(st);
    }
    if (directory) {
      let fd: number;
      try {
        fd = sys.openAt(dirfd, e.name, O_DIR, 0);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      try {
        empty(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
    try {
      sys.unlinkAt(dirfd, e.name, directory);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') continue;
      if (code !== 'EACCES' && code !== 'EPERM') throw err;
      makeWritable(dirfd);
      sys.unlinkAt(dirfd, e.name, directory);
    }
  }
}

function makeWritable(dirfd: number): void {
  sys.chmodFd(dirfd, (fstat(dirfd).mode & 0o7777) | 0o700);
}

/** rename(2) that reports whether the source was still there. */
export function renameIfPresent(from: string, to: string): boolean {
  try {
    fs.renameSync(from, to);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
