/**
 * The layer benchmark's results as JSON: what `scripts/bench-layers --json
 * FILE` writes and `scripts/chart-layers` reads.
 */
import { median } from './bench-util';

export type Side = 'overlay' | 'fuse-overlayfs' | 'snapfs';
export const SIDES: readonly Side[] = ['overlay', 'fuse-overlayfs', 'snapfs'];

/** One side's times on one workload, in milliseconds. */
export interface SideResult {
  medianMs: number;
  /** Every run, in the order of the rounds: run i of each side was round i, so their ratio pairs like with like. */
  runsMs: number[];
}

export interface WorkloadResult {
  name: string;
  /** A read-only view, or a writable mount (what a container gets). */
  mount: 'view' | 'writable';
  /** cold: caches dropped before each run; first touch: a fresh mount, the page cache warm; warm: after a run to warm up. */
  caches: 'cold' | 'warm' | 'first touch';
  /** Run while CPU-bound processes kept the cores busy. */
  loaded: boolean;
  sides: Record<Side, SideResult>;
  /** Of the medians: below 1, snapfs took less time. */
  ratios: { snapfsToFuseOverlayfs: number; snapfsToOverlay: number };
}

/** A snapfs view over a parent against the full copy (`cp -a`) containerd's native snapshotter makes. */
export interface PrepareResult {
  name: string;
  copy: SideResult;
  view: SideResult;
  viewToCopy: number;
}

export type PairSide = 'fuse-overlayfs' | 'snapfs';

/** A workload on one mount alone and on two mounts at once, medians in milliseconds. */
export interface PairResult {
  name: string;
  sides: Record<PairSide, { aloneMs: number; pairMs: number }>;
}

export interface BenchLayersReport {
  settings: {
    scale: number;
    runs: number;
    /** When the run started, ISO 8601. */
    date: string;
    /** `uname -r` */
    kernel: string;
    cpus: number;
  };
  workloads: WorkloadResult[];
  prepare?: PrepareResult;
  pairs?: PairResult[];
}

export function sideResult(runsMs: number[]): SideResult {
  return { medianMs: median(runsMs), runsMs };
}

/**
 * The report in `text`, read from `source`. Checks what a chart needs, so
 * that a file of another shape fails here with its name and the field,
 * not later as NaN in a picture.
 */
export function parseReport(text: string, source: string): BenchLayersReport {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`${source}: not JSON (${(err as Error).message})`);
  }
  const fail = (field: string): never => {
    throw new Error(`${source}: not a bench-layers report: ${field} is missing or of the wrong type`);
  };
  const report = isObject(value) ? value : fail('the top level');
  const settings = isObject(report.settings) ? report.settings : fail('settings');
  for (const key of ['scale', 'runs', 'cpus']) if (!isNumber(settings[key])) fail(`settings.${key}`);
  for (const key of ['date', 'kernel']) if (typeof settings[key] !== 'string') fail(`settings.${key}`);
  if (!Array.isArray(report.workloads)) fail('workloads');
  (report.workloads as unknown[]).forEach((w, i) => {
    const at = `workloads[${i}]`;
    const workload = isObject(w) ? w : fail(at);
    if (typeof workload.name !== 'string') fail(`${at}.name`);
    const ratios = isObject(workload.ratios) ? workload.ratios : fail(`${at}.ratios`);
    for (const key of ['snapfsToFuseOverlayfs', 'snapfsToOverlay']) if (!isPositive(ratios[key])) fail(`${at}.ratios.${key}`);
    const sides = isObject(workload.sides) ? workload.sides : fail(`${at}.sides`);
    for (const side of SIDES) {
      const result = isObject(sides[side]) ? sides[side] : fail(`${at}.sides.${side}`);
      if (!isNumber(result.medianMs)) fail(`${at}.sides.${side}.medianMs`);
      if (!Array.isArray(result.runsMs) || !result.runsMs.every(isNumber)) fail(`${at}.sides.${side}.runsMs`);
    }
  });
  return value as BenchLayersReport;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isNumber(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

function isPositive(v: unknown): v is number {
  return isNumber(v) && v > 0;
}
