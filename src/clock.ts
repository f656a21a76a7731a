import { sys } from './native/sys';

/**
 * Wall-clock time in nanoseconds since the epoch, from clock_gettime:
 * containerd's conformance suite brackets created/updated times between two
 * readings of its own clock, so they must be the system's, to the nanosecond.
 */
let last = 0n;

/** Strictly increasing within one process. */
export function nowNs(): bigint {
  let t = sys.realtimeNs();
  if (t <= last) t = last + 1n;
  last = t;
  return t;
}

/** RFC 3339 with all nine fractional digits, in UTC, as containerd prints. */
export function formatNs(ns: bigint): string {
  const ms = Number(ns / 1_000_000n);
  const base = new Date(ms).toISOString().slice(0, 19);
  const frac = (ns % 1_000_000_000n).toString().padStart(9, '0');
  return `${base}.${frac}Z`;
}
