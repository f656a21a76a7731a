import * as path from 'node:path';
import { inInitialUserNamespace } from '../namespaces';

/**
 * What `snapfs serve` takes on its command line, apart from the server:
 * the CLI declares its options with these without loading gRPC.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/**
 * $XDG_RUNTIME_DIR/snapfs/snapfs.sock for a user (uid 0 of a user
 * namespace, RootlessKit's say, is one), else /run/snapfs/snapfs.sock,
 * which only root of the host can make (a user without XDG_RUNTIME_DIR
 * passes --address).
 */
export function defaultAddress(env: NodeJS.ProcessEnv = process.env): string {
  const hostRoot = process.getuid?.() === 0 && inInitialUserNamespace();
  if (!hostRoot && env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'snapfs', 'snapfs.sock');
  return '/run/snapfs/snapfs.sock';
}
