/**
 * Layer benchmark (not a test): the same layer trees served by the kernel's
 * overlayfs, fuse-overlayfs and snapfs, the same workloads on each, in one
 * run: walks, listings of names alone and reads on read-only views and on
 * writable mounts (what a container gets), files with two names, the first touch of a fresh mount
 * over layers already in the page cache, a loaded machine, and writes. Prints each one's median time and the ratios snapfs/fuse-overlayfs and
 * snapfs/overlay. Then each workload on two mounts at once (snapfs's both
 * served by its one mount daemon, fuse-overlayfs's by a process each)
 * against one mount alone: what sharing a daemon costs a mount. The memory
 * of many mounts is scripts/bench-mounts' to measure.
 *
 *   scripts/bench-layers [--scale F] [--runs N] [--only SUBSTRING] [--no-pairs] [--json FILE]
 *
 * Needs root (the kernel overlay, dropping caches). --scale shrinks every
 * size (0.1 for a quick look). --json writes every result and the run's
 * settings to FILE (bench-layers-report.ts; scripts/chart-layers draws it).
 */
import { execFileSync, execSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type BenchLayersReport, type PairResult, type PairSide, type PrepareResult, type Side, SIDES, sideResult, type WorkloadResult } from './bench-layers-report';
import { arg, millis, median } from './bench-util';

const CLI = path.resolve(__dirname, '..', 'src', 'cli', 'main.js');
const scale = Number(arg('scale', '1'));
const runs = Number(arg('runs', '3'));
const only = arg('only', '');
const pairs = !process.argv.includes('--no-pairs');
const jsonFile = arg('json', '');
const n = (x: number): number => Math.max(1, Math.round(x * scale));

interface Stack {
  lowers: string[]; // topmost first
}

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'snapfs-bench-layers-'));
const sh = (cmd: string, cwd?: string): string => execSync(cmd, { cwd, shell: '/bin/bash', maxBuffer: 1 << 30, encoding: 'utf8' });

function mount(side: Side, stack: Stack, mnt: string, writable: boolean): void {
  fs.mkdirSync(mnt, { recursive: true });
  // Layer paths relative to the layers' directory, as containerd does: a
  // hundred absolute paths overflow the kernel's page of mount options.
  const layers = path.join(base, 'layers');
  let opts = `lowerdir=${stack.lowers.map((l) => path.relative(layers, l)).join(':')}`;
  if (writable) {
    const upper = `${mnt}.upper`;
    const work = `${mnt}.work`;
    for (const d of [upper, work]) {
      fs.rmSync(d, { recursive: true, force: true });
      fs.mkdirSync(d);
    }
    opts += `,upperdir=${upper},workdir=${work}`;
  }
  const run = { cwd: layers, stdio: ['ignore', 'ignore', 'ignore'] as ('ignore')[] };
  if (side === 'overlay') execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', stack.lowers.length === 1 && !writable ? `${opts}:${emptyLayer()}` : opts, mnt], run);
  else if (side === 'fuse-overlayfs') execFileSync('fuse-overlayfs', ['-o', opts, mnt], run);
  else execFileSync(process.execPath, [CLI, '-o', opts, mnt], run);
}

function unmount(mnt: string): void {
  execFileSync('umount', [mnt]);
}

let emptyDir: string | undefined;
function emptyLayer(): string {
  emptyDir ??= layerDir('empty');
  return 'empty';
}

function dropCaches(): void {
  sh('sync; echo 3 > /proc/sys/vm/drop_caches');
}



// Layer trees

