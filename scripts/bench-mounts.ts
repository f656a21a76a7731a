/**
 * Mount benchmark (not a test): what a mount costs, snapfs's shared mount
 * daemon against a process per mount (`-o dedicated`), fuse-overlayfs and
 * the kernel's overlayfs, in one run, over the same three small lower
 * layers:
 *   - memory: PSS and RSS of every process serving 1, 10 and 100 live
 *     mounts (each lightly used: `ls -R`, a `cat`, one file written), and
 *     the PSS each mount beyond the first adds;
 *   - mount latency, the daemon already running: from invoking the helper
 *     until it returns with the mount live, median and p90; and the first
 *     mount, which starts the daemon;
 *   - layers released after umount: from `umount MNT` returning until the
 *     tmpfs holding the layers can be unmounted;
 *   - CLI start-up (scripts/bench-cli, run from here).
 * The sides take turns, a run of each and then the next round, so that the
 * slow spells of a shared machine fall on each alike; ratios are against
 * fuse-overlayfs (or `node -e 0`) measured in the same run.
 *
 *   scripts/bench-mounts [--quick] [--runs N]
 *
 * Needs root (mount(8), the kernel overlay, tmpfs). snapfs mounts go to a
 * daemon of the benchmark's own (SNAPFS_RUNTIME_DIR in its temporary
 * directory), stopped at the end; everything mounted is unmounted.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { arg, environ, inTurns, median, millis, percentile } from './bench-util';

const CLI = path.resolve(__dirname, '..', 'src', 'cli', 'main.js');
const BENCH_CLI = path.resolve(__dirname, 'bench-cli.js');
const quick = process.argv.includes('--quick');
const runs = Number(arg('runs', quick ? '5' : '20'));
const MEMORY_COUNTS = quick ? [1, 10] : [1, 10, 100];
const DEDICATED_COUNTS = [1, 10];
const FIRST_RUNS = quick ? 3 : 10;

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'snapfs-bench-mounts-'));
const runtime = path.join(base, 'run');
/** Whether this build reads SNAPFS_RUNTIME_DIR: then the benchmark has a daemon of its own. */
const ownRuntime = fs.readFileSync(path.resolve(__dirname, '..', 'src', 'mount', 'runtime.js'), 'utf8').includes('SNAPFS_RUNTIME_DIR');

/** The snapfs command installed on PATH (what mount -t fuse.snapfs runs), if there is one. */
const INSTALLED = (process.env.PATH ?? '')
  .split(':')
  .map((dir) => path.join(dir, 'snapfs'))
  .find((file) => path.isAbsolute(file) && isExecutable(file));

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/**
 * How a mount is made: the command a user or containerd would run. `snapfs
 * -o` is the Node CLI (dist/src/cli/main.js), `installed -o` the snapfs
 * command on PATH, which mount(8) runs for fuse.snapfs.
 */
type Kind = 'mount -t fuse.snapfs' | 'installed -o' | 'snapfs -o' | 'snapfs -o dedicated' | 'fuse-overlayfs' | 'mount -t overlay';

function label(kind: Kind): string {
  if (kind === 'installed -o') return `${INSTALLED} -o`;
  if (kind === 'snapfs -o') return 'node dist/src/cli/main.js -o';
  return kind;
}

class Interrupted extends Error {}

interface Ran {
  readonly ok: boolean;
  readonly status: number | null;
  readonly stderr: string;
}

/** Runs a command to its end, output aside; a command interrupted (Ctrl-C) interrupts the benchmark. */
function run(cmd: string, args: readonly string[], timeoutMs = 60_000): Ran {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', timeout: timeoutMs, env: process.env });
  if (r.error !== undefined) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  if (r.signal === 'SIGINT' || r.signal === 'SIGTERM') throw new Interrupted(`${cmd}: ${r.signal}`);
  return { ok: r.status === 0, status: r.status, stderr: r.stderr };
}

