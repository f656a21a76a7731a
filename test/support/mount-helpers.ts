import { execFile, fork, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { LayerStack } from '../../src/overlay/stack';
import { CLI } from './helpers';

export const run = promisify(execFile);

const MINIMAL_FS = path.join(__dirname, 'fixtures', 'minimal-fs.js');

/** Unmounts whatever is still mounted at or under `dir` (tests never leave mounts behind). */
export async function unmountAll(dir: string): Promise<void> {
  const mounts = fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
  for (const m of mounts.reverse()) await run('umount', ['-l', m]).catch(() => run('fusermount', ['-uz', m]).catch(() => undefined));
}

/** Serves `stack` at `mountpoint` from a child process; resolves once the mount is live. */
export async function serveStack(stack: LayerStack, mountpoint: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [CLI, '__serve', JSON.stringify({ stack, mountpoint, allowOther: false })], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const msg = await new Promise<{ mounted?: true; error?: string }>((resolve) => {
    child.once('message', resolve);
    child.once('exit', (code) => resolve({ error: `exited with ${code}` }));
  });
  if (msg.mounted !== true) throw new Error(`serving ${mountpoint}: ${msg.error}`);
  return child;
}

/**
 * Everything `find` and `sha256sum` see of a tree, from a child process:
 * names, types, modes, owners, sizes, file link counts, nanosecond mtimes,
 * symlink targets, contents, and which names share an inode.
 */
export async function describeTree(root: string, opts: { times?: boolean } = {}): Promise<string> {
  const format = `%p %y %m %U %G %s ${opts.times === false ? '' : '%T@'} %l|%n|%i\n`;
  const { stdout } = await run('find', ['.', '-printf', format], { cwd: root, maxBuffer: 64 << 20 });
  const byInode = new Map<string, string[]>();
  const lines = stdout
    .trim()
    .split('\n')
    .map((line) => {
      const [head, nlink, ino] = line.split('|') as [string, string, string];
      const isDir = head.split(' ')[1] === 'd';
      if (!isDir) byInode.set(ino, [...(byInode.get(ino) ?? []), head.split(' ')[0]!]);
      // Directory link counts and sizes differ between file systems by design.
      return isDir ? head.split(' ').filter((_, i) => i !== 5).join(' ') : `${head} n=${nlink}`;
    });
  const { stdout: sums } = await run('sh', ['-c', 'find . -type f -print0 | sort -z | xargs -0 -r sha256sum'], { cwd: root, maxBuffer: 64 << 20 });
  const links = [...byInode.values()].filter((names) => names.length > 1).map((names) => names.sort().join(' = '));
  return [...lines.sort(), ...sums.trim().split('\n'), ...links.sort()].join('\n');
}

/** Serves the minimal file system of the FUSE binding's tests (fixtures/minimal-fs.ts) at `mnt` from a child process, as `uid` when given. */
export async function serveMinimal(mnt: string, data: string, uid?: number): Promise<ChildProcess> {
  const child = fork(MINIMAL_FS, [mnt, data], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], ...(uid === undefined ? {} : { uid, gid: uid }) });
  const msg = await new Promise<{ mounted?: true; error?: string }>((resolve) => {
    child.once('message', resolve);
    child.once('exit', (code) => resolve({ error: `exited with ${code}` }));
  });
  if (msg.mounted !== true) throw new Error(`minimal file system: ${msg.error}`);
  return child;
}
