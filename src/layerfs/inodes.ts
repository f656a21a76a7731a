import type * as fs from 'node:fs';

/**
 * Inode numbers of the merged tree: one per underlying inode (device and
 * inode number), handed out in order of first sight and kept for the life of
 * the mount, so hard links share one and layers on different file systems
 * never collide. The root is 1.
 */
export class InodeTable {
  private readonly numbers = new Map<string, number>();
  private next = 2;

  constructor(root: fs.BigIntStats) {
    this.numbers.set(inodeKey(root), 1);
  }

  /** `copy` (a copy-up of `original`) keeps the original's number. */
  alias(copy: fs.BigIntStats, original: fs.BigIntStats): void {
    this.numbers.set(inodeKey(copy), this.of(original));
  }

  of(st: fs.BigIntStats): number {
    const k = inodeKey(st);
    let n = this.numbers.get(k);
    if (n === undefined) {
      n = this.next++;
      this.numbers.set(k, n);
    }
    return n;
  }
}

/** An inode's identity: device and inode number. */
export function inodeKey(st: fs.BigIntStats): string {
  return `${st.dev}:${st.ino}`;
}
