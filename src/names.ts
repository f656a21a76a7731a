import { isUtf8 } from 'node:buffer';
import { invalidArgument } from './errors';

/**
 * File names are bytes on Linux, and a layer may hold any but `/` and NUL.
 * They are carried as Buffers and turned into text only to be shown: as
 * themselves when they are UTF-8 without control characters, else with
 * each offending byte (and a backslash) as `\xHH`, which `--escaped`
 * arguments take back.
 */
export function showName(name: Buffer): string {
  if (isUtf8(name) && !/[\x00-\x1f\x7f\\]/.test(name.toString('latin1'))) return name.toString('utf8');
  let out = '';
  let at = 0;
  while (at < name.length) {
    const len = utf8Length(name, at);
    const text = len > 0 ? name.toString('utf8', at, at + len) : '';
    if (len > 0 && !(len === 1 && (name[at]! < 0x20 || name[at] === 0x7f || name[at] === 0x5c))) {
      out += text;
      at += len;
    } else {
      out += `\\x${name[at]!.toString(16).padStart(2, '0')}`;
      at++;
    }
  }
  return out;
}

/** Names longer than this are cut in messages: a PAX record can hold a megabyte. */
const SHOWN_BYTES = 1024;

/**
 * A name quoted for a message, as JSON.stringify quotes text, with each
 * byte that is not part of a UTF-8 character as `\xHH`: names that differ
 * in such bytes read differently.
 */
export function quoted(name: Buffer): string {
  const shown = name.subarray(0, SHOWN_BYTES);
  let out = '';
  let text = 0; // where the run of UTF-8 not yet written starts
  for (let i = 0; i < shown.length; ) {
    const length = utf8Length(shown, i);
    if (length > 0) {
      i += length;
      continue;
    }
    out += JSON.stringify(shown.subarray(text, i).toString()).slice(1, -1) + `\\x${shown[i]!.toString(16).padStart(2, '0')}`;
    text = ++i;
  }
  out += JSON.stringify(shown.subarray(text).toString()).slice(1, -1);
  return name.length > SHOWN_BYTES ? `"${out}…" (${name.length} bytes)` : `"${out}"`;
}

/** The length of the well-formed UTF-8 character at `at`, 0 if there is none. */
function utf8Length(b: Buffer, at: number): number {
  const c = b[at]!;
  const len = c < 0x80 ? 1 : c >= 0xc2 && c < 0xe0 ? 2 : c >= 0xe0 && c < 0xf0 ? 3 : c >= 0xf0 && c < 0xf5 ? 4 : 0;
  if (len === 0 || at + len > b.length) return 0;
  return isUtf8(b.subarray(at, at + len)) ? len : 0;
}

/** A name for JSON: `name` when its bytes are UTF-8, else `name_b64`. */
export function nameJson(name: Buffer, key = 'name'): Record<string, string> {
  return isUtf8(name) ? { [key]: name.toString('utf8') } : { [`${key}_b64`]: name.toString('base64') };
}

/** A command-line argument with `\xHH` escapes (and `\\`) as the bytes they stand for. */
export function unescapeArg(arg: string, what: string): Buffer {
  const parts: Buffer[] = [];
  let text = '';
  for (let i = 0; i < arg.length; i++) {
    if (arg[i] !== '\\') {
      text += arg[i];
      continue;
    }
    const next = arg[i + 1];
    if (next === '\\') {
      text += '\\';
      i++;
      continue;
    }
    const hex = arg.slice(i + 2, i + 4);
    if (next !== 'x' || !/^[0-9a-fA-F]{2}$/.test(hex)) throw invalidArgument(`${what} ${JSON.stringify(arg)}: a backslash starts \\xHH or \\\\ (--escaped)`);
    parts.push(Buffer.from(text, 'utf8'), Buffer.from([parseInt(hex, 16)]));
    text = '';
    i += 3;
  }
  parts.push(Buffer.from(text, 'utf8'));
  return Buffer.concat(parts);
}
