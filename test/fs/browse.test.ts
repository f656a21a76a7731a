import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { keyOfName, nameOfKey } from '../../src/browse/names';
import { sys } from '../../src/native/sys';
import { Snapshotter } from '../../src/snapshotter/snapshotter';
import { Daemons } from '../support/daemon-helpers';
import { layerDirOf, ok, snapfs, tempDir } from '../support/helpers';
import { run, unmountAll } from '../support/mount-helpers';

/** A shell command on the browse mount, from a child process (never this one: it must not block on a FUSE mount). */
async function sh(script: string): Promise<string> {
  return (await run('sh', ['-c', script])).stdout;
}

describe('browse: every snapshot as a directory of one read-only mount', () => {
  let dir: string;
  let root: string;
  let mnt: string;
  const KEY = 'default/12/sha256:0a1b';

  before(async () => {
    dir = tempDir('snapfs-browse-');
    root = path.join(dir, 'root');
    mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt);
    await ok(root, ['prepare', 'base-a']);
    const base = layerDirOf(root, 'base-a');
    fs.mkdirSync(path.join(base, 'etc'));
    fs.writeFileSync(path.join(base, 'etc', 'passwd'), 'snapshot passwd\n');
    fs.writeFileSync(path.join(base, 'gone'), 'deleted above\n');
    fs.symlinkSync('/', path.join(base, 'escape'));
    fs.symlinkSync('../../../..', path.join(base, 'up'));
    fs.symlinkSync('etc/passwd', path.join(base, 'relative'));
    // Relative links that only climb out through other links.
    fs.mkdirSync(path.join(base, 'd'));
    fs.symlinkSync('..', path.join(base, 'd', 's'));
    fs.symlinkSync('d/s/..', path.join(base, 't'));
    fs.symlinkSync('t/..', path.join(base, 'u'));
    await ok(root, ['commit', KEY, 'base-a']);
    await ok(root, ['prepare', '.hidden key%', KEY]);
    const top = layerDirOf(root, '.hidden key%');
    sys.mknod(path.join(top, 'gone'), fs.constants.S_IFCHR, 0, 0);
    fs.writeFileSync(path.join(top, 'new'), 'new\n');
    await ok(root, ['browse', mnt]);
  });
  after(async () => {
    await unmountAll(mnt);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('keys are names one can type, and each name stands for one key', () => {
    assert.equal(nameOfKey(KEY), 'default%2F12%2Fsha256:0a1b');
    assert.equal(nameOfKey('.hidden key%'), '%2Ehidden%20key%25');
    assert.equal(nameOfKey('..'), '%2E.');
    assert.equal(nameOfKey('é\n'), '%C3%A9%0A');
    for (const key of [KEY, '.hidden key%', '..', 'é\n', 'a@b=c,d+e~f']) assert.equal(keyOfName(nameOfKey(key)), key);
    for (const alias of ['%2f', 'a%41', '.x', 'a%', 'a%4', '%ZZ']) assert.equal(keyOfName(alias), undefined, alias);
  });

  test('each snapshot shows its merged tree; .layers shows its own layer, deletions included', async () => {
    assert.equal(await sh(`ls -A ${mnt}`), '%2Ehidden%20key%25\n.layers\ndefault%2F12%2Fsha256:0a1b\n');
    assert.equal(await sh(`cd ${mnt}/%2Ehidden%20key%25 && ls && cat new etc/passwd`), 'd\nescape\netc\nnew\nrelative\nt\nu\nup\nnew\nsnapshot passwd\n');
    assert.equal(await sh(`cat ${mnt}/default%2F12%2Fsha256:0a1b/gone`), 'deleted above\n');
    assert.equal(await sh(`ls ${mnt}/.layers`), '%2Ehidden%20key%25\ndefault%2F12%2Fsha256:0a1b\n');
    assert.match(await sh(`ls -l ${mnt}/.layers/%2Ehidden%20key%25`), /\nc[-rwx]{9} 1 root root 0, 0 .* gone\n/);
    await assert.rejects(sh(`echo x > ${mnt}/%2Ehidden%20key%25/new`), /Read-only file system/);
    await assert.rejects(sh(`ls ${mnt}/no-such-key`), /No such file or directory/);
  });

  test('symlinks lead nowhere outside their snapshot', async () => {
    const snap = `${mnt}/%2Ehidden%20key%25`;
    assert.equal(await sh(`readlink ${snap}/escape ${snap}/up ${snap}/relative`), `${snap}\n${snap}\netc/passwd\n`);
    assert.equal(await sh(`cat ${snap}/escape/etc/passwd ${snap}/up/etc/passwd ${snap}/relative`), 'snapshot passwd\n'.repeat(3));
    assert.equal(await sh(`readlink ${snap}/d/s ${snap}/t ${snap}/u`), `${snap}\n${snap}\n${snap}\n`);
    // The kernel takes `..` after a followed link physically: out of the snapshot's directory, but
    // never out of the mount (here: to the mount's root, where no snapshot is called etc).
    for (const p of ['u/../etc/passwd', 't/../../etc/passwd', 'd/s/../../etc/passwd']) {
      await assert.rejects(sh(`cat ${snap}/${p}`), /No such file or directory/, p);
    }
    assert.match(await sh(`ls -l ${snap}/escape`), new RegExp(` ${snap.length} .*/escape -> ${snap.replace(/[%.]/g, '\\$&')}\n$`));
  });

  test('snapshots made or removed while mounted come and go', async () => {
    await ok(root, ['view', 'later', KEY]);
    const deadline = Date.now() + 10_000;
    while (!(await sh(`ls ${mnt}`)).includes('later\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    assert.equal(await sh(`cat ${mnt}/later/etc/passwd`), 'snapshot passwd\n');
    await ok(root, ['rm', 'later']);
    while ((await sh(`ls ${mnt}`)).includes('later\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    assert.ok(!(await sh(`ls ${mnt}`)).includes('later\n'));
    const inside = await snapfs(root, ['browse', path.join(root, 'snapshots')]);
    assert.equal(inside.code, 2);
    assert.match(inside.stderr, /inside the root .*, or holding it: browse elsewhere\n$/);
    const holding = await snapfs(root, ['browse', dir]);
    assert.equal(holding.code, 2);
    const busy = await snapfs(root, ['browse', mnt]);
    assert.equal(busy.code, 7);
    assert.match(busy.stderr, /mountpoint busy/);
  });
});

describe('browse: a listing of the snapshots costs no snapshot its view', { skip: process.getuid?.() !== 0 && 'mounts as root' }, () => {
  const CHAIN = 12;
  let dir: string;
  let root: string;
  let mnt: string;
  let daemons: Daemons;
  before(async () => {
    dir = tempDir('snapfs-browse-plain-');
    root = path.join(dir, 'root');
    mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt);
    // A chain of committed snapshots: the view of the nth opens n layers.
    const s = new Snapshotter(root);
    try {
      for (let i = 0; i < CHAIN; i++) {
        s.prepare(`work-${i}`, i === 0 ? '' : `layer-${i - 1}`);
        await s.commit(`layer-${i}`, `work-${i}`);
      }
    } finally {
      s.close();
    }
    daemons = new Daemons(dir, 'browse');
    await daemons.cli(root, ['browse', mnt]);
  });
  after(async () => {
    await unmountAll(mnt);
    daemons.killAll();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('ls of the root and of .layers opens no layer; ls -l of the root does', async () => {
    const [pid] = daemons.started();
    const descriptors = (): number => fs.readdirSync(`/proc/${pid}/fd`).length;
    const before = descriptors();
    const names = (await sh(`ls -f ${mnt} ${mnt}/.layers`)).split('\n').filter((n) => n.startsWith('layer-'));
    assert.equal(names.length, 2 * CHAIN);
    assert.ok(descriptors() - before < CHAIN, `${descriptors() - before} descriptors opened by listing the names`);
    await sh(`ls -l ${mnt} > /dev/null`);
    // Each view keeps its layers open: the chain's views hold 1 + 2 + … + CHAIN of them.
    assert.ok(descriptors() - before >= (CHAIN * (CHAIN + 1)) / 2, 'the views were made once asked for');
  });
});