function must(cmd: string, args: readonly string[], timeoutMs?: number): void {
  const r = run(cmd, args, timeoutMs);
  if (!r.ok) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}: ${r.stderr.trim()}`);
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** One line of progress on stderr when it is a terminal; progress() with no text clears it. */
function progress(text?: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${text ?? ''}`);
}

// Layers and mounts

/** The three lower layers, topmost first, a few small files each (the top one shadows one file). */
function makeLayers(dir: string): string[] {
  const files: Record<string, string>[] = [
    { 'etc/hostname': 'base\n', 'etc/passwd': 'root:x:0:0:root:/root:/bin/sh\n', 'bin/tool': '#!/bin/sh\necho tool\n', 'lib/libc.so': 'x'.repeat(4096) },
    { 'etc/os-release': 'ID=bench\n', 'usr/share/doc/readme': 'a layer in the middle\n', 'usr/bin/app': 'y'.repeat(8192) },
    { 'etc/hostname': 'app\n', 'app/main.js': 'console.log(1)\n', 'app/config.json': '{}\n' },
  ];
  return files
    .map((layer, i) => {
      const d = path.join(dir, `l${i}`);
      for (const [name, content] of Object.entries(layer)) {
        fs.mkdirSync(path.dirname(path.join(d, name)), { recursive: true });
        fs.writeFileSync(path.join(d, name), content);
      }
      return d;
    })
    .reverse();
}

interface Dirs {
  readonly mnt: string;
  readonly upper: string;
  readonly work: string;
  readonly lowers: readonly string[];
}

let dirCount = 0;
/** A mount point, an upper and a work directory of their own, in `under`. */
function newDirs(lowers: readonly string[], under = path.join(base, 'm')): Dirs {
  const d = path.join(under, String(dirCount++));
  const dirs = { mnt: path.join(d, 'mnt'), upper: path.join(d, 'upper'), work: path.join(d, 'work'), lowers };
  for (const x of [dirs.mnt, dirs.upper, dirs.work]) fs.mkdirSync(x, { recursive: true });
  return dirs;
}

/** What is mounted under `base`, most recent last. */
const live: string[] = [];

function mountCommand(kind: Kind, d: Dirs): [string, string[]] {
  const opts = `lowerdir=${d.lowers.join(':')},upperdir=${d.upper},workdir=${d.work}`;
  switch (kind) {
    case 'mount -t fuse.snapfs':
      return ['mount', ['-t', 'fuse.snapfs', 'snapfs', d.mnt, '-o', opts]];
    case 'installed -o':
      return [INSTALLED!, ['-o', opts, d.mnt]];
    case 'snapfs -o':
      return [process.execPath, [CLI, '-o', opts, d.mnt]];
    case 'snapfs -o dedicated':
      return [process.execPath, [CLI, '-o', `${opts},dedicated`, d.mnt]];
    case 'fuse-overlayfs':
      return ['fuse-overlayfs', ['-o', opts, d.mnt]];
    case 'mount -t overlay':
      return ['mount', ['-t', 'overlay', 'overlay', '-o', opts, d.mnt]];
  }
}

/** Mounts; returns the milliseconds the helper took, from exec to exit (the mount is live then). */
function mount(kind: Kind, d: Dirs): number {
  const [cmd, args] = mountCommand(kind, d);
  let r: Ran | undefined;
  const ms = millis(() => {
    r = run(cmd, args);
  });
  if (!r!.ok) throw new Error(`${kind}: ${cmd} ${args.join(' ')}: exit ${r!.status}: ${r!.stderr.trim()}`);
  live.push(d.mnt);
  return ms;
}

/** Unmounts; returns the milliseconds umount took. */
function unmount(mnt: string): number {
  const ms = millis(() => must('umount', [mnt]));
  live.splice(live.lastIndexOf(mnt), 1);
  return ms;
}

/** Light use of each mount, in a child process: list it all, read a file, write one. */
function use(mnts: readonly string[]): void {
  const script = 'for m in "$@"; do ls -R "$m" > /dev/null && cat "$m/etc/hostname" > /dev/null && echo written > "$m/written" || exit 1; done';
  must('bash', ['-c', script, 'use', ...mnts], 120_000);
}

