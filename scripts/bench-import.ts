/**
 * Import benchmark (not a test), in one run:
 *   - `snapfs import` of a layer tar (200 MB in 20k entries at scale 1)
 *     against `tar -x` of the same tar into an empty directory;
 *   - `ls -lR` of the imported snapshot through `snapfs browse` against
 *     the same on a kernel overlay mount of the same layer.
 * Prints each one's median time and the ratios.
 *
 *   scripts/bench-import [--scale F] [--runs N]
 *
 * Needs root (the overlay mount, dropping caches).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { arg, median } from './bench-util';

const CLI = path.resolve(__dirname, '..', 'src', 'cli', 'main.js');
const scale = Number(arg('scale', '1'));
const runs = Number(arg('runs', '3'));
const entries = Math.max(10, Math.round(20_000 * scale));
const totalBytes = Math.round(200e6 * scale);

function seconds(fn: () => void): number {
  const t = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

const sh = (cmd: string, args: string[], opts: { cwd?: string } = {}): string => execFileSync(cmd, args, { ...opts, maxBuffer: 1 << 30, encoding: 'utf8' });

/** A tree of `entries` files in directories of 100, sizes spread around the mean, as a tar. */
function makeLayerTar(base: string): string {
  const src = path.join(base, 'src');
  const mean = totalBytes / entries;
  let seed = 1;
  const random = (): number => ((seed = (seed * 48271) % 2147483647) / 2147483647);
  for (let i = 0; i < entries; i++) {
    const dir = path.join(src, `d${Math.floor(i / 100)}`);
    if (i % 100 === 0) fs.mkdirSync(dir, { recursive: true });
    const size = Math.floor(mean * 2 * random());
    fs.writeFileSync(path.join(dir, `f${i}`), Buffer.alloc(size, i % 251));
  }
  const tar = path.join(base, 'layer.tar');
  sh('tar', ['-C', src, '-cf', tar, '.']);
  fs.rmSync(src, { recursive: true, force: true });
  return tar;
}

function dropCaches(): void {
  sh('sync', []);
  fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
}

function main(): void {
  if (process.getuid?.() !== 0) throw new Error('bench-import needs root (overlay mount, dropping caches)');
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'snapfs-bench-import-'));
  const mounts: string[] = [];
  try {
    const tar = makeLayerTar(base);
    const size = fs.statSync(tar).size;
    const root = path.join(base, 'root');
    const importTimes: number[] = [];
    const untarTimes: number[] = [];
    for (let r = 0; r < runs; r++) {
      const target = path.join(base, `untar${r}`);
      fs.mkdirSync(target);
      untarTimes.push(seconds(() => sh('tar', ['-C', target, '-xf', tar])));
      importTimes.push(seconds(() => sh(process.execPath, [CLI, '--root', root, 'import', tar, `layer${r}`])));
    }

    // ls -lR: through browse, and through an overlay of the same layer directory.
    const own = path.join(root, 'snapshots', fs.readdirSync(path.join(root, 'snapshots')).sort((a, b) => Number(a) - Number(b))[0]!, 'fs');
    const browse = path.join(base, 'browse');
    const overlay = path.join(base, 'overlay');
    const empty = path.join(base, 'empty');
    for (const d of [browse, overlay, empty]) fs.mkdirSync(d);
    sh(process.execPath, [CLI, '--root', root, 'browse', browse]);
    mounts.push(browse);
    sh('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${own}:${empty}`, overlay]);
    mounts.push(overlay);
    const lsTimes = { browse: [] as number[], overlay: [] as number[] };
    for (let r = 0; r < runs; r++) {
      for (const [side, dir] of [['overlay', overlay], ['browse', path.join(browse, 'layer0')]] as const) {
        dropCaches();
        lsTimes[side].push(seconds(() => sh('ls', ['-lR', dir])));
      }
    }

    const rows: [string, number, number, string][] = [
      [`import of a ${(size / 1e6).toFixed(0)} MB, ${entries}-entry layer tar`, median(importTimes), median(untarTimes), 'tar -x'],
      [`ls -lR of it, cold`, median(lsTimes.browse), median(lsTimes.overlay), 'overlay'],
    ];
    console.log(`\nsnapfs import benchmark, scale ${scale}, median of ${runs} runs (${base})\n`);
    console.log(`${'workload'.padEnd(48)}${'snapfs s'.padStart(10)}${'reference s'.padStart(14)}  ratio`);
    for (const [name, ours, ref, what] of rows) console.log(`${name.padEnd(48)}${ours.toFixed(2).padStart(10)}${ref.toFixed(2).padStart(14)}  ${(ours / ref).toFixed(2)}× of ${what}`);
  } finally {
    for (const m of mounts.reverse()) execFileSync('umount', [m]);
    fs.rmSync(base, { recursive: true, force: true });
  }
}

main();
