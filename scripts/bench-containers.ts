/**
 * Container benchmark (not a test): what a snapshotter costs a container's
 * start, snapfs against containerd's own snapshotters, in one run, through
 * one private containerd:
 *   - container start: `ctr run --rm IMAGE ID /bin/busybox true` (the
 *     test image, Debian's busybox-static in two layers, has no `true`
 *     link), from invoking ctr until it returns: the container's snapshot
 *     prepared, ctr's own brief mount of it (to read /etc/group), its
 *     rootfs mounted by the shim (for snapfs: mount.fuse → the installed
 *     snapfs → the mount daemon), runc's create and start, the process's
 *     exit, the task deleted (unmount) and the container removed. Each
 *     snapshotter is a proxy plugin served over gRPC on a unix socket:
 *     snapfs by `snapfs serve`; containerd's native and overlayfs
 *     snapshotters by a small Go server (containerd's
 *     contrib/snapshotservice, built here in GOPATH mode from Debian's
 *     containerd sources, as the conformance driver is), started with the
 *     same command line; and fuse-overlayfs, by that server's overlayfs
 *     snapshotter with its mounts made by fuse-overlayfs, as containerd's
 *     fuse-overlayfs snapshotter makes them. containerd's built-in native
 *     snapshotter (no gRPC) is measured too, for what the proxy costs.
 *     Median and p90, the mount daemon already running; the first container
 *     on each, which for snapfs starts the mount daemon, separately.
 *   - containerd's snapshotter test suite's 128LayersMount (128 layers, each
 *     prepared, mounted, written, unmounted and committed, then a view of
 *     all of them mounted and compared), run alone by the conformance
 *     driver (test/conformance) against each server, one started per run.
 * The sides take turns, a run of each and then the next round (the order
 * rotating), so that the slow spells of a shared machine fall on each
 * alike; ratios are snapfs's time over each peer's, measured in the same run.
 *
 *   scripts/bench-containers [--quick] [--runs N] [--suite-runs N]
 *
 * --quick: 3 runs of each (default 10 container starts and 5 suite runs).
 * Needs root and Debian's containerd, runc, fuse-overlayfs, golang and
 * containerd sources (scripts/setup --tests installs them), and the
 * installed snapfs (scripts/setup). Everything lives in a temporary
 * directory: containerd's root, state and sockets, the snapshotters' roots,
 * and the snapfs mount daemon's runtime directory (SNAPFS_RUNTIME_DIR, set
 * in containerd's environment, which its shims and so the mount helper
 * inherit); the daemon is stopped and everything is unmounted at the end.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildBusyboxImage, containerdSocket, writeContainerdConfig } from '../test/support/containerd-helpers';
import { arg, environ, inTurns, median, percentile } from './bench-util';

const CLI = path.resolve(__dirname, '..', 'src', 'cli', 'main.js');
const CONFORMANCE = path.resolve(__dirname, '..', '..', 'test', 'conformance');
/** Debian's golang-github-containerd-containerd-dev, as test/system/conformance.test.ts uses it. */
const CONTAINERD_SOURCE = '/usr/share/gocode';
const quick = process.argv.includes('--quick');
const runs = Number(arg('runs', quick ? '3' : '10'));
const suiteRuns = Number(arg('suite-runs', quick ? '3' : '5'));
const IMAGE = 'bench.local/busybox:1';
const NAMESPACE = 'bench';

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'snapfs-bench-containers-'));
const runtime = path.join(base, 'run');

/**
 * The snapshotters compared: a proxy plugin each (a gRPC server of its own,
 * started as `COMMAND --root ROOT serve --address SOCKET`), and containerd's
 * built-in native one.
 */
interface Side {
  readonly name: string;
  /** The snapshotter's name in containerd (ctr --snapshotter). */
  readonly snapshotter: string;
  /** The server's command line before `--root`; none for a built-in snapshotter. */
  readonly command?: readonly string[];
}

