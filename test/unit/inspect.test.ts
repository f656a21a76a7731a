import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sys } from '../../src/native/sys';
import { layerDirOf, ok, snapfs, tempDir } from '../support/helpers';

const isRoot = process.getuid?.() === 0;

describe('reading snapshots offline: ls, cat, changes', { skip: !isRoot && 'its layers hold whiteouts as device nodes and trusted.* markers, which need root to make' }, () => {
  let dir: string;
  let root: string;

  before(async () => {
    dir = tempDir('snapfs-inspect-');
    root = path.join(dir, 'root');
    // base: an image-like tree, with symlinks that point out of it every way they can.
    await ok(root, ['prepare', 'base-a']);
    const base = layerDirOf(root, 'base-a');
    fs.mkdirSync(path.join(base, 'etc'));
    fs.writeFileSync(path.join(base, 'etc', 'passwd'), 'snapshot passwd\n');
    fs.mkdirSync(path.join(base, 'dir'));
    fs.writeFileSync(path.join(base, 'dir', 'gone'), 'deleted above\n');
    fs.writeFileSync(path.join(base, 'dir', 'kept'), 'kept\n');
    fs.mkdirSync(path.join(base, 'opq'));
    fs.writeFileSync(path.join(base, 'opq', 'hidden'), 'hidden by an opaque dir\n');
    fs.writeFileSync(path.join(base, 'opq', 'again'), 'replaced\n');
    fs.symlinkSync('/', path.join(base, 'escape'));
    fs.symlinkSync('../../../../..', path.join(base, 'dir', 'up'));
    fs.symlinkSync('/etc/passwd', path.join(base, 'pw'));
    fs.symlinkSync('loop', path.join(base, 'loop'));
    fs.symlinkSync('/proc/self/environ', path.join(base, 'host-only'));
    fs.writeFileSync(path.join(base, 'suid'), '');
    fs.chmodSync(path.join(base, 'suid'), 0o4755);
    await ok(root, ['commit', 'base', 'base-a']);
    // top: a whiteout, an opaque directory, a new file, a changed one.
    await ok(root, ['prepare', 'top', 'base']);
    const top = layerDirOf(root, 'top');
    fs.mkdirSync(path.join(top, 'dir'));
    sys.mknod(path.join(top, 'dir', 'gone'), fs.constants.S_IFCHR, 0, 0);
    fs.mkdirSync(path.join(top, 'opq'));
    sys.setxattr(path.join(top, 'opq'), 'trusted.overlay.opaque', Buffer.from('y'), 0);
    fs.writeFileSync(path.join(top, 'opq', 'again'), 'new\n');
    fs.writeFileSync(path.join(top, 'new'), 'new file\n');
    fs.mkdirSync(path.join(top, 'etc'));
    fs.writeFileSync(path.join(top, 'etc', 'passwd'), 'changed passwd\n');
  });
  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('ls lists the merged tree: whiteouts and opaque directories as overlayfs shows them', async () => {
    assert.equal(await ok(root, ['ls', 'top']), 'dir\nescape\netc\nhost-only\nloop\nnew\nopq\npw\nsuid\n');
    assert.equal(await ok(root, ['ls', 'top', 'dir']), 'kept\nup\n');
    assert.equal(await ok(root, ['ls', 'top', '/opq']), 'again\n');
    assert.equal(await ok(root, ['ls', 'base', 'opq']), 'again\nhidden\n');
    const long = (await ok(root, ['ls', 'top', '-l'])).split('\n');
    assert.match(long.find((l) => l.endsWith(' escape -> /'))!, /^lrwxrwxrwx +1 +0 +0 +1 \d{4}-\d\d-\d\d \d\d:\d\d escape -> \/$/);
    assert.match(long.find((l) => l.endsWith(' suid'))!, /^-rwsr-xr-x /);
    assert.match(long.find((l) => l.endsWith(' dir'))!, /^drwxr-xr-x /);
    const json = JSON.parse(await ok(root, ['ls', 'top', 'new', '--json'])) as Record<string, unknown>[];
    assert.deepEqual(
      json.map(({ name, path: p, type, size }) => ({ name, path: p, type, size })),
      [{ name: 'new', path: '/new', type: 'file', size: 9 }],
    );
    // As ls(1): a symlink named with -l is shown itself; without, or with a trailing slash, followed.
    assert.match(await ok(root, ['ls', 'top', 'escape', '-l']), /^l.* escape -> \/\n$/);
    assert.equal((await ok(root, ['ls', 'top', 'escape/'])).split('\n')[0], 'dir');
  });

  test('symlinks resolve inside the snapshot, never to the host', async () => {
    for (const p of ['escape/etc/passwd', 'dir/up/etc/passwd', 'pw', 'dir/up/dir/up/pw', '/../../etc/passwd', 'escape/escape/dir/../pw']) {
      assert.equal(await ok(root, ['cat', 'top', p]), 'changed passwd\n', p);
    }
    assert.equal(await ok(root, ['cat', 'base', 'escape/etc/passwd']), 'snapshot passwd\n');
    const hostOnly = await snapfs(root, ['cat', 'top', 'host-only']);
    assert.equal(hostOnly.code, 3);
    assert.equal(hostOnly.stderr, 'snapfs: snapshot "top": "host-only": no such file or directory\n');
    const loop = await snapfs(root, ['cat', 'top', 'loop']);
    assert.equal(loop.code, 2);
    assert.equal(loop.stderr, 'snapfs: snapshot "top": "loop": too many levels of symbolic links\n');
    const listedLoop = await snapfs(root, ['ls', 'top', 'loop/']);
    assert.equal(listedLoop.code, 2);
  });

  test('cat refuses what is not a file, and what a whiteout hides', async () => {
    const gone = await snapfs(root, ['cat', 'top', 'dir/gone']);
    assert.equal(gone.code, 3);
    assert.equal(gone.stderr, 'snapfs: snapshot "top": "dir/gone": no such file or directory\n');
    assert.equal(await ok(root, ['cat', 'base', 'dir/gone']), 'deleted above\n');
    const hidden = await snapfs(root, ['cat', 'top', 'opq/hidden']);
    assert.equal(hidden.code, 3);
    const isDir = await snapfs(root, ['cat', 'top', 'dir']);
    assert.equal(isDir.code, 2);
    assert.equal(isDir.stderr, 'snapfs: snapshot "top": "dir": not a regular file\n');
    const notDir = await snapfs(root, ['cat', 'top', 'new/x']);
    assert.equal(notDir.code, 2);
    assert.match(notDir.stderr, /"new\/x": not a directory\n$/);
    const missing = await snapfs(root, ['cat', 'nope', 'x']);
    assert.equal(missing.code, 3);
    assert.equal(missing.stderr, 'snapfs: snapshot "nope": not found\n');
  });

  test("changes lists a layer's additions, changes and deletions, opaque directories included", async () => {
    assert.equal(await ok(root, ['changes', 'top']), ['C /dir', 'D /dir/gone', 'C /etc', 'C /etc/passwd', 'A /new', 'C /opq', 'C /opq/again', 'D /opq/hidden', ''].join('\n'));
    const base = (await ok(root, ['changes', 'base'])).split('\n');
    assert.ok(base.every((l) => l === '' || l.startsWith('A /')));
    assert.ok(base.includes('A /dir/up'));
    assert.deepEqual(JSON.parse(await ok(root, ['changes', 'top', '--json']))[1], { kind: 'D', path: '/dir/gone' });
    await ok(root, ['view', 'look', 'base']);
    assert.equal(await ok(root, ['changes', 'look']), '');
  });
});
