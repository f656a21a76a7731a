import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { unavailable, invalidArgument } from '../errors';
import { checkControlSocket, servingPid } from './control';
import { major, minor } from '../layerfs/devices';
import { devicesOfType, isMounted } from './mountinfo';
import { daemonFiles, openLog, runtimeDir } from './runtime';
import type { BrowseRequest } from './serve-browse';
import { openDevice, unmount } from '../fuse/mount';
import { handOver, openDirs } from './daemon-client';
import { browseHandOverOf, handOverOf, notAppliedNote } from './handover';
import { BROWSE_MOUNT, layersMount, serve, type MountRequest } from './serve';

/**
 * Checks what can be checked before mounting, so that a failure is one clear
 * line rather than libfuse's; then mounts, in this process (`foreground`) or
 * in a detached daemon that outlives it. The daemon's output goes to its
 * log (see logFileOf): whoever started us (mount(8), containerd) may wait
 * for our output pipes to close, so the daemon must not hold them.
 */
export async function launch(req: MountRequest | BrowseRequest, opts: { foreground: boolean }): Promise<void> {
  check(req);
  if (opts.foreground) return serveAny(req, () => undefined);
  // A root not made yet has no directory to hand over: its browse mount finds it by path, in a process of its own.
  const rootMissing = 'browse' in req && !fs.existsSync(req.browse);
  if (req.dedicated !== true && !rootMissing) {
    // Opened once: what is checked is what the daemon is handed.
    const dirs = openDirs(dirsOf(req));
    try {
      if (!onSnapfsMount(dirs)) return await mountThroughDaemon(req, dirs);
    } finally {
      for (const fd of dirs) fs.closeSync(fd);
    }
  }
  const logFile = logFileOf(req);
  const log = openLog(logFile);
  const child = spawn(process.execPath, [process.argv[1]!, '__serve', JSON.stringify(req)], {
    detached: true,
    stdio: ['ignore', log, log, 'ipc'],
  });
  fs.closeSync(log);
  await new Promise<void>((resolve, reject) => {
    child.once('message', (msg: { mounted?: true; error?: string }) => {
      if (msg.mounted === true) resolve();
      else reject(unavailable(`mount ${req.mountpoint}: ${msg.error ?? 'failed'} (see ${logFile})`));
    });
    child.once('exit', (code) => reject(unavailable(`mount ${req.mountpoint}: daemon exited with ${code} (see ${logFile})`)));
  });
  child.disconnect();
  child.unref();
}

/**
 * Mounts here, in the caller's mount namespace, and hands the mount, with
 * the directories `dirs` (openDirs, opened before mounting), to the user's
 * mount daemon (see daemon.ts). If it cannot be handed over, the mount is
 * taken down again.
 */
async function mountThroughDaemon(req: MountRequest | BrowseRequest, dirs: readonly number[]): Promise<void> {
  const device = openDevice(req.mountpoint, 'browse' in req ? BROWSE_MOUNT : layersMount(req));
  try {
    handOver('browse' in req ? browseHandOverOf(req.browse, req.mountpoint) : handOverOf(req), device, dirs);
  } catch (err) {
    fs.closeSync(device); // the connection is aborted: nobody serves it
    await unmount(req.mountpoint).catch(() => undefined);
    throw err;
  }
  fs.closeSync(device);
}

/** The directories a mount is served from: its layers (lowers, then upper and work), or the browsed root. */
function dirsOf(req: MountRequest | BrowseRequest): string[] {
  if ('browse' in req) return [req.browse];
  return [...req.stack.lowers, ...(req.stack.upper === undefined ? [] : [req.stack.upper, req.stack.work!])];
}

/**
 * Whether one of the directories `dirs` (descriptors) is on a snapfs mount
 * (a container's layers in a container, say): the daemon serving that
 * mount would wait on itself when it read it, so such a mount gets a
 * process of its own.
 */
