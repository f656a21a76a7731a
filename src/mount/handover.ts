import { invalidArgument } from '../errors';
import type { LayerTweaks } from '../layerfs/layerfs';
import { mountNamespace } from '../namespaces';
import type { MountRequest } from './serve';
import type { DaemonStats } from './stats';

/**
 * What a mount helper sends the daemon with a mount: the request's text,
 * and descriptors in this order: the mount's /dev/fuse, each lower layer
 * (topmost first), then the upper and work directories if there are. The
 * layers' paths travel only to be shown (`snapfs mounted`): the daemon
 * opens nothing by path, so a mount made in another mount namespace is
 * served over the very directories the helper saw there.
 */
export interface HandOver {
  readonly op: 'mount';
  readonly mountpoint: string;
  readonly lowers: readonly string[];
  readonly upper?: string;
  readonly work?: string;
  readonly allowOther?: boolean;
  readonly tweaks?: LayerTweaks;
  /** Options taken but not applied, for the daemon's log. */
  readonly notApplied?: readonly string[];
  readonly uidMapping?: string;
  readonly gidMapping?: string;
  readonly snapshot?: string;
  /** The helper's mount namespace (the inode number of /proc/self/ns/mnt): where `mountpoint` means something. */
  readonly mountNamespace?: number;
}

/** A browse mount (`snapfs browse`): the descriptors are its /dev/fuse and the root's directory. */
export interface BrowseHandOver {
  readonly op: 'browse';
  readonly mountpoint: string;
  /** The root's path, to be shown. */
  readonly root: string;
  readonly mountNamespace?: number;
}

/**
 * What a helper asks of the daemon: serve a mount, list those it serves,
 * or what they have cost (`snapfs serve`'s metrics; root may ask any
 * user's daemon this, and nothing else).
 */
export type DaemonRequest = HandOver | BrowseHandOver | { readonly op: 'list' } | { readonly op: 'stats' };

/** The daemon's one answer to a request. */
export type DaemonAnswer = { readonly ok: true; readonly mounts?: readonly LiveMount[]; readonly stats?: DaemonStats } | { readonly error: string };

/** A mount the daemon serves, as `snapfs mounted` shows it. */
export interface LiveMount {
  readonly mountpoint: string;
  readonly lowers: readonly string[];
  readonly upper?: string;
  readonly work?: string;
  /** The snapshot's key, when it was mounted by key. */
  readonly snapshot?: string;
  /** The root a browse mount shows (its lowers are then none). */
  readonly browse?: string;
  /** Milliseconds since the epoch. */
  readonly since: number;
  /** Requests answered, those served natively (reads, writes) included. */
  readonly requests: number;
}

/** The hand-over of `req` (descriptors to go with it: the device's, then handOverFds' order). */
export function handOverOf(req: MountRequest): HandOver {
  return {
    op: 'mount',
    mountpoint: req.mountpoint,
    lowers: req.stack.lowers,
    ...(req.stack.upper === undefined ? {} : { upper: req.stack.upper, work: req.stack.work! }),
    ...(req.allowOther === true ? { allowOther: true } : {}),
    ...(req.tweaks === undefined ? {} : { tweaks: req.tweaks }),
    ...(req.notApplied === undefined ? {} : { notApplied: req.notApplied }),
    ...(req.uidMapping === undefined ? {} : { uidMapping: req.uidMapping }),
    ...(req.gidMapping === undefined ? {} : { gidMapping: req.gidMapping }),
    ...(req.snapshot === undefined ? {} : { snapshot: req.snapshot }),
    mountNamespace: mountNamespace(),
  };
}

/** What the log says of options a mount took without applying them (MountRequest.notApplied). */
export function notAppliedNote(options: readonly string[]): string {
  return `options taken, not applied: ${options.join(',')}`;
}

/** The hand-over of a browse mount (descriptors: the device's, then the root directory's). */
export function browseHandOverOf(root: string, mountpoint: string): BrowseHandOver {
  return { op: 'browse', mountpoint, root, mountNamespace: mountNamespace() };
}

/** How many descriptors come after the device's: the layers', or the browsed root's. */
export function dirCount(h: HandOver | BrowseHandOver): number {
  return h.op === 'browse' ? 1 : h.lowers.length + (h.upper === undefined ? 0 : 2);
}

