import * as fs from 'node:fs';
import { mountFileSystem, serveDevice, unmount, type MountOptions, type Served } from '../fuse/mount';
import { Init } from '../fuse/protocol';
import type { FileSystem } from '../fuse/session';
import { parseIdMap } from '../layerfs/idmap';
import { LayerFS, type LayerTweaks } from '../layerfs/layerfs';
import { inInitialUserNamespace } from '../namespaces';
import type { LayerStack } from '../overlay/stack';
import { onStopSignals } from '../signals';
import { serveControl } from './control';
import type { MountStats } from './stats';

export interface MountRequest {
  readonly stack: LayerStack;
  readonly mountpoint: string;
  /** Let other users in; a mount made by root always does (containers run as anyone). */
  readonly allowOther?: boolean;
  /** What the options ask of the file system (squash_to_uid=, static_nlink, volatile, …). */
  readonly tweaks?: LayerTweaks;
  /** Options taken but not applied (harmless here): said once in the daemon's log. */
  readonly notApplied?: readonly string[];
  /** fuse-overlayfs's uidmapping= and gidmapping= values. */
  readonly uidMapping?: string;
  readonly gidMapping?: string;
  /** mount(8) flags to pass on (suid, nodev, noexec, noatime, …). */
  readonly mountFlags?: readonly string[];
  /** The snapshot mounted, when mounted by key (`snapfs mount`): shown by `snapfs mounted`. */
  readonly snapshot?: string;
  /** Served by a process of its own rather than the user's mount daemon. */
  readonly dedicated?: boolean;
}

/**
 * What a mount asks of the kernel: reads in parallel, O_TRUNC on open,
 * requests of up to 1 MiB, pages dropped when a file's mtime says it
 * changed, symlink targets kept, and set-ID bits dropped by the file
 * system (so the kernel stops asking for security.capability before every
 * write). Listings come with every entry's lookup (readdirplus), for every
 * part of a listing: not only its first, as READDIRPLUS_AUTO would have it
 * when nothing was looked up in the directory meanwhile, which is how
 * `find`, `ls -l` and `rm -r` read a directory (all of it, then each entry).
 */
const MOUNT_INIT_FLAGS =
  Init.ASYNC_READ | Init.ATOMIC_O_TRUNC | Init.BIG_WRITES | Init.AUTO_INVAL_DATA | Init.PARALLEL_DIROPS | Init.MAX_PAGES | Init.CACHE_SYMLINKS | Init.HANDLE_KILLPRIV_V2 | Init.DO_READDIRPLUS;
/**
 * After answering, the device is polled this long before sleeping: a
 * caller's next request usually comes within it, and the wake-up it spares
 * costs more than most requests.
 */
const SPIN_MICROS = 50;

/**
 * FUSE passthrough (reads of files opened read-only done by the kernel
 * itself) needs CAP_SYS_ADMIN in the initial user namespace: asked for by
 * root there, unless SNAPFS_PASSTHROUGH=0 says not to (to compare, say).
 */
function passthroughWanted(): boolean {
  return process.env.SNAPFS_PASSTHROUGH !== '0' && process.getuid?.() === 0 && inInitialUserNamespace();
}
let passthrough: boolean | undefined;

/**
 * libfuse mounts nosuid,nodev unless told otherwise; a container's root file
 * system needs both, as on overlayfs. Only root may ask for them.
 */
function mountFlags(req: MountRequest): string[] {
  const given = req.mountFlags ?? [];
  if (process.getuid?.() !== 0) return given.filter((f) => f !== 'suid' && f !== 'dev');
  return [...(given.includes('nosuid') ? [] : ['suid']), ...(given.includes('nodev') ? [] : ['dev']), ...given.filter((f) => f !== 'suid' && f !== 'dev')];
}

/** How a browse mount (serve-browse.ts) is mounted: read-only; root's is everyone's, with the kernel checking each file's permissions. */
export const BROWSE_MOUNT: MountOptions = { fsname: 'snapfs-browse', subtype: 'snapfs', readOnly: true, allowOther: process.getuid?.() === 0, flags: ['nosuid', 'nodev'] };

