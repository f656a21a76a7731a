import * as fs from 'node:fs';

/** One line of /proc/self/mountinfo: the device numbers (MAJOR:MINOR), the mount point as bytes, the file system type. */
interface MountEntry {
  readonly device: string;
  readonly point: Buffer;
  readonly fstype: string;
}

/** This namespace's mounts, read from mountinfo, touching none of them. */
function mounts(): MountEntry[] {
  // latin1: one character a byte, so that mount points keep theirs (a path need not be UTF-8).
  return fs
    .readFileSync('/proc/self/mountinfo', 'latin1')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPER
      const fields = line.split(' ');
      const point = fields[4]!.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
      return { device: fields[2]!, point: Buffer.from(point, 'latin1'), fstype: fields[fields.indexOf('-') + 1] ?? '' };
    });
}

/** Whether `mountpoint` is a mount point in this process's mount namespace. */
export function isMounted(mountpoint: string): boolean {
  const wanted = Buffer.from(mountpoint);
  return mounts().some((m) => m.point.equals(wanted));
}

/**
 * The device numbers (MAJOR:MINOR) of this namespace's mounts of type
 * `fstype`: what a directory's st_dev tells it is on one of them.
 */
export function devicesOfType(fstype: string): Set<string> {
  return new Set(mounts().flatMap((m) => (m.fstype === fstype ? [m.device] : [])));
}

/** The mount points, as bytes, of this namespace's FUSE mounts, of every subtype. */
export function fuseMountPoints(): Buffer[] {
  return mounts().flatMap((m) => (m.fstype === 'fuse' || m.fstype.startsWith('fuse.') || m.fstype === 'fuseblk' ? [m.point] : []));
}
