import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { SnapfsError } from '../../src/errors';
import { Snapshotter } from '../../src/snapshotter/snapshotter';
import { CLI, idsAndDirs, ok, snapfs, tempDir } from '../support/helpers';

const WORKER = path.join(__dirname, '..', 'support', 'fixtures', 'worker.js');

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

describe('crash safety: imports', () => {
  /** A layer tar of many small files, so that an import takes long enough to be killed in the middle. */
  function makeTar(dir: string): string {
    const src = path.join(dir, 'src');
    for (let d = 0; d < 30; d++) {
      fs.mkdirSync(path.join(src, `d${d}`), { recursive: true });
      for (let f = 0; f < 100; f++) fs.writeFileSync(path.join(src, `d${d}`, `f${f}`), `${d}/${f}\n`.repeat(50));
    }
    const tar = path.join(dir, 'layer.tar');
    execFileSync('tar', ['-cf', tar, '-C', src, '.']);
    return tar;
  }

  /** After cleanup: no import's snapshot, directory or lock is left. */
  function checkNothingLeft(root: string, name: string): void {
    checkIntact(root);
    const s = new Snapshotter(root);
    try {
      assert.deepEqual(s.walk(['labels."snapfs.import"']).map((i) => i.name), [], 'no import snapshot left');
      const done = s.walk([`name==${name}`]).length === 1;
      assert.deepEqual(fs.readdirSync(path.join(root, 'held')), [], 'no lock left');
      if (done) s.remove(name);
    } finally {
      s.close();
    }
  }

  it('an import killed at each of its steps, or at random moments, leaves nothing once cleanup has run', async () => {
    const root = await makeRoot();
    const tar = makeTar(path.dirname(root));
    try {
      for (const point of ['prepare:inserted', 'prepare:dirs', 'import:unpacked', 'commit:updated', 'import:committed']) {
        const r = await snapfs(root, ['import', tar, 'layer', '--parent', 'base'], { env: { SNAPFS_FAULT: point } });
        assert.equal(r.code, 137, `killed at ${point} (${r.stderr})`);
        checkNothingLeft(root, 'layer');
      }
      let killedMidway = 0;
      for (let round = 0; round < 8; round++) {
        const child = spawn(process.execPath, [CLI, '--root', root, 'import', tar, 'layer', '--parent', 'base'], { stdio: 'ignore' });
        await new Promise((r) => setTimeout(r, 100 + ((round * 97) % 500)));
        child.kill('SIGKILL');
        const code = await new Promise((r) => child.on('close', (c) => r(c)));
        if (code === null) killedMidway++;
        checkNothingLeft(root, 'layer');
      }
      assert.ok(killedMidway >= 4, `most imports were killed before they ended (${killedMidway} of 8)`);
      await ok(root, ['import', tar, 'layer', '--parent', 'base']); // and the root works as before
    } finally {
      fs.rmSync(path.dirname(root), { recursive: true, force: true });
    }
  });

  it("cleanup never touches an import still running in another process, nor a snapshot that only looks like one", async () => {
    const root = await makeRoot();
    const tar = fs.readFileSync(makeTar(path.dirname(root)));
    let child: ChildProcess | undefined;
    try {
      // Named and labelled as an import's would be, as a gRPC client may: it holds no lock of ours.
      await ok(root, ['prepare', 'import-0123456789abcdef', 'base', '--label', 'snapfs.import=lookalike']);
      const proc = spawn(process.execPath, [CLI, '--root', root, 'import', '-', 'live', '--parent', 'base'], { stdio: ['pipe', 'ignore', 'pipe'] });
      child = proc;
      let stderr = '';
      proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((r) => proc.on('close', (c) => r(c)));
      proc.stdin.write(tar.subarray(0, 64 << 10)); // the import starts, and waits for the rest
      const importing = async (): Promise<unknown[]> => JSON.parse(await ok(root, ['ls', '--json', '--filter', 'labels."snapfs.import"==live'])) as unknown[];
      for (let i = 0; i < 100 && (await importing()).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal((await importing()).length, 1, 'the import has its snapshot');
      const s = new Snapshotter(root);
      try {
        assert.deepEqual(s.cleanup(), []);
        assert.equal(s.stat('import-0123456789abcdef').kind, 'active');
      } finally {
        s.close();
      }
      assert.equal((await importing()).length, 1, 'the running import keeps its snapshot');
      proc.stdin.end(tar.subarray(64 << 10));
      assert.equal(await exited, 0, stderr);
      assert.equal((await ok(root, ['info', 'live', '--json'])).includes('"committed"'), true);
      assert.deepEqual(fs.readdirSync(path.join(root, 'held')), [], 'the import let go of its lock');
    } finally {
      child?.kill('SIGKILL');
      fs.rmSync(path.dirname(root), { recursive: true, force: true });
    }
  });
});
