import { SnapfsError, systemFailure } from '../errors';

/**
 * The system's failure `err` (disk full, permission denied, the database
 * busy) as the SnapfsError systemFailure() makes of it, said of `where`
 * ("import NAME", "image FILE") and, unless the disk is full, of `entry`;
 * undefined if `err` is no such failure. The system's own message is not
 * used: it names paths under the root or a temporary directory, which say
 * nothing to whoever gave the tar.
 */
export function systemFailureAt(err: unknown, where: string, entry?: string): SnapfsError | undefined {
  const failure = systemFailure(err);
  if (failure === undefined) return undefined;
  if (failure.kind === 'ResourceExhausted') return new SnapfsError(failure.kind, `${where}: ${failure.message}`);
  const { code, syscall, message } = err as NodeJS.ErrnoException;
  // "EACCES: permission denied, open '/path'": the reason, without the path.
  const reason = syscall === undefined ? failure.message : `${/^[A-Z0-9_]+: ([^,]*)/.exec(message)?.[1]?.toLowerCase() ?? code} (${syscall})`;
  return new SnapfsError(failure.kind, `${where}: ${entry === undefined ? '' : `entry ${entry}: `}${reason}`);
}
