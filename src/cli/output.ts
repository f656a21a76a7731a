import { formatNs } from '../clock';
import type { Info, Mount } from '../snapshotter/snapshotter';

/** Columns padded to their widest cell, two spaces apart, as ctr prints. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printLines(lines: readonly string[]): void {
  if (lines.length > 0) process.stdout.write(`${lines.join('\n')}\n`);
}

/** A line to paste into a shell, as `ctr snapshots mounts` prints it. */
export function mountCommand(m: Mount, target: string): string {
  const opts = m.options.length > 0 ? ` -o ${shellQuote(m.options.join(','))}` : '';
  return `mount -t ${m.type} ${shellQuote(m.source)} ${shellQuote(target)}${opts}`;
}

export function infoJson(i: Info): Record<string, unknown> {
  return { ...i, created: formatNs(i.created), updated: formatNs(i.updated) };
}

export function formatLabels(labels: Readonly<Record<string, string>>): string[] {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`);
}

/** 1536 → "1.5 KiB", as containerd's progress.Bytes. */
export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
