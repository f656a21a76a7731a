import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { alreadyExists, kindOf } from '../errors';
import * as fs from 'node:fs';
import { upperFormat } from '../overlay/format';
import type { Labels, Snapshotter, UsageProgress } from '../snapshotter/snapshotter';
import { applyLayerTar } from './apply';

export interface ImportOptions {
  readonly parent?: string;
  readonly labels?: Labels;
  readonly onProgress?: UsageProgress;
  readonly diffId?: string;
  /** What the tar is called in messages. */
  readonly source?: string;
}

/**
 * A layer tar as committed snapshot `name` over `parent`: prepared under a
 * key of its own, unpacked into that snapshot's layer, committed. If
 * anything fails the prepared snapshot is removed again.
 */
export async function importLayer(s: Snapshotter, input: Readable, name: string, opts: ImportOptions = {}): Promise<void> {
  if (exists(s, name)) throw alreadyExists(`snapshot ${JSON.stringify(name)}: already exists`);
  const key = `import-${randomBytes(8).toString('hex')}`;
  s.prepare(key, opts.parent ?? '', { 'snapfs.import': name });
  try {
    const stack = s.layers(key);
    const work = fs.openSync(stack.work, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    const format = upperFormat(work);
    fs.closeSync(work);
    await applyLayerTar(input, stack.upper!, format, {
      privileged: process.getuid?.() === 0,
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      ...(opts.diffId ? { diffId: opts.diffId } : {}),
      ...(opts.source ? { source: opts.source } : {}),
    });
    await s.commit(name, key, opts.labels ?? {});
  } catch (err) {
    input.destroy();
    s.remove(key);
    throw err;
  }
}

export function exists(s: Snapshotter, key: string): boolean {
  try {
    s.stat(key);
    return true;
  } catch (err) {
    if (kindOf(err) === 'NotFound') return false;
    throw err;
  }
}