/**
 * Parses a request's text, checking every field's type: a helper of the
 * same user sent it, but a bug or another version must not get further
 * than one clear refusal.
 */
export function parseRequest(data: Buffer): DaemonRequest {
  let value: unknown;
  try {
    value = JSON.parse(data.toString());
  } catch {
    throw invalidArgument('request: not JSON');
  }
  if (typeof value !== 'object' || value === null) throw invalidArgument('request: not an object');
  const r = value as Record<string, unknown>;
  if (r.op === 'list' || r.op === 'stats') return { op: r.op };
  if (r.op !== 'mount' && r.op !== 'browse') throw invalidArgument(`request: unknown op ${JSON.stringify(r.op)}`);
  const text = (name: string, optional: boolean): string | undefined => {
    const v = r[name];
    if (v === undefined && optional) return undefined;
    if (typeof v !== 'string' || v === '') throw invalidArgument(`request: ${name} must be a non-empty string`);
    return v;
  };
  const namespace = r.mountNamespace;
  if (namespace !== undefined && !(typeof namespace === 'number' && Number.isSafeInteger(namespace) && namespace > 0)) throw invalidArgument('request: mountNamespace must be an inode number');
  if (r.op === 'browse') {
    return { op: 'browse', mountpoint: text('mountpoint', false)!, root: text('root', false)!, ...(namespace === undefined ? {} : { mountNamespace: namespace }) };
  }
  const flag = (name: string): boolean | undefined => {
    const v = r[name];
    if (v !== undefined && typeof v !== 'boolean') throw invalidArgument(`request: ${name} must be true or false`);
    return v;
  };
  if (!Array.isArray(r.lowers) || r.lowers.some((l) => typeof l !== 'string')) throw invalidArgument('request: lowers must be a list of paths');
  const upper = text('upper', true);
  const work = text('work', true);
  if ((upper === undefined) !== (work === undefined)) throw invalidArgument('request: an upper layer needs a work directory, and only it');
  if (r.lowers.length === 0 && upper === undefined) throw invalidArgument('request: no layers');
  const allowOther = flag('allowOther');
  const tweaks = parseTweaks(r.tweaks);
  const notApplied = r.notApplied;
  if (notApplied !== undefined && !(Array.isArray(notApplied) && notApplied.every((o) => typeof o === 'string'))) throw invalidArgument('request: notApplied must be a list of options');
  const [uidMapping, gidMapping, snapshot] = [text('uidMapping', true), text('gidMapping', true), text('snapshot', true)];
  return {
    op: 'mount',
    mountpoint: text('mountpoint', false)!,
    lowers: r.lowers as string[],
    ...(upper === undefined ? {} : { upper, work: work! }),
    ...(allowOther === undefined ? {} : { allowOther }),
    ...(tweaks === undefined ? {} : { tweaks }),
    ...(notApplied === undefined ? {} : { notApplied: notApplied as string[] }),
    ...(uidMapping === undefined ? {} : { uidMapping }),
    ...(gidMapping === undefined ? {} : { gidMapping }),
    ...(snapshot === undefined ? {} : { snapshot }),
    ...(namespace === undefined ? {} : { mountNamespace: namespace }),
  };
}

/** A request's tweaks, each field checked: ids as ids, switches as true or false. */
function parseTweaks(value: unknown): LayerTweaks | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalidArgument('request: tweaks must be an object');
  const t = value as Record<string, unknown>;
  const known = new Set(['squashUid', 'squashGid', 'staticNlink', 'volatile', 'maxSize']);
  const unknown = Object.keys(t).find((k) => !known.has(k));
  if (unknown !== undefined) throw invalidArgument(`request: unknown tweak ${JSON.stringify(unknown)}`);
  for (const k of ['squashUid', 'squashGid']) {
    const v = t[k];
    if (v !== undefined && !(typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xfffffffe)) throw invalidArgument(`request: ${k} must be a uid or gid`);
  }
  if (t.maxSize !== undefined && !(typeof t.maxSize === 'number' && Number.isSafeInteger(t.maxSize) && t.maxSize > 0)) throw invalidArgument('request: maxSize must be a size in bytes');
  for (const k of ['staticNlink', 'volatile']) {
    if (t[k] !== undefined && typeof t[k] !== 'boolean') throw invalidArgument(`request: ${k} must be true or false`);
  }
  return t as LayerTweaks;
}
