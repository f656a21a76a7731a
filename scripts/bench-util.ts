/** What the benchmark scripts share: their options, and how they time things. */
import * as fs from 'node:fs';

/** The value of `--NAME VALUE` on the command line, else `fallback`. */
export function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

/** Milliseconds `fn` takes. */
export function millis(fn: () => void): number {
  const t = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

export function median(xs: readonly number[]): number {
  return percentile(xs, 0.5);
}

export function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))]!;
}

/**
 * The sides of round `round` in the order they take turns: rotated by one
 * each round, so that no side always follows the same one (warm-up rounds,
 * below 0, keep the first order).
 */
export function inTurns<T>(sides: readonly T[], round: number): T[] {
  const shift = Math.max(0, round) % sides.length;
  return [...sides.slice(shift), ...sides.slice(0, shift)];
}

/** The environment of process `pid`, a `NAME=VALUE` a line; none if it is gone. */
export function environ(pid: number): string[] {
  try {
    return fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
  } catch {
    return [];
  }
}
