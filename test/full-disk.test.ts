import assert from 'node:assert/strict';
import { type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tempDir } from './helpers';
import { run, serveStack, unmountAll } from './mount-helpers';

const isRoot = process.getuid?.() === 0;

/** Runs a shell script in `cwd`: its status, and what it printed on stderr. */
async function sh(script: string, cwd: string): Promise<{ code: number; stderr: string }> {
  return run('sh', ['-c', script], { cwd }).then(
    () => ({ code: 0, stderr: '' }),
    (err: { code: number; stderr: string }) => ({ code: err.code, stderr: err.stderr }),
  );
}

describe('a full disk under a writable mount', { skip: !isRoot && 'mounts a small tmpfs, which needs root' }, () => {
  let dir: string;
  let disk: string;
  let mnt: string;
  let server: ChildProcess | undefined;
  before(async () => {
    dir = tempDir('snapfs-full-');
    disk = path.join(dir, 'disk');
    mnt = path.join(dir, 'mnt');
    const lower = path.join(dir, 'lower');
    for (const d of [disk, mnt, lower]) fs.mkdirSync(d);
    // A lower file bigger than what the upper layer's disk has room for.
    fs.writeFileSync(path.join(lower, 'big'), Buffer.alloc(12 << 20, 1));
    fs.writeFileSync(path.join(lower, 'small'), 'small\n');
    await run('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', disk]);
    fs.mkdirSync(path.join(disk, 'upper'));
    fs.mkdirSync(path.join(disk, 'work'));
    server = await serveStack({ lowers: [lower], upper: path.join(disk, 'upper'), work: path.join(disk, 'work') }, mnt);
  });
  after(async () => {
    await unmountAll(mnt);
    server?.kill();
    await unmountAll(disk);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('writes, creates and copy-ups that run out of space fail with ENOSPC, not EIO, and leave no half-made copy', async () => {
    const write = await sh('dd if=/dev/zero of=new bs=1M count=16 status=none', mnt);
    assert.notEqual(write.code, 0);
    assert.match(write.stderr, /No space left on device/);
    // The disk is full now: copying the big lower file up cannot succeed.
    const copyUp = await sh('echo more >> big', mnt);
    assert.notEqual(copyUp.code, 0);
    assert.match(copyUp.stderr, /No space left on device/);
    assert.deepEqual(fs.readdirSync(path.join(disk, 'work')).filter((n) => n.startsWith('.copyup-')), [], 'no copy-up left half-made');
    assert.equal(fs.existsSync(path.join(disk, 'upper', 'big')), false);
    assert.equal((await run('sh', ['-c', 'wc -c < big'], { cwd: mnt })).stdout.trim(), String(12 << 20), 'the lower file still shows whole');
  });

  it('works again once space is freed', async () => {
    assert.equal((await sh('rm new && echo more >> small && mkdir d && echo x > d/f', mnt)).code, 0);
    assert.equal(fs.readFileSync(path.join(disk, 'upper', 'small'), 'utf8'), 'small\nmore\n');
  });
});