let serverBinary = '';
const SNAPFS: Side = { name: 'snapfs (gRPC)', snapshotter: 'snapfs', command: [process.execPath, CLI] };
const NATIVE: Side = { name: 'native (gRPC)', snapshotter: 'native-grpc', command: ['SERVER', 'native'] };
const OVERLAY: Side = { name: 'overlayfs (gRPC)', snapshotter: 'overlayfs-grpc', command: ['SERVER', 'overlayfs'] };
const FUSE_OVERLAYFS: Side = { name: 'fuse-overlayfs (gRPC)', snapshotter: 'fuse-overlayfs-grpc', command: ['SERVER', 'fuse-overlayfs'] };
const BUILTIN: Side = { name: 'native (built-in)', snapshotter: 'native' };
const SERVED = [SNAPFS, NATIVE, OVERLAY, FUSE_OVERLAYFS];
const SIDES = [...SERVED, BUILTIN];
const command = (side: Side): string[] => side.command!.map((c) => (c === 'SERVER' ? serverBinary : c));

/** One line of progress on stderr when it is a terminal; progress() with no text clears it. */
function progress(text?: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${text ?? ''}`);
}

class Interrupted extends Error {}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// The Go parts: a gRPC server for containerd's snapshotters, the conformance driver

/**
 * containerd's native or overlayfs snapshotter served over gRPC, as `snapfs
 * serve` serves snapfs (or the overlayfs one with its mounts made by
 * fuse-overlayfs, as containerd's fuse-overlayfs snapshotter makes them):
 * containerd's contrib/snapshotservice, the server containerd's PLUGINS.md
 * shows for proxy plugins. Its command line is
 * snapfs's (`KIND --root ROOT serve --address SOCKET`), so that the
 * conformance driver starts it as it starts snapfs; SIGTERM stops it.
 */
const SERVER_GO = `package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/native"
	"github.com/containerd/containerd/snapshots/overlay"
	"google.golang.org/grpc"
)

// fuseOverlayfs is the overlayfs snapshotter with its overlay mounts made by
// fuse-overlayfs, as containerd's fuse-overlayfs snapshotter (a copy of the
// overlayfs one) returns them: type fuse3.fuse-overlayfs, the three
// directories as options.
type fuseOverlayfs struct{ snapshots.Snapshotter }

func fuseMounts(ms []mount.Mount, err error) ([]mount.Mount, error) {
	for i, m := range ms {
		if m.Type != "overlay" {
			continue
		}
		var options []string
		for _, o := range m.Options {
			if strings.HasPrefix(o, "lowerdir=") || strings.HasPrefix(o, "upperdir=") || strings.HasPrefix(o, "workdir=") {
				options = append(options, o)
			}
		}
		ms[i] = mount.Mount{Type: "fuse3.fuse-overlayfs", Source: "overlay", Options: options}
	}
	return ms, err
}

func (f fuseOverlayfs) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return fuseMounts(f.Snapshotter.Prepare(ctx, key, parent, opts...))
}

func (f fuseOverlayfs) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return fuseMounts(f.Snapshotter.View(ctx, key, parent, opts...))
}

func (f fuseOverlayfs) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	return fuseMounts(f.Snapshotter.Mounts(ctx, key))
}

func main() {
	a := os.Args
	if len(a) != 7 || a[2] != "--root" || a[4] != "serve" || a[5] != "--address" {
		fmt.Fprintln(os.Stderr, "usage: snapshotter-grpc native|overlayfs|fuse-overlayfs --root ROOT serve --address SOCKET")
		os.Exit(2)
	}
	kind, root, address := a[1], a[3], a[6]
	var sn snapshots.Snapshotter
	var err error
	switch kind {
	case "native":
		sn, err = native.NewSnapshotter(root)
	case "overlayfs":
		// As containerd's built-in overlayfs plugin makes it.
		sn, err = overlay.NewSnapshotter(root, overlay.AsynchronousRemove)
	case "fuse-overlayfs":
		sn, err = overlay.NewSnapshotter(root, overlay.AsynchronousRemove)
		sn = fuseOverlayfs{sn}
	default:
		err = fmt.Errorf("unknown snapshotter %q", kind)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_ = os.Remove(address)
	l, err := net.Listen("unix", address)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rpc := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(rpc, snapshotservice.FromSnapshotter(sn))
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		rpc.GracefulStop()
	}()
	fmt.Fprintf(os.Stderr, "serving %s on %s\\n", kind, address)
	if err := rpc.Serve(l); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_ = sn.Close()
}
`;

function goEnv(gopath: string): NodeJS.ProcessEnv {
  return { ...process.env, GO111MODULE: 'off', GOPATH: `${gopath}:${CONTAINERD_SOURCE}`, GOFLAGS: '', GOCACHE: process.env.GOCACHE ?? path.join(os.tmpdir(), 'snapfs-go-cache') };
}

function go(args: string[], gopath: string): void {
  const r = spawnSync('go', args, { env: goEnv(gopath), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error !== undefined) throw new Error(`go ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`go ${args.join(' ')}: exit ${r.status}\n${r.stdout}${r.stderr}`);
}

