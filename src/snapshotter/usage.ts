import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Usage } from '../metastore/snapshots';

/**
 * Disk usage of a directory tree as containerd's fs.DiskUsage counts it:
 * allocated blocks (st_blocks × 512) and inodes, each inode once however
 * many hard links it has; the root directory included.
 */
export function diskUsage(root: string): Usage {
  const seen = new Set<string>();
  let size = 0;
  const visit = (p: string): void => {
    const st = fs.lstatSync(p, { bigint: true });
    const id = `${st.dev}:${st.ino}`;
    if (!seen.has(id)) {
      seen.add(id);
      size += Number(st.blocks) * 512;
    }
    if (st.isDirectory()) {
      for (const name of fs.readdirSync(p)) visit(path.join(p, name));
    }
  };
  visit(root);
  return { size, inodes: seen.size };
}
