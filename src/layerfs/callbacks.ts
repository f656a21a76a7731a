import * as os from 'node:os';

const E = os.constants.errno;

/** An errno a file system operation answers with, thrown by its synchronous code. */
export class FsError extends Error {
  constructor(readonly errno: number) {
    super(`errno ${errno}`);
  }
}

// Failed lookups are common and their stacks never read: one instance per
// errno spares capturing a stack each time.
const thrown = new Map<number, FsError>();

export const fail = (errno: number): never => {
  let err = thrown.get(errno);
  if (err === undefined) {
    err = new FsError(-errno);
    thrown.set(errno, err);
  }
  throw err;
};

/** A FUSE callback's error: the negative errno. Anything else is a bug: logged, and EIO. */
export function errnoOf(err: unknown): number {
  if (err instanceof FsError) return err.errno;
  const { code, errno } = err as { code?: unknown; errno?: unknown };
  const known = typeof code === 'string' ? (E as Record<string, number>)[code] : undefined;
  if (known !== undefined) return -known;
  if (typeof errno === 'number' && errno !== 0) return -Math.abs(errno);
  console.error('snapfs: internal error:', err);
  return -E.EIO;
}

/** A synchronous operation as fuse-native's callback form: the value, or the errno of what it threw. */
export const answering =
  <A extends unknown[], T>(fn: (...args: A) => T) =>
  (...args: [...A, (err: number, value?: T) => void]): void => {
    const cb = args.pop() as (err: number, value?: T) => void;
    let value: T;
    try {
      value = fn(...(args as unknown as A));
    } catch (err) {
      return cb(errnoOf(err));
    }
    cb(0, value);
  };

