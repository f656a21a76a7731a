import { invalidArgument } from '../errors';
import type { Labels } from '../metastore/snapshots';

/** containerd's limit on a label: key and value together, in bytes. */
const MAX_LABEL_BYTES = 4096;

export function validateKey(key: string, what = 'snapshot'): void {
  if (key === '') throw invalidArgument(`${what} key must not be empty`);
  if (/[\0\n]/.test(key)) throw invalidArgument(`${what} ${JSON.stringify(key)}: key must not contain NUL or newline`);
}

export function validateLabels(labels: Labels): void {
  for (const [name, value] of Object.entries(labels)) {
    if (name === '') throw invalidArgument('label name must not be empty');
    const bytes = Buffer.byteLength(name) + Buffer.byteLength(value);
    if (bytes > MAX_LABEL_BYTES) {
      throw invalidArgument(
        `label ${JSON.stringify(name.length > 64 ? `${name.slice(0, 64)}…` : name)}: key and value are ${bytes} bytes, more than the maximum of ${MAX_LABEL_BYTES}`,
      );
    }
  }
}
