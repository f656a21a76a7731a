/**
 * Tests set SNAPFS_FAULT=<point> to have the process killed (SIGKILL, no
 * clean-up of any kind) when it reaches that point, or to have an
 * operation fail as a bug would (see failurePoint).
 */
const armed = process.env.SNAPFS_FAULT;

export function faultPoint(name: string): void {
  if (armed === name) process.kill(process.pid, 'SIGKILL');
}

/** Whether any fault is armed: lets hot paths skip building point names. */
export const faultsArmed = armed !== undefined;

/** Throws an error no caller expects, as a bug would, when `name` is the armed point. */
export function failurePoint(name: string): void {
  if (armed === name) throw new Error(`fault injected at ${name}`);
}
