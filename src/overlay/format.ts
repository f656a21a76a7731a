import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { DT_CHR, DT_DIR, DT_UNKNOWN, isDir, isWhiteout, O_PATH, statAt, sys, S_IFCHR, type Dirent, type Name } from '../native/sys';

/**
 * The overlayfs on-disk format, and the fallbacks fuse-overlayfs uses where
 * device nodes or trusted.* attributes cannot be made (rootless):
 * - whiteout: character device 0/0, or an empty file `.wh.NAME` beside it;
 * - opaque directory: xattr trusted.overlay.opaque=y (or the user.* forms),
 *   or a file `.wh..wh..opq` inside it.
 * Every form is read; an upper layer is written in the kernel's form when
 * the process may make device nodes and trusted.* attributes, else in the
 * fallback form. Everything here works on directory descriptors and names.
 */
export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';
const PREFIX = Buffer.from(WHITEOUT_PREFIX);
const MARKER = Buffer.from(OPAQUE_MARKER);

/**
 * The work directory's entry where a writable mount keeps the one copy of
 * each copied-up lower hard link, every upper name of it a link to that
 * copy. Commit drops it: a committed layer's link counts are its own.
 */
export const WORK_INDEX = 'index';

/**
 * The work directory's entry every whiteout a mount makes is a link to, as
 * the kernel overlay shares one whiteout inode (Linux 5.8): a link costs
 * far less than a new inode, which is most of what deleting a lower file
 * costs. Commit drops it with the index.
 */
export const WORK_WHITEOUT = 'whiteout';

/** The longest name a layer's file system takes, in bytes (Linux's NAME_MAX). */
export const NAME_MAX = 255;
const OPAQUE_XATTRS = ['trusted.overlay.opaque', 'user.overlay.opaque', 'user.fuseoverlayfs.opaque'];
const PRIVATE_PREFIXES = ['trusted.overlay.', 'user.overlay.', 'user.fuseoverlayfs.'].map((p) => Buffer.from(p));

/** Attributes that belong to the overlay format, never shown through a mount. */
export function isPrivateXattr(name: Name): boolean {
  const bytes = typeof name === 'string' ? Buffer.from(name) : name;
  return PRIVATE_PREFIXES.some((p) => bytes.length >= p.length && bytes.subarray(0, p.length).equals(p));
}

/** What a layer holds under a name. */
export type EntryKind = 'dir' | 'other' | 'whiteout';

/** Whether directory `dirfd` (of some layer) hides the layers below it. */
export function isOpaque(dirfd: number): boolean {
  // One listing of its attributes: most directories have none.
  const names = sys.listxattr(dirfd);
  for (const name of names) {
    if (OPAQUE_XATTRS.includes(name.toString('latin1')) && sys.getxattr(dirfd, name)?.toString() === 'y') return true;
  }
  return statAt(dirfd, OPAQUE_MARKER) !== undefined;
}

/** The `.wh.NAME` marker of a name, if the name leaves room for one. */
function whiteoutMarker(name: Buffer): Buffer | undefined {
  return PREFIX.length + name.length <= NAME_MAX ? Buffer.concat([PREFIX, name]) : undefined;
}

/**
 * An entry of directory `dirfd` (a layer's) as the merged tree sees it:
 * a whiteout (a 0/0 character device, or a `.wh.NAME` file) hides NAME
 * below; the opaque marker file is no entry at all.
 */
export function classify(dirfd: number, e: Dirent): { name: Buffer; kind: EntryKind } | undefined {
  if (startsWith(e.name, PREFIX)) return e.name.equals(MARKER) ? undefined : { name: e.name.subarray(PREFIX.length), kind: 'whiteout' };
  let type = e.type;
  if (type === DT_CHR || type === DT_UNKNOWN) {
    const st = statAt(dirfd, e.name);
    if (st === undefined) return undefined;
    if (isWhiteout(st)) return { name: e.name, kind: 'whiteout' };
    type = isDir(st) ? DT_DIR : DT_CHR;
  }
  return { name: e.name, kind: type === DT_DIR ? 'dir' : 'other' };
}

/** What directory `dirfd` holds under `name`, asked of the file system (for a layer that may change). */
export function probe(dirfd: number, name: Buffer): EntryKind | undefined {
  const st = statAt(dirfd, name);
  if (st !== undefined) return isWhiteout(st) ? 'whiteout' : isDir(st) ? 'dir' : 'other';
  const marker = whiteoutMarker(name);
  return marker !== undefined && statAt(dirfd, marker) !== undefined ? 'whiteout' : undefined;
}

