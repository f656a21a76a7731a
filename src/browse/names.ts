/**
 * Snapshot keys as directory names: bytes outside a readable safe set are
 * percent-encoded (`default/12/sha256:ab…` → `default%2F12%2Fsha256:ab…`),
 * and so is a leading dot, so that no key can be `.`, `..` or hidden.
 * Each key has one name and each name at most one key.
 */
const SAFE = new Set(Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:+=,@~'));
const DOT = 0x2e;

export function nameOfKey(key: string): string {
  let out = '';
  Buffer.from(key, 'utf8').forEach((byte, i) => {
    out += SAFE.has(byte) && !(i === 0 && byte === DOT) ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  });
  return out;
}

/** The key a directory name stands for; undefined for a name no key maps to. */
export function keyOfName(name: string): string | undefined {
  if (!/^([^%]|%[0-9A-F]{2})*$/.test(name)) return undefined;
  const bytes: number[] = [];
  for (let i = 0; i < name.length; i++) {
    if (name[i] === '%') {
      bytes.push(parseInt(name.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(name.charCodeAt(i));
  }
  const key = Buffer.from(bytes).toString('utf8');
  return nameOfKey(key) === name ? key : undefined;
}
