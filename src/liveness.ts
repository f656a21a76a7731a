/**
 * Whether process `pid` is still running. EPERM means it is, as another
 * user's: only a process that is gone is ESRCH.
 */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
