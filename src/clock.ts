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

/** Whole seconds and nanoseconds (0 to 999,999,999); before 1970 the seconds round down. */
export function secondsAndNanos(ns: bigint): [bigint, number] {
  const nanos = ((ns % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n;
  return [(ns - nanos) / 1_000_000_000n, Number(nanos)];
}

/** RFC 3339 with all nine fractional digits, in UTC, as containerd prints. */
export function formatNs(ns: bigint): string {
  const [seconds, nanos] = secondsAndNanos(ns);
  const base = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  return `${base}.${String(nanos).padStart(9, '0')}Z`;
}
