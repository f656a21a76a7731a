import * as os from 'node:os';

const E = os.constants.errno;

/** An errno a file system operation answers with (`errno` negative, as the kernel takes it). */
export class FsError extends Error {
  constructor(readonly errno: number) {
    super(`errno ${-errno}`);
  }
}

// Failed lookups are common and their stacks never read: one instance per
// errno spares capturing a stack each time.
const thrown = new Map<number, FsError>();

/** Throws errno (a positive E* number) as the answer to the operation being served. */
export function fail(errno: number): never {
  let err = thrown.get(errno);
  if (err === undefined) {
    err = new FsError(-errno);
    thrown.set(errno, err);
  }
  throw err;
}

/**
 * What an operation that threw answers: an FsError's errno, a system
 * call's (Node-style errors from fs and the native addon), else EIO, and
 * the error is logged: that is a bug.
 */
export function errnoOf(err: unknown): number {
  if (err instanceof FsError) return err.errno;
  const { code, errno } = (err ?? {}) as { code?: unknown; errno?: unknown };
  const known = typeof code === 'string' ? (E as Record<string, number>)[code] : undefined;
  if (known !== undefined) return -known;
  if (typeof errno === 'number' && errno !== 0) return -Math.abs(errno);
  console.error('snapfs: internal error:', err);
  bugs++;
  return -E.EIO;
}

let bugs = 0;

/** How many operations of this thread failed with an error no system call gave (answered EIO): bugs. */
export function internalErrors(): number {
  return bugs;
}
