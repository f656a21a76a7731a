import Fuse from 'fuse-native';
import { runUntilUnmounted } from '../mount/serve';
import { Snapshotter } from '../snapshotter/snapshotter';
import { BrowseFS } from './browse';

/** A browse mount: every snapshot of `browse` (a root) under `mountpoint`. */
export interface BrowseRequest {
  readonly browse: string;
  readonly mountpoint: string;
}

// Snapshots come and go while mounted: names and attributes are kept briefly.
const CACHE_SECONDS = 1;

export function serveBrowse(req: BrowseRequest, onMounted: () => void): Promise<void> {
  const snapshotter = new Snapshotter(req.browse);
  const fuse = new Fuse(req.mountpoint, new BrowseFS(snapshotter, req.browse, req.mountpoint).operations(), {
    fsname: 'snapfs-browse',
    subtype: 'snapfs',
    timeout: false,
    // Root's browse mount is everyone's, with the kernel checking each file's permissions.
    allowOther: process.getuid?.() === 0,
    defaultPermissions: true,
    attrTimeout: CACHE_SECONDS,
    entryTimeout: CACHE_SECONDS,
    negativeTimeout: CACHE_SECONDS,
    autoCache: true,
    fdHandles: true,
    extraOptions: ['ro'],
  });
  return runUntilUnmounted(fuse, req.mountpoint, () => {
    onMounted();
    return () => snapshotter.close();
  });
}
