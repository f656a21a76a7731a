import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Usage } from '../metastore/snapshots';

/** Called now and then during a long walk with what has been counted so far. */
export type UsageProgress = (sofar: Usage) => void;

const PROGRESS_EVERY = 4096;

/**
 * Disk usage of a directory tree as containerd's fs.DiskUsage counts it:
 * allocated blocks (st_blocks × 512) and inodes, each inode once however
 * many hard links it has; the root directory included.
 */
export function diskUsage(root: string, onProgress?: UsageProgress): Usage {
  const seen = new Set<string>();
  let size = 0;
  let entries = 0;
  const visit = (p: string): void => {
    const st = fs.lstatSync(p, { bigint: true });
    const id = `${st.dev}:${st.ino}`;
    if (!seen.has(id)) {
      seen.add(id);
      size += Number(st.blocks) * 512;
    }
    if (++entries % PROGRESS_EVERY === 0) onProgress?.({ size, inodes: seen.size });
    if (st.isDirectory()) {
      for (const name of fs.readdirSync(p)) visit(path.join(p, name));
    }
  };
  visit(root);
  return { size, inodes: seen.size };
}
