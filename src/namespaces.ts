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

/**
 * This process's effective uid as the host sees it: in a user namespace,
 * mapped through /proc/self/uid_map (uid 0 of a rootless user's namespace
 * is that user), else as it is.
 */
export function hostUid(): number {
  const uid = process.geteuid?.() ?? 0;
  try {
    for (const line of fs.readFileSync('/proc/self/uid_map', 'utf8').trim().split('\n')) {
      const [inside, outside, count] = line.trim().split(/\s+/).map(Number) as [number, number, number];
      if (uid >= inside && uid < inside + count) return outside + (uid - inside);
    }
  } catch {
    // No user namespaces: the uid is the host's.
  }
  return uid;
}
