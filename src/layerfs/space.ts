import { constants } from 'node:os';
import { fail } from '../fuse/errno';

/** A size in bytes as `max_size=` and containerd's max-size label give it: a whole number above 0, in decimal; else undefined. */
export function parseByteCount(text: string): number | undefined {
  const n = /^[1-9][0-9]{0,15}$/.test(text) ? Number(text) : NaN;
  return Number.isSafeInteger(n) ? n : undefined;
}

/** What a new directory or symlink is taken to need before it is made: one block. */
export const ENTRY_BYTES = 4096;

/**
 * The space of a writable mount's upper layer under a limit (the
 * `max_size=` option; containerd's `containerd.io/snapshot/max-size`
 * label): the bytes it may take, and what it takes, as allocated blocks.
 * `counts` is shared with the native session, on the same thread, which
 * counts what writes and allocations take; LayerFS counts copy-ups, new
 * directories and symlinks, truncation and removal.
 */
export class UpperSpace {
  /** [limit, used], in bytes. */
  readonly counts: Float64Array;

  constructor(limit: number, used: number) {
    this.counts = new Float64Array([limit, used]);
  }

  get used(): number {
    return this.counts[1]!;
  }

  /** Fails an operation about to take `bytes` more with ENOSPC, before it does anything. */
  check(bytes: number): void {
    if (bytes > 0 && this.counts[1]! + bytes > this.counts[0]!) fail(constants.errno.ENOSPC);
  }

  /** What an operation took (or, negative, gave back), once done. */
  add(bytes: number): void {
    this.counts[1] = Math.max(0, this.counts[1]! + bytes);
  }
}
