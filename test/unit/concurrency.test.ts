import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Snapshotter } from '../../src/snapshotter/snapshotter';
import { idsAndDirs, ok, tempDir } from '../support/helpers';

const WORKER = path.join(__dirname, '..', 'support', 'fixtures', 'worker.js');

interface Summary {
  expected: Record<string, string>;
  won: string[];
  unexpected: string[];
}

function runWorker(root: string, id: number, ops: number, seed: number): Promise<Summary> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WORKER, root, String(id), String(ops), String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as Summary) : reject(new Error(`worker ${id}: exit ${code}: ${err}`))));
  });
}

describe('several processes on one root', () => {
  let root: string;
  before(async () => {
    root = path.join(tempDir(), 'root');
    await ok(root, ['prepare', 'sb']);
    await ok(root, ['commit', 'shared-base', 'sb']);
    await ok(root, ['prepare', 'pin', 'shared-base']);
  });
  after(() => fs.rmSync(path.dirname(root), { recursive: true, force: true }));

  it('4 processes × 200 operations: nothing lost, duplicated or half-made, never "database is locked"', async () => {
    const summaries = await Promise.all([1, 2, 3, 4].map((id) => runWorker(root, id, 200, 1000 + id)));
    assert.deepEqual(summaries.flatMap((s) => s.unexpected), []);

    const won = summaries.flatMap((s) => s.won);
    assert.equal(new Set(won).size, won.length, 'each contended key won by one process only');
    assert.ok(won.length > 0);

    const expected: Record<string, string> = { 'shared-base': 'committed', pin: 'active' };
    for (const s of summaries) Object.assign(expected, s.expected);
    for (const k of won) expected[k] = 'active';

    const s = new Snapshotter(root);
    try {
      const actual = Object.fromEntries(s.walk().map((i) => [i.name, i.kind]));
      assert.deepEqual(actual, expected);
      // Every layer a worker wrote to still holds the marker it wrote.
      for (const [key, kind] of Object.entries(expected)) {
        if (kind !== 'active' || !key.startsWith('w')) continue;
        const m = s.mounts(key)[0]!;
        const upper = m.options.find((o) => o.startsWith('upperdir='))?.slice(9) ?? m.source;
        assert.equal(fs.readFileSync(path.join(upper, 'marker'), 'utf8'), key);
      }
      for (const info of s.walk(['kind==committed,name~=^w'])) {
        s.view('probe', info.name);
        const m = s.mounts('probe')[0]!;
        const layer = m.type === 'bind' ? m.source : m.options[0]!.slice('lowerdir='.length).split(':')[0]!;
        assert.match(fs.readFileSync(path.join(layer, 'marker'), 'utf8'), new RegExp(`^${info.name.split('-')[0]}-a`));
        s.remove('probe');
      }
      assert.deepEqual(s.cleanup(), [], 'no leftovers without a crash');
    } finally {
      s.close();
    }
    const { ids, dirs } = idsAndDirs(root);
    assert.deepEqual(dirs, ids.map(String).sort(), 'one directory per snapshot');
    for (const id of ids) {
      assert.ok(fs.statSync(path.join(root, 'snapshots', String(id), 'fs')).isDirectory());
      assert.ok(fs.statSync(path.join(root, 'snapshots', String(id), 'work')).isDirectory());
    }
  });
});
