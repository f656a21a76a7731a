import * as fs from 'node:fs';

/** This process's mount namespace, as the inode number of /proc/self/ns/mnt. */
export function mountNamespace(): number {
  return fs.statSync('/proc/self/ns/mnt').ino;
}

/**
 * Whether this process's user namespace maps every id to itself, as the
 * initial one does (a kernel without user namespaces has no uid_map: it
 * has the initial one alone).
 */
export function inInitialUserNamespace(): boolean {
  try {
    return fs.readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/).join(' ') === '0 0 4294967295';
  } catch {
    return true;
  }
}
