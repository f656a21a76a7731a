import * as fs from 'node:fs';
import * as path from 'node:path';
import { sys } from '../native/sys';

/**
 * The overlayfs on-disk format, and the fallbacks fuse-overlayfs uses where
 * device nodes or trusted.* attributes cannot be made (rootless):
 * - whiteout: character device 0/0, or an empty file `.wh.NAME` beside it;
 * - opaque directory: xattr trusted.overlay.opaque=y (or the user.* forms),
 *   or a file `.wh..wh..opq` inside it.
 */
export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';

const OPAQUE_XATTRS = ['trusted.overlay.opaque', 'user.overlay.opaque', 'user.fuseoverlayfs.opaque'];

/** Attributes that belong to the overlay format, never shown through a mount. */
export function isPrivateXattr(name: string): boolean {
  return name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.') || name.startsWith('user.fuseoverlayfs.');
}

export function isWhiteoutStat(st: fs.BigIntStats): boolean {
  return st.isCharacterDevice() && st.rdev === 0n;
}

/** Whether `dir` (a directory in some layer) hides the layers below it. */
export function isOpaqueDir(dir: string): boolean {
  for (const name of OPAQUE_XATTRS) {
    try {
      if (sys.getxattr(dir, name).toString() === 'y') return true;
    } catch {
      // absent, or the file system has no such attributes
    }
  }
  return fs.existsSync(path.join(dir, OPAQUE_MARKER));
}