// Processes

interface Proc {
  readonly pid: number;
  readonly argv: readonly string[];
}

function processes(): Proc[] {
  const procs: Proc[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').slice(0, -1);
      if (argv.length > 0) procs.push({ pid: Number(name), argv });
    } catch {
      // gone meanwhile
    }
  }
  return procs;
}


/** The snapfs mount daemons serving this benchmark's mounts. */
function ourDaemons(): number[] {
  const mine = (p: Proc): boolean => !ownRuntime || environ(p.pid).includes(`SNAPFS_RUNTIME_DIR=${runtime}`);
  return processes()
    .filter((p) => p.argv.includes('__daemon') && p.argv.includes(CLI) && mine(p))
    .map((p) => p.pid);
}

/** Processes of snapfs (`__serve`, a process per mount) or fuse-overlayfs serving a mount of this benchmark. */
function servers(which: 'snapfs' | 'fuse-overlayfs'): number[] {
  return processes()
    .filter((p) => (which === 'snapfs' ? p.argv.includes('__serve') : path.basename(p.argv[0]!) === 'fuse-overlayfs') && p.argv.some((a) => a.includes(base)))
    .map((p) => p.pid);
}

function gone(pid: number): boolean {
  try {
    return /^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

/** Stops the daemons serving this benchmark (none of its mounts live), so that the next mount starts a new one. */
function stopDaemons(): void {
  for (const pid of ourDaemons()) {
    process.kill(pid, 'SIGTERM');
    const deadline = Date.now() + 10_000;
    while (!gone(pid)) {
      if (Date.now() > deadline) {
        process.kill(pid, 'SIGKILL');
        break;
      }
      sleep(2);
    }
  }
}

/**
 * PSS, RSS and USS (private pages: what would be freed if the process
 * exited), KiB, summed over `pids` (smaps_rollup). PSS splits each shared
 * page among the processes mapping it, so a node process's share of the
 * node binary depends on how many other node processes run on the machine.
 */
function memoryOf(pids: readonly number[]): { pss: number; anon: number; rss: number; uss: number } {
  let pss = 0;
  let anon = 0;
  let rss = 0;
  let uss = 0;
  for (const pid of pids) {
    const text = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)![1]);
    pss += kib('Pss');
    anon += kib('Pss_Anon');
    rss += kib('Rss');
    uss += kib('Private_Clean') + kib('Private_Dirty');
  }
  return { pss, anon, rss, uss };
}

// Output

const mib = (kib: number): string => (kib / 1024).toFixed(1);
const ratio = (x: number, reference: number): string => `${(x / reference).toFixed(2)}×`;

function table(rows: readonly (readonly string[])[], widths: readonly number[]): void {
  for (const r of rows) console.log(r.map((c, i) => (i === 0 ? c.padEnd(widths[0]!) : c.padStart(widths[i] ?? 12))).join(''));
}

interface Target {
  readonly what: string;
  readonly value: string;
  readonly target: string;
  readonly ok: boolean;
}
const targets: Target[] = [];

// 1. Memory

type MemorySide = 'snapfs shared daemon' | 'snapfs dedicated' | 'fuse-overlayfs';

interface Memory {
  readonly procs: number;
  readonly pss: number;
  readonly anon: number;
  readonly rss: number;
  readonly uss: number;
}

/**
 * PSS, RSS and USS of the processes of `side` serving 1, then 10, then
 * 100 mounts (`counts`), each used lightly once mounted: one growing set of
 * mounts on one daemon, measured as it grows, so that what each mount
 * beyond the first adds is measured seconds apart.
 */
