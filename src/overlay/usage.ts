import * as fs from 'node:fs';
import type { Usage } from '../metastore/snapshots';
import { DT_DIR, DT_UNKNOWN, fstat, isDir, O_PATH, readdirFd, statAt, sys, type Stat } from '../native/sys';

/** Called now and then during a long walk with what has been counted so far. */
export type UsageProgress = (sofar: Usage) => void;

const PROGRESS_EVERY = 4096;

/**
 * Disk usage of a directory tree as containerd's fs.DiskUsage counts it:
 * allocated blocks (st_blocks × 512) and inodes, each inode once however
 * many hard links it has; the root directory included. Walked by
 * descriptors, one name at a time, never following a symlink.
 */
export function diskUsage(root: string, onProgress?: UsageProgress): Usage {
  // The root too is never followed: a snapshot's own directory is one, made by the snapshotter.
  const fd = fs.openSync(root, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
  try {
    return diskUsageOf(fd, onProgress);
  } finally {
    fs.closeSync(fd);
  }
}

/** diskUsage of the tree of directory descriptor `dirfd`, which stays the caller's. */
export function diskUsageOf(dirfd: number, onProgress?: UsageProgress): Usage {
  const seen = new Set<string>();
  let size = 0;
  let entries = 0;
  const count = (st: Stat): void => {
    const id = `${st.dev}:${st.ino}`;
    if (!seen.has(id)) {
      seen.add(id);
      size += st.blocks * 512;
    }
    if (++entries % PROGRESS_EVERY === 0) onProgress?.({ size, inodes: seen.size });
  };
  const visit = (dirfd: number): void => {
    for (const e of readdirFd(dirfd)) {
      const st = statAt(dirfd, e.name);
      if (st === undefined) continue; // gone meanwhile
      count(st);
      if (e.type !== DT_DIR && !(e.type === DT_UNKNOWN && isDir(st))) continue;
      const fd = sys.openAt(dirfd, e.name, O_PATH | fs.constants.O_DIRECTORY, 0);
      try {
        visit(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
  };
  count(fstat(dirfd));
  visit(dirfd);
  return { size, inodes: seen.size };
}