/** Builds the snapshotters' gRPC server and the conformance driver; returns the driver's path, or why there is none. */
function buildGo(): { driver?: string; noDriver?: string } {
  const gopath = path.join(base, 'gopath');
  const serverDir = path.join(gopath, 'src', 'snapfs.bench', 'snapshotter-grpc');
  fs.mkdirSync(serverDir, { recursive: true });
  fs.writeFileSync(path.join(serverDir, 'main.go'), SERVER_GO);
  serverBinary = path.join(base, 'snapshotter-grpc');
  progress('building the snapshotters\' gRPC server (go build)');
  go(['build', '-o', serverBinary, 'snapfs.bench/snapshotter-grpc'], gopath);
  if (!fs.existsSync(path.join(CONFORMANCE, 'snapfs_test.go'))) return { noDriver: `no conformance driver in ${CONFORMANCE}` };
  // As test/system/conformance.test.ts builds it: its package in a GOPATH of its own.
  fs.mkdirSync(path.join(gopath, 'src', 'snapfs.test'), { recursive: true });
  fs.symlinkSync(CONFORMANCE, path.join(gopath, 'src', 'snapfs.test', 'conformance'));
  const driver = path.join(base, 'conformance.test');
  progress('building the conformance driver (go test -c)');
  try {
    go(['test', '-c', '-o', driver, 'snapfs.test/conformance'], gopath);
  } catch (err) {
    return { noDriver: `the conformance driver did not build: ${(err as Error).message.split('\n').slice(0, 5).join(' ')}` };
  } finally {
    progress();
  }
  return { driver };
}

// The servers and containerd

interface Proc {
  readonly proc: ChildProcess;
  readonly exited: Promise<void>;
  readonly log: string;
}

function start(cmd: string, args: readonly string[], log: string): Proc {
  const out = fs.openSync(log, 'w');
  const proc = spawn(cmd, args, { stdio: ['ignore', out, out], env: process.env });
  fs.closeSync(out);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  return { proc, exited, log };
}

async function stop(p: Proc | undefined): Promise<void> {
  if (p === undefined) return;
  if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGTERM');
  const killer = setTimeout(() => p.proc.kill('SIGKILL'), 30_000);
  await p.exited;
  clearTimeout(killer);
}

function connects(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(socket);
    c.once('connect', () => (c.destroy(), resolve(true)));
    c.once('error', () => resolve(false));
  });
}

/** Waits until `socket` accepts a connection; throws with the log if `p` exits first or 30 s pass. */
async function listening(p: Proc, socket: string, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await connects(socket))) {
    if (p.proc.exitCode !== null || p.proc.signalCode !== null || Date.now() > deadline) {
      throw new Error(`${what} did not listen on ${socket}:\n${fs.readFileSync(p.log, 'utf8')}`);
    }
    await sleep(20);
  }
}

const socketOf = (side: Side): string => path.join(base, `${side.snapshotter}.sock`);

async function startServer(side: Side): Promise<Proc> {
  const [cmd, ...args] = command(side);
  const p = start(cmd!, [...args, '--root', path.join(base, `${side.snapshotter}-root`), 'serve', '--address', socketOf(side)], path.join(base, `${side.snapshotter}.log`));
  await listening(p, socketOf(side), side.name);
  return p;
}

const address = containerdSocket(base);

/** A private containerd, as test/support/containerd-helpers.ts starts one, with a proxy plugin per server. */
async function startContainerd(): Promise<Proc> {
  const config = writeContainerdConfig(base, Object.fromEntries(SIDES.filter((s) => s.command !== undefined).map((s) => [s.snapshotter, socketOf(s)])));
  // containerd's environment (SNAPFS_RUNTIME_DIR among it) is its shims', so the mount helper's.
  const p = start('containerd', ['--config', config], path.join(base, 'containerd.log'));
  const deadline = Date.now() + 30_000;
  while (ctr(['version'], 5_000).status !== 0) {
    if (p.proc.exitCode !== null || Date.now() > deadline) throw new Error(`containerd did not start:\n${fs.readFileSync(p.log, 'utf8')}`);
    await sleep(100);
  }
  return p;
}

