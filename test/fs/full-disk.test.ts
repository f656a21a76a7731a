import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it, test } from 'node:test';
import * as zlib from 'node:zlib';
import { ok, snapfs, tempDir } from '../support/helpers';
import { asNobody, nobodysDir, snapshotsOf } from '../support/layer-helpers';
import { run, serveStack, unmountAll } from '../support/mount-helpers';
import { rawTar } from '../support/raw-tar';

/** A `docker save` tarball of one layer. */
function dockerArchive(dir: string, layer: Buffer): string {
  const work = path.join(dir, 'docker');
  fs.mkdirSync(path.join(work, 'l0'), { recursive: true });
  fs.writeFileSync(path.join(work, 'l0', 'layer.tar'), layer);
  const diffId = `sha256:${createHash('sha256').update(layer).digest('hex')}`;
  fs.writeFileSync(path.join(work, 'config.json'), JSON.stringify({ rootfs: { type: 'layers', diff_ids: [diffId] } }));
  fs.writeFileSync(path.join(work, 'manifest.json'), JSON.stringify([{ Config: 'config.json', Layers: ['l0/layer.tar'] }]));
  const file = path.join(dir, 'docker.tar');
  execFileSync('tar', ['-C', work, '-cf', file, '.']);
  return file;
}

describe('a full disk during an import: no space left on device (exit 7), nothing left, and the root works again', () => {
  let dir: string;
  let small: string;
  let smallTmp: string;
  let root: string;
  let big: Buffer;

  before(async () => {
    dir = tempDir('snapfs-full-');
    fs.chmodSync(dir, 0o755); // for nobody
    small = path.join(dir, 'small');
    smallTmp = path.join(dir, 'small-tmp');
    fs.mkdirSync(small);
    fs.mkdirSync(smallTmp);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m,mode=0755', 'tmpfs', small]);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0777', 'tmpfs', smallTmp]);
    root = path.join(small, 'root');
    await ok(root, ['prepare', 'present']);
    // Larger than the disk: a file written as it arrives, and many small ones made whole.
    big = rawTar([{ name: 'big', data: Buffer.alloc(8 << 20, 1) }, ...Array.from({ length: 40 }, (_v, i) => ({ name: `small/${i}`, data: Buffer.alloc(200_000, 2) }))]);
    fs.writeFileSync(path.join(dir, 'big.tar'), big);
    fs.writeFileSync(path.join(dir, 'many.tar'), rawTar(Array.from({ length: 40 }, (_v, i) => ({ name: `small/${i}`, data: Buffer.alloc(200_000, 2) }))));
    fs.writeFileSync(path.join(dir, 'big.tar.gz'), zlib.gzipSync(big));
    fs.writeFileSync(path.join(dir, 'fits.tar'), rawTar([{ name: 'fits', data: 'a small file' }]));
    for (const f of fs.readdirSync(dir)) if (f.endsWith('.tar') || f.endsWith('.gz')) fs.chmodSync(path.join(dir, f), 0o644);
  });
  after(() => {
    for (const mnt of [small, smallTmp]) execFileSync('umount', [mnt]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('an import that fills the disk exits 7 saying so, leaves no snapshot and no directory, and the next import succeeds', async () => {
    for (const tar of ['big.tar', 'many.tar', 'big.tar.gz']) {
      const before = snapshotsOf(root);
      const r = await snapfs(root, ['import', path.join(dir, tar), 'big']);
      assert.equal(r.code, 7, `${tar}: ${r.stderr}`);
      assert.equal(r.stderr, 'snapfs: import big: no space left on device\n', tar);
      assert.equal(snapshotsOf(root), before, `${tar}: nothing left`);
    }
    await ok(root, ['import', path.join(dir, 'fits.tar'), 'fits']);
    assert.equal(await ok(root, ['cat', 'fits', 'fits']), 'a small file');
    await ok(root, ['rm', 'fits']);
  });

  test('an import without root that fills the disk says so too, and leaves nothing', async () => {
    const userRoot = path.join(nobodysDir(small, 'nobody'), 'root');
    assert.equal((await asNobody(userRoot, ['prepare', 'present'])).code, 0);
    const before = snapshotsOf(userRoot);
    const r = await asNobody(userRoot, ['import', path.join(dir, 'big.tar'), 'big']);
    assert.equal(r.code, 7, r.stderr);
    assert.equal(r.stderr, 'snapfs: import big: no space left on device\n');
    assert.equal(snapshotsOf(userRoot), before);
    assert.equal((await asNobody(userRoot, ['import', path.join(dir, 'fits.tar'), 'fits'])).code, 0);
    fs.rmSync(path.dirname(userRoot), { recursive: true });
  });

  test('import-image with a full TMPDIR exits 7 saying so, and leaves no temporary directory', async () => {
    const archive = dockerArchive(path.join(dir, 'tmp-full'), rawTar([{ name: 'f', data: Buffer.alloc(2 << 20, 3) }]));
    const before = snapshotsOf(root);
    const r = await snapfs(root, ['import-image', archive], { env: { TMPDIR: smallTmp } });
    assert.equal(r.code, 7, r.stderr);
    assert.equal(r.stderr, `snapfs: image ${archive}: no space left on device\n`);
    assert.deepEqual(fs.readdirSync(smallTmp), []);
    assert.equal(snapshotsOf(root), before);
  });

  test('an image layer that fills the disk exits 7 naming the layer, and leaves nothing', async () => {
    const archive = dockerArchive(path.join(dir, 'layer-full'), big);
    const before = snapshotsOf(root);
    const r = await snapfs(root, ['import-image', archive], { env: { TMPDIR: dir } });
    assert.equal(r.code, 7, r.stderr);
    assert.equal(r.stderr, `snapfs: layer 1 of ${archive}: no space left on device\n`);
    assert.equal(snapshotsOf(root), before);
    assert.deepEqual(fs.readdirSync(dir).filter((n) => n.startsWith('snapfs-image-')), []);
  });
});

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
