import * as fs from 'node:fs';

/** Whether `mountpoint` is a mount point in this process's mount namespace. */
export function isMounted(mountpoint: string): boolean {
  const escaped = mountpoint.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[4] === escaped);
}

/**
 * The device numbers (MAJOR:MINOR) of this namespace's mounts of type
 * `fstype`: what a directory's st_dev tells it is on one of them.
 */
export function devicesOfType(fstype: string): Set<string> {
  const devices = new Set<string>();
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPER
    const fields = line.split(' ');
    if (fields[fields.indexOf('-') + 1] === fstype) devices.add(fields[2]!);
  }
  return devices;
}

/**
 * The mount points of this namespace's FUSE mounts, of every subtype, as
 * bytes (escapes undone; a path need not be UTF-8): read from mountinfo,
 * touching none of them.
 */
export function fuseMountPoints(): Buffer[] {
  const points: Buffer[] = [];
  // latin1: one character a byte, so that the paths keep theirs.
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'latin1').split('\n')) {
    const fields = line.split(' ');
    const fstype = fields[fields.indexOf('-') + 1] ?? '';
    if (fstype === 'fuse' || fstype.startsWith('fuse.') || fstype === 'fuseblk') {
      points.push(Buffer.from(fields[4]!.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))), 'latin1'));
    }
  }
  return points;
}
