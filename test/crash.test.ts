import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { SnapfsError } from '../src/errors';
import { Snapshotter } from '../src/snapshotter/snapshotter';
import { idsAndDirs, ok, snapfs, tempDir } from './helpers';

const WORKER = path.join(__dirname, 'fixtures', 'worker.js');

/** A root with a committed chain whose layers carry marker files. */
async function makeRoot(): Promise<string> {
  const root = path.join(tempDir(), 'root');
  await ok(root, ['prepare', 'base-a']);
  fs.writeFileSync(path.join(root, 'snapshots', '1', 'fs', 'marker'), 'base');
  await ok(root, ['commit', 'base', 'base-a']);
  await ok(root, ['prepare', 'work', 'base']);
  fs.writeFileSync(path.join(root, 'snapshots', '2', 'fs', 'marker'), 'work');
  await ok(root, ['prepare', 'leaf', 'base']);
  return root;
}

const gone = (s: Snapshotter, key: string): void =>
  assert.throws(() => s.stat(key), (err: unknown) => err instanceof SnapfsError && err.kind === 'NotFound');

/** The root opens; every snapshot has its directories; cleanup leaves exactly one directory per snapshot. */
function checkIntact(root: string): string[] {
  const s = new Snapshotter(root);
  try {
    assert.equal(s.stat('base').kind, 'committed');
    assert.equal(fs.readFileSync(path.join(root, 'snapshots', '1', 'fs', 'marker'), 'utf8'), 'base');
    const removed = s.cleanup();
    const { ids, dirs } = idsAndDirs(root);
    assert.deepEqual(dirs, ids.map(String).sort());
    for (const info of s.walk()) {
      if (info.kind === 'committed') continue;
      for (const m of s.mounts(info.name)) {
        const dirs = m.type === 'bind' ? [m.source] : m.options.flatMap((o) => (o.includes('=') ? o.slice(o.indexOf('=') + 1).split(':') : []));
        for (const d of dirs) assert.ok(fs.statSync(d).isDirectory(), `${info.name}: ${d}`);
      }
    }
    return removed;
  } finally {
    s.close();
  }
}

describe('crash safety: SIGKILL at every step', () => {
  const cases: { point: string; args: string[]; after: (s: Snapshotter) => void; leftovers: number }[] = [
    { point: 'prepare:inserted', args: ['prepare', 'new', 'base'], after: (s) => gone(s, 'new'), leftovers: 0 },
    { point: 'prepare:dirs', args: ['prepare', 'new', 'base'], after: (s) => gone(s, 'new'), leftovers: 1 },
    { point: 'view:inserted', args: ['view', 'new', 'base'], after: (s) => gone(s, 'new'), leftovers: 0 },
    { point: 'view:dirs', args: ['view', 'new', 'base'], after: (s) => gone(s, 'new'), leftovers: 1 },
    { point: 'commit:measured', args: ['commit', 'done', 'work'], after: (s) => assert.equal(s.stat('work').kind, 'active'), leftovers: 0 },
    { point: 'commit:updated', args: ['commit', 'done', 'work'], after: (s) => assert.equal(s.stat('work').kind, 'active'), leftovers: 0 },
    { point: 'commit:done', args: ['commit', 'done', 'work'], after: (s) => assert.equal(s.stat('done').kind, 'committed'), leftovers: 0 },
    { point: 'remove:deleted', args: ['rm', 'leaf'], after: (s) => assert.equal(s.stat('leaf').kind, 'active'), leftovers: 0 },
    { point: 'remove:committed', args: ['rm', 'leaf'], after: (s) => gone(s, 'leaf'), leftovers: 1 },
  ];
  for (const c of cases) {
    it(`killed at ${c.point}`, async () => {
      const root = await makeRoot();
      try {
        const r = await snapfs(root, c.args, { env: { SNAPFS_FAULT: c.point } });
        assert.equal(r.code, 137, `the process was killed (${r.stderr})`);
        const s = new Snapshotter(root);
        try {
          c.after(s);
        } finally {
          s.close();
        }
        assert.equal(checkIntact(root).length, c.leftovers, 'cleanup removed the leftovers');
        // An operation that did not happen can simply be run again.
        if (c.point !== 'commit:done' && c.point !== 'remove:committed') {
          await ok(root, c.args);
          checkIntact(root);
        }
      } finally {
        fs.rmSync(path.dirname(root), { recursive: true, force: true });
      }
    });
  }

  it('an orphan directory from a killed prepare does not block the next one', async () => {
    const root = await makeRoot();
    try {
      assert.equal((await snapfs(root, ['prepare', 'x'], { env: { SNAPFS_FAULT: 'prepare:dirs' } })).code, 137);
      await ok(root, ['prepare', 'y']);
      assert.deepEqual(checkIntact(root), []);
    } finally {
      fs.rmSync(path.dirname(root), { recursive: true, force: true });
    }
  });

  it('killed at random moments while working', async () => {
    const root = await makeRoot();
    try {
      await ok(root, ['commit', 'shared-base', 'leaf']);
      let committedByWorkers = 0;
      for (let round = 0; round < 8; round++) {
        const child = spawn(process.execPath, [WORKER, root, String(round), '100000', String(round)], { stdio: 'ignore' });
        await new Promise((r) => setTimeout(r, 150 + ((round * 37) % 200)));
        child.kill('SIGKILL');
        await new Promise((r) => child.on('close', r));
        checkIntact(root);
        const s = new Snapshotter(root);
        try {
          // Every committed layer a worker made kept the marker it wrote before committing.
          const committed = s.walk(['kind==committed,name~=^w']);
          committedByWorkers = committed.length;
          for (const info of committed) {
            s.view(`check-${info.name}`, info.name);
            const m = s.mounts(`check-${info.name}`)[0]!;
            const top = m.type === 'bind' ? m.source : m.options[0]!.slice('lowerdir='.length).split(':')[0]!;
            const marker = fs.readFileSync(path.join(top, 'marker'), 'utf8');
            assert.equal(marker.split('-')[0], info.name.split('-')[0], `${info.name} holds its own worker's marker`);
            s.remove(`check-${info.name}`);
          }
        } finally {
          s.close();
        }
      }
      assert.ok(committedByWorkers > 10, `the workers got work done before being killed (${committedByWorkers} commits)`);
    } finally {
      fs.rmSync(path.dirname(root), { recursive: true, force: true });
    }
  });
});
