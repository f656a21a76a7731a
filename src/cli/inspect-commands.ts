import type { Command } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { invalidArgument } from '../errors';
import { layerChanges } from '../inspect/changes';
import { mergedLayers, MergedTree, ownLayer, type Entry } from '../inspect/tree';
import { major, minor } from '../layerfs/devices';
import type { Snapshotter } from '../snapshotter/snapshotter';
import { wantsJson, withSnapshotter } from './context';
import { printJson, printLines } from './output';

/** cat, changes, and `ls KEY [PATH]`: a snapshot's content, read without mounting it. */
export function registerInspectCommands(program: Command): void {
  program
    .command('cat <key> <path>')
    .description("print a file of a snapshot's merged tree (symlinks followed inside the snapshot)")
    .action(async (key: string, p: string, _opts: unknown, cmd: Command) => {
      await withSnapshotter(cmd, async (s) => {
        const tree = treeOf(s, key);
        const file = tree.resolve(p);
        if (!file.st.isFile()) throw invalidArgument(`snapshot ${JSON.stringify(key)}: ${JSON.stringify(p)}: not a regular file`);
        await pipeline(fs.createReadStream(file.node.real), process.stdout, { end: false });
      });
    });

  program
    .command('changes <key>')
    .description("what a snapshot's own layer adds (A), changes (C) and deletes (D), as docker diff prints it")
    .option('--json', 'print JSON')
    .action(async (key: string, _opts: unknown, cmd: Command) => {
      await withSnapshotter(cmd, (s) => {
        const { own, below } = ownLayer(s.layers(key));
        const changes = own === undefined ? [] : layerChanges(own, below);
        if (wantsJson(cmd)) printJson(changes);
        else printLines(changes.map((c) => `${c.kind} ${c.path}`));
      });
    });
}

/** `snapfs ls KEY [PATH] [-l]`. */
export function listSnapshotPath(s: Snapshotter, key: string, p: string, long: boolean, json: boolean): void {
  const tree = treeOf(s, key);
  // As ls(1): -l shows a symlink named on the command line itself, unless the name ends in '/'.
  const named = tree.resolve(p, !(long && !p.endsWith('/')));
  const at = named.st.isSymbolicLink() ? named : tree.resolve(p);
  const entries = at.node.isDir ? tree.list(at).map((name) => tree.child(at, name)) : [named];
  if (json) return printJson(entries.map(entryJson));
  printLines(entries.map((e) => (long ? longLine(e) : path.posix.basename(e.path))));
}

function treeOf(s: Snapshotter, key: string): MergedTree {
  return new MergedTree(mergedLayers(s.layers(key)), `snapshot ${JSON.stringify(key)}`);
}

const TYPES: [(st: fs.Stats) => boolean, string, string][] = [
  [(st) => st.isDirectory(), 'd', 'directory'],
  [(st) => st.isSymbolicLink(), 'l', 'symlink'],
  [(st) => st.isCharacterDevice(), 'c', 'char-device'],
  [(st) => st.isBlockDevice(), 'b', 'block-device'],
  [(st) => st.isFIFO(), 'p', 'fifo'],
  [(st) => st.isSocket(), 's', 'socket'],
];

function typeOf(st: fs.Stats): [string, string] {
  const t = TYPES.find(([is]) => is(st));
  return t === undefined ? ['-', 'file'] : [t[1], t[2]];
}

/** `ls -l`'s permission string, set-id and sticky bits included. */
function modeString(st: fs.Stats): string {
  const m = st.mode;
  const triple = (shift: number, special: number, on: string, off: string): string =>
    `${m & (4 << shift) ? 'r' : '-'}${m & (2 << shift) ? 'w' : '-'}${m & special ? (m & (1 << shift) ? on : off) : m & (1 << shift) ? 'x' : '-'}`;
  return typeOf(st)[0] + triple(6, 0o4000, 's', 'S') + triple(3, 0o2000, 's', 'S') + triple(0, 0o1000, 't', 'T');
}

function longLine(e: Entry): string {
  const { st } = e;
  const when = st.mtime.toISOString().slice(0, 16).replace('T', ' ');
  const name = path.posix.basename(e.path) + (st.isSymbolicLink() ? ` -> ${fs.readlinkSync(e.node.real)}` : '');
  const size = st.isCharacterDevice() || st.isBlockDevice() ? `${major(st.rdev)}, ${minor(st.rdev)}` : String(st.size);
  return `${modeString(st)} ${String(st.nlink).padStart(3)} ${String(st.uid).padStart(5)} ${String(st.gid).padStart(5)} ${size.padStart(10)} ${when} ${name}`;
}

function entryJson(e: Entry): Record<string, unknown> {
  const { st } = e;
  return {
    name: path.posix.basename(e.path),
    path: e.path,
    type: typeOf(st)[1],
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    size: st.size,
    nlink: st.nlink,
    mtime: st.mtime.toISOString(),
    ...(st.isSymbolicLink() ? { target: fs.readlinkSync(e.node.real) } : {}),
  };
}
