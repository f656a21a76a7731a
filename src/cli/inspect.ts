import * as fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { formatNs } from '../clock';
import { layerChanges } from '../inspect/changes';
import { basename, MergedTree, type Entry } from '../inspect/tree';
import { major, minor } from '../layerfs/devices';
import { nameJson, showName, unescapeArg } from '../names';
import { isSymlink, type Stat } from '../native/sys';
import { mergedLayers, ownLayer } from '../overlay/stack';
import type { Snapshotter } from '../snapshotter/snapshotter';
import { printJson, printLines } from './output';

/**
 * What cat, changes and `ls KEY [PATH]` do: a snapshot's content, read
 * without mounting it. Loaded only when one of them runs (see
 * inspect-commands.ts): it brings the merged-tree code with it.
 */

/** `snapfs cat KEY PATH`: the file's bytes to stdout. */
export async function catFile(s: Snapshotter, key: string, p: string, escaped: boolean): Promise<void> {
  const tree = treeOf(s, key);
  try {
    const at = pathArg(p, escaped);
    const fd = tree.openFile(tree.resolve(at), at);
    await pipeline(fs.createReadStream('', { fd }), process.stdout, { end: false });
  } finally {
    tree.close();
  }
}

/** `snapfs changes KEY`, as docker diff prints them. */
export function printChanges(s: Snapshotter, key: string, json: boolean): void {
  const { own, below } = ownLayer(s.layers(key));
  const changes = own === undefined ? [] : layerChanges(own, below);
  if (json) printJson(changes.map((c) => ({ kind: c.kind, ...nameJson(c.path, 'path') })));
  else printLines(changes.map((c) => `${c.kind} ${showName(c.path)}`));
}

/** A PATH argument: as given (UTF-8), or with `--escaped` its \\xHH escapes as bytes. */
export function pathArg(p: string, escaped: boolean): Buffer {
  return escaped ? unescapeArg(p, 'path') : Buffer.from(p, 'utf8');
}

/** `snapfs ls KEY [PATH] [-l]`. */
export function listSnapshotPath(s: Snapshotter, key: string, p: Buffer, long: boolean, json: boolean): void {
  const tree = treeOf(s, key);
  try {
    // As ls(1): -l shows a symlink named on the command line itself, unless the name ends in '/'.
    const named = tree.resolve(p, !(long && p[p.length - 1] !== 0x2f));
    const at = isSymlink(named.st) ? named : tree.resolve(p);
    const entries = at.inode.isDir ? tree.list(at).map((name) => tree.child(at, name)) : [named];
    if (json) return printJson(entries.map((e) => entryJson(tree, e)));
    printLines(entries.map((e) => (long ? longLine(tree, e) : showName(basename(e.path)))));
  } finally {
    tree.close();
  }
}

function treeOf(s: Snapshotter, key: string): MergedTree {
  return new MergedTree(mergedLayers(s.layers(key)), `snapshot ${JSON.stringify(key)}`);
}

const TYPES: Record<number, [string, string]> = {
  0o040000: ['d', 'directory'],
  0o120000: ['l', 'symlink'],
  0o020000: ['c', 'char-device'],
  0o060000: ['b', 'block-device'],
  0o010000: ['p', 'fifo'],
  0o140000: ['s', 'socket'],
};

function typeOf(st: Stat): [string, string] {
  return TYPES[st.mode & 0o170000] ?? ['-', 'file'];
}

/** `ls -l`'s permission string, set-id and sticky bits included. */
function modeString(st: Stat): string {
  const m = st.mode;
  const triple = (shift: number, special: number, on: string, off: string): string =>
    `${m & (4 << shift) ? 'r' : '-'}${m & (2 << shift) ? 'w' : '-'}${m & special ? (m & (1 << shift) ? on : off) : m & (1 << shift) ? 'x' : '-'}`;
  return typeOf(st)[0] + triple(6, 0o4000, 's', 'S') + triple(3, 0o2000, 's', 'S') + triple(0, 0o1000, 't', 'T');
}

function longLine(tree: MergedTree, e: Entry): string {
  const { st } = e;
  const when = formatNs(st.mtimeNs).slice(0, 16).replace('T', ' ');
  const name = showName(basename(e.path)) + (isSymlink(st) ? ` -> ${showName(tree.readlink(e.inode))}` : '');
  const device = typeOf(st)[0] === 'c' || typeOf(st)[0] === 'b';
  const size = device ? `${major(st.rdev)}, ${minor(st.rdev)}` : String(st.size);
  return `${modeString(st)} ${String(st.nlink).padStart(3)} ${String(st.uid).padStart(5)} ${String(st.gid).padStart(5)} ${size.padStart(10)} ${when} ${name}`;
}

function entryJson(tree: MergedTree, e: Entry): Record<string, unknown> {
  const { st } = e;
  return {
    ...nameJson(basename(e.path)),
    ...nameJson(e.path, 'path'),
    type: typeOf(st)[1],
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    size: st.size,
    nlink: st.nlink,
    mtime: `${formatNs(st.mtimeNs).slice(0, 23)}Z`,
    ...(isSymlink(st) ? nameJson(tree.readlink(e.inode), 'target') : {}),
  };
}
