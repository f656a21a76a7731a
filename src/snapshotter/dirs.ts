import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Removes a tree, even one holding directories without write permission
 * (layers unpacked from images have them). A tree that is already gone, or
 * that disappears meanwhile, is not an error.
 */
export function removeTree(dir: string): void {
  try {
    fs.rmSync(dir, { recursive: true, force: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code !== 'EACCES' && code !== 'EPERM') throw err;
    makeWritable(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function makeWritable(dir: string): void {
  const st = fs.lstatSync(dir);
  if (!st.isDirectory()) return;
  fs.chmodSync(dir, (st.mode & 0o7777) | 0o700);
  for (const name of fs.readdirSync(dir)) makeWritable(path.join(dir, name));
}

/** rename(2) that reports whether the source was still there. */
export function renameIfPresent(from: string, to: string): boolean {
  try {
    fs.renameSync(from, to);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