/** How the mount of `req` is mounted. */
export function layersMount(req: MountRequest): MountOptions {
  return { fsname: 'snapfs', subtype: 'snapfs', readOnly: req.stack.upper === undefined, allowOther: req.allowOther === true || process.getuid?.() === 0, flags: mountFlags(req) };
}

/**
 * Serves `fileSystem` on `device` (a mount's /dev/fuse descriptor a helper handed
 * over), or on a mount of `mountpoint` made now with `options`; resolves
 * once the mount is live.
 */
export function serveSession(fileSystem: FileSystem, mountpoint: string, options: MountOptions, device: number | undefined, space?: Float64Array): Promise<Served> {
  const session = { initFlags: MOUNT_INIT_FLAGS, spinMicros: SPIN_MICROS, passthrough: (passthrough ??= passthroughWanted()), ...(space === undefined ? {} : { space }) };
  return device === undefined ? mountFileSystem(mountpoint, fileSystem, options, session) : serveDevice(device, mountpoint, fileSystem, session);
}

/** A mount being served: its session, and the end of it. */
export interface ServedMount {
  readonly served: Served;
  stats(): MountStats;
  /** Once the mount is gone: lets go of its layers and closes its control socket (once). */
  release(): Promise<void>;
}

/**
 * Serves `req` on `device`, a mount's /dev/fuse descriptor made elsewhere
 * (a helper handed it over; ours from now on, closed whatever happens), or
 * on a mount made now; resolves once the
 * mount is live. Once its session ends, `release` lets go of what it holds.
 */
export async function startServing(req: MountRequest, device?: number): Promise<ServedMount> {
  let layerfs: LayerFS;
  try {
    layerfs = new LayerFS(req.stack, {
      ...req.tweaks,
      ...(req.uidMapping === undefined ? {} : { uids: parseIdMap('uidmapping', req.uidMapping) }),
      ...(req.gidMapping === undefined ? {} : { gids: parseIdMap('gidmapping', req.gidMapping) }),
    });
  } catch (err) {
    // The device is ours to close from the start: nobody will serve it.
    if (device !== undefined) fs.closeSync(device);
    throw err;
  }
  let served: Served;
  try {
    served = await serveSession(layerfs, req.mountpoint, { ...layersMount(req), readOnly: layerfs.readOnly }, device, layerfs.space?.counts);
  } catch (err) {
    layerfs.close();
    throw err;
  }
  // Writes never reach LayerFS: the session refuses them itself.
  const freeze = (): void => {
    layerfs.freeze();
    served.session.refuseWrites();
  };
  const work = req.stack.work;
  let closeControl: () => Promise<void>;
  try {
    closeControl = work !== undefined && !layerfs.readOnly ? serveControl(work, req.mountpoint, freeze) : () => Promise.resolve();
  } catch (err) {
    served.session.close();
    layerfs.close();
    throw err;
  }
  let released: Promise<void> | undefined;
  const release = (): Promise<void> => (released ??= closeControl().finally(() => layerfs.close()));
  return { served, release, stats: () => ({ ops: served.session.stats(), copiedUpBytes: layerfs.copiedUpBytes }) };
}

/**
 * Serves `req` in this process until it is unmounted: by SIGTERM/SIGINT
 * (we unmount), or by `umount`/`fusermount -u` from outside (the session
 * ends). `onMounted` runs once the mount is live.
 */
export async function serve(req: MountRequest, onMounted: () => void): Promise<void> {
  // Modes arrive with the caller's umask applied already.
  process.umask(0);
  const mount = await startServing(req);
  onMounted();
  await untilUnmounted(mount.served, req.mountpoint);
  await mount.release();
}

/**
 * Resolves once the mount is gone: unmounted from outside (the session
 * ends), or by us on SIGTERM/SIGINT.
 */
export function untilUnmounted(served: Served, mountpoint: string): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      stopListening();
      served.session.close();
      resolve();
    };
    const stopListening = onStopSignals(() => {
      unmount(mountpoint).then(done, (err: unknown) => {
        console.error(`snapfs: ${err instanceof Error ? err.message : String(err)}`);
        done();
      });
    });
    served.ended.then(done, (err: unknown) => {
      console.error(`snapfs: ${mountpoint}: ${err instanceof Error ? err.message : String(err)}`);
      done();
    });
  });
}

