import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { chainIds } from '../../src/layertar/image';
import { buildBusyboxImage, startContainerd, type Containerd } from '../support/containerd-helpers';
import { startServer, type Server } from '../support/grpc-helpers';
import { snapfs, tempDir } from '../support/helpers';

const sh = promisify(execFile);

describe('a real containerd with snapfs as its proxy snapshotter', () => {
  let dir: string;
  let root: string;
  let server: Server;
  let containerd: Containerd;
  const mounted: string[] = [];

  before(async () => {
    dir = tempDir('snapfs-ctrd-');
    root = path.join(dir, 'snapfs');
    server = await startServer(root, path.join(dir, 'snapfs.sock'));
    containerd = await startContainerd(dir, path.join(dir, 'snapfs.sock'));
  });
  after(async () => {
    for (const mnt of mounted.reverse()) await sh('umount', [mnt]).catch(() => undefined);
    await containerd?.stop();
    await server?.stop();
    const left = fs.readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => l.includes(dir));
    for (const line of left) await sh('umount', ['-l', line.split(' ')[1]!]).catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(left, []);
  });

  const snapshots = (snapshotter: string, ...args: string[]): ReturnType<Containerd['ctr']> => containerd.ctr(['snapshots', '--snapshotter', snapshotter, ...args]);

  /** Runs the mount command `ctr snapshots mounts` prints for `key` on a fresh directory. */
  async function mountSnapshot(key: string, name: string): Promise<string> {
    const target = path.join(dir, name);
    fs.mkdirSync(target);
    const printed = await snapshots('snapfs', 'mounts', target, key);
    assert.equal(printed.code, 0, printed.stderr);
    assert.match(printed.stdout, /^mount -t \S+ \S+ \S+ -o \S+\n$/);
    await sh('sh', ['-c', printed.stdout]);
    mounted.push(target);
    return target;
  }
  async function unmount(target: string): Promise<void> {
    await sh('umount', [target]);
    mounted.splice(mounted.indexOf(target), 1);
  }

  test("ctr snapshots answers as with containerd's native snapshotter", async () => {
    const script: string[][] = [
      ['prepare', 'base'],
      ['commit', 'layer1', 'base'],
      ['prepare', 'work', 'layer1'],
      ['view', 'look', 'layer1'],
      ['label', 'layer1', 'color=blue'],
      ['label', 'layer1', 'size=big'],
      ['label', 'layer1', 'color='],
      ['ls'],
      ['tree'],
      ['info', 'layer1'],
      ['info', 'work'],
      ['info', 'look'],
      ['prepare', 'work', 'layer1'],
      ['commit', 'other', 'layer1'],
      ['commit', 'layer1', 'work'],
      ['rm', 'nope'],
      ['rm', 'layer1'],
      ['prepare', 'child', 'work'],
      ['info', 'nope'],
      ['mounts', '/mnt', 'nope'],
      ['commit', 'layer2', 'work'],
      ['tree'],
      ['rm', 'look'],
      ['rm', 'layer2'],
      ['rm', 'layer1'],
      ['ls'],
    ];
    // Times, containerd's internal ids, and the order of ctr's k=v label lists (a Go map's) vary.
    const normalize = (text: string): string =>
      text
        .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, 'TIME')
        .replace(/"test\/\d+\//g, '"test/N/')
        .replace(/ +\n/g, '\n')
        .replace(/^[^\s{}"]+=\S*$/gm, (labels) => labels.split(',').sort().join(','));
    const transcript = async (snapshotter: string): Promise<string[]> => {
      const lines: string[] = [];
      for (const args of script) {
        const r = await snapshots(snapshotter, ...args);
        lines.push(`$ ${args.join(' ')} → ${r.code}\n${normalize(r.stdout)}${normalize(r.stderr)}`);
      }
      return lines;
    };
    const native = await transcript('native');
    const ours = await transcript('snapfs');
    assert.deepEqual(ours, native);
    assert.ok(native.some((l) => /not found/.test(l)) && native.some((l) => /already exists/.test(l)));
  });

  test('what ctr snapshots mounts prints mounts; writes committed are read back through a view', async () => {
    assert.equal((await snapshots('snapfs', 'prepare', 'm-base')).code, 0);
    const base = await mountSnapshot('m-base', 'm-base');
    await sh('sh', ['-c', `echo one > ${base}/kept && echo two > ${base}/doomed && mkdir ${base}/dir && echo three > ${base}/dir/file`]);
    await unmount(base);
    assert.equal((await snapshots('snapfs', 'commit', 'm-layer1', 'm-base')).code, 0);

    assert.equal((await snapshots('snapfs', 'prepare', 'm-top', 'm-layer1')).code, 0);
    const top = await mountSnapshot('m-top', 'm-top');
    assert.match(fs.readFileSync('/proc/mounts', 'utf8'), new RegExp(`^snapfs ${top} fuse.snapfs `, 'm'));
    await sh('sh', ['-c', `echo new > ${top}/new && rm ${top}/doomed && echo changed >> ${top}/dir/file`]);
    await unmount(top);
    assert.equal((await snapshots('snapfs', 'commit', 'm-layer2', 'm-top')).code, 0);

    assert.equal((await snapshots('snapfs', 'view', 'm-view', 'm-layer2')).code, 0);
    const view = await mountSnapshot('m-view', 'm-view');
    try {
      const { stdout } = await sh('sh', ['-c', `cd ${view} && ls -A && cat kept new dir/file`]);
      assert.equal(stdout, 'dir\nkept\nnew\none\nnew\nthree\nchanged\n');
      await assert.rejects(sh('sh', ['-c', `echo x > ${view}/kept`]), /Read-only file system/);
    } finally {
      await unmount(view);
    }
    for (const key of ['m-view', 'm-layer2', 'm-layer1']) assert.equal((await snapshots('snapfs', 'rm', key)).code, 0);
  });

  test('an image is imported and unpacked onto snapfs, runs, and leaves nothing behind when removed', async () => {
    const name = 'snapfs.test/busybox:latest';
    const { tarball, diffIds } = buildBusyboxImage(dir, name);
    const imported = await containerd.ctr(['images', 'import', '--snapshotter', 'snapfs', tarball]);
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stdout, /unpacking snapfs\.test\/busybox:latest .*done/);
    // One committed snapshot per layer, named by chain ID, as containerd names them.
    const listed = await snapshots('snapfs', 'ls');
    for (const [i, chain] of chainIds(diffIds).entries()) {
      const parent = i === 0 ? '' : chainIds(diffIds)[i - 1]!;
      assert.match(listed.stdout, new RegExp(`^${chain}\\s+${parent}\\s*Committed`, 'm'), listed.stdout);
    }

    const ran = await containerd.run(['--rm', '--snapshotter', 'snapfs', name, 'snapfs-c1', '/bin/sh', '-c', 'echo hello from a container on snapfs; echo data > /written; cat /written /etc/motd; ls /bin'], 120_000);
    assert.equal(ran.code, 0, `${ran.stderr}\n${containerd.log().split('\n').slice(-20).join('\n')}`);
    assert.equal(ran.stdout.replace(/\r/g, ''), 'hello from a container on snapfs\ndata\nhello from the second layer\nbusybox\ncat\necho\nsh\n');

    assert.equal((await containerd.ctr(['images', 'rm', '--sync', name])).code, 0);
    // containerd removes the backend's snapshots in its garbage collection, after the call.
    const deadline = Date.now() + 30_000;
    let left = '';
    for (;;) {
      const r = await snapfs(root, ['ls', '--json']);
      left = r.stdout;
      if (JSON.parse(left).length === 0 || Date.now() > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.deepEqual(JSON.parse(left), []);
    assert.deepEqual(fs.readdirSync(path.join(root, 'snapshots')), []);
  });
});