function onSnapfsMount(dirs: readonly number[]): boolean {
  const devices = devicesOfType('fuse.snapfs');
  if (devices.size === 0) return false;
  return dirs.some((fd) => {
    const { dev } = fs.fstatSync(fd);
    return devices.has(`${major(dev)}:${minor(dev)}`);
  });
}

/** The daemon's side of launch(): serve, report the outcome once, then run until unmounted. */
export async function runDaemon(requestJson: string): Promise<void> {
  const req = JSON.parse(requestJson) as MountRequest | BrowseRequest;
  const report = (msg: { mounted?: true; error?: string }): void => {
    if (process.connected) {
      process.send?.(msg);
      process.disconnect();
    }
  };
  try {
    await serveAny(req, () => report({ mounted: true }));
  } catch (err) {
    report({ error: err instanceof Error ? err.message : String(err) });
    throw err;
  }
}

/** The daemon's log, in the runtime directory: by its work directory, else one for mounts without one, and one for browse. */
function logFileOf(req: MountRequest | BrowseRequest): string {
  if ('browse' in req) return path.join(runtimeDir(), 'browse.log');
  return req.stack.work === undefined ? path.join(runtimeDir(), 'mount.log') : daemonFiles(req.stack.work).log;
}

async function serveAny(req: MountRequest | BrowseRequest, onMounted: () => void): Promise<void> {
  if (!('browse' in req)) {
    // This process's output is its log (logFileOf).
    if (req.notApplied !== undefined) console.error(`${req.mountpoint}: ${notAppliedNote(req.notApplied)}`);
    return serve(req, onMounted);
  }
  // Loaded for browse alone: it opens the root's database, which no other mount needs.
  const { serveBrowse } = await import('./serve-browse');
  return serveBrowse(req, onMounted);
}

function check(req: MountRequest | BrowseRequest): void {
  const { lowers, upper, work } = 'browse' in req ? { lowers: [], upper: undefined, work: undefined } : req.stack;
  for (const dir of [...lowers, ...(upper === undefined ? [] : [upper]), ...(work === undefined ? [] : [work]), req.mountpoint]) {
    const st = fs.statSync(dir, { throwIfNoEntry: false });
    if (st === undefined) throw invalidArgument(`${dir}: no such directory`);
    if (!st.isDirectory()) throw invalidArgument(`${dir}: not a directory`);
  }
  if (upper !== undefined && work !== undefined) {
    checkControlSocket(work);
    const pid = servingPid(work);
    if (pid !== undefined) throw unavailable(`${upper}: already mounted read-write by snapfs (pid ${pid})`);
  }
  if (isMounted(path.resolve(req.mountpoint))) throw unavailable(`${req.mountpoint}: mountpoint busy (already a mount point)`);
  if ('browse' in req && overlaps(req.browse, req.mountpoint)) throw invalidArgument(`${req.mountpoint}: inside the root ${req.browse}, or holding it: browse elsewhere`);
  try {
    fs.accessSync('/dev/fuse', fs.constants.R_OK | fs.constants.W_OK);
  } catch {
    throw unavailable('/dev/fuse: missing or not accessible (is the fuse module loaded?)');
  }
  if (process.getuid?.() !== 0 && !onPath('fusermount')) throw unavailable('fusermount: not found on PATH (install fuse3)');
}

/** Whether one of two directories is the other or inside it. */
function overlaps(a: string, b: string): boolean {
  const real = (p: string): string => {
    try {
      return fs.realpathSync(p);
    } catch {
      return path.resolve(p); // not there yet (a root made later)
    }
  };
  const [x, y] = [real(a), real(b)];
  return x === y || x.startsWith(`${y}/`) || y.startsWith(`${x}/`) || y === '/' || x === '/';
}

function onPath(command: string): boolean {
  return (process.env.PATH ?? '').split(':').some((dir) => dir !== '' && fs.existsSync(path.join(dir, command)));
}
