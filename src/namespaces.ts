import * as fs from 'node:fs';

/** This process's mount namespace, as the inode number of /proc/self/ns/mnt. */
export function mountNamespace(): number {
  return fs.statSync('/proc/self/ns/mnt').ino;
}

/**
 * This process's uid map: [inside, outside, count] ranges; the initial
 * one's where the kernel has no user namespaces (no uid_map).
 */
function uidMap(): [number, number, number][] {
  try {
    return fs
      .readFileSync('/proc/self/uid_map', 'utf8')
      .trim()
      .split('\n')
      .map((line) => line.trim().split(/\s+/).map(Number) as [number, number, number]);
  } catch {
    return [[0, 0, 4294967295]];
  }
}

/** Whether this process's user namespace maps every id to itself, as the initial one does. */
export function inInitialUserNamespace(): boolean {
  const map = uidMap();
  return map.length === 1 && map[0]!.join(' ') === '0 0 4294967295';
}

/**
 * This process's effective uid as the host sees it: in a user namespace,
 * mapped through its uid map (uid 0 of a rootless user's namespace is that
 * user), else as it is.
 */
export function hostUid(): number {
  const uid = process.geteuid?.() ?? 0;
  const range = uidMap().find(([inside, , count]) => uid >= inside && uid < inside + count);
  return range === undefined ? uid : range[1] + (uid - range[0]);
}
