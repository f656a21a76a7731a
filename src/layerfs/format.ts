import * as fs from 'node:fs';
import * as path from 'node:path';
import { sys } from '../native/sys';

/**
 * The overlayfs on-disk format, and the fallbacks fuse-overlayfs uses where
 * device nodes or trusted.* attributes cannot be made (rootless):
 * - whiteout: character device 0/0, or an empty file `.wh.NAME` beside it;
 * - opaque directory: xattr trusted.overlay.opaque=y (or the user.* forms),
 *   or a file `.wh..wh..opq` inside it.
 * Every form is read; the upper layer is written in the kernel's form when
 * the process may make device nodes and trusted.* attributes, else in the
 * fallback form.
 */
export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';

/** The longest name a layer's file system takes, in bytes (Linux's NAME_MAX). */
export const NAME_MAX = 255;
const OPAQUE_XATTRS = ['trusted.overlay.opaque', 'user.overlay.opaque', 'user.fuseoverlayfs.opaque'];

/** Attributes that belong to the overlay format, never shown through a mount. */
export function isPrivateXattr(name: string): boolean {
  return name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.') || name.startsWith('user.fuseoverlayfs.');
}

export function isWhiteoutStat(st: fs.Stats | fs.BigIntStats): boolean {
  return st.isCharacterDevice() && Number(st.rdev) === 0;
}

/** Whether `dir` (a directory in some layer) hides the layers below it. */
export function isOpaqueDir(dir: string): boolean {
  for (const name of OPAQUE_XATTRS) {
    try {
      if (sys.getxattr(dir, name)?.toString() === 'y') return true;
    } catch {
      // the file system has no such attributes
    }
  }
  return fs.existsSync(path.join(dir, OPAQUE_MARKER));
}

/** How whiteouts and opaque markers are written into an upper layer. */
export interface UpperFormat {
  /** Hides `name` of the layers below, in upper directory `dir`. */
  whiteout(dir: string, name: string): void;
  /** Removes a whiteout of `name` in `dir`, if there is one; says whether there was. */
  removeWhiteout(dir: string, name: string): boolean;
  markOpaque(dir: string): void;
}

/** The kernel's form if this process can make it in `work`, else the rootless one. */
export function upperFormat(work: string): UpperFormat {
  const probe = path.join(work, `.probe-${process.pid}`);
  let rootless = false;
  try {
    sys.mknod(probe, fs.constants.S_IFCHR, 0, 0);
    sys.setxattr(probe, 'trusted.overlay.probe', Buffer.from('y'), 0);
  } catch {
    rootless = true;
  } finally {
    fs.rmSync(probe, { force: true });
  }
  return {
    whiteout(dir, name) {
      if (rootless) fs.writeFileSync(path.join(dir, WHITEOUT_PREFIX + name), '', { mode: 0o600 });
      else sys.mknod(path.join(dir, name), fs.constants.S_IFCHR, 0, 0);
    },
    removeWhiteout(dir, name) {
      let removed = false;
      const own = path.join(dir, name);
      const st = fs.lstatSync(own, { bigint: true, throwIfNoEntry: false });
      if (st !== undefined && isWhiteoutStat(st)) {
        fs.unlinkSync(own);
        removed = true;
      }
      // A name too long for the `.wh.` form never had it.
      const marker = path.join(dir, WHITEOUT_PREFIX + name);
      if (WHITEOUT_PREFIX.length + Buffer.byteLength(name) <= NAME_MAX && fs.lstatSync(marker, { throwIfNoEntry: false }) !== undefined) {
        fs.unlinkSync(marker);
        removed = true;
      }
      return removed;
    },
    markOpaque(dir) {
      if (rootless) fs.writeFileSync(path.join(dir, OPAQUE_MARKER), '', { mode: 0o600 });
      else sys.setxattr(dir, 'trusted.overlay.opaque', Buffer.from('y'), 0);
    },
  };
}
