import * as path from 'node:path';
import { invalidArgument } from '../errors';
import { parseIdMap } from '../layerfs/idmap';
import { parseByteCount } from '../layerfs/space';
import type { LayerStack } from '../overlay/stack';
import type { MountRequest } from './serve';

/**
 * The command lines that mount a layer stack, as fuse-overlayfs takes them:
 *
 *   snapfs [-f] [-d] -o lowerdir=L1:L2,upperdir=U,workdir=W MOUNTPOINT
 *   snapfs SOURCE MOUNTPOINT -o OPTIONS [-n] [-s] [-v]
 *                                         (mount(8)'s and mount.fuse's form, for mount -t fuse.snapfs)
 *
 * L1 is the topmost lower layer. Without upperdir the mount is read-only.
 * mount(8)'s generic options are accepted and ignored.
 */
export interface MountCommandLine extends MountRequest {
  readonly foreground: boolean;
}

/** Passed on to the mount. */
const MOUNT_FLAGS = new Set(['dev', 'nodev', 'suid', 'nosuid', 'exec', 'noexec', 'atime', 'noatime', 'sync', 'async', 'dirsync']);
/** Accepted and ignored: mount(8)'s and fstab's own, and what snapfs always does. */
const GENERIC_OPTIONS = new Set([
  'rw', 'relatime', 'norelatime', 'strictatime', 'nostrictatime', 'diratime', 'nodiratime', 'lazytime', 'nolazytime',
  'auto', 'noauto', 'user', 'nouser', 'users', 'owner', 'group', 'defaults', '_netdev', 'nofail', 'mand', 'nomand',
  'silent', 'loud', 'default_permissions',
]);
const GENERIC_PREFIXES = ['x-', 'fsname=', 'subtype=', 'context=', 'fscontext=', 'defcontext=', 'rootcontext=', 'comment=', 'max_read=', 'blksize='];
/**
 * fuse-overlayfs's options that change nothing snapfs promises: taken, and
 * named once in the daemon's log (its debugging, threading, timeouts,
 * inode-number and cache tuning, plugins, its ACL switch: snapfs has no
 * ACL emulation to turn off).
 */
const NOT_APPLIED = new Set(['debug', 'noacl']);
const NOT_APPLIED_PREFIXES = ['timeout=', 'threaded=', 'fast_ino=', 'writeback=', 'noxattrs=', 'plugins=', 'xattr_permissions='];
/** overlayfs features whose layers snapfs does not write: asking for them is refused. */
const REFUSED = new Map([
  ['redirect_dir', 'snapfs copies a renamed lower directory up and writes no redirects'],
  ['metacopy', 'snapfs copies data up whole and writes no metacopy files'],
]);

/** The first word of `args` (argv without node and script) that is neither an option nor the value of the global --root: a command's name, or a mount's source or mount point. */
export function firstWord(args: readonly string[]): string | undefined {
  return args.find((a, i) => !a.startsWith('-') && args[i - 1] !== '--root');
}

/** Whether `args` (argv without node and script) is a mount command line rather than a snapfs command. */
export function isMountCommandLine(args: readonly string[], commands: ReadonlySet<string>): boolean {
  const first = firstWord(args);
  return args.some((a) => a === '-o' || (a.startsWith('-o') && a.length > 2)) && (first === undefined || !commands.has(first));
}

