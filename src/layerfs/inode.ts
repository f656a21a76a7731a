import type { EntryKind } from '../overlay/format';

/** What an immutable layer's copy of a directory holds under one name. */
export interface Listed {
  readonly name: Buffer;
  readonly kind: EntryKind;
  /** DT_* of the entry, and its inode number in that layer. */
  readonly type: number;
  readonly ino: bigint;
}

/**
 * A file of the merged tree, as the kernel knows it by its node id: one per
 * file, whatever its names (hard links share one). It lives in one layer
 * (its topmost copy; 0 is the upper layer of a writable mount) and is
 * reached through a name: its parent's copy in that layer, and `name` there
 * (dentries are not kept apart: a directory has one name, and any name of a
 * file will do to reach it). A file whose names are all gone while it is
 * in use is reached through a descriptor kept for it (`pinned`); one of a
 * lower hard-link group that was copied up, through its copy in the work
 * directory's index (`index`).
 */
export class Inode {
  /**
   * Its inode number (st_ino): its node id, but for a file given a new
   * node (Tree.split), which keeps the number.
   */
  number: number;
  /** Lookups the kernel holds (its nlookup), and inodes naming this one as their parent. */
  lookups = 0;
  children = 0;
  /** The layers whose copies of a directory merge, topmost first; [] for others. */
  dirLayers: number[];
  /** Directories of immutable layers, listed once: what each holds, by name (latin1 key). */
  listings: Map<number, Map<string, Listed>> | undefined;
  index: Buffer | undefined;
  pinned: number | undefined;
  /** Its last name is gone: the kernel sees a link count of 0. */
  unlinked = false;
  /** Split from its file (Tree.split): what the kernel holds of it is served, but no lookup finds it. */
  superseded = false;

  constructor(
    readonly ino: number,
    public parent: Inode | undefined,
    public name: Buffer,
    public layer: number,
    readonly isDir: boolean,
    dirLayers: number[],
  ) {
    this.dirLayers = dirLayers;
    this.number = ino;
  }
}

/** A name as a Map key: latin1 keeps every byte. */
export const keyOf = (name: Buffer): string => name.toString('latin1');

/**
 * Numbers of the files of the merged tree: one per underlying file (device
 * and inode number), handed out in order of first sight and kept for the
 * life of the mount, so hard links share one and layers on different file
 * systems never collide. A copy made by copy-up keeps its original's. The
 * root is 1. They are also the node ids the kernel knows files by.
 *
 * What a file shows as its inode number (`shown`): where every layer is
 * on one file system (`device`), its own inode number there, so that the
 * same file has the same number in every mount of it, as on the kernel
 * overlay; a copy shows its original's for the life of the mount. A file
 * on another file system (a mount point inside a layer) shows its number
 * above 2^52, clear of any a layer's file system gives.
 */
export class InodeNumbers {
  private readonly numbers = new Map<string, number>();
  private readonly layerNumbers = new Map<number, number>();
  private next = 2;

  /** The root is file `rootIno` of device `rootDev`; device: the one device every layer is on, undefined to show the numbers themselves. */
  constructor(
    rootDev: bigint,
    rootIno: bigint,
    private readonly device: bigint | undefined,
  ) {
    this.numbers.set(fileKey(rootDev, rootIno), 1);
    this.remember(1, rootDev, rootIno);
  }

  /** The number of file `ino` of device `dev`. */
  of(dev: bigint, ino: bigint): number {
    const key = fileKey(dev, ino);
    let n = this.numbers.get(key);
    if (n === undefined) {
      n = this.next++;
      this.numbers.set(key, n);
      this.remember(n, dev, ino);
    }
    return n;
  }

  /** The inode number file `n` shows (st_ino, d_ino). */
  shown(n: number): number {
    if (this.device === undefined) return n;
    return this.layerNumbers.get(n) ?? Number(OTHER_FILE_SYSTEMS) + n;
  }

  private remember(n: number, dev: bigint, ino: bigint): void {
    if (dev === this.device && ino < OTHER_FILE_SYSTEMS) this.layerNumbers.set(n, Number(ino));
  }

  /** A node id of no file's number: a file's new node (Tree.split). */
  fresh(): number {
    return this.next++;
  }

  /** A copy (file `ino` of device `dev`) of a file numbered `n` keeps that number. */
  alias(dev: bigint, ino: bigint, n: number): void {
    this.numbers.set(fileKey(dev, ino), n);
  }

  /**
   * A file whose storage is gone may have its device and inode number
   * handed out again, to another file: that one gets a number of its own.
   */
  drop(dev: bigint, ino: bigint): void {
    this.numbers.delete(fileKey(dev, ino));
  }
}

/** Where the numbers shown for files of other file systems start. */
const OTHER_FILE_SYSTEMS = 2n ** 52n;

/** A file's identity: device and inode number. */
export const fileKey = (dev: bigint, ino: bigint): string => `${dev}:${ino}`;