function memoryWith(side: MemorySide, counts: readonly number[], lowers: readonly string[]): Map<number, Memory> {
  stopDaemons(); // a daemon of its own, started by the first mount
  const kind: Kind = side === 'snapfs shared daemon' ? 'snapfs -o' : side === 'snapfs dedicated' ? 'snapfs -o dedicated' : 'fuse-overlayfs';
  const mnts: string[] = [];
  const got = new Map<number, Memory>();
  try {
    for (const count of counts) {
      const fresh: string[] = [];
      while (mnts.length < count) {
        progress(`memory: ${side}, mount ${mnts.length + 1} of ${count}`);
        const d = newDirs(lowers);
        mount(kind, d);
        mnts.push(d.mnt);
        fresh.push(d.mnt);
      }
      progress(`memory: ${side}, using ${fresh.length} mounts`);
      use(fresh);
      sleep(500);
      const pids = side === 'fuse-overlayfs' ? servers('fuse-overlayfs') : [...(side === 'snapfs shared daemon' ? ourDaemons() : []), ...servers('snapfs')];
      got.set(count, { procs: pids.length, ...memoryOf(pids) });
    }
    return got;
  } finally {
    for (const m of mnts.reverse()) unmount(m);
    progress();
  }
}

function memory(lowers: readonly string[]): void {
  const sides: [MemorySide, readonly number[]][] = [
    ['snapfs shared daemon', MEMORY_COUNTS],
    ['snapfs dedicated', DEDICATED_COUNTS],
    ['fuse-overlayfs', MEMORY_COUNTS],
  ];
  const got = new Map<MemorySide, Map<number, Memory>>(sides.map(([side, counts]) => [side, memoryWith(side, counts, lowers)]));
  const beyond = (side: MemorySide, count: number, field: 'pss' | 'anon'): number => {
    const m = got.get(side)!;
    return (m.get(count)![field] - m.get(1)![field]) / (count - 1);
  };
  console.log(`1. Memory of the processes serving N mounts, each used (ls -R, cat, a file written); MiB\n`);
  const rows: string[][] = [['side', 'mounts', 'processes', 'PSS', 'anon PSS', 'RSS', 'USS', 'PSS/mount>1', 'anon/mount>1', 'PSS/fuse-ovl']];
  for (const [side, counts] of sides) {
    for (const count of counts) {
      const m = got.get(side)!.get(count)!;
      const fo = got.get('fuse-overlayfs')!.get(count)!;
      const extra = (field: 'pss' | 'anon'): string => (count === 1 ? '-' : mib(beyond(side, count, field)));
      rows.push([side, String(count), String(m.procs), mib(m.pss), mib(m.anon), mib(m.rss), mib(m.uss), extra('pss'), extra('anon'), side === 'fuse-overlayfs' ? '-' : ratio(m.pss, fo.pss)]);
    }
  }
  table(rows, [22, 8, 11, 9, 10, 9, 9, 13, 14, 14]);
  console.log(
    [
      '',
      '  PSS: each page shared by n processes counted 1/n in each; its file-backed part (the node binary, shared',
      '  with every node process on the machine) moves with what else runs. anon PSS: the heap and stacks.',
      '  USS: the pages only these processes map. mount>1: what each mount beyond the first adds.',
    ].join('\n'),
  );
  const most = MEMORY_COUNTS[MEMORY_COUNTS.length - 1]!;
  const snapfs = beyond('snapfs shared daemon', most, 'pss');
  targets.push({ what: `PSS per snapfs mount beyond the first (${most} mounts)`, value: `${mib(snapfs)} MiB`, target: '≤ 5 MiB', ok: snapfs <= 5 * 1024 });
}

// 2. Mount latency

