import * as fs from 'node:fs';
import { fstat, openBeneath, O_PATH, sys, type Stat } from '../native/sys';

/** A time as the seconds and nanoseconds the native calls take. */
export type Timespec = readonly [number, number];

interface Pending {
  /** Below the layer's root; empty for the root itself. */
  readonly path: Buffer;
  readonly dev: bigint;
  readonly ino: bigint;
  /** undefined: the time only (the layer's root keeps its mode). */
  readonly mode: number | undefined;
  readonly mtime: Timespec;
  readonly depth: number;
}

const SLASH = 0x2f;
const O_DIR = O_PATH | fs.constants.O_DIRECTORY;

/**
 * Directories' modes and times, set when the import ends: a directory made
 * read-only at once could not take what the tar puts in it later, and
 * making what it holds changes its time. Each is set only on the directory
 * that was made, known by device and inode, reached again from the layer
 * root's descriptor without following a symlink on any component: a path
 * named later by a file or a symlink (to a host file, say), or lying
 * beneath one, is left alone. No descriptor is held until then; there may
 * be a million directories.
 */
export class LateDirectories {
  /** By path (latin1, a byte a char): a directory named twice takes its last entry's. */
  private readonly pending = new Map<string, Pending>();

  /** `root`: the layer's root directory, open. */
  constructor(private readonly root: number) {}

  /** Sets `mode` (unless undefined) and `mtime` on directory `path`, just made or named again (`st` is what it is), at the end. */
  record(path: Buffer, st: Stat, mode: number | undefined, mtime: Timespec): void {
    let depth = path.length === 0 ? 0 : 1;
    for (const b of path) if (b === SLASH) depth++;
    this.pending.set(path.toString('latin1'), { path, dev: st.dev, ino: st.ino, mode, mtime, depth });
  }

  /** Drops what was recorded for `removed` and below it: those directories are gone. */
  forget(removed: Buffer): void {
    const key = removed.toString('latin1');
    for (const p of this.pending.keys()) if (p === key || p.startsWith(`${key}/`)) this.pending.delete(p);
  }

  /** Deepest first, so that a directory made unsearchable is not in the way of one below it. */
  apply(): void {
    const all = [...this.pending.values()].sort((a, b) => b.depth - a.depth);
    this.pending.clear();
    for (const p of all) this.setOn(p);
  }

  private setOn(p: Pending): void {
    let fd: number;
    try {
      fd = openBeneath(this.root, p.path.length === 0 ? '.' : p.path, O_DIR);
    } catch (err) {
      // Replaced by something that is no directory (ENOTDIR), a symlink (ELOOP, on any component), or nothing.
      if (['ENOENT', 'ENOTDIR', 'ELOOP'].includes((err as NodeJS.ErrnoException).code ?? '')) return;
      throw err;
    }
    try {
      const st = fstat(fd);
      if (st.dev !== p.dev || st.ino !== p.ino) return;
      if (p.mode !== undefined) sys.chmodFd(fd, p.mode);
      // Access time as it is: only the modification time is the tar's.
      sys.utimens(fd, 0, sys.UTIME_OMIT, ...p.mtime);
    } finally {
      fs.closeSync(fd);
    }
  }
}
