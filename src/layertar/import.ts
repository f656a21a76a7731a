import type { Readable } from 'node:stream';
import { alreadyExists, kindOf, systemFailure } from '../errors';
import * as fs from 'node:fs';
import { upperFormat } from '../overlay/format';
import { faultPoint } from '../faults';
import { removeTree } from '../snapshotter/dirs';
import type { HeldSnapshot, Labels, Snapshotter, UsageProgress } from '../snapshotter/snapshotter';
import { applyLayerTar, type ImportNaming } from './apply';
import { systemFailureAt } from './failures';

/** containerd's label of a layer snapshot: the digest of its uncompressed tar, as its unpacker sets it. */
export const DIFF_ID_LABEL = 'containerd.io/snapshot/diff-id';

export interface ImportOptions {
  readonly parent?: string;
  readonly labels?: Labels;
  readonly onProgress?: UsageProgress;
  readonly diffId?: string;
  /** What the tar is called in messages, imported by itself: "layer.tar", "stdin". */
  readonly source?: string;
  /** How messages name the tar, its entries and the import, where it is part of more (an image's layer). */
  readonly naming?: ImportNaming;
}

/**
 * A layer tar as committed snapshot `name` over `parent`: prepared under a
 * key of its own, unpacked into that snapshot's layer, committed. If
 * anything fails, whatever it is, the prepared snapshot is removed again.
 */
export async function importLayer(s: Snapshotter, input: Readable, name: string, opts: ImportOptions = {}): Promise<void> {
  const naming = opts.naming ?? { tar: opts.source ?? 'input', entries: '', failures: `import ${name}` };
  if (exists(s, name)) throw alreadyExists(`snapshot ${JSON.stringify(name)}: already exists`);
  let held: HeldSnapshot;
  try {
    held = s.prepareHeld('import', opts.parent ?? '', { 'snapfs.import': name });
  } catch (err) {
    input.destroy();
    throw systemFailureAt(err, naming.failures) ?? err;
  }
  try {
    const stack = s.layers(held.key);
    const work = fs.openSync(stack.work, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    let format;
    try {
      format = upperFormat(work);
    } finally {
      fs.closeSync(work);
    }
    await applyLayerTar(input, stack.upper!, format, {
      privileged: process.getuid?.() === 0,
      naming,
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      ...(opts.diffId ? { diffId: opts.diffId } : {}),
    });
    faultPoint('import:unpacked');
    await s.commit(name, held.key, { ...(opts.diffId ? { [DIFF_ID_LABEL]: opts.diffId } : {}), ...opts.labels });
    faultPoint('import:committed');
  } catch (err) {
    input.destroy();
    try {
      discard(s, held.key);
    } catch (discardErr) {
      held.abandon(); // cleanup removes it
      throw discardErr;
    }
    held.release();
    throw systemFailureAt(err, naming.failures) ?? err;
  }
  held.release();
}

/** Removes the prepared snapshot of a failed import. */
function discard(s: Snapshotter, key: string): void {
  try {
    s.remove(key);
  } catch (err) {
    if (kindOf(systemFailure(err)) !== 'ResourceExhausted') throw err;
    // A full disk can refuse the removal's own writes to the database: free what the import wrote first.
    removeTree(s.layers(key).upper!);
    s.remove(key);
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
