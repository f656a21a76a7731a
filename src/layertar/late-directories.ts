import * as fs from 'node:fs';

interface Pending {
  readonly dir: Buffer;
  readonly dev: bigint;
  readonly ino: bigint;
  /** undefined: the time only (the layer's root keeps its mode). */
  readonly mode: number | undefined;
  readonly mtime: Date;
  readonly depth: number;
}

const SLASH = 0x2f;

/**
 * Directories' modes and times, set when the import ends: a directory made
 * read-only at once could not take what the tar puts in it later, and
 * making what it holds changes its time. Each is set only on the directory
 * that was made, known by device and inode: a path named later by a file
 * or a symlink (to a host file, say) is left alone. No descriptor is held
 * until then; there may be a million directories.
 */
export class LateDirectories {
  /** By path (latin1, a byte a char): a directory named twice takes its last entry's. */
  private readonly pending = new Map<string, Pending>();

  /** Sets `mode` (unless undefined) and `mtime` on directory `dir`, just made or named again, at the end. */
  record(dir: Buffer, mode: number | undefined, mtime: Date): void {
    const st = fs.lstatSync(dir, { bigint: true });
    let depth = 0;
    for (const b of dir) if (b === SLASH) depth++;
    this.pending.set(dir.toString('latin1'), { dir, dev: st.dev, ino: st.ino, mode, mtime, depth });
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
    for (const p of all) setOn(p);
  }
}

function setOn(p: Pending): void {
  let fd: number;
  try {
    fd = fs.openSync(p.dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
  } catch (err) {
    // Replaced by something that is no directory (ENOTDIR), a symlink (ELOOP), or nothing.
    if (['ENOENT', 'ENOTDIR', 'ELOOP'].includes((err as NodeJS.ErrnoException).code ?? '')) return;
    throw err;
  }
  try {
    const st = fs.fstatSync(fd, { bigint: true });
    if (st.dev !== p.dev || st.ino !== p.ino) return;
    if (p.mode !== undefined) fs.fchmodSync(fd, p.mode);
    // Access time as it is: only the modification time is the tar's.
    fs.futimesSync(fd, Number(st.atimeNs) / 1e9, p.mtime);
  } finally {
    fs.closeSync(fd);
  }
}