export function startsWith(name: Buffer, prefix: Buffer): boolean {
  return name.length >= prefix.length && name.subarray(0, prefix.length).equals(prefix);
}

/** Whether a name is reserved by the layer format (`.wh.…`): fuse-overlayfs refuses those too. */
export function isReservedName(name: Buffer): boolean {
  return startsWith(name, PREFIX);
}

/** How whiteouts and opaque markers are written into an upper layer. */
export interface UpperFormat {
  /** Hides `name` of the layers below, in upper directory `dirfd`; returns the entry made (`name` itself, or its `.wh.` marker). */
  whiteout(dirfd: number, name: Buffer): Buffer;
  /** Removes a whiteout of `name` in `dirfd`, if there is one; says whether there was. */
  removeWhiteout(dirfd: number, name: Buffer): boolean;
  markOpaque(dirfd: number): void;
}

/**
 * The kernel's form if this process can make it in directory `workfd`, else
 * the rootless one. With `shareWhiteouts`, each whiteout is a new link to
 * one in `workfd` (WORK_WHITEOUT), so all share an inode, and its times:
 * for a mount, not for an unpacked layer whose whiteouts keep their own.
 */
export function upperFormat(workfd: number, shareWhiteouts = false): UpperFormat {
  const probeName = `.probe-${process.pid}`;
  let rootless = false;
  try {
    sys.mknodAt(workfd, probeName, S_IFCHR, 0, 0);
    const fd = sys.openAt(workfd, probeName, O_PATH, 0);
    try {
      sys.setxattr(fd, 'trusted.overlay.probe', Buffer.from('y'), 0);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    rootless = true;
  } finally {
    if (statAt(workfd, probeName) !== undefined) sys.unlinkAt(workfd, probeName, false);
  }
  // A new whiteout inode (the kernel's form: a 0/0 device; the rootless one: an empty file) named `name` in `dirfd`.
  const make = (dirfd: number, name: Buffer | string): void => {
    if (rootless) sys.createFileAt(dirfd, name, Buffer.alloc(0), 0o600, false, 0, 0, 0, sys.UTIME_NOW);
    else sys.mknodAt(dirfd, name, S_IFCHR, 0, 0);
  };
  // A fresh shared whiteout, put in place of the one there may be (which may have all the links it can take).
  const renew = (): void => {
    const tmp = `.whiteout-${randomBytes(6).toString('hex')}`;
    make(workfd, tmp);
    try {
      sys.renameAt(workfd, tmp, workfd, WORK_WHITEOUT, 0);
    } catch (err) {
      sys.unlinkAt(workfd, tmp, false);
      throw err;
    }
  };
  const share = (dirfd: number, entry: Buffer): void => {
    const link = (): void => sys.linkNameAt(workfd, WORK_WHITEOUT, dirfd, entry);
    try {
      link();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // None yet (or commit dropped it), or one with all the links it can take: a new one.
      if (code === 'EMLINK' || (code === 'ENOENT' && statAt(workfd, WORK_WHITEOUT) === undefined)) {
        renew();
        link();
      } else if (code === 'EXDEV' || code === 'EPERM') make(dirfd, entry); // a link refused: a whiteout of its own
      else throw err;
    }
  };
  return {
    whiteout(dirfd, name) {
      const entry = rootless ? whiteoutMarker(name) : name;
      if (entry === undefined) throw Object.assign(new Error('ENAMETOOLONG: name too long for a whiteout file'), { code: 'ENAMETOOLONG' });
      if (shareWhiteouts) share(dirfd, entry);
      else make(dirfd, entry);
      return entry;
    },
    removeWhiteout(dirfd, name) {
      let removed = false;
      const st = statAt(dirfd, name);
      if (st !== undefined && isWhiteout(st)) {
        sys.unlinkAt(dirfd, name, false);
        removed = true;
      }
      const marker = whiteoutMarker(name);
      if (marker !== undefined && statAt(dirfd, marker) !== undefined) {
        sys.unlinkAt(dirfd, marker, false);
        removed = true;
      }
      return removed;
    },
    markOpaque(dirfd) {
      if (!rootless) return sys.setxattr(dirfd, 'trusted.overlay.opaque', Buffer.from('y'), 0);
      // A directory made opaque before (moved again, say) already holds its marker.
      if (statAt(dirfd, OPAQUE_MARKER) === undefined) sys.createFileAt(dirfd, OPAQUE_MARKER, Buffer.alloc(0), 0o600, false, 0, 0, 0, sys.UTIME_NOW);
    },
  };
}
