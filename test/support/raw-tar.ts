/**
 * Tars byte by byte, for layers no tar writer would make: names of any
 * bytes, sizes that are lies, PAX records of any content, streams cut short.
 */

/** One entry: a ustar header (a PAX header before it, when `pax` is given) and its data. */
export interface RawEntry {
  readonly name: Buffer | string;
  /** The ustar typeflag: '0' file, '1' hard link, '2' symlink, '3'/'4' devices, '5' directory, '6' fifo, 'L' GNU long name. */
  readonly type?: string;
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
  readonly mtime?: number;
  readonly linkname?: Buffer | string;
  readonly devmajor?: number;
  readonly devminor?: number;
  /** The ustar prefix field (names longer than 100 bytes go on there). */
  readonly prefix?: Buffer | string;
  readonly data?: Buffer | string;
  /** The size field as written, when it must not be the data's length: a number, or the field's 12 raw bytes. */
  readonly size?: number | Buffer;
  /** PAX records (key, value), written in a header of type 'x' before this one. */
  readonly pax?: readonly (readonly [string, Buffer | string])[];
}

const BLOCK = 512;

function bytes(v: Buffer | string): Buffer {
  return typeof v === 'string' ? Buffer.from(v) : v;
}

function octal(value: number, width: number): Buffer {
  return Buffer.from(`${value.toString(8).padStart(width - 1, '0')}\0`);
}

/** A 512-byte ustar header with its checksum. */
export function ustarHeader(e: RawEntry, size: number | Buffer): Buffer {
  const h = Buffer.alloc(BLOCK);
  bytes(e.name).copy(h, 0, 0, 100);
  octal(e.mode ?? 0o644, 8).copy(h, 100);
  octal(e.uid ?? 0, 8).copy(h, 108);
  octal(e.gid ?? 0, 8).copy(h, 116);
  (typeof size === 'number' ? octal(size, 12) : size).copy(h, 124, 0, 12);
  octal(e.mtime ?? 1_600_000_000, 12).copy(h, 136);
  h.write(e.type ?? '0', 156, 'latin1');
  if (e.linkname !== undefined) bytes(e.linkname).copy(h, 157, 0, 100);
  h.write('ustar\x0000', 257, 'latin1');
  octal(e.devmajor ?? 0, 8).copy(h, 329);
  octal(e.devminor ?? 0, 8).copy(h, 337);
  if (e.prefix !== undefined) bytes(e.prefix).copy(h, 345, 0, 155);
  // The checksum is summed with its own field as spaces.
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  Buffer.from(`${sum.toString(8).padStart(6, '0')}\0 `).copy(h, 148);
  return h;
}

/** PAX records, each "LEN key=value\n" with LEN counting itself. */
export function paxRecords(records: readonly (readonly [string, Buffer | string])[]): Buffer {
  return Buffer.concat(
    records.map(([key, value]) => {
      const rest = Buffer.concat([Buffer.from(` ${key}=`), bytes(value), Buffer.from('\n')]);
      let len = rest.length + 1;
      while (String(len).length + rest.length !== len) len = String(len).length + rest.length;
      return Buffer.concat([Buffer.from(String(len)), rest]);
    }),
  );
}

function padded(data: Buffer): Buffer {
  const rest = data.length % BLOCK;
  return rest === 0 ? data : Buffer.concat([data, Buffer.alloc(BLOCK - rest)]);
}

/** The entries' blocks, without the two zero blocks that end a tar. */
export function rawEntries(entries: readonly RawEntry[]): Buffer {
  const out: Buffer[] = [];
  for (const e of entries) {
    if (e.pax !== undefined) {
      const pax = paxRecords(e.pax);
      out.push(ustarHeader({ name: 'PaxHeader', type: 'x' }, pax.length), padded(pax));
    }
    const data = bytes(e.data ?? '');
    out.push(ustarHeader(e, e.size ?? data.length), padded(data));
  }
  return Buffer.concat(out);
}

/** A whole tar: the entries, then the two zero blocks. */
export function rawTar(entries: readonly RawEntry[]): Buffer {
  return Buffer.concat([rawEntries(entries), Buffer.alloc(2 * BLOCK)]);
}
