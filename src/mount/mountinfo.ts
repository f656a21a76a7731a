import * as fs from 'node:fs';

/** Whether `mountpoint` is a mount point in this process's mount namespace. */
export function isMounted(mountpoint: string): boolean {
  const escaped = mountpoint.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[4] === escaped);
}
