import * as fs from 'node:fs';
import { quoted } from '../names';
import { isDir, isSymlink, openBeneath, O_PATH, statAt, sys } from '../native/sys';
import type { Refuse } from './layer-entries';

/** Where an entry of the layer goes: its parent directory's descriptor, its name there, and its path below the layer's root. */
export interface Place {
  readonly dirfd: number;
  readonly name: Buffer;
  readonly path: Buffer;
}

/** Makes missing parent directory `name` in directory `dirfd`, at `path` below the layer's root. */
export type MakeParent = (dirfd: number, name: Buffer, path: Buffer) => void;

const O_DIR = O_PATH | fs.constants.O_DIRECTORY;
/** The longest path below the layer's root the system takes, in bytes (PATH_MAX less its NUL), as openat2 reads it. */
const PATH_MAX = 4095;
/** What openat2 says of a path that a walk one name at a time must look at: a name missing, a symlink, or no directory. */
const WALK = new Set(['ENOENT', 'ENOTDIR', 'ELOOP', 'EXDEV']);
const SLASH = Buffer.from('/');

/**
 * Finds the places of a tar's entries in a layer by descriptors only: from
 * the layer root's descriptor, a path below it is opened with openat2
 * (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), never following a symlink on any
 * component; where that fails, a walk one name at a time finds out why,
 * makes missing parents, or refuses the entry naming the component. The
 * last parent directory stays open: a tar lists a directory's entries
 * together, so most entries cost no lookup at all.
 */
export class LayerPlaces {
  private last: { readonly key: string; readonly fd: number } | undefined;

  constructor(
    private readonly root: number,
    private readonly makeParent: MakeParent,
  ) {}

  /** Where entry `parts` (at least one name) goes, making missing parents; refuses a parent that is not a directory of the layer itself. */
  place(parts: readonly Buffer[], refuse: Refuse): Place {
    const path = pathOf(parts, refuse);
    const name = parts[parts.length - 1]!;
    if (parts.length === 1) return { dirfd: this.root, name, path };
    const dir = path.subarray(0, path.length - name.length - 1);
    const key = dir.toString('latin1');
    let last = this.last;
    if (last?.key !== key) {
      const fd = this.openParent(dir, parts, refuse);
      this.closeLast();
      last = this.last = { key, fd };
    }
    return { dirfd: last.fd, name, path };
  }

  /**
   * An O_PATH descriptor of what `parts` names (a symlink itself, not
   * followed), or undefined where nothing is; its parents are refused as
   * place() refuses them, and missing ones are not in the layer.
   */
  find(parts: readonly Buffer[], refuse: Refuse): number | undefined {
    const path = pathOf(parts, refuse);
    try {
      return openBeneath(this.root, path, O_PATH);
    } catch (err) {
      if (!WALK.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
    }
    const dirfd = this.walk(parts, false, refuse);
    try {
      return sys.openAt(dirfd, parts[parts.length - 1]!, O_PATH, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    } finally {
      if (dirfd !== this.root) fs.closeSync(dirfd);
    }
  }

  /** Directory `path` below the layer's root, or what was there, is gone: its descriptor must not be used again. */
  removed(path: Buffer): void {
    const key = path.toString('latin1');
    if (this.last !== undefined && (this.last.key === key || this.last.key.startsWith(`${key}/`))) this.closeLast();
  }

  close(): void {
    this.closeLast();
  }

  private closeLast(): void {
    if (this.last !== undefined) fs.closeSync(this.last.fd);
    this.last = undefined;
  }

  /** Parent directory `dir` of entry `parts`: one openat2 when it is there, else the walk. */
  private openParent(dir: Buffer, parts: readonly Buffer[], refuse: Refuse): number {
    try {
      return openBeneath(this.root, dir, O_DIR);
    } catch (err) {
      if (!WALK.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
    }
    return this.walk(parts, true, refuse);
  }

  /** The parent directory of `parts`, opened one name at a time from the root. */
  private walk(parts: readonly Buffer[], makeParents: boolean, refuse: Refuse): number {
    let fd = this.root;
    try {
      for (let i = 0; i < parts.length - 1; i++) {
        const next = this.step(fd, parts, i, makeParents, refuse);
        if (fd !== this.root) fs.closeSync(fd);
        fd = next;
      }
    } catch (err) {
      if (fd !== this.root) fs.closeSync(fd);
      throw err;
    }
    return fd;
  }

  /** Name `i` of `parts` in directory `dirfd`, opened as a directory: made if missing (makeParents), refused unless a directory. */
  private step(dirfd: number, parts: readonly Buffer[], i: number, makeParents: boolean, refuse: Refuse): number {
    const part = parts[i]!;
    const st = statAt(dirfd, part);
    const where = (): string => quoted(joined(parts.slice(0, i + 1)));
    if (st === undefined && makeParents) this.makeParent(dirfd, part, joined(parts.slice(0, i + 1)));
    else if (st === undefined) throw refuse(`${quoted(joined(parts))} is not in the layer`);
    else if (isSymlink(st)) throw refuse(`path goes through a symlink (${where()})`);
    else if (!isDir(st)) throw refuse(`${where()} is not a directory`);
    return sys.openAt(dirfd, part, O_DIR, 0);
  }
}

/** `parts` joined by slashes: the path below the layer's root, refused when longer than the system takes. */
function pathOf(parts: readonly Buffer[], refuse: Refuse): Buffer {
  const path = joined(parts);
  if (path.length > PATH_MAX) throw refuse('its path is longer than the system takes');
  return path;
}

function joined(parts: readonly Buffer[]): Buffer {
  const out: Buffer[] = [];
  for (const part of parts) {
    if (out.length > 0) out.push(SLASH);
    out.push(part);
  }
  return Buffer.concat(out);
}
