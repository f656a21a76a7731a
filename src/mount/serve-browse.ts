import { BrowseFS } from '../browse/browse';
import { mountFileSystem } from '../fuse/mount';
import { Snapshotter } from '../snapshotter/snapshotter';
import { MOUNT_INIT_FLAGS, SPIN_MICROS, untilUnmounted } from './serve';

/**
 * A browse mount: every snapshot of `browse` (a root) under `mountpoint`.
 * Served as the mounts of layers are (serve.ts), over the file system of
 * src/browse, which knows nothing of daemons; this alone of the mount code
 * opens a root's database.
 */
export interface BrowseRequest {
  readonly browse: string;
  readonly mountpoint: string;
}

export async function serveBrowse(req: BrowseRequest, onMounted: () => void): Promise<void> {
  const snapshotter = new Snapshotter(req.browse);
  const browse = new BrowseFS(snapshotter, req.browse, req.mountpoint);
  try {
    const served = await mountFileSystem(
      req.mountpoint,
      browse,
      // Root's browse mount is everyone's, with the kernel checking each file's permissions.
      { fsname: 'snapfs-browse', subtype: 'snapfs', readOnly: true, allowOther: process.getuid?.() === 0, flags: ['nosuid', 'nodev'] },
      { initFlags: MOUNT_INIT_FLAGS, spinMicros: SPIN_MICROS },
    );
    onMounted();
    await untilUnmounted(served, req.mountpoint);
  } finally {
    browse.close();
    snapshotter.close();
  }
}
