/**
 * gRPC benchmark (not a test): the same Snapshots client, in one run,
 * against
 *   - containerd's own native snapshotter, through containerd's API;
 *   - snapfs through containerd (its proxy plugin: what containerd users get);
 *   - snapfs serve directly (what the proxy plugin costs aside).
 * Prints Prepare+Commit pairs and Stat calls per second, and the time of a
 * List over COUNT snapshots (all of them, and filtered to one), with the
 * ratios of snapfs to native.
 *
 *   scripts/bench-grpc [--count N] [--pairs N] [--stats N]
 *
 * Needs root and Debian's containerd (scripts/setup --tests installs it).
 */
import * as grpc from '@grpc/grpc-js';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { snapshotsClientConstructor } from '../src/grpc/service';
import { startContainerd } from '../test/support/containerd-helpers';
import { startServer } from '../test/support/grpc-helpers';
import { arg, median } from './bench-util';

const count = Number(arg('count', '10000'));
const pairs = Number(arg('pairs', '500'));
const stats = Number(arg('stats', '2000'));

type Reply = Record<string, unknown>;

interface Target {
  readonly name: string;
  call(method: string, request: Reply): Promise<Reply>;
  list(filters: string[]): Promise<number>;
}

function target(name: string, address: string, snapshotter: string, namespace?: string): Target {
  const Client = snapshotsClientConstructor();
  const client = new Client(`unix:${address}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  const metadata = new grpc.Metadata();
  if (namespace !== undefined) metadata.set('containerd-namespace', namespace);
  return {
    name,
    call: (method, request) =>
      new Promise((resolve, reject) =>
        client[method]!({ snapshotter, ...request }, metadata, (err: grpc.ServiceError | null, reply: Reply) => (err === null ? resolve(reply) : reject(err))),
      ),
    list: (filters) =>
      new Promise((resolve, reject) => {
        let n = 0;
        const stream = client.List!({ snapshotter, filters }, metadata) as grpc.ClientReadableStream<{ info: unknown[] }>;
        stream.on('data', (m: { info: unknown[] }) => (n += m.info.length));
        stream.on('error', reject);
        stream.on('end', () => resolve(n));
      }),
  };
}

async function seconds(fn: () => Promise<void>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

/** Runs the workloads on one target; returns [pairs/s, stats/s, list ms, filtered list ms]. */
async function measure(t: Target, tag: string): Promise<number[]> {
  // gc.root keeps containerd's garbage collector off the snapshots made here.
  const labels = { 'containerd.io/gc.root': 'bench' };
  const pairTime = await seconds(async () => {
    let parent = '';
    for (let i = 0; i < pairs; i++) {
      await t.call('Prepare', { key: `${tag}-a${i}`, parent, labels });
      await t.call('Commit', { name: `${tag}-c${i}`, key: `${tag}-a${i}`, labels });
      parent = `${tag}-c${i}`;
    }
  });
  const statTime = await seconds(async () => {
    for (let i = 0; i < stats; i++) await t.call('Stat', { key: `${tag}-c${i % pairs}` });
  });
  process.stderr.write(`  ${t.name}: filling to ${count} snapshots…\n`);
  for (let i = pairs; i < count; i++) await t.call('View', { key: `${tag}-v${i}`, parent: `${tag}-c0`, labels: i === count - 1 ? { ...labels, needle: 'yes' } : labels });
  const lists: number[] = [];
  const filtered: number[] = [];
  for (let run = 0; run < 5; run++) {
    let n = 0;
    lists.push(await seconds(async () => void (n = await t.list([]))));
    if (n < count) throw new Error(`${t.name}: List returned ${n} of ${count}`);
    filtered.push(await seconds(async () => void (n = await t.list(['labels.needle==yes']))));
    if (n !== 1) throw new Error(`${t.name}: filtered List returned ${n}`);
  }
  return [pairs / pairTime, stats / statTime, median(lists) * 1000, median(filtered) * 1000];
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench-grpc needs root (it runs a private containerd)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'snapfs-bench-grpc-'));
  const socket = path.join(dir, 'snapfs.sock');
  const server = await startServer(path.join(dir, 'snapfs'), socket);
  const containerd = await startContainerd(dir, socket);
  try {
    const targets = [
      target('native (containerd)', containerd.address, 'native', 'bench'),
      target('snapfs (containerd)', containerd.address, 'snapfs', 'bench'),
      target('snapfs (direct)', socket, 'snapfs'),
    ];
    const results: number[][] = [];
    for (const [i, t] of targets.entries()) {
      process.stderr.write(`measuring ${t.name}\n`);
      results.push(await measure(t, `t${i}`));
    }
    const rows = [`Prepare+Commit pairs/s (${pairs}, one chain)`, `Stat calls/s (${stats})`, `List of ${count} snapshots, ms`, `List filtered to 1 of ${count}, ms`];
    const higherIsBetter = [true, true, false, false];
    console.log(`\nsnapfs gRPC benchmark, one client, calls in sequence (${dir})\n`);
    console.log(`${'workload'.padEnd(42)}${targets.map((t) => t.name.padStart(22)).join('')}   snapfs÷native (containerd / direct)`);
    rows.forEach((row, r) => {
      const [native, viaContainerd, direct] = results.map((x) => x[r]!);
      // Ratios read "how many times better than native": above 1 is better.
      const better = (x: number): string => `${(higherIsBetter[r] ? x / native! : native! / x).toFixed(2)}×`;
      console.log(`${row.padEnd(42)}${results.map((x) => x[r]!.toFixed(1).padStart(22)).join('')}   ${better(viaContainerd!)} / ${better(direct!)}`);
    });
    console.log('\nratios: above 1× means snapfs did better than the native snapshotter in the same run');
  } finally {
    await containerd.stop();
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
