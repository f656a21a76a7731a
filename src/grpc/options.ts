import * as os from 'node:os';
import * as path from 'node:path';
import { inInitialUserNamespace } from '../namespaces';

/**
 * What `snapfs serve` takes on its command line, apart from the server:
 * the CLI declares its options with these without loading gRPC.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/**
 * /run/snapfs/snapfs.sock for root of the host, else
 * $XDG_RUNTIME_DIR/snapfs/snapfs.sock, else /tmp/snapfs-UID/snapfs.sock
 * (uid 0 of a user namespace, RootlessKit's say, is a user here).
 */
export function defaultAddress(env: NodeJS.ProcessEnv = process.env): string {
  const uid = process.getuid?.();
  if (uid === 0 && inInitialUserNamespace()) return '/run/snapfs/snapfs.sock';
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'snapfs', 'snapfs.sock');
  return path.join(os.tmpdir(), `snapfs-${uid}`, 'snapfs.sock');
}
