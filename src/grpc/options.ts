import * as path from 'node:path';

/**
 * What `snapfs serve` takes on its command line, apart from the server:
 * the CLI declares its options with these without loading gRPC.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/** /run/snapfs/snapfs.sock for root, $XDG_RUNTIME_DIR/snapfs/snapfs.sock for others. */
export function defaultAddress(env: NodeJS.ProcessEnv = process.env): string {
  if (process.getuid?.() === 0 || !env.XDG_RUNTIME_DIR) return '/run/snapfs/snapfs.sock';
  return path.join(env.XDG_RUNTIME_DIR, 'snapfs', 'snapfs.sock');
}
