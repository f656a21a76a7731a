import * as fs from 'node:fs';
import { BrowseFS } from '../browse/browse';
import type { Served } from '../fuse/mount';
import { Snapshotter } from '../snapshotter/snapshotter';
import { BROWSE_MOUNT, serveSession, untilUnmounted, type ServedMount } from './serve';

/**
 * A browse mount: every snapshot of `browse` (a root) under `mountpoint`.
 * Served as the mounts of layers are (serve.ts), over the file system of
 * src/browse, which knows nothing of daemons; this alone of the mount code
 * opens a root's database.
 */
export interface BrowseRequest {
  readonly browse: string;
  readonly mountpoint: string;
  /** Served by a process of its own rather than the user's mount daemon. */
  readonly dedicated?: boolean;
}

/**
 * Serves the browse mount of the root at `root` on `device` (see
 * startServing), or on a mount made now; `root` may be a descriptor's
 * /proc/self/fd path, kept open by the caller until `release`.
 */
export async function startBrowsing(root: string, mountpoint: string, device?: number): Promise<ServedMount> {
  let snapshotter: Snapshotter;
  let browse: BrowseFS;
  try {
    snapshotter = new Snapshotter(root);
    browse = new BrowseFS(snapshotter, root, mountpoint);
  } catch (err) {
    // The device is ours to close from the start: nobody will serve it.
    if (device !== undefined) fs.closeSync(device);
    throw err;
  }
  let served: Served;
  try {
    served = await serveSession(browse, mountpoint, BROWSE_MOUNT, device);
  } catch (err) {
    browse.close();
    snapshotter.close();
    throw err;
  }
  let released: Promise<void> | undefined;
  const release = (): Promise<void> =>
    (released ??= Promise.resolve().then(() => {
      browse.close();
      snapshotter.close();
    }));
  return { served, release, stats: () => ({ ops: served.session.stats(), copiedUpBytes: 0 }) };
}

export async function serveBrowse(req: BrowseRequest, onMounted: () => void): Promise<void> {
  const mount = await startBrowsing(req.browse, req.mountpoint);
  try {
    onMounted();
    await untilUnmounted(mount.served, req.mountpoint);
  } finally {
    await mount.release();
  }
}
