/**
 * The longest path a unix socket can be bound to or reached at: sun_path
 * holds 108 bytes with the terminating NUL, and libuv would silently cut a
 * longer path, binding or reaching another socket.
 */
export const MAX_SOCKET_PATH = 107;

export function fitsSocketAddress(socketPath: string): boolean {
  return Buffer.byteLength(socketPath) <= MAX_SOCKET_PATH;
}
