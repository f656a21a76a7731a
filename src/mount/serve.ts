import Fuse from 'fuse-native';
import { parseIdMap } from '../layerfs/idmap';
import { LayerFS, type LayerStack } from '../layerfs/layerfs';
import { serveControl } from './control';
import { isMounted } from './mountinfo';

export interface MountRequest {
  readonly stack: LayerStack;
  readonly mountpoint: string;
  /** Let other users in; a mount made by root always does (containers run as anyone). */
  readonly allowOther?: boolean;
  /** Show every file as owned by root (fuse-overlayfs's squash_to_root). */
  readonly squashToRoot?: boolean;
  /** fuse-overlayfs's uidmapping= and gidmapping= values. */
  readonly uidMapping?: string;
  readonly gidMapping?: string;
  /** mount(8) flags to pass on (suid, nodev, noexec, noatime, …). */
  readonly mountFlags?: readonly string[];
}

/**
 * libfuse mounts nosuid,nodev unless told otherwise; a container's root file
 * system needs both, as on overlayfs. Only root may ask for them.
 */
function mountFlags(req: MountRequest): string[] {
  const given = req.mountFlags ?? [];
  if (process.getuid?.() !== 0) return given.filter((f) => f !== 'suid' && f !== 'dev');
  return [...(given.includes('nosuid') ? [] : ['suid']), ...(given.includes('nodev') ? [] : ['dev']), ...given.filter((f) => f !== 'suid' && f !== 'dev')];
}

const UNMOUNT_POLL_MS = 500;
// Names only ever change through this mount, so the kernel may keep them.
// Attributes and pages of a read-only view never change either. On a
// writable mount, though, libfuse's high-level API gives each name of a
// hard-linked file its own kernel inode: a write through one name would
// leave the other's cached attributes and pages stale. So there only the
// attributes of directories and of files with one name are kept (the
// kernel drops them itself when it changes them), and pages are dropped
// when a file has changed.
const CACHE_SECONDS = 86_400;
// The most the patched fuse-native asks the kernel for (FUSE_MAX_PAGES).
const MAX_WRITE = 1024 * 1024;

/**
 * Serves `req` until it is unmounted: by SIGTERM/SIGINT (we unmount), or by
 * `umount`/`fusermount -u` from outside (noticed in /proc/self/mountinfo).
 * `onMounted` runs once the mount is live.
 */
export function serve(req: MountRequest, onMounted: (fs: LayerFS) => void): Promise<void> {
  // Modes arrive with the caller's umask applied already.
  process.umask(0);
  // The caller is asked for only while an operation runs, after `fuse` exists.
  const layerfs: LayerFS = new LayerFS(req.stack, {
    squashToRoot: req.squashToRoot === true,
    ...(req.uidMapping === undefined ? {} : { uids: parseIdMap('uidmapping', req.uidMapping) }),
    ...(req.gidMapping === undefined ? {} : { gids: parseIdMap('gidmapping', req.gidMapping) }),
    caller: () => fuse.caller,
  });
  const fuse: Fuse = new Fuse(req.mountpoint, layerfs.operations(), {
    useIno: true,
    // Every operation answers before it returns; a timer per request would only cost.
    timeout: false,
    fsname: 'snapfs',
    subtype: 'snapfs',
    allowOther: req.allowOther === true || process.getuid?.() === 0,
    defaultPermissions: true,
    kernelCache: layerfs.readOnly,
    autoCache: !layerfs.readOnly,
    attrTimeout: layerfs.readOnly ? CACHE_SECONDS : 0,
    // 0: off, where attrTimeout already keeps everything.
    singleNameAttrTimeout: layerfs.readOnly ? 0 : CACHE_SECONDS,
    cacheDirs: layerfs.readOnly,
    entryTimeout: CACHE_SECONDS,
    negativeTimeout: CACHE_SECONDS,
    bigWrites: true,
    maxWrite: MAX_WRITE,
    maxRead: MAX_WRITE,
    atomicOTrunc: true,
    fdHandles: true,
    extraOptions: [...(layerfs.readOnly ? ['ro'] : []), ...mountFlags(req)],
  });
  return runUntilUnmounted(fuse, req.mountpoint, () => {
    // Writes never reach LayerFS: fuse-native refuses them itself.
    const freeze = (): void => {
      layerfs.freeze();
      fuse.refuseWrites();
    };
    const closeControl = req.stack.work !== undefined && !layerfs.readOnly ? serveControl(req.stack.work, req.mountpoint, freeze) : () => Promise.resolve();
    onMounted(layerfs);
    return closeControl;
  });
}

/**
 * Mounts `fuse` and serves it until it is unmounted: by SIGTERM/SIGINT (we
 * unmount), or by `umount`/`fusermount -u` from outside (noticed in
 * /proc/self/mountinfo). `onMounted` runs once the mount is live and
 * returns what to close at the end.
 */
export function runUntilUnmounted(fuse: Fuse, mountpoint: string, onMounted: () => () => void | Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => {
    fuse.mount((err) => {
      if (err !== null) return reject(err);
      const close = onMounted();
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        clearInterval(poll);
        process.off('SIGTERM', stop);
        process.off('SIGINT', stop);
        void Promise.resolve(close()).then(resolve, resolve);
      };
      const stop = (): void => fuse.unmount(() => finish());
      const poll = setInterval(() => {
        if (!isMounted(mountpoint)) finish();
      }, UNMOUNT_POLL_MS);
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    });
  });
}