interface Ran {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** Runs ctr against the private containerd, timed; a ctr interrupted (Ctrl-C) interrupts the benchmark. */
function ctr(args: readonly string[], timeoutMs = 120_000): Ran {
  const t = process.hrtime.bigint();
  const r = spawnSync('ctr', ['--address', address, '--namespace', NAMESPACE, ...args], { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.error !== undefined) throw new Error(`ctr ${args.join(' ')}: ${r.error.message}`);
  if (r.signal === 'SIGINT' || r.signal === 'SIGTERM') throw new Interrupted(`ctr: ${r.signal}`);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, ms };
}

function mustCtr(args: readonly string[]): Ran {
  const r = ctr(args);
  if (r.status !== 0) throw new Error(`ctr --address ${address} --namespace ${NAMESPACE} ${args.join(' ')}: exit ${r.status}\n${r.stdout}${r.stderr}`);
  return r;
}

// The snapfs mount daemon


function argv(pid: number): string[] {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

const pids = (): number[] => fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map(Number);

/** The snapfs mount daemons of this benchmark's runtime directory. */
function ourDaemons(): number[] {
  return pids().filter((pid) => argv(pid).includes('__daemon') && environ(pid).includes(`SNAPFS_RUNTIME_DIR=${runtime}`));
}

/** Processes left that this benchmark started (a shim of its containerd, a snapfs process of its runtime directory). */
function leftovers(): number[] {
  return pids().filter((pid) => pid !== process.pid && (environ(pid).includes(`SNAPFS_RUNTIME_DIR=${runtime}`) || argv(pid).some((a) => a.startsWith(base))));
}

async function stopPids(list: readonly number[]): Promise<void> {
  const alive = (pid: number): boolean => {
    try {
      return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return false;
    }
  };
  for (const pid of list) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone */
    }
  }
  const deadline = Date.now() + 10_000;
  while (list.some(alive) && Date.now() < deadline) await sleep(50);
  for (const pid of list.filter(alive)) process.kill(pid, 'SIGKILL');
}

// The measurements

