import { execFile } from 'node:child_process';
import Fuse from 'fuse-native';
import { unavailable } from '../errors';
import { Session, type FileSystem, type SessionOptions } from './session';

/** How a FUSE file system is mounted: mount(8)'s options, as libfuse takes them. */
export interface MountOptions {
  /** What /proc/mounts shows as source and type (fuse.SUBTYPE). */
  readonly fsname: string;
  readonly subtype: string;
  readonly readOnly: boolean;
  /** Let other users in (a mount by root always does: containers run as anyone). */
  readonly allowOther: boolean;
  /** mount(8) flags (suid, dev, noexec, noatime, …). */
  readonly flags?: readonly string[];
}

/** A mounted file system, served until it is unmounted. */
export interface Served {
  readonly session: Session;
  /** Settles when the mount is gone (unmounted from outside, or by unmount()). */
  readonly ended: Promise<void>;
}

const INIT_TIMEOUT_MS = 10_000;

/**
 * Mounts `fs` at `mountpoint` and serves it in this process; resolves once
 * the kernel's INIT is answered (the mount is live). The kernel checks
 * permissions itself (default_permissions), as on any file system.
 */
export function mountFileSystem(mountpoint: string, fs: FileSystem, opts: MountOptions, session: Omit<SessionOptions, 'onInit' | 'onEnd'>): Promise<Served> {
  return serveDevice(openDevice(mountpoint, opts), mountpoint, fs, session, { ownMount: true });
}

/**
 * Mounts at `mountpoint` and returns the mount's /dev/fuse descriptor,
 * not served yet: the kernel's INIT waits in it for whoever serves it
 * (this process, or a daemon it is handed to).
 */
export function openDevice(mountpoint: string, opts: MountOptions): number {
  const options = [
    `fsname=${opts.fsname}`,
    `subtype=${opts.subtype}`,
    'default_permissions',
    // libfuse 2 refuses a mount point that holds files unless told; the kernel, fusermount3 and fuse-overlayfs do not.
    'nonempty',
    ...(opts.allowOther ? ['allow_other'] : []),
    ...(opts.readOnly ? ['ro'] : []),
    ...(opts.flags ?? []),
  ];
  try {
    return Fuse.mountDevice(mountpoint, options);
  } catch {
    throw unavailable(`mount ${mountpoint}: libfuse could not mount it (its message is above)`);
  }
}

/**
 * Serves `fs` on the device descriptor `fd` of the mount at `mountpoint`
 * (the session owns the descriptor from now on); resolves once the kernel's
 * INIT is answered. `ownMount`: this process made the mount, so it
 * unmounts it if INIT never comes; a mount handed over is its helper's to
 * take down, where its path means what it meant to the helper.
 */
export function serveDevice(fd: number, mountpoint: string, fs: FileSystem, session: Omit<SessionOptions, 'onInit' | 'onEnd'>, opts: { ownMount?: boolean } = {}): Promise<Served> {
  return new Promise((resolve, reject) => {
    let live = false;
    let end: (err: Error | undefined) => void = () => undefined;
    const ended = new Promise<void>((done, failed) => {
      end = (err) => (err === undefined ? done() : failed(err));
    });
    ended.catch(() => undefined);
    const timer = setTimeout(() => {
      served.close();
      if (opts.ownMount === true) void unmount(mountpoint);
      reject(unavailable(`mount ${mountpoint}: the kernel did not start the session within ${INIT_TIMEOUT_MS / 1000} s`));
    }, INIT_TIMEOUT_MS);
    const served = new Session(fd, fs, {
      ...session,
      onInit: () => {
        clearTimeout(timer);
        live = true;
        resolve({ session: served, ended });
      },
      onEnd: (err) => {
        clearTimeout(timer);
        if (!live) reject(unavailable(`mount ${mountpoint}: ${err?.message ?? 'unmounted before it was live'}`));
        end(err);
      },
    });
  });
}

/**
 * Unmounts a FUSE mount, lazily (what still uses it keeps it until done):
 * through fusermount, which also works without root for one's own mounts.
 */
export function unmount(mountpoint: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('fusermount', ['-u', '-z', '--', mountpoint], (err, _stdout, stderr) => {
      if (err === null) resolve();
      else reject(unavailable(`umount ${mountpoint}: ${stderr.trim() || err.message}`));
    });
  });
}
