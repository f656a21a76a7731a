import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { unavailable } from '../errors';
import { inInitialUserNamespace } from '../namespaces';
import { OWNER_FILE, type Layout } from './layout';

/** $SNAPFS_ROOT, else /var/lib/snapfs for root, else the user's XDG data directory. */
export function defaultRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SNAPFS_ROOT) return env.SNAPFS_ROOT;
  // Root of the host only: uid 0 of a user namespace (RootlessKit's, rootless podman's) is a user, who cannot write there.
  if (process.getuid?.() === 0 && inInitialUserNamespace()) return '/var/lib/snapfs';
  const dataHome = env.XDG_DATA_HOME || path.join(env.HOME || os.homedir(), '.local', 'share');
  return path.join(dataHome, 'snapfs');
}

export type RootState = 'missing' | 'ready';

/**
 * Checks that `layout.root` is a snapfs root, or a place one can be made:
 * missing, an empty directory, or a directory holding metadata.db. Refuses
 * anything else without touching it.
 */
export function inspectRoot(layout: Layout): RootState {
  let st: fs.Stats;
  try {
    st = fs.statSync(layout.root);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw rootError(layout.root, err);
  }
  if (!st.isDirectory()) throw unavailable(`root ${layout.root}: not a directory`);
  let entries: string[];
  try {
    entries = fs.readdirSync(layout.root);
    fs.accessSync(layout.root, fs.constants.R_OK | fs.constants.W_OK | fs.constants.X_OK);
  } catch (err) {
    throw rootError(layout.root, err);
  }
  // Another process may be creating this root right now (metadata.db comes
  // first, snapshots/, held/ and empty/ after): anything of those names is ours.
  const ours = entries.every((name) => name === 'snapshots' || name === 'held' || name === 'empty' || name === OWNER_FILE || name.startsWith('metadata.db'));
  if (!ours && !entries.includes('metadata.db')) {
    throw unavailable(`root ${layout.root}: not a snapfs root (not empty, and no metadata.db)`);
  }
  return entries.includes('metadata.db') ? 'ready' : 'missing';
}

/** Creates the root directory itself, private to its owner as containerd's is. */
export function createRoot(layout: Layout): void {
  try {
    fs.mkdirSync(layout.root, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw rootError(layout.root, err);
  }
}

function rootError(root: string, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM') return unavailable(`root ${root}: permission denied`);
  if (code === 'ENOTDIR') return unavailable(`root ${root}: not a directory`);
  if (code === 'EROFS') return unavailable(`root ${root}: read-only file system`);
  return err instanceof Error ? err : new Error(String(err));
}
