/**
 * Crash-safety tests set SNAPFS_FAULT=<point> to have the process killed
 * (SIGKILL, no clean-up of any kind) when it reaches that point.
 */
const armed = process.env.SNAPFS_FAULT;

export function faultPoint(name: string): void {
  if (armed === name) process.kill(process.pid, 'SIGKILL');
}
