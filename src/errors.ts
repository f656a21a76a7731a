/**
 * The error kinds of containerd's errdefs, and what each becomes at the
 * process boundary. Every error a user can cause is a SnapfsError; anything
 * else reaching the top is a bug and reported as Unknown.
 */
export type ErrorKind =
  | 'InvalidArgument'
  | 'NotFound'
  | 'AlreadyExists'
  | 'FailedPrecondition'
  | 'NotImplemented'
  | 'Unavailable'
  | 'ResourceExhausted'
  | 'Unknown';

export class SnapfsError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
  ) {
    super(message);
    this.name = 'SnapfsError';
  }
}

export const invalidArgument = (message: string): SnapfsError => new SnapfsError('InvalidArgument', message);
export const notFound = (message: string): SnapfsError => new SnapfsError('NotFound', message);
export const alreadyExists = (message: string): SnapfsError => new SnapfsError('AlreadyExists', message);
export const failedPrecondition = (message: string): SnapfsError =>
  new SnapfsError('FailedPrecondition', message);
export const unavailable = (message: string): SnapfsError => new SnapfsError('Unavailable', message);
export const resourceExhausted = (message: string): SnapfsError => new SnapfsError('ResourceExhausted', message);

/** Exit codes of the CLI; 2 is also what a malformed command line gets. */
export const EXIT_CODES: Readonly<Record<ErrorKind, number>> = {
  Unknown: 1,
  InvalidArgument: 2,
  NotFound: 3,
  AlreadyExists: 4,
  FailedPrecondition: 5,
  NotImplemented: 6,
  Unavailable: 7,
  // The system failing, as Unavailable is; gRPC tells it apart (RESOURCE_EXHAUSTED).
  ResourceExhausted: 7,
};

export function kindOf(err: unknown): ErrorKind {
  return err instanceof SnapfsError ? err.kind : 'Unknown';
}

/** What a full disk (or quota) is called, whoever reports it: the kernel, or SQLite. */
const NO_SPACE = new Set(['ENOSPC', 'EDQUOT', 'SQLITE_FULL']);

/**
 * Failures of the system rather than of snapfs (disk full, permission
 * denied, a database held busy past the timeout) as Unavailable errors with
 * the system's one-line message (ResourceExhausted for a full disk, which
 * says so whatever call hit it); undefined for anything else.
 */
export function systemFailure(err: unknown): SnapfsError | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !(err instanceof Error)) return undefined;
  if (NO_SPACE.has(code)) return resourceExhausted(code === 'EDQUOT' ? 'disk quota exceeded' : 'no space left on device');
  if (code === 'SQLITE_BUSY') return unavailable(`metadata.db: still locked by another process after waiting (${err.message})`);
  if (code.startsWith('SQLITE_')) return unavailable(`metadata.db: ${err.message} (${code})`);
  if (/^E[A-Z]+$/.test(code) && 'syscall' in err) return unavailable(err.message);
  return undefined;
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
