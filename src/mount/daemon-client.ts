import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { unavailable } from '../errors';
import { O_PATH, sys } from '../native/sys';
import { exchange, listening } from '../native/unix';
import { sharedDaemonFiles } from './daemon';
import type { BrowseHandOver, DaemonAnswer, DaemonRequest, HandOver, LiveMount } from './handover';
import { openLog } from './runtime';

/** How long a daemon has to answer: a mount is live once the kernel's INIT is answered, well within this. */
const ANSWER_MS = 20_000;
/** How long a daemon just started has to listen. */
const START_MS = 10_000;

/**
 * Descriptors (O_PATH) of `dirs` (a mount's layer directories, in the
 * order a hand-over sends them, or a browsed root). Opened before
 * mounting: a layer may be the mount point itself (fuse-overlayfs mounts
 * over its lower directory so), which the mount would hide, and the
 * daemon must never be handed its own mount.
 */
export function openDirs(dirs: readonly string[]): number[] {
  const fds: number[] = [];
  try {
    for (const dir of dirs) fds.push(fs.openSync(dir, O_PATH | fs.constants.O_DIRECTORY));
  } catch (err) {
    for (const fd of fds) fs.closeSync(fd);
    throw err;
  }
  return fds;
}

/**
 * Hands the mount on `device` (a /dev/fuse descriptor this process made),
 * with the directories `dirs` (openDirs), to the user's mount daemon;
 * starts the daemon if none runs. Returns once the mount is live. The
 * descriptors stay open here: the caller closes them (and unmounts if
 * this failed).
 */
export function handOver(request: HandOver | BrowseHandOver, device: number, dirs: readonly number[]): void {
  const answer = ask(request, [device, ...dirs]);
  if ('error' in answer) throw unavailable(`mount ${request.mountpoint}: ${answer.error} (see ${sharedDaemonFiles().log})`);
}

/** The mounts the user's daemon serves; none if no daemon runs (none is started to ask). */
export function liveMounts(): readonly LiveMount[] {
  const { socket, log } = sharedDaemonFiles();
  let answer: DaemonAnswer;
  try {
    answer = JSON.parse(exchange(socket, Buffer.from(JSON.stringify({ op: 'list' } satisfies DaemonRequest)), [], ANSWER_MS).data.toString()) as DaemonAnswer;
  } catch (err) {
    if (NO_DAEMON.includes((err as NodeJS.ErrnoException).code ?? '')) return [];
    throw unavailable(`mount daemon ${socket}: ${(err as Error).message}`);
  }
  if ('error' in answer) throw unavailable(`mount daemon ${socket}: ${answer.error} (see ${log})`);
  return answer.mounts ?? [];
}

/** What connecting says when no daemon listens: none there, or one that died. */
const NOT_LISTENING = ['ENOENT', 'ECONNREFUSED'];
/** And what asking says when none answers: those, or one exiting as we came. */
const NO_DAEMON = [...NOT_LISTENING, 'ECONNRESET'];

/** Asks the daemon, starting it first if none answers; a daemon on its way out is asked again once it is replaced. */
function ask(request: DaemonRequest, fds: readonly number[] = []): DaemonAnswer {
  const { socket } = sharedDaemonFiles();
  const data = Buffer.from(JSON.stringify(request));
  for (let attempt = 0; ; attempt++) {
    try {
      return JSON.parse(exchange(socket, data, fds, ANSWER_MS).data.toString()) as DaemonAnswer;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      // Only where connecting failed: a daemon that hung up after the request may have taken its descriptors.
      if (attempt > 1 || !NOT_LISTENING.includes(code)) {
        const { log } = sharedDaemonFiles();
        throw unavailable(`mount daemon ${socket}: ${code === 'ETIMEDOUT' ? `no answer within ${ANSWER_MS / 1000} s` : (err as Error).message} (see ${log})`);
      }
      startDaemon();
    }
  }
}

/**
 * Starts the daemon, detached (its own session, cwd /, output to its log),
 * unless another helper did meanwhile: helpers starting at once take
 * turns on RUNTIME/daemon.lock, and each looks for a daemon again first.
 */
function startDaemon(): void {
  const { socket, log, lock } = sharedDaemonFiles();
  const lockFd = fs.openSync(lock, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600);
  try {
    while (!sys.tryLock(lockFd)) sleep(5);
    if (listening(socket)) return;
    const out = openLog(log);
    const child = spawn(process.execPath, [path.join(__dirname, '..', 'cli', 'main.js'), '__daemon'], { detached: true, stdio: ['ignore', out, out], cwd: '/' });
    fs.closeSync(out);
    child.unref();
    const deadline = Date.now() + START_MS;
    while (!listening(socket)) {
      if (Date.now() > deadline) throw unavailable(`mount daemon: not listening on ${socket} within ${START_MS / 1000} s (see ${log})`);
      sleep(5);
    }
  } finally {
    fs.closeSync(lockFd); // lets go of the lock
  }
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
