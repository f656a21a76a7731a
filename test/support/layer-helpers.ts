import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CLI, command, NOBODY, rootState, type CliResult } from './helpers';

/** `snapfs --root ROOT ARGS...` as user nobody (65534), without root's powers. */
export function asNobody(root: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return command(['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, CLI, '--root', root, ...args], { env: { ...process.env, ...opts.env } });
}

/** A directory that user nobody owns, inside `parent` (which nobody must be able to search). */
export function nobodysDir(parent: string, name: string): string {
  const dir = path.join(parent, name);
  fs.mkdirSync(dir);
  fs.chownSync(dir, 65534, 65534);
  return dir;
}

function join(dir: Buffer, name: Buffer): Buffer {
  return Buffer.concat([dir, Buffer.from('/'), name]);
}

/** A name for a line of a description: its bytes as hex where they are not printable ASCII. */
function shown(name: Buffer): string {
  return [...name].map((b) => (b > 0x20 && b < 0x7f && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, '0')}`)).join('');
}

/**
 * Everything observable about a tree, names as bytes: kind, mode, owner,
 * whole-second time (not of directories, which their contents change),
 * content hash, symlink target, device numbers, and which names are one file.
 */
export function describeBytes(root: string): string[] {
  const out: string[] = [];
  const firstName = new Map<string, string>();
  const walk = (dir: Buffer, rel: string): void => {
    for (const name of fs.readdirSync(dir, { encoding: 'buffer' }).sort(Buffer.compare)) {
      const p = join(dir, name);
      const at = `${rel}/${shown(name)}`;
      const st = fs.lstatSync(p);
      const key = `${st.dev}:${st.ino}`;
      const sameAs = st.isFile() && st.nlink > 1 ? firstName.get(key) : undefined;
      if (st.isFile() && st.nlink > 1 && sameAs === undefined) firstName.set(key, at);
      const what = st.isFile()
        ? (sameAs ?? createHash('sha256').update(fs.readFileSync(p)).digest('hex').slice(0, 12))
        : st.isSymbolicLink()
          ? `-> ${shown(fs.readlinkSync(p, { encoding: 'buffer' }))}`
          : st.isCharacterDevice() || st.isBlockDevice()
            ? `dev ${st.rdev}`
            : '';
      // A directory's time changes with what it holds; a whiteout's own time means nothing.
      const whiteout = (st.isCharacterDevice() && st.rdev === 0) || name.subarray(0, 4).equals(Buffer.from('.wh.'));
      const time = st.isDirectory() || whiteout ? '' : Math.floor(st.mtimeMs / 1000);
      out.push(`${at} ${(st.mode & 0o170000).toString(8)} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid} ${time} ${what}`);
      if (st.isDirectory()) walk(p, at);
    }
  };
  walk(Buffer.from(root), '');
  return out;
}

/**
 * A tree of files of several modes in `dir`, standing for the host: a
 * refused tar must change none of it, though it names these files. Returns
 * the tree's description, to compare after.
 */
export function makeSentinels(dir: string): { files: Record<'plain' | 'secret' | 'script', string>; state: () => string[] } {
  fs.mkdirSync(path.join(dir, 'etc'), { recursive: true, mode: 0o755 });
  const files = { plain: path.join(dir, 'etc', 'plain'), secret: path.join(dir, 'etc', 'secret'), script: path.join(dir, 'script') };
  fs.writeFileSync(files.plain, 'plain\n', { mode: 0o644 });
  fs.writeFileSync(files.secret, 'root:SECRET-HASH:19000::::::\n', { mode: 0o600 });
  fs.writeFileSync(files.script, '#!/bin/sh\n', { mode: 0o755 });
  return { files, state: () => describeBytes(dir) };
}

/**
 * A root's snapshots, their rows and directories: what a refused import
 * must leave as it found them. Its events stay, and the id counters move:
 * the event log tells of the prepare and the remove.
 */
export function snapshotsOf(root: string): string {
  return rootState(root)
    .split('\n')
    .filter((line) => !line.startsWith('events ') && !line.startsWith('sqlite_sequence '))
    .join('\n');
}