export function parseMountCommandLine(args: readonly string[]): MountCommandLine {
  const positional: string[] = [];
  const options: string[] = [];
  let foreground = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '-o') {
      const value = args[++i];
      if (value === undefined) throw invalidArgument('-o: missing options');
      options.push(...splitOptions(value));
    } else if (a.startsWith('-o')) options.push(...splitOptions(a.slice(2)));
    else if (a === '-f' || a === '-d' || a === '--foreground' || a === '--debug') foreground = true;
    // mount(8)'s own flags, which it passes its helpers: no mtab (there is none to write), sloppy, verbose.
    else if (a === '-n' || a === '-s' || a === '-v') continue;
    else if (a.startsWith('-')) throw invalidArgument(`${a}: unknown flag (mount command lines take -o OPTIONS, -f and -d)`);
    else positional.push(a);
  }
  // mount.fuse passes SOURCE MOUNTPOINT; fuse-overlayfs is given MOUNTPOINT alone.
  if (positional.length < 1 || positional.length > 2) throw invalidArgument('expected [SOURCE] MOUNTPOINT');
  const mountpoint = path.resolve(positional[positional.length - 1]!);

  let lowers: string[] | undefined;
  let upper: string | undefined;
  let work: string | undefined;
  let readOnly = false;
  let allowOther = false;
  const tweaks: { squashUid?: number; squashGid?: number; staticNlink?: boolean; volatile?: boolean; maxSize?: number } = {};
  const notApplied: string[] = [];
  let dedicated = false;
  const mappings: { uidMapping?: string; gidMapping?: string } = {};
  const mountFlags: string[] = [];
  for (const o of options) {
    const eq = o.indexOf('=');
    const [name, value] = eq < 0 ? [o, ''] : [o.slice(0, eq), o.slice(eq + 1)];
    switch (name) {
      case 'lowerdir':
        lowers = value.split(':').filter((d) => d !== '').map((d) => path.resolve(d));
        break;
      case 'upperdir':
        upper = path.resolve(value);
        break;
      case 'workdir':
        work = path.resolve(value);
        break;
      case 'ro':
        readOnly = true;
        break;
      case 'allow_other':
        allowOther = true;
        break;
      case 'squash_to_root':
        tweaks.squashUid = 0;
        tweaks.squashGid = 0;
        break;
      case 'squash_to_uid':
      case 'squash_to_gid':
        tweaks[name === 'squash_to_uid' ? 'squashUid' : 'squashGid'] = id(o, value);
        break;
      case 'static_nlink':
        tweaks.staticNlink = true;
        break;
      case 'volatile':
        tweaks.volatile = true;
        break;
      case 'fsync':
        if (value !== '0' && value !== '1') throw invalidArgument(`-o ${o}: fsync= takes 0 or 1`);
        if (value === '0') tweaks.volatile = true;
        break;
      case 'redirect_dir':
      case 'metacopy':
        if (value !== 'off') throw invalidArgument(`-o ${o}: not supported (${REFUSED.get(name)!})`);
        break;
      case 'dedicated':
        dedicated = true;
        break;
      case 'max_size':
        tweaks.maxSize = byteCount(o, value);
        break;
      case 'uidmapping':
      case 'gidmapping':
        // Checked here, so that a bad one is refused before any daemon starts.
        parseIdMap(name, value);
        mappings[name === 'uidmapping' ? 'uidMapping' : 'gidMapping'] = value;
        break;
      default:
        if (MOUNT_FLAGS.has(o)) {
          mountFlags.push(o);
          break;
        }
        if (GENERIC_OPTIONS.has(o) || GENERIC_PREFIXES.some((p) => o.startsWith(p))) break;
        if (NOT_APPLIED.has(o) || NOT_APPLIED_PREFIXES.some((p) => o.startsWith(p))) {
          notApplied.push(o);
          break;
        }
        throw invalidArgument(`-o ${o}: unsupported option`);
    }
  }
  if (lowers === undefined || lowers.length === 0) throw invalidArgument('-o lowerdir=DIR[:DIR…] is required');
  if (upper !== undefined && work === undefined) throw invalidArgument('-o upperdir= needs workdir= as well');
  if (tweaks.maxSize !== undefined && upper === undefined) throw invalidArgument('-o max_size= limits the upper layer: it needs upperdir=');
  // `ro` with an upper layer shows it, read-only, on top of the others.
  const stack: LayerStack = upper === undefined ? { lowers } : readOnly ? { lowers: [upper, ...lowers] } : { lowers, upper, work };
  return {
    stack,
    mountpoint,
    foreground,
    allowOther,
    ...(Object.keys(tweaks).length > 0 ? { tweaks } : {}),
    ...(notApplied.length > 0 ? { notApplied } : {}),
    ...mappings,
    mountFlags,
    ...(dedicated ? { dedicated } : {}),
  };
}

/** A uid or gid given as option `o`. */
function id(o: string, value: string): number {
  const n = /^\d{1,10}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 0 && n <= 0xfffffffe)) throw invalidArgument(`-o ${o}: not a uid or gid`);
  return n;
}

/** A size in bytes given as option `o`. */
function byteCount(o: string, value: string): number {
  const n = parseByteCount(value);
  if (n === undefined) throw invalidArgument(`-o ${o}: not a size in bytes`);
  return n;
}

/** Options are comma-separated; a comma inside a path is written `\,`. */
function splitOptions(s: string): string[] {
  return s
    .split(/(?<!\\),/)
    .map((o) => o.replace(/\\,/g, ','))
    .filter((o) => o !== '');
}