function latency(lowers: readonly string[]): void {
  const dir = path.join(base, 'latency');
  // The first mount, which starts the daemon, in turns with fuse-overlayfs.
  const first: number[] = [];
  const firstPeer: number[] = [];
  for (let r = 0; r < FIRST_RUNS; r++) {
    progress(`latency: first mount ${r + 1} of ${FIRST_RUNS}`);
    stopDaemons();
    const a = newDirs(lowers, dir);
    first.push(mount('snapfs -o', a));
    unmount(a.mnt);
    const b = newDirs(lowers, dir);
    firstPeer.push(mount('fuse-overlayfs', b));
    unmount(b.mnt);
  }

  // `node -e 0`, no mount, times what any helper written for Node.js pays before it starts.
  const NODE = 'node -e 0 (no mount)';
  const kinds: Kind[] = ['mount -t fuse.snapfs', ...(INSTALLED === undefined ? [] : ['installed -o' as const]), 'snapfs -o', 'fuse-overlayfs', 'mount -t overlay'];
  const sides: (Kind | typeof NODE)[] = [...kinds, NODE];
  const times = new Map<string, number[]>(sides.map((s) => [s, []]));
  const umounts = new Map<string, number[]>(sides.map((s) => [s, []]));
  const snapfsMounts: string[] = [];
  // One mount stays live throughout: the daemon serves another mount, as it would.
  const keeper = newDirs(lowers, dir);
  mount('snapfs -o', keeper);
  try {
    for (let r = -2; r < runs; r++) {
      progress(`latency: round ${r + 1} of ${runs}`);
      // Each round in another order, so that no side always follows the same one; rounds below 0 warm up.
      for (const side of inTurns(sides, r)) {
        if (side === NODE) {
          const ms = millis(() => must(process.execPath, ['-e', '0']));
          if (r >= 0) times.get(side)!.push(ms);
          continue;
        }
        const d = newDirs(lowers, dir);
        const ms = mount(side, d);
        if (side === 'mount -t fuse.snapfs' || side === 'installed -o' || side === 'snapfs -o') snapfsMounts.push(d.mnt);
        const um = unmount(d.mnt);
        if (r >= 0) {
          times.get(side)!.push(ms);
          umounts.get(side)!.push(um);
        }
      }
    }
  } finally {
    unmount(keeper.mnt);
    progress();
  }

  // Every snapfs mount went to the benchmark's daemon, not to another one (mount(8) and the installed command find it by SNAPFS_RUNTIME_DIR too).
  const log = ownRuntime ? fs.readFileSync(path.join(runtime, 'daemon.log'), 'utf8') : undefined;
  const elsewhere = log === undefined ? [] : snapfsMounts.filter((m) => !log.includes(`mounted ${m}\n`));
  if (elsewhere.length > 0) throw new Error(`${elsewhere.length} snapfs mounts were not served by the benchmark's daemon, e.g. ${elsewhere[0]}`);
  const reference = median(times.get('fuse-overlayfs')!);
  console.log(`\n2. Mount latency: from exec of the helper to its exit, the mount live; ms, ${runs} interleaved rounds\n`);
  const rows: string[][] = [['helper', 'median', 'p90', 'median/fuse-ovl', 'umount median']];
  for (const side of sides) {
    const t = times.get(side)!;
    const um = umounts.get(side)!;
    rows.push([side === NODE ? side : label(side), median(t).toFixed(1), percentile(t, 0.9).toFixed(1), ratio(median(t), reference), um.length === 0 ? '-' : median(um).toFixed(1)]);
  }
  rows.push([`${label('snapfs -o')}, first (starts the daemon; ${FIRST_RUNS} runs)`, median(first).toFixed(1), percentile(first, 0.9).toFixed(1), ratio(median(first), median(firstPeer)), '-']);
  table(rows, [66, 10, 10, 17, 15]);
  console.log(`\n  (the first mount against fuse-overlayfs mounting in the same rounds: ${median(firstPeer).toFixed(1)} ms)`);
}

// 3. Layers released after umount

interface ReleaseSide {
  readonly name: string;
  readonly kind: Kind;
  readonly written: boolean;
}

/**
 * Mounts `side` over layers on a tmpfs of their own, unmounts it, then
 * tries to unmount the tmpfs until it is no longer busy. Returns the
 * milliseconds from umount returning until the umount of the tmpfs
 * succeeded (`ms`: the layers were released by then) and until that last
 * try began (`held`: 0 if the first one succeeded; the layers were still
 * held when the one before it began), and the tries.
 */