const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}×`;
let containerCount = 0;

/** Runs one container on `side`'s snapshotter, timed. `cmd` defaults to busybox's true. */
function runContainer(side: Side, cmd: readonly string[] = ['/bin/busybox', 'true']): Ran & { id: string } {
  const id = `c${containerCount++}`;
  const args = ['run', '--rm', '--snapshotter', side.snapshotter, IMAGE, id, ...cmd];
  const r = ctr(args);
  if (r.status !== 0) {
    const daemonLog = path.join(runtime, 'daemon.log');
    throw new Error(
      `ctr --address ${address} --namespace ${NAMESPACE} ${args.join(' ')}: exit ${r.status} after ${r.ms.toFixed(0)} ms\n${r.stdout}${r.stderr}` +
        (side === SNAPFS && fs.existsSync(daemonLog) ? `\n${daemonLog}:\n${fs.readFileSync(daemonLog, 'utf8').split('\n').slice(-30).join('\n')}` : ''),
    );
  }
  return { ...r, id };
}

/**
 * How many times the mount daemon mounted each of these containers' rootfs
 * (its log has a line per mount). More than once: containerd's shim ran the
 * mount helper again, after unmounting (its Go runtime reaps children, so
 * waiting for the helper can fail with ECHILD, which containerd 1.6's
 * mount package answers by unmounting and retrying): this happens to every
 * FUSE snapshotter's mounts, fuse-overlayfs's too, only unseen there.
 */
function rootfsMounts(ids: readonly string[]): number[] {
  const log = fs.readFileSync(path.join(runtime, 'daemon.log'), 'utf8');
  const task = path.join(base, 'containerd-state', 'io.containerd.runtime.v2.task', NAMESPACE);
  return ids.map((id) => log.split('\n').filter((l) => l.endsWith(` mounted ${path.join(task, id, 'rootfs')}`)).length);
}

function table(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const r of rows) console.log(r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]! + 3))).join(''));
}

async function containerStart(): Promise<void> {
  // A container on the built-in native snapshotter first, unmeasured: the
  // shim's and runc's binaries and containerd's first task, which no side should pay.
  progress('warming up: a container on the built-in native snapshotter');
  runContainer(BUILTIN);

  // The first container on each proxy snapshotter; for snapfs, its mount
  // starts the mount daemon. Unpacking the image mounted snapshots already
  // (containerd applies a layer through a mount), which started one: stopped
  // here, with nothing mounted.
  await stopPids(ourDaemons());
  if (ourMounts().length !== 0) throw new Error(`mounted before the first container: ${ourMounts().join(', ')}`);
  const first = new Map<Side, number>();
  for (const side of [NATIVE, OVERLAY, FUSE_OVERLAYFS, SNAPFS]) {
    progress(`first container on ${side.name}`);
    first.set(side, runContainer(side).ms);
  }
  const daemons = ourDaemons();
  if (daemons.length !== 1) throw new Error(`after the first snapfs container, ${daemons.length} mount daemons run for ${runtime} (expected 1)`);

  // What each container's root is, as seen from inside (unmeasured).
  const rootTypes = new Map<Side, string>();
  for (const side of SIDES) {
    progress(`checking ${side.name}'s rootfs`);
    const mounts = runContainer(side, ['/bin/busybox', 'cat', '/proc/mounts']).stdout;
    rootTypes.set(side, /^\S+ \/ (\S+) /m.exec(mounts)?.[1] ?? '?');
  }
  if (rootTypes.get(SNAPFS) !== 'fuse.snapfs') throw new Error(`a snapfs container's root is ${rootTypes.get(SNAPFS)}, not fuse.snapfs`);

  const times = new Map<Side, number[]>(SIDES.map((s) => [s, []]));
  const snapfsIds: string[] = [];
  for (let r = 0; r < runs; r++) {
    // A run of each side, the order rotating from round to round.
    for (const side of inTurns(SIDES, r)) {
      progress(`container start: round ${r + 1} of ${runs}, ${side.name}`);
      const ran = runContainer(side);
      times.get(side)!.push(ran.ms);
      if (side === SNAPFS) snapfsIds.push(ran.id);
    }
  }
  progress();
  if (ourDaemons().length !== 1 || ourDaemons()[0] !== daemons[0]) throw new Error('the mount daemon changed during the benchmark');

  const snap = median(times.get(SNAPFS)!);
  console.log(`container start: ctr run --rm IMAGE ID /bin/busybox true, median and p90 of ${runs} runs each, the sides taking turns`);
  console.log(`(image: busybox-static in two layers; every snapfs mount handed to the benchmark's mount daemon, already running)\n`);
  const rows: string[][] = [['snapshotter', 'rootfs', 'median ms', 'p90 ms', 'snapfs ÷ it']];
  for (const side of SIDES) {
    const t = times.get(side)!;
    rows.push([side.name, rootTypes.get(side)!, median(t).toFixed(1), percentile(t, 0.9).toFixed(1), side === SNAPFS ? '-' : ratio(snap, median(t))]);
  }
  table(rows);
  const mounts = rootfsMounts(snapfsIds);
  const retried = mounts.filter((n) => n > 1).length;
  console.log(
    `\nsnapfs rootfs mounts per container: ${mounts.join(' ')} (${retried} of ${mounts.length} mounted again by containerd's shim after an ECHILD from its mount helper; fuse-overlayfs's mounts go the same way, unseen)\n`,
  );
  const firstRows: string[][] = [['first container', 'ms', 'snapfs ÷ it']];
  for (const side of SERVED) {
    firstRows.push([`${side.name}${side === SNAPFS ? ', starts the mount daemon' : ''}`, first.get(side)!.toFixed(1), side === SNAPFS ? '-' : ratio(first.get(SNAPFS)!, first.get(side)!)]);
  }
  table(firstRows);
  const target = snap / median(times.get(NATIVE)!);
  console.log(`\ntarget: snapfs ≤ 1.2× native served over gRPC the same way: ${target.toFixed(2)}× ${target <= 1.2 ? '(met)' : '(NOT met)'}\n`);
}