function layerDir(name: string): string {
  const d = path.join(base, 'layers', name);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

/** `files` small files spread over `layers` layers, each in dirs of 100. */
function spreadTree(name: string, files: number, layers: number): Stack {
  const lowers: string[] = [];
  for (let l = 0; l < layers; l++) {
    const d = layerDir(`${name}-${l}`);
    const per = Math.ceil(files / layers);
    sh(`for i in $(seq 0 ${per - 1}); do mkdir -p d$((i / 100)); echo "layer ${l} file $i" > d$((i / 100))/l${l}-f$i; done`, d);
    lowers.unshift(d);
  }
  return { lowers };
}

/** spreadTree, each file with a second name beside it (as images carry hard links). */
function linkedTree(name: string, files: number, layers: number): Stack {
  const stack = spreadTree(name, files, layers);
  for (const d of stack.lowers) sh('for f in d*/*; do ln "$f" "$f.link"; done', d);
  return stack;
}

/** A chain of `depth` layers whose bottom one holds `files` files; the others one file each. */
function chain(name: string, depth: number, files: number): Stack {
  const lowers: string[] = [];
  for (let l = 0; l < depth; l++) {
    const d = layerDir(`${name}-${l}`);
    if (l === 0) sh(`mkdir -p data && for i in $(seq 1 ${files}); do echo $i > data/f$i; done`, d);
    else fs.writeFileSync(path.join(d, `marker-${l}`), String(l));
    lowers.unshift(d);
  }
  return { lowers };
}

function bigFileLayer(name: string, mib: number): Stack {
  const d = layerDir(name);
  sh(`head -c ${mib}M /dev/urandom > big`, d);
  return { lowers: [d] };
}

function smallFilesLayer(name: string, files: number, dirName = 'small'): Stack {
  const d = layerDir(name);
  sh(`mkdir -p ${dirName} && for i in $(seq 1 ${files}); do echo "small file $i" > ${dirName}/f$i; done`, d);
  return { lowers: [d] };
}

// Workloads

interface Workload {
  name: string;
  stack: () => Stack;
  writable: boolean;
  /**
   * cold: a fresh mount and dropped caches before each run; first touch: a
   * fresh mount, the page cache warm (a container starting on an image
   * others use); warm: one run first to warm up.
   */
  cold: boolean | 'first touch';
  /** Run while two CPU-bound processes keep both cores of a 2-core machine busy. */
  loaded?: boolean;
  /** A shell command run in the mount point. */
  command: string;
}

function workloads(): Workload[] {
  const files20k = n(20_000);
  const bigMiB = n(256);
  const small = n(5_000);
  const memo = <T>(f: () => T): (() => T) => {
    let v: T | undefined;
    return () => (v ??= f());
  };
  const spread = memo(() => spreadTree('spread', files20k, 10));
  const linked = memo(() => linkedTree('linked', files20k / 2, 10));
  const chains = [1, 20, 100].map((depth) => [depth, memo(() => chain(`chain${depth}`, depth, n(2_000)))] as const);
  const big = memo(() => bigFileLayer('big', bigMiB));
  const smalls = memo(() => smallFilesLayer('small', small));
  const renameSrc = memo(() => smallFilesLayer('renamedir', n(1_000), 'dir'));
  const tarball = memo(() => {
    const src = smallFilesLayer('tarsrc', small);
    const tar = path.join(base, 'small.tar');
    sh(`tar -cf ${tar} -C ${src.lowers[0]} small`);
    return tar;
  });
  const empty = memo(() => ({ lowers: [layerDir('empty-lower')] }));
  const statAll = 'find . -printf "%s %i\\n" > /dev/null';
  // What a container gets is a writable mount; a view is read-only. Both, reported apart.
  const bothWays = (w: Workload): Workload[] => [w, { ...w, name: `${w.name}, writable mount`, writable: true }];
  const all: Workload[] = [
    ...bothWays({ name: `stat ${files20k} files in 10 layers, cold`, stack: spread, writable: false, cold: true, command: statAll }),
    ...bothWays({ name: `stat ${files20k} files in 10 layers, warm`, stack: spread, writable: false, cold: false, command: statAll }),
    // Names alone (d_type tells directories): what a listing costs when every entry comes looked up with it.
    ...bothWays({ name: `list ${files20k} names in 10 layers, cold (ls -fR)`, stack: spread, writable: false, cold: true, command: 'ls -fR > /dev/null' }),
    ...chains.map(([depth, stack]) => ({
      name: `stat ${n(2_000)} files in the bottom layer, depth ${depth}, warm`,
      stack,
      writable: false,
      cold: false,
      command: 'find data -printf "%s\\n" > /dev/null',
    })),
    ...bothWays({ name: `read a ${bigMiB} MiB lower file, cold`, stack: big, writable: false, cold: true, command: 'cat big > /dev/null' }),
    ...bothWays({ name: `read a ${bigMiB} MiB lower file, warm`, stack: big, writable: false, cold: false, command: 'cat big > /dev/null' }),
    ...bothWays({ name: `read ${small} small files, warm`, stack: smalls, writable: false, cold: false, command: 'cat small/* > /dev/null' }),
    { name: `list ${small} names of one directory, cold (ls -f), writable mount`, stack: smalls, writable: true, cold: true, command: 'ls -f small > /dev/null' },
    ...bothWays({ name: `stat ${files20k} names of ${files20k / 2} files with two names each, in 10 layers, warm`, stack: linked, writable: false, cold: false, command: statAll }),
    { name: `first touch of a fresh writable mount, caches warm: lstat of ${files20k} files in 10 layers`, stack: spread, writable: true, cold: 'first touch', command: statAll },
    { name: `first touch of a fresh writable mount, caches warm: read ${small} small files`, stack: smalls, writable: true, cold: 'first touch', command: 'cat small/* > /dev/null' },
    { name: `loaded machine: stat ${files20k} files in 10 layers, warm, writable mount`, stack: spread, writable: true, cold: false, loaded: true, command: statAll },
    { name: `loaded machine: read ${small} small files, warm, writable mount`, stack: smalls, writable: true, cold: false, loaded: true, command: 'cat small/* > /dev/null' },
    { name: `copy-up of the ${bigMiB} MiB file`, stack: big, writable: true, cold: true, command: 'printf x >> big' },
    { name: `write a new ${bigMiB} MiB file`, stack: empty, writable: true, cold: true, command: `head -c ${bigMiB}M /dev/zero > new && sync -f new` },
    { name: `untar ${small} small files`, stack: () => empty(), writable: true, cold: true, command: `tar -xf ${tarball()}` },
    { name: `delete ${small} lower files`, stack: smalls, writable: true, cold: true, command: 'rm -r small' },
    { name: `rename a lower dir of ${n(1_000)} files`, stack: renameSrc, writable: true, cold: true, command: 'mv dir moved' },
  ];
  return all.filter((w) => w.name.includes(only));
}

/**
 * The times of each side on `w`. Runs take turns (a run of each side, then
 * the next round), so that the disk's slow and fast spells, which last
 * seconds on a shared machine, fall on every side alike.
 */
function measure(w: Workload): Record<Side, number[]> {
  const stack = w.stack();
  const mnt = (side: Side): string => path.join(base, 'mnt', side);
  const times = Object.fromEntries(SIDES.map((side) => [side, [] as number[]])) as Record<Side, number[]>;
  const hogs = w.loaded === true ? [0, 1].map(() => spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' })) : [];
  try {
    if (w.cold !== false) measureFresh(w, stack, mnt, times);
    else measureWarm(w, stack, mnt, times);
  } finally {
    for (const hog of hogs) hog.kill('SIGKILL');
  }
  return times;
}

/** `w`'s runs on each side as --json reports them, with their medians and the ratios the table prints. */
function workloadResult(w: Workload, times: Record<Side, number[]>): WorkloadResult {
  const sides = Object.fromEntries(SIDES.map((side) => [side, sideResult(times[side])])) as WorkloadResult['sides'];
  return {
    name: w.name,
    mount: w.writable ? 'writable' : 'view',
    caches: w.cold === true ? 'cold' : w.cold === false ? 'warm' : w.cold,
    loaded: w.loaded === true,
    sides,
    ratios: { snapfsToFuseOverlayfs: sides.snapfs.medianMs / sides['fuse-overlayfs'].medianMs, snapfsToOverlay: sides.snapfs.medianMs / sides.overlay.medianMs },
  };
}

/** Each run on a mount of its own, made for it: the page cache dropped first (cold), or left warm (first touch). */
function measureFresh(w: Workload, stack: Stack, mnt: (side: Side) => string, times: Record<Side, number[]>): void {
  if (w.cold === 'first touch') for (const side of SIDES) warmUp(side, stack, mnt(side), w);
  for (let r = 0; r < runs; r++) {
    for (const side of SIDES) {
      mount(side, stack, mnt(side), w.writable);
      try {
        if (w.cold === true) dropCaches();
        times[side].push(millis(() => sh(w.command, mnt(side))));
      } finally {
        unmount(mnt(side));
      }
    }
  }
}

/** One run of `w` on a mount made and unmounted for it: the layers' pages and the kernel's caches of them are warm. */
function warmUp(side: Side, stack: Stack, dir: string, w: Workload): void {
  mount(side, stack, dir, w.writable);
  try {
    sh(w.command, dir);
  } finally {
    unmount(dir);
  }
}

/** Runs on one mount each, after one run to warm up. */
function measureWarm(w: Workload, stack: Stack, mnt: (side: Side) => string, times: Record<Side, number[]>): void {
  const mounted: Side[] = [];
  try {
    for (const side of SIDES) {
      mount(side, stack, mnt(side), w.writable);
      mounted.push(side);
      sh(w.command, mnt(side));
    }
    for (let r = 0; r < runs; r++) for (const side of SIDES) times[side].push(millis(() => sh(w.command, mnt(side))));
  } finally {
    for (const side of mounted) unmount(mnt(side));
  }
}

/** snapfs view over a parent against the full copy containerd's native snapshotter makes. */
function prepareCost(): PrepareResult {
  const files = n(20_000);
  const root = path.join(base, 'root');
  const cli = (...a: string[]): string => execFileSync(process.execPath, [CLI, '--root', root, ...a], { encoding: 'utf8' });
  cli('prepare', 'p-a');
  const upper = (JSON.parse(cli('mounts', '--json', 'p-a')) as { source: string }[])[0]!.source;
  sh(`for i in $(seq 1 ${files}); do mkdir -p d$((i / 100)); echo $i > d$((i / 100))/f$i; done`, upper);
  cli('commit', 'parent', 'p-a');
  const times: number[] = [];
  const copies: number[] = [];
  for (let r = 0; r < runs; r++) {
    times.push(millis(() => cli('view', `v${r}`, 'parent')));
    const dst = path.join(base, `copy${r}`);
    copies.push(millis(() => sh(`cp -a ${upper} ${dst}`)));
  }
  return { name: `prepare a view over ${files} files`, copy: sideResult(copies), view: sideResult(times), viewToCopy: median(times) / median(copies) };
}

/** Runs `command` in each of `dirs` at once; milliseconds until the last one is done. */
async function atOnce(command: string, dirs: readonly string[]): Promise<number> {
  const t = process.hrtime.bigint();
  await Promise.all(
    dirs.map(
      (cwd) =>
        new Promise<void>((resolve, reject) => {
          const child = spawn('bash', ['-c', command], { cwd, stdio: 'ignore' });
          child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${command}: exit ${code} in ${cwd}`))));
        }),
    ),
  );
  return Number(process.hrtime.bigint() - t) / 1e6;
}

/**
 * `w` on one mount alone, then on two mounts of the same layers at once
 * (each its own upper layer when writable), for fuse-overlayfs and snapfs
 * in turns; the median of each. On snapfs both mounts are served by one
 * daemon, on fuse-overlayfs by a process each.
 */
async function measurePair(w: Workload): Promise<PairResult['sides']> {
  const stack = w.stack();
  const sides: PairSide[] = ['fuse-overlayfs', 'snapfs'];
  const times = Object.fromEntries(sides.map((side) => [side, { alone: [] as number[], pair: [] as number[] }])) as Record<PairSide, { alone: number[]; pair: number[] }>;
  const mnts = (side: PairSide, count: number): string[] => Array.from({ length: count }, (_, i) => path.join(base, 'pair', `${side}-${i}`));
  for (let r = 0; r < runs; r++) {
    for (const side of sides) {
      for (const count of [1, 2]) {
        const dirs = mnts(side, count);
        const mounted: string[] = [];
        try {
          for (const d of dirs) {
            mount(side, stack, d, w.writable);
            mounted.push(d);
          }
          if (w.cold) dropCaches();
          else await atOnce(w.command, dirs);
          (count === 1 ? times[side].alone : times[side].pair).push(await atOnce(w.command, dirs));
        } finally {
          for (const d of mounted) unmount(d);
        }
      }
    }
  }
  return Object.fromEntries(sides.map((side) => [side, { aloneMs: median(times[side].alone), pairMs: median(times[side].pair) }])) as PairResult['sides'];
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench-layers needs root (kernel overlay, dropping caches)');
  checkJsonFile();
  const report: BenchLayersReport = {
    settings: { scale, runs, date: new Date().toISOString(), kernel: os.release(), cpus: os.availableParallelism() },
    workloads: [],
  };
  const rows: string[][] = [['workload', 'overlay ms', 'fuse-overlayfs ms', 'snapfs ms', 'snapfs/fuse-ovl', 'snapfs/overlay']];
  const out = (r: string[]): void => {
    rows.push(r);
    console.log(r.map((c, i) => (i === 0 ? c.padEnd(52) : c.padStart(16))).join(''));
  };
  console.log(`snapfs layer benchmark, scale ${scale}, median of ${runs} runs (${base})\n`);
  out(rows[0]!);
  for (const w of workloads()) {
    const r = workloadResult(w, measure(w));
    report.workloads.push(r);
    const ms = (side: Side): string => r.sides[side].medianMs.toFixed(1);
    out([w.name, ms('overlay'), ms('fuse-overlayfs'), ms('snapfs'), `${r.ratios.snapfsToFuseOverlayfs.toFixed(2)}×`, `${r.ratios.snapfsToOverlay.toFixed(2)}×`]);
  }
  if (only === '' || 'prepare'.includes(only)) {
    const p = (report.prepare = prepareCost());
    out([p.name, '', `${p.copy.medianMs.toFixed(1)} (cp -a)`, p.view.medianMs.toFixed(1), '', `${p.viewToCopy.toFixed(3)}× of a copy`]);
  }
  if (pairs) await pairsAgainstAlone(report);
  if (jsonFile !== '') fs.writeFileSync(jsonFile, `${JSON.stringify(report, null, 2)}\n`);
}

/** Each workload on two mounts at once against one alone: printed, and kept in `report`. */
async function pairsAgainstAlone(report: BenchLayersReport): Promise<void> {
  report.pairs = [];
  console.log('\nTwo mounts at once against one alone (both of snapfs\'s served by its one daemon; fuse-overlayfs a process each)\n');
  const head = ['workload', 'fuse-ovl 1 ms', 'fuse-ovl 2 ms', 'snapfs 1 ms', 'snapfs 2 ms', 'fuse-ovl 2/1', 'snapfs 2/1'];
  console.log(head.map((c, i) => (i === 0 ? c.padEnd(52) : c.padStart(15))).join(''));
  for (const w of workloads()) {
    const t = await measurePair(w);
    report.pairs.push({ name: w.name, sides: t });
    const f = t['fuse-overlayfs'];
    const row = [w.name, f.aloneMs.toFixed(1), f.pairMs.toFixed(1), t.snapfs.aloneMs.toFixed(1), t.snapfs.pairMs.toFixed(1), `${(f.pairMs / f.aloneMs).toFixed(2)}×`, `${(t.snapfs.pairMs / t.snapfs.aloneMs).toFixed(2)}×`];
    console.log(row.map((c, i) => (i === 0 ? c.padEnd(52) : c.padStart(15))).join(''));
  }
}

/** A wrong command line: exit code 2. */
class UsageError extends Error {}

/** Refuses, before the long run, a --json without a file or with one that cannot be written. */
function checkJsonFile(): void {
  if (!process.argv.includes('--json')) return;
  if (jsonFile === '' || jsonFile.startsWith('--')) throw new UsageError('--json needs a FILE to write the results to');
  const dir = path.dirname(path.resolve(jsonFile));
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch (err) {
    throw new UsageError(`--json ${jsonFile}: cannot write in ${dir} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
}

main()
  .catch((err: unknown) => {
    console.error(`bench-layers: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = err instanceof UsageError ? 2 : 1;
  })
  .finally(() => {
    for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const m = line.split(' ')[4];
      if (m !== undefined && m.startsWith(base)) sh(`umount -l ${m} || true`);
    }
    fs.rmSync(base, { recursive: true, force: true });
  });