function releaseOnce(side: ReleaseSide): { ms: number; held: number; attempts: number } {
  const d = path.join(base, 'release', String(dirCount++));
  const tmpfs = path.join(d, 'layers');
  fs.mkdirSync(tmpfs, { recursive: true });
  must('mount', ['-t', 'tmpfs', '-o', 'size=16m,mode=0755', 'tmpfs', tmpfs]);
  live.push(tmpfs);
  const lowers = makeLayers(tmpfs);
  const dirs = { mnt: path.join(d, 'mnt'), upper: path.join(tmpfs, 'upper'), work: path.join(tmpfs, 'work'), lowers };
  for (const x of [dirs.mnt, dirs.upper, dirs.work]) fs.mkdirSync(x);
  mount(side.kind, dirs);
  if (side.written) use([dirs.mnt]);
  unmount(dirs.mnt);
  const t = process.hrtime.bigint();
  const since = (): number => Number(process.hrtime.bigint() - t) / 1e6;
  for (let attempts = 1; ; attempts++) {
    const held = attempts === 1 ? 0 : since();
    const r = run('umount', [tmpfs]);
    if (r.ok) {
      live.splice(live.lastIndexOf(tmpfs), 1);
      return { ms: since(), held, attempts };
    }
    if (!/busy/i.test(r.stderr)) throw new Error(`umount ${tmpfs}: exit ${r.status}: ${r.stderr.trim()}`);
    if (since() > 10_000) throw new Error(`${side.name}: ${tmpfs} still busy 10 s after umount ${dirs.mnt} returned`);
    sleep(1);
  }
}

function release(): void {
  const sides: ReleaseSide[] = [
    { name: 'snapfs, written to', kind: 'snapfs -o', written: true },
    { name: 'snapfs, untouched', kind: 'snapfs -o', written: false },
    { name: 'fuse-overlayfs, written to', kind: 'fuse-overlayfs', written: true },
    { name: 'fuse-overlayfs, untouched', kind: 'fuse-overlayfs', written: false },
    { name: 'kernel overlay, written to', kind: 'mount -t overlay', written: true },
  ];
  const times = new Map<string, number[]>(sides.map((s) => [s.name, []]));
  const attempts = new Map<string, number[]>(sides.map((s) => [s.name, []]));
  const held = new Map<string, number[]>(sides.map((s) => [s.name, []]));
  // A mount stays live throughout, so that the daemon is the long-running one.
  const keeper = newDirs(makeLayers(path.join(base, 'release-keeper')));
  mount('snapfs -o', keeper);
  try {
    for (let r = -1; r < runs; r++) {
      progress(`release: round ${r + 1} of ${runs}`);
      for (const side of inTurns(sides, r)) {
        const got = releaseOnce(side);
        if (r >= 0) {
          times.get(side.name)!.push(got.ms);
          attempts.get(side.name)!.push(got.attempts);
          held.get(side.name)!.push(got.held);
        }
      }
    }
  } finally {
    unmount(keeper.mnt);
    progress();
  }
  console.log(`\n3. Layers released: from umount MNT returning until umount of the layers' tmpfs succeeds; ms, ${runs} interleaved rounds\n`);
  const rows: string[][] = [['side', 'median', 'p90', 'max', 'tries max', 'held max']];
  for (const side of sides) {
    const t = times.get(side.name)!;
    rows.push([side.name, median(t).toFixed(1), percentile(t, 0.9).toFixed(1), Math.max(...t).toFixed(1), String(Math.max(...attempts.get(side.name)!)), Math.max(...held.get(side.name)!).toFixed(1)]);
  }
  table(rows, [30, 10, 10, 10, 11, 10]);
  console.log(
    [
      '',
      '  Each time includes one umount call, the one that succeeds: what the kernel overlay shows, whose layers are',
      '  released before umount returns. held: until the last try began, 0 when the first one succeeded (the layers',
      '  were still held when the try before it began).',
    ].join('\n'),
  );
  for (const name of ['snapfs, written to', 'snapfs, untouched']) {
    const m = median(times.get(name)!);
    targets.push({ what: `layers released after umount, ${name} (median)`, value: `${m.toFixed(1)} ms`, target: '≤ 20 ms', ok: m <= 20 });
  }
}