/** containerd's testsuite's 128LayersMount, alone, through the conformance driver, against each server in turns. */
function layers128(driver: string): void {
  const sides = SERVED;
  const times = new Map<Side, number[]>(sides.map((s) => [s, []]));
  const work = path.join(base, 'suite');
  fs.mkdirSync(work);
  for (let r = 0; r < suiteRuns; r++) {
    for (const side of inTurns(sides, r)) {
      progress(`128LayersMount: round ${r + 1} of ${suiteRuns}, ${side.name}`);
      const t = process.hrtime.bigint();
      const res = spawnSync(driver, ['-test.run', '^TestSnapfs$/^128LayersMount$', '-test.v', '-test.count=1', '-test.timeout=10m'], {
        cwd: work,
        encoding: 'utf8',
        maxBuffer: 256 << 20,
        // The driver starts SNAPFS's command line as it starts snapfs serve; the suite's directories go to TMPDIR.
        env: { ...process.env, SNAPFS: command(side).join(' '), TMPDIR: work },
      });
      const ms = Number(process.hrtime.bigint() - t) / 1e6;
      if (res.signal === 'SIGINT' || res.signal === 'SIGTERM') throw new Interrupted(`driver: ${res.signal}`);
      if (res.status !== 0 || !/--- PASS: TestSnapfs\/128LayersMount /.test(res.stdout)) {
        const why = res.stdout.split('\n').filter((l) => /^\s*(---|\w+\.go:\d+:)/.test(l) && !/DumpDir|helpers\.go:\d+: [-dlrwx]{10} /.test(l));
        throw new Error(`SNAPFS='${command(side).join(' ')}' ${driver} -test.run '^TestSnapfs$/^128LayersMount$' -test.v: exit ${res.status}\n${why.slice(-30).join('\n')}${res.stderr}`);
      }
      times.get(side)!.push(ms);
    }
  }
  progress();
  const snap = median(times.get(SNAPFS)!);
  console.log(`containerd's snapshotter test suite, 128LayersMount alone (the conformance driver, a server started per run), median of ${suiteRuns} runs each\n`);
  const rows: string[][] = [['server', 'median ms', 'p90 ms', 'snapfs ÷ it']];
  for (const side of sides) {
    const t = times.get(side)!;
    rows.push([side.name, median(t).toFixed(0), percentile(t, 0.9).toFixed(0), side === SNAPFS ? '-' : ratio(snap, median(t))]);
  }
  table(rows);
  console.log('');
}

function ourMounts(): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((m): m is string => m !== undefined && m.startsWith(base));
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench-containers needs root (it runs a private containerd, whose containers mount their rootfs)');
  for (const tool of ['containerd', 'ctr', 'runc', 'go', 'fuse-overlayfs']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) throw new Error(`${tool} is missing (scripts/setup --tests installs it)`);
  }
  fs.mkdirSync(runtime, { mode: 0o700 });
  process.env.SNAPFS_RUNTIME_DIR = runtime;
  // The daemon lives as long as the benchmark (stopped at the end), however long a phase takes.
  process.env.SNAPFS_DAEMON_IDLE_SECONDS = '3600';

  const { driver, noDriver } = buildGo();
  const servers: Proc[] = [];
  let containerd: Proc | undefined;
  try {
    for (const side of SIDES) if (side.command !== undefined) servers.push(await startServer(side));
    containerd = await startContainerd();
    const { tarball } = buildBusyboxImage(base, IMAGE);
    for (const side of SIDES) {
      progress(`importing the image for ${side.name}`);
      mustCtr(['images', 'import', '--snapshotter', side.snapshotter, tarball]);
    }
    progress();
    console.log(`snapfs container benchmark (${base}; snapfs's mount daemon: SNAPFS_RUNTIME_DIR=${runtime})`);
    console.log(`${os.cpus().length} CPUs, ${os.release()}; containerd ${spawnSync('containerd', ['--version'], { encoding: 'utf8' }).stdout.trim().split(' ').pop()}\n`);
    await containerStart();
  } finally {
    progress();
    await stop(containerd);
    for (const s of servers) await stop(s);
  }
  if (driver !== undefined) layers128(driver);
  else console.log(`128LayersMount skipped: ${noDriver}\n`);
}

async function cleanUp(): Promise<void> {
  const problems: string[] = [];
  await stopPids(ourDaemons());
  for (const m of ourMounts().reverse()) {
    problems.push(`left mounted: ${m}`);
    spawnSync('umount', ['-l', m]);
  }
  const left = leftovers();
  if (left.length > 0) {
    problems.push(`left running: ${left.map((pid) => `${pid} (${argv(pid).join(' ').slice(0, 100)})`).join(', ')}`);
    await stopPids(left);
  }
  fs.rmSync(base, { recursive: true, force: true });
  for (const p of problems) console.error(`cleanup: ${p}`);
  if (problems.length > 0) process.exitCode = 1;
}

let interrupted = false;
process.on('SIGINT', () => (interrupted = true));
main()
  .catch((err: unknown) => {
    progress();
    console.error(interrupted || err instanceof Interrupted ? 'interrupted' : err instanceof Error ? err.message : err);
    process.exitCode = 1;
  })
  .finally(() => cleanUp());
