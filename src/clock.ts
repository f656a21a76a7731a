/**
 * Wall-clock time in nanoseconds since the epoch.
 *
 * Node offers wall time only in milliseconds (Date.now) and nanoseconds only
 * on a monotonic clock (hrtime). Anchoring hrtime to the instant Date.now()
 * ticks gives wall time at nanosecond resolution, accurate to a few
 * microseconds: enough for containerd's conformance suite, which brackets
 * created/updated between two readings of the client's clock. The anchor is
 * renewed now and then so that NTP slewing does not accumulate.
 */
const REANCHOR_AFTER_NS = 60_000_000_000n;

let anchor: { wallNs: bigint; monoNs: bigint } | undefined;
let last = 0n;

function takeAnchor(): { wallNs: bigint; monoNs: bigint } {
  const start = Date.now();
  let ms = start;
  // Spin to the next millisecond edge: at most 1 ms, once a minute.
  while (ms === start) ms = Date.now();
  return { wallNs: BigInt(ms) * 1_000_000n, monoNs: process.hrtime.bigint() };
}

/** Strictly increasing within one process. */
export function nowNs(): bigint {
  const mono = process.hrtime.bigint();
  if (anchor === undefined || mono - anchor.monoNs > REANCHOR_AFTER_NS) anchor = takeAnchor();
  let t = anchor.wallNs + (process.hrtime.bigint() - anchor.monoNs);
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
