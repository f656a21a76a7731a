/**
 * Metastore benchmark: 10,000 snapshots in 100 chains of 100.
 * Prints prepare+commit pairs/s, next to the file system work alone that any
 * snapshotter does per pair (three mkdirs, a usage walk) measured in the same
 * run; Stat latency; Walk-with-filter latency, and the same walk done by
 * reading every row (no index) as a ratio.
 *
 *   scripts/bench-metastore [--root DIR] [--chains N] [--depth N]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { matches } from '../src/filters/match';
import { parseFilters } from '../src/filters/parse';
import { Snapshotter, type Info } from '../src/snapshotter/snapshotter';
import { arg, millis, median, percentile } from './bench-util';


const chains = Number(arg('chains', '100'));
const depth = Number(arg('depth', '100'));
const base = arg('root', '');
const workDir = base === '' ? fs.mkdtempSync(path.join(os.tmpdir(), 'snapfs-bench-')) : base;
const root = path.join(workDir, 'root');




const fieldOf = (i: Info, p: readonly string[]): string | undefined =>
  p[0] === 'name' ? i.name : p[0] === 'kind' ? i.kind : p[0] === 'parent' ? i.parent : p[0] === 'labels' ? i.labels[p.slice(1).join('.')] : undefined;

async function main(): Promise<void> {
const s = new Snapshotter(root);
try {
  const total = chains * depth;
  const buildStart = process.hrtime.bigint();
  {
    for (let c = 0; c < chains; c++) {
      let parent = '';
      for (let d = 0; d < depth; d++) {
        const name = `sha256:${c.toString(16).padStart(4, '0')}${d.toString(16).padStart(60, '0')}`;
        const labels: Record<string, string> = {
          'containerd.io/snapshot.ref': name,
          chain: String(c),
          depth: String(d),
          ...(d === depth - 1 ? { top: 'yes' } : {}),
        };
        s.prepare(`extract-${name}`, parent);
        await s.commit(name, `extract-${name}`, labels);
        parent = name;
      }
    }
  }
  const build = Number(process.hrtime.bigint() - buildStart) / 1e6;
  const pairsPerSecond = (total / build) * 1000;
  const bare = path.join(workDir, 'bare');
  fs.mkdirSync(bare);
  const fsOnly = millis(() => {
    for (let i = 0; i < total; i++) {
      const dir = path.join(bare, String(i));
      fs.mkdirSync(dir, { mode: 0o700 });
      fs.mkdirSync(path.join(dir, 'fs'), { mode: 0o755 });
      fs.mkdirSync(path.join(dir, 'work'), { mode: 0o700 });
      fs.lstatSync(path.join(dir, 'fs'));
      fs.readdirSync(path.join(dir, 'fs'));
    }
  });
  const fsPairsPerSecond = (total / fsOnly) * 1000;

  const keys = s.walk(['kind==committed']).map((i) => i.name);
  const statTimes: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const key = keys[(i * 7919) % keys.length]!;
    statTimes.push(millis(() => s.stat(key)));
  }

  const filters: [string, string[]][] = [
    ['labels."top"==yes', ['labels."top"==yes']],
    ['labels.chain==7,kind==committed', ['labels.chain==7,kind==committed']],
    ['name==<one key>', [`name==${keys[1234 % keys.length]}`]],
  ];
  const rows: string[][] = [];
  let worstWalk = 0;
  for (const [label, f] of filters) {
    const filter = parseFilters(f);
    const indexed: number[] = [];
    const scanned: number[] = [];
    let a: string[] = [];
    let b: string[] = [];
    for (let r = 0; r < 15; r++) {
      indexed.push(millis(() => (a = s.walk(f).map((i) => i.name))));
      scanned.push(millis(() => (b = s.walk().filter((i) => matches(filter, (p) => fieldOf(i, p))).map((i) => i.name))));
    }
    if (a.join() !== b.join()) throw new Error(`walk ${label}: indexed and full scan differ`);
    worstWalk = Math.max(worstWalk, median(indexed));
    rows.push([label, String(a.length), median(indexed).toFixed(2), median(scanned).toFixed(2), `${(median(scanned) / median(indexed)).toFixed(1)}×`]);
  }

  const pad = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(34) : c.padStart(14))).join('');
  const verdict = (okay: boolean): string => (okay ? 'meets target' : 'MISSES target');
  console.log(`snapfs metastore benchmark: ${total} snapshots in ${chains} chains of ${depth} (root ${root})\n`);
  console.log(`prepare+commit   ${pairsPerSecond.toFixed(0).padStart(8)} pairs/s        target ≥ 1000   ${verdict(pairsPerSecond >= 1000)}`);
  console.log(`  directories alone ${fsPairsPerSecond.toFixed(0).padStart(6)} pairs/s        snapfs takes ${(fsPairsPerSecond / pairsPerSecond).toFixed(2)}× the time of its mkdirs`);
  console.log(`stat             ${median(statTimes).toFixed(3).padStart(8)} ms median   p99 ${percentile(statTimes, 0.99).toFixed(3)} ms   target < 1 ms   ${verdict(median(statTimes) < 1)}`);
  console.log(`walk (filtered)  ${worstWalk.toFixed(2).padStart(8)} ms worst median            target < 50 ms  ${verdict(worstWalk < 50)}\n`);
  console.log(pad(['walk filter', 'matches', 'indexed ms', 'full scan ms', 'scan/index']));
  for (const r of rows) console.log(pad(r));
} finally {
  s.close();
  if (base === '') fs.rmSync(workDir, { recursive: true, force: true });
}
}

void main();
