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

/** The mount points (as paths, escapes undone) of this namespace's FUSE mounts, of every subtype: read from mountinfo, touching none of them. */
export function fuseMountPoints(): string[] {
  const points: string[] = [];
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const fields = line.split(' ');
    const fstype = fields[fields.indexOf('-') + 1] ?? '';
    if (fstype === 'fuse' || fstype.startsWith('fuse.') || fstype === 'fuseblk') {
      points.push(fields[4]!.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))));
    }
  }
  return points;
}
