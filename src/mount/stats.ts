import { isOpName } from '../fuse/protocol';
import type { OpStats } from '../fuse/session';

/** What mounts have cost: their requests by operation, and the bytes their copy-ups copied. */
export interface MountStats {
  readonly ops: readonly OpStats[];
  readonly copiedUpBytes: number;
}

/** What a daemon's mounts have cost since it started, those already unmounted included. */
export interface DaemonStats extends MountStats {
  /** Mounts it serves now. */
  readonly mounts: number;
  /** Operations that failed with an error no system call gave (answered EIO): bugs. */
  readonly internalErrors: number;
}

/** The sum of `all`, operation by operation. */
export function sumStats(all: readonly MountStats[]): MountStats {
  const ops = new Map<string, { op: string; count: number; errors: number; seconds: number; buckets: number[] }>();
  let copiedUpBytes = 0;
  for (const s of all) {
    copiedUpBytes += s.copiedUpBytes;
    for (const o of s.ops) {
      const sum = ops.get(o.op);
      if (sum === undefined) {
        ops.set(o.op, { ...o, buckets: [...o.buckets] });
        continue;
      }
      sum.count += o.count;
      sum.errors += o.errors;
      sum.seconds += o.seconds;
      o.buckets.forEach((n, i) => (sum.buckets[i] = (sum.buckets[i] ?? 0) + n));
    }
  }
  return { ops: [...ops.values()].sort((a, b) => (a.op < b.op ? -1 : a.op > b.op ? 1 : 0)), copiedUpBytes };
}

/**
 * A daemon's answer to `stats`, checked field by field: root's serve asks
 * every user's daemon, and whatever listens on a user's socket may say
 * anything. Throws on the first thing that is not what a daemon sends.
 */
export function parseDaemonStats(value: unknown, buckets: number): DaemonStats {
  const bad = (what: string): never => {
    throw new Error(`stats: ${what}`);
  };
  const count = (v: unknown, what: string): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : bad(`${what} is not a count`));
  if (typeof value !== 'object' || value === null) return bad('not an object');
  const r = value as Record<string, unknown>;
  if (!Array.isArray(r.ops)) return bad('ops is not a list');
  const seen = new Set<string>();
  const ops: OpStats[] = r.ops.map((o: unknown) => {
    if (typeof o !== 'object' || o === null) return bad('an op is not an object');
    const op = o as Record<string, unknown>;
    if (typeof op.op !== 'string' || !isOpName(op.op)) return bad('an op is not one of FUSE');
    const name = op.op;
    if (seen.has(name)) return bad(`${name}: twice`);
    seen.add(name);
    if (!Array.isArray(op.buckets) || op.buckets.length !== buckets) return bad(`${name}.buckets: not ${buckets} of them`);
    return {
      op: name,
      count: count(op.count, `${name}.count`),
      errors: count(op.errors, `${name}.errors`),
      seconds: count(op.seconds, `${name}.seconds`),
      buckets: op.buckets.map((b: unknown, i) => count(b, `${name}.buckets[${i}]`)),
    };
  });
  return { ops, copiedUpBytes: count(r.copiedUpBytes, 'copiedUpBytes'), mounts: count(r.mounts, 'mounts'), internalErrors: count(r.internalErrors, 'internalErrors') };
}