// 4. CLI start-up

function cliStart(): void {
  console.log(`\n4. CLI start-up: scripts/bench-cli --runs ${runs}`);
  const r = spawnSync(process.execPath, [BENCH_CLI, '--runs', String(runs)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.signal === 'SIGINT' || r.signal === 'SIGTERM') throw new Interrupted(`bench-cli: ${r.signal}`);
  process.stdout.write(r.stdout.replace(/^\n/, ''));
  if (r.status !== 0) {
    console.log(`bench-cli failed (exit ${r.status}; its error above): no CLI start-up figures`);
    return;
  }
  const m = /^snapfs info K\s+[\d.]+\s+([\d.]+)×/m.exec(r.stdout);
  if (m !== null) targets.push({ what: 'snapfs info K against node -e 0', value: `${m[1]}×`, target: '≤ 1.5×', ok: Number(m[1]) <= 1.5 });
}

function main(): void {
  if (process.getuid?.() !== 0) throw new Error('bench-mounts needs root (mount(8), the kernel overlay, tmpfs)');
  fs.mkdirSync(runtime, { mode: 0o700 });
  if (ownRuntime) process.env.SNAPFS_RUNTIME_DIR = runtime;
  else if (ourDaemons().length > 0) throw new Error('a snapfs mount daemon runs already, and this build has no SNAPFS_RUNTIME_DIR for a daemon of the benchmark: stop it first');
  // The daemon lives as long as the benchmark (stopped at the end), however long a phase waits.
  process.env.SNAPFS_DAEMON_IDLE_SECONDS = '3600';
  const lowers = makeLayers(path.join(base, 'layers'));
  console.log(`snapfs mount benchmark${quick ? ' (--quick)' : ''}: 3 small lower layers, an upper and a work directory per mount (${base})`);
  console.log(`snapfs mounts served by ${ownRuntime ? `the benchmark's own daemon (SNAPFS_RUNTIME_DIR=${runtime})` : 'the daemon of /run/snapfs'}\n`);
  memory(lowers);
  latency(lowers);
  release();
  cliStart();
  console.log('\nTargets');
  table(
    targets.map((t) => [t.what, t.value, t.target, t.ok ? 'met' : 'MISSED']),
    [58, 12, 10, 8],
  );
}

/** Unmounts whatever is left under `base` (lazily, deepest first), stops the daemon, removes `base`; says what it could not. */
function cleanUp(): void {
  progress();
  const mounted = (): string[] =>
    fs
      .readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((line) => line.split(' ')[4])
      .filter((m): m is string => m !== undefined && m.startsWith(`${base}/`));
  for (const m of [...new Set([...live.reverse(), ...mounted().reverse()])]) {
    const r = run('umount', [m]);
    if (!r.ok && mounted().includes(m)) run('umount', ['-l', m]);
  }
  stopDaemons();
  for (const pid of servers('snapfs')) process.kill(pid, 'SIGTERM');
  const left = fs
    .readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .filter((line) => line.includes(base));
  if (left.length > 0) console.error(`bench-mounts: still mounted:\n${left.join('\n')}`);
  else fs.rmSync(base, { recursive: true, force: true });
}

// A signal handler, so that Ctrl-C, which ends the command running, lets the cleanup run.
let signalled: NodeJS.Signals | undefined;
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => (signalled = sig));

try {
  main();
} catch (err) {
  progress();
  console.error(`bench-mounts: ${err instanceof Error ? err.message : String(err)}`);
  const log = path.join(ownRuntime ? runtime : '/run/snapfs', 'daemon.log');
  if (fs.existsSync(log)) console.error(`the end of ${log}:\n${fs.readFileSync(log, 'utf8').split('\n').slice(-20).join('\n')}`);
  process.exitCode = err instanceof Interrupted ? 130 : 1;
} finally {
  cleanUp();
  if (signalled !== undefined) process.exitCode = 130;
}
