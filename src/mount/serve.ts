import Fuse from 'fuse-native';
import * as fs from 'node:fs';
import { readOnlyOperations } from '../layerfs/layerfs';

export interface MountRequest {
  /** Layer directories, topmost first. */
  readonly layers: readonly string[];
  readonly mountpoint: string;
  readonly allowOther: boolean;
}

const UNMOUNT_POLL_MS = 500;
// The layers of a read-only view never change while it is mounted: let the
// kernel keep attributes, names and pages for as long as it likes.
const CACHE_SECONDS = 86_400;

/**
 * Serves `req` until it is unmounted: by SIGTERM/SIGINT (we unmount), or by
 * `umount`/`fusermount -u` from outside (noticed in /proc/self/mountinfo).
 * `onMounted` runs once the mount is live.
 */
export function serve(req: MountRequest, onMounted: () => void): Promise<void> {
  const fuse = new Fuse(req.mountpoint, readOnlyOperations(req.layers), {
    useIno: true,
    fsname: 'snapfs',
    subtype: 'snapfs',
    allowOther: req.allowOther,
    defaultPermissions: true,
    kernelCache: true,
    attrTimeout: CACHE_SECONDS,
    entryTimeout: CACHE_SECONDS,
    negativeTimeout: CACHE_SECONDS,
    extraOptions: ['ro'],
  });
  return new Promise((resolve, reject) => {
    fuse.mount((err) => {
      if (err !== null) return reject(err);
      onMounted();
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        clearInterval(poll);
        process.off('SIGTERM', stop);
        process.off('SIGINT', stop);
        resolve();
      };
      const stop = (): void => fuse.unmount(() => finish());
      const poll = setInterval(() => {
        if (!isMounted(req.mountpoint)) finish();
      }, UNMOUNT_POLL_MS);
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    });
  });
}

export function isMounted(mountpoint: string): boolean {
  const escaped = mountpoint.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[4] === escaped);
}
