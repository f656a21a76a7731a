import * as fs from 'node:fs';
import { parentPort } from 'node:worker_threads';
import type { BrowseHandOver, HandOver } from './handover';
import { internalErrors } from '../fuse/errno';
import { startServing, type ServedMount } from './serve';
import { sumStats, type DaemonStats, type MountStats } from './stats';

/**
 * A thread of the mount daemon: serves the mounts the daemon gives it, each
 * a session on this thread's event loop. The daemon spreads mounts over a
 * thread per core, so that busy mounts do not queue behind each other on
 * one JavaScript thread. Descriptors are the process's: the daemon passes
 * their numbers.
 */

/** What the daemon asks of a thread. */
export type ToWorker =
  | { readonly type: 'serve'; readonly id: number; readonly request: HandOver | BrowseHandOver; readonly fds: readonly number[] }
  | { readonly type: 'count'; readonly ask: number }
  | { readonly type: 'stats'; readonly ask: number }
  | { readonly type: 'close'; readonly id: number };

/** What a thread tells the daemon. */
export type FromWorker =
  | { readonly type: 'mounted'; readonly id: number }
  | { readonly type: 'failed'; readonly id: number; readonly message: string }
  | { readonly type: 'ended'; readonly id: number; readonly message?: string }
  | { readonly type: 'counts'; readonly ask: number; readonly counts: readonly (readonly [number, number])[] }
  | { readonly type: 'stats'; readonly ask: number; readonly stats: DaemonStats };

const port = parentPort!;
const mounts = new Map<number, ServedMount>();
/** What the mounts this thread served and no longer serves cost: a daemon's counts never go down. */
let ended: MountStats = { ops: [], copiedUpBytes: 0 };
const tell = (msg: FromWorker): void => port.postMessage(msg);

port.on('message', (msg: ToWorker) => {
  switch (msg.type) {
    case 'serve':
      (msg.request.op === 'browse' ? serveBrowse(msg.request, msg.fds) : serveHandOver(msg.request, msg.fds)).then(
        (mount) => {
          mounts.set(msg.id, mount);
          tell({ type: 'mounted', id: msg.id });
          mount.served.ended
            .then(
              () => undefined,
              (err: unknown) => (err instanceof Error ? err.message : String(err)),
            )
            .then(async (message) => {
              // In one step: counted once, either live or ended, by any `stats` meanwhile.
              ended = sumStats([ended, mount.stats()]);
              mounts.delete(msg.id);
              await mount.release();
              tell({ type: 'ended', id: msg.id, ...(message === undefined ? {} : { message }) });
            });
        },
        (err: unknown) => tell({ type: 'failed', id: msg.id, message: err instanceof Error ? err.message : String(err) }),
      );
      return;
    case 'count':
      tell({ type: 'counts', ask: msg.ask, counts: [...mounts].map(([id, m]) => [id, m.served.session.requests] as const) });
      return;
    case 'stats':
      tell({ type: 'stats', ask: msg.ask, stats: { ...sumStats([ended, ...[...mounts.values()].map((m) => m.stats())]), mounts: mounts.size, internalErrors: internalErrors() } });
      return;
    case 'close':
      // Its session ends; the mount answers ENOTCONN until it is unmounted where it was made.
      mounts.get(msg.id)?.served.session.close();
      return;
  }
});

/**
 * Serves one handed-over mount: its layers are the descriptors that came
 * with it, reached through /proc/self/fd (the directories themselves, in
 * whatever mount namespace the helper opened them), closed once the
 * file system has opened its own.
 */
async function serveHandOver(h: HandOver, fds: readonly number[]): Promise<ServedMount> {
  const [device, ...layers] = fds as [number, ...number[]];
  const at = (fd: number): string => `/proc/self/fd/${fd}`;
  const lowers = layers.slice(0, h.lowers.length).map(at);
  const [upper, work] = h.upper === undefined ? [] : layers.slice(h.lowers.length).map(at);
  try {
    return await startServing(
      {
        stack: { lowers, ...(upper === undefined ? {} : { upper, work: work! }) },
        mountpoint: h.mountpoint,
        ...(h.allowOther === undefined ? {} : { allowOther: h.allowOther }),
        ...(h.tweaks === undefined ? {} : { tweaks: h.tweaks }),
        ...(h.uidMapping === undefined ? {} : { uidMapping: h.uidMapping }),
        ...(h.gidMapping === undefined ? {} : { gidMapping: h.gidMapping }),
      },
      device,
    );
  } finally {
    for (const fd of layers) fs.closeSync(fd);
  }
}

/**
 * Serves a handed-over browse mount over the root directory that came with
 * it (through /proc/self/fd), kept open until the mount is let go of. The
 * browse code (and SQLite) is loaded by the first browse mount.
 */
async function serveBrowse(h: BrowseHandOver, fds: readonly number[]): Promise<ServedMount> {
  const [device, root] = fds as [number, number];
  let mount: ServedMount;
  try {
    const { startBrowsing } = await import('./serve-browse').catch((err: unknown) => {
      fs.closeSync(device); // never served
      throw err;
    });
    mount = await startBrowsing(`/proc/self/fd/${root}`, h.mountpoint, device);
  } catch (err) {
    fs.closeSync(root);
    throw err;
  }
  return { served: mount.served, stats: () => mount.stats(), release: () => mount.release().finally(() => fs.closeSync(root)) };
}
