import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CLI, tempDir } from '../support/helpers';
import { run, unmountAll } from '../support/mount-helpers';

const MiB = 1 << 20;

/**
 * Run in a child: lstat a new name of directory argv[1] after another
 * until told to stop, then hand back when each began and ended (ms).
 * The kernel keeps names and attributes it was given, so only a name never
 * asked before reaches the daemon: each is one LOOKUP it answers.
 */
const STATTER = `
const fs = require('node:fs');
const now = () => performance.timeOrigin + performance.now();
const times = [];
let stop = false;
process.on('message', () => { stop = true; });
(async () => {
  for (let i = 0; !stop; i++) {
    const start = now();
    await fs.promises.lstat(process.argv[1] + '/none-' + i).catch(() => undefined);
    times.push(start, now());
    if (i === 0) process.send({ ready: true });
  }
  process.send({ times }, () => process.exit(0));
})();
`;

/** Run in a child: open file argv[1] for appending (a copy-up), and say when that began and ended (ms). */
const APPENDER = `
const fs = require('node:fs');
const now = () => performance.timeOrigin + performance.now();
fs.statSync(process.argv[1]);
const start = now();
fs.closeSync(fs.openSync(process.argv[1], 'a'));
process.stdout.write(JSON.stringify({ start, end: now() }));
`;

async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 4 * MiB })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** `size` bytes of data, written a MiB at a time: no holes. */
function writeDense(file: string, size: number): void {
  const chunk = Buffer.alloc(MiB);
  const fd = fs.openSync(file, 'w', 0o644);
  try {
    for (let at = 0; at < size; at += MiB) {
      // Every MiB its own: a copy that put one in the wrong place would show.
      chunk.fill(at / MiB);
      chunk.writeUInt32LE(at / MiB, 0);
      fs.writeSync(fd, chunk, 0, MiB, at);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * One mount daemon serves many mounts on one thread: a copy-up of a big
 * file in one must not stall the others. Two mounts of one daemon (its
 * own, in a runtime directory of this test): in A, a 1 GiB file is copied
 * up by an open for appending, while B is asked one lookup after another;
 * B must go on answering throughout.
 */
describe('copy-up off the thread: one mount copying a big file up does not stall another of the same daemon', { skip: !fs.existsSync('/dev/fuse') && 'needs /dev/fuse' }, () => {
  let dir: string;
  let runtime: string;
  let env: NodeJS.ProcessEnv;
  const a = { lower: '', upper: '', work: '', mnt: '' };
  const b = { lower: '', upper: '', work: '', mnt: '' };

  /** The pids of the daemons this test started (from their log). */
  const daemons = (): number[] => {
    const log = path.join(runtime, 'daemon.log');
    if (!fs.existsSync(log)) return [];
    return [...fs.readFileSync(log, 'utf8').matchAll(/serving on \S+ \(pid (\d+)\)/g)].map((m) => Number(m[1]));
  };

  before(async () => {
    dir = tempDir('snapfs-fairness-');
    runtime = path.join(dir, 'run');
    env = { ...process.env, SNAPFS_RUNTIME_DIR: runtime, SNAPFS_DAEMON_IDLE_SECONDS: '2' };
    for (const [name, m] of [['a', a], ['b', b]] as const) {
      for (const part of ['lower', 'upper', 'work', 'mnt'] as const) {
        m[part] = path.join(dir, name, part);
        fs.mkdirSync(m[part], { recursive: true });
      }
    }
    writeDense(path.join(a.lower, 'big'), 1024 * MiB);
    // 64 MiB with 3 MiB of data: holes before, between and after.
    const fd = fs.openSync(path.join(a.lower, 'sparse'), 'w', 0o600);
    for (const at of [1, 30, 60]) fs.writeSync(fd, Buffer.alloc(MiB, at), 0, MiB, at * MiB);
    fs.ftruncateSync(fd, 64 * MiB);
    fs.closeSync(fd);
    for (const m of [a, b]) await run(process.execPath, [CLI, '-o', `lowerdir=${m.lower},upperdir=${m.upper},workdir=${m.work}`, m.mnt], { env });
  });

  after(async () => {
    for (const m of [a, b]) if (m.mnt !== '') await unmountAll(m.mnt);
    for (const pid of daemons()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // exited once idle
      }
    }
    const left = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => (l.split(' ')[4] ?? '').startsWith(`${dir}/`));
    fs.rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(left, [], 'no mount left behind');
  });

  it('B answers all along while A copies a 1 GiB file up; the copy is whole', async (t) => {
    assert.equal(daemons().length, 1, 'one daemon serves both mounts');

    const statter = spawn(process.execPath, ['-e', STATTER, b.mnt], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const times = new Promise<number[]>((resolve, reject) => {
      statter.on('message', (m: { times?: number[] }) => m.times !== undefined && resolve(m.times));
      statter.once('exit', (code) => reject(new Error(`the lookups on B ended (${code})`)));
    });
    let copy: { start: number; end: number };
    try {
      await new Promise((resolve) => statter.once('message', resolve));
      copy = JSON.parse((await run(process.execPath, ['-e', APPENDER, path.join(a.mnt, 'big')], { env })).stdout) as { start: number; end: number };
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      statter.send('stop');
    }
    const all = await times;
    const copyMs = copy.end - copy.start;
    let during = 0;
    let longest = 0;
    for (let i = 0; i < all.length; i += 2) {
      const [start, end] = [all[i]!, all[i + 1]!];
      if (end >= copy.start && end <= copy.end) during++;
      if (end >= copy.start && start <= copy.end) longest = Math.max(longest, end - start);
    }
    t.diagnostic(`copy-up of 1 GiB: ${copyMs.toFixed(0)} ms; B answered ${during} lookups meanwhile, the longest in ${longest.toFixed(1)} ms`);
    if (copyMs < 100) return t.skip(`the copy-up took ${copyMs.toFixed(0)} ms: too quick to tell anything here (a file system that shares extents)`);
    // Structural, not a benchmark: copied on the thread, B answered nothing until the copy was done.
    assert.ok(during >= 10, `B answered ${during} lookups during the ${copyMs.toFixed(0)} ms copy-up`);
    assert.ok(longest < copyMs / 2, `B's longest lookup took ${longest.toFixed(0)} ms, of a ${copyMs.toFixed(0)} ms copy-up`);

    assert.equal(await sha256(path.join(a.upper, 'big')), await sha256(path.join(a.lower, 'big')), 'the copy is the lower file');
    assert.deepEqual(fs.readdirSync(a.work).filter((n) => n.startsWith('.copyup-')), [], 'nothing left in the work directory');
  });

  it('a sparse file keeps its holes, and reads the same through the mount', async () => {
    await run(process.execPath, ['-e', APPENDER, path.join(a.mnt, 'sparse')], { env });
    const lower = fs.statSync(path.join(a.lower, 'sparse'));
    const upper = fs.statSync(path.join(a.upper, 'sparse'));
    assert.equal(upper.size, 64 * MiB);
    assert.ok(upper.blocks <= lower.blocks + 64, `the holes stay holes: ${upper.blocks} blocks against ${lower.blocks}`);
    assert.equal(upper.mode & 0o7777, 0o600);
    const expected = await sha256(path.join(a.lower, 'sparse'));
    assert.equal(await sha256(path.join(a.upper, 'sparse')), expected);
    assert.equal((await run('sha256sum', [path.join(a.mnt, 'sparse')])).stdout.split(' ')[0], expected);
  });
});
