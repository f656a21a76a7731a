import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sys } from '../../src/native/sys';
import { Daemons } from '../support/daemon-helpers';
import { CLI, ok, snapfs, tempDir } from '../support/helpers';
import { describeTree, run, serveStack, unmountAll } from '../support/mount-helpers';

const isRoot = process.getuid?.() === 0;

/** Layers in the kernel's overlayfs format: whiteouts as 0/0 devices, opaque dirs by xattr. */
function writeKernelFormatLayers(layers: string[]): void {
  const [top, mid, bottom] = layers as [string, string, string];
  const file = (p: string, content: string, mode = 0o644): void => {
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, content, { mode });
    fs.chmodSync(p, mode);
  };
  file(`${bottom}/etc/os-release`, 'bottom\n');
  file(`${bottom}/etc/passwd`, 'root:x:0:0\n');
  file(`${bottom}/bin/tool`, '#!/bin/sh\necho bottom\n', 0o755);
  file(`${bottom}/deleted/file`, 'gone');
  file(`${bottom}/opaque/hidden`, 'hidden below an opaque dir');
  file(`${bottom}/replaced-by-dir`, 'a file below');
  fs.mkdirSync(`${bottom}/replaced-by-file`);
  file(`${bottom}/replaced-by-file/inner`, 'x');
  file(`${bottom}/links/a`, 'linked');
  fs.linkSync(`${bottom}/links/a`, `${bottom}/links/b`);
  fs.symlinkSync('../etc/os-release', `${bottom}/links/sym`);
  file(`${bottom}/times`, 'ns');
  sys.utimens(`${bottom}/times`, 1_600_000_000, 123_456_789, 1_600_000_000, 987_654_321);
  file(`${bottom}/sparse`, '');
  fs.truncateSync(`${bottom}/sparse`, 10 << 20);
  file(`${bottom}/xattr`, 'attrs');
  sys.setxattr(`${bottom}/xattr`, 'user.color', Buffer.from('blue'), 0);
  fs.chownSync(`${bottom}/etc/passwd`, 1234, 5678);

  file(`${mid}/etc/os-release`, 'mid\n');
  file(`${mid}/etc/mid-only`, 'mid');
  sys.mknod(`${mid}/deleted`, fs.constants.S_IFCHR, 0, 0);
  fs.mkdirSync(`${mid}/opaque`, { recursive: true });
  sys.setxattr(`${mid}/opaque`, 'trusted.overlay.opaque', Buffer.from('y'), 0);
  file(`${mid}/opaque/visible`, 'in the opaque dir');
  fs.mkdirSync(`${mid}/replaced-by-dir`);
  file(`${mid}/replaced-by-dir/inner`, 'a dir above');
  file(`${mid}/replaced-by-file`, 'a file above');
  sys.mknod(`${mid}/fifo`, fs.constants.S_IFIFO | 0o640, 0, 0);

  file(`${top}/etc/os-release`, 'top\n');
  fs.mkdirSync(`${top}/bin`, { recursive: true });
  sys.mknod(`${top}/bin/tool`, fs.constants.S_IFCHR, 0, 0);
  file(`${top}/new/deep/file`, 'top only', 0o600);
  fs.chmodSync(`${top}/new`, 0o750);
}

describe('mounts of snapshots', { skip: !isRoot && 'compares with the kernel overlay, which needs root' }, () => {
  let dir: string;
  let root: string;
  let layers: string[];
  before(async () => {
    dir = tempDir('snapfs-mount-');
    root = path.join(dir, 'root');
    // A committed chain of three layers, written straight into the layer directories.
    let parent = '';
    layers = [];
    for (const name of ['bottom', 'mid', 'top']) {
      await ok(root, ['prepare', `${name}-a`, ...(parent === '' ? [] : [parent])]);
      const mounts = JSON.parse(await ok(root, ['mounts', '--json', `${name}-a`])) as { type: string; source: string; options: string[] }[];
      const upper = mounts[0]!.type === 'bind' ? mounts[0]!.source : mounts[0]!.options.find((o) => o.startsWith('upperdir='))!.slice(9);
      layers.unshift(upper);
      if (name === 'top') writeKernelFormatLayers(layers);
      await ok(root, ['commit', name, `${name}-a`]);
      parent = name;
    }
  });
  after(async () => {
    await unmountAll(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('shows the same tree as the kernel overlay of the same layers', async () => {
    const mine = path.join(dir, 'snapfs');
    const kernel = path.join(dir, 'kernel');
    fs.mkdirSync(mine);
    fs.mkdirSync(kernel);
    try {
      await ok(root, ['mount', 'top', mine]);
      await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${layers.join(':')}`, kernel]);
      const expected = await describeTree(kernel);
      assert.match(expected, /\.\/times f 644 0 0 2 1600000000\.9876543210 /, 'the reference shows nanosecond times');
      assert.equal(await describeTree(mine), expected);
      assert.deepEqual(sys.getxattr(path.join(mine, 'xattr'), 'user.color'), Buffer.from('blue'));
      assert.deepEqual(sys.listxattr(path.join(mine, 'opaque')).filter((n) => n.includes('overlay')), [], 'overlay attributes stay private');
      await assert.rejects(run('touch', [path.join(mine, 'new-file')]), /Read-only file system/);
      await assert.rejects(run('rm', [path.join(mine, 'etc', 'passwd')]), /Read-only file system/);
    } finally {
      await unmountAll(mine);
      await unmountAll(kernel);
    }
  });

  it('reads the rootless forms (.wh. files, .wh..wh..opq) as fuse-overlayfs does', async () => {
    const lower = path.join(dir, 'rootless-lower');
    const upper = path.join(dir, 'rootless-upper');
    fs.mkdirSync(path.join(lower, 'd'), { recursive: true });
    fs.writeFileSync(path.join(lower, 'd', 'gone'), 'x');
    fs.writeFileSync(path.join(lower, 'd', 'kept'), 'x');
    fs.mkdirSync(path.join(lower, 'o'));
    fs.writeFileSync(path.join(lower, 'o', 'hidden'), 'x');
    fs.mkdirSync(path.join(upper, 'd'), { recursive: true });
    fs.writeFileSync(path.join(upper, 'd', '.wh.gone'), '');
    fs.mkdirSync(path.join(upper, 'o'));
    fs.writeFileSync(path.join(upper, 'o', '.wh..wh..opq'), '');
    fs.writeFileSync(path.join(upper, 'o', 'new'), 'y');
    const mine = path.join(dir, 'rootless-snapfs');
    const theirs = path.join(dir, 'rootless-fuse-overlayfs');
    fs.mkdirSync(mine);
    fs.mkdirSync(theirs);
    const child = await serveStack({ lowers: [upper, lower] }, mine);
    try {
      await run('fuse-overlayfs', ['-o', `lowerdir=${upper}:${lower}`, theirs]);
      const listing = async (m: string): Promise<string> => (await run('find', ['.'], { cwd: m })).stdout.split('\n').sort().join('\n');
      assert.equal(await listing(mine), await listing(theirs));
      assert.deepEqual(fs.readdirSync(path.join(mine, 'd')), ['kept']);
      assert.deepEqual(fs.readdirSync(path.join(mine, 'o')), ['new']);
    } finally {
      await unmountAll(mine);
      await unmountAll(theirs);
      child.kill();
    }
  });

  it('mounts exactly what prepare and view print, through mount(8) and mount.fuse', { skip: !fs.existsSync('/usr/local/bin/snapfs') && 'scripts/setup installs /usr/local/bin/snapfs' }, async () => {
    const mnt = path.join(dir, 'helper');
    fs.mkdirSync(mnt);
    try {
      const line = (await ok(root, ['prepare', 'helper-rw', 'top', '--target', mnt])).trim();
      assert.match(line, /^mount -t fuse\.snapfs snapfs \S+ -o lowerdir=\S+,upperdir=\S+,workdir=\S+$/);
      // execFile waits for the helper's output pipes to close, as containerd does: the daemon must not hold them.
      await run('sh', ['-c', line], { timeout: 20_000 });
      assert.equal(fs.readFileSync(path.join(mnt, 'etc', 'os-release'), 'utf8'), 'top\n');
      await run('sh', ['-c', 'echo via-helper > helper.txt'], { cwd: mnt });
      await run('umount', [mnt]);
      const upper = /upperdir=([^,]+)/.exec(line)![1]!;
      assert.equal(fs.readFileSync(path.join(upper, 'helper.txt'), 'utf8'), 'via-helper\n');

      const viewLine = (await ok(root, ['view', 'helper-ro', 'top', '--target', mnt])).trim();
      assert.match(viewLine, /^mount -t fuse\.snapfs snapfs \S+ -o lowerdir=[^,]+,ro$/);
      await run('sh', ['-c', viewLine], { timeout: 20_000 });
      assert.equal(fs.readFileSync(path.join(mnt, 'etc', 'mid-only'), 'utf8'), 'mid');
      await assert.rejects(run('touch', [path.join(mnt, 'x')]), /Read-only file system/);
    } finally {
      await unmountAll(mnt);
    }
  });

  it("an id-mapped snapshot (containerd's labels) mounts as printed: the container's ids shown, the host's stored", { skip: !fs.existsSync('/usr/local/bin/snapfs') && 'scripts/setup installs /usr/local/bin/snapfs' }, async () => {
    const mnt = path.join(dir, 'mapped');
    fs.mkdirSync(mnt);
    try {
      const labels = ['--label', 'containerd.io/snapshot/uidmapping=0:100000:65536', '--label', 'containerd.io/snapshot/gidmapping=0:200000:65536'];
      const line = (await ok(root, ['prepare', 'mapped', 'top', ...labels, '--target', mnt])).trim();
      assert.match(line, /,uidmapping=0:100000:65536,gidmapping=0:200000:65536$/);
      await run('sh', ['-c', line], { timeout: 20_000 });
      const owner = (p: string): number[] => {
        const st = fs.statSync(p);
        return [st.uid, st.gid];
      };
      assert.deepEqual(owner(path.join(mnt, 'etc', 'passwd')), [65534, 65534], 'a host id outside the mapping shows as the overflow id');
      await run('sh', ['-c', 'echo mine > created && chown 7:8 etc/os-release'], { cwd: mnt });
      assert.deepEqual(owner(path.join(mnt, 'created')), [0, 0], "root in the container");
      const upper = /upperdir=([^,]+)/.exec(line)![1]!;
      assert.deepEqual(owner(path.join(upper, 'created')), [100_000, 200_000], 'stored as the host ids the container root maps to');
      assert.deepEqual(owner(path.join(upper, 'etc', 'os-release')), [100_007, 200_008]);
    } finally {
      await unmountAll(mnt);
    }
  });

  it('what another user creates through a mount by root is theirs', async () => {
    const mnt = path.join(dir, 'owners');
    fs.mkdirSync(mnt);
    fs.chmodSync(dir, 0o755);
    try {
      await ok(root, ['prepare', 'owners', 'top']);
      await ok(root, ['mount', 'owners', mnt]);
      await run('sh', ['-c', 'mkdir -m 1777 shared && mkdir -m 2777 grouped && chgrp 42 grouped'], { cwd: mnt });
      const asNobody = (script: string): Promise<unknown> =>
        run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sh', '-c', script]);
      await asNobody(`cd ${mnt}/shared && echo x > f && mkdir d && ln -s f s && mkfifo p`);
      await asNobody(`cd ${mnt}/grouped && echo x > f`);
      for (const name of ['f', 'd', 'p']) {
        const st = fs.statSync(path.join(mnt, 'shared', name));
        assert.deepEqual([st.uid, st.gid], [65534, 65534], name);
      }
      assert.equal(fs.lstatSync(path.join(mnt, 'shared', 's')).uid, 65534);
      const grouped = fs.statSync(path.join(mnt, 'grouped', 'f'));
      assert.deepEqual([grouped.uid, grouped.gid], [65534, 42], 'a set-group-ID directory gives its group');
    } finally {
      await unmountAll(mnt);
    }
  });

  it('commit freezes a mounted snapshot: writers get EROFS, the layer never changes again', async () => {
    const mnt = path.join(dir, 'freeze');
    fs.mkdirSync(mnt);
    try {
      const mounts = JSON.parse(await ok(root, ['prepare', '--json', 'busy', 'top'])) as { options: string[] }[];
      const upper = mounts[0]!.options.find((o) => o.startsWith('upperdir='))!.slice('upperdir='.length);
      await ok(root, ['mount', 'busy', mnt]);
      // A writer appending as fast as it can until a write fails.
      const loop = [
        'import errno, os, sys',
        'i = 0',
        'while True:',
        '    try:',
        "        fd = os.open('log', os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)",
        "        os.write(fd, b'line %d\\n' % i)",
        '        os.close(fd)',
        '    except OSError as e:',
        '        sys.exit(errno.errorcode[e.errno])',
        '    i += 1',
      ].join('\n');
      const writer = spawn('python3', ['-c', loop], { cwd: mnt, stdio: ['ignore', 'ignore', 'pipe'] });
      let writerErr = '';
      writer.stderr.on('data', (d: Buffer) => (writerErr += d.toString()));
      const writerDone = new Promise((r) => writer.once('exit', r));
      // And one writing through a file it opened before the commit.
      const streamer = spawn('python3', ['-c', [
        'import errno, os, sys',
        "fd = os.open('stream', os.O_WRONLY | os.O_CREAT, 0o644)",
        'while True:',
        '    try:',
        "        os.write(fd, b'x' * 4096)",
        '    except OSError as e:',
        '        try:',
        '            os.posix_fallocate(fd, 0, 1 << 30)',
        "            then = 'allocated'",
        '        except OSError as f:',
        '            then = errno.errorcode[f.errno]',
        "        sys.exit(errno.errorcode[e.errno] + ' then fallocate ' + then)",
      ].join('\n')], { cwd: mnt, stdio: ['ignore', 'ignore', 'pipe'] });
      let streamerErr = '';
      streamer.stderr.on('data', (d: Buffer) => (streamerErr += d.toString()));
      const streamerDone = new Promise((r) => streamer.once('exit', r));
      // And a page written through mmap, never synced by its writer.
      const mapper = spawn('python3', ['-c', [
        'import mmap, os, sys, time',
        "fd = os.open('mapped', os.O_RDWR | os.O_CREAT, 0o644)",
        'os.ftruncate(fd, 4096)',
        'm = mmap.mmap(fd, 4096)',
        "m[0:5] = b'mmap!'",
        "print('ready', flush=True)",
        'time.sleep(30)',
      ].join('\n')], { cwd: mnt, stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise((r) => mapper.stdout.once('data', r));
      await new Promise((r) => setTimeout(r, 300));
      await ok(root, ['commit', 'busy-done', 'busy']);
      mapper.kill();
      assert.equal(fs.readFileSync(path.join(upper, 'mapped')).subarray(0, 5).toString(), 'mmap!', 'pages written through mmap reached the layer');
      await writerDone;
      assert.equal(writerErr.trim(), 'EROFS');
      const stillWriting = await Promise.race([streamerDone.then(() => false), new Promise((r) => setTimeout(r, 5000, true))]);
      if (stillWriting === true) streamer.kill();
      assert.equal(streamerErr.trim(), 'EROFS then fallocate EROFS', 'a file open for writing before the commit is refused too, fallocate as well');
      const streamed = fs.statSync(path.join(upper, 'stream')).size;
      assert.ok(streamed > 0 && streamed % 4096 === 0, `only whole writes reached the layer (${streamed} bytes)`);
      const frozen = fs.readFileSync(path.join(upper, 'log'), 'utf8');
      assert.match(frozen, /^line 0\n(line \d+\n)+$/, 'every line that was written is whole');
      await assert.rejects(run('touch', [path.join(mnt, 'later')]), /Read-only file system/);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(fs.readFileSync(path.join(upper, 'log'), 'utf8'), frozen, 'the committed layer does not change');
      assert.equal(fs.statSync(path.join(upper, 'stream')).size, streamed, 'nor does the file written through');
      const usage = JSON.parse(await ok(root, ['usage', '--json', 'busy-done'])) as { size: number };
      const du = Number((await run('du', ['-s', '-B1', upper])).stdout.split('\t')[0]);
      assert.equal(usage.size, du, 'the usage measured at commit is the layer as it stays');
    } finally {
      await unmountAll(mnt);
    }
  });

  it('a committed layer reads as it is to the kernel overlay: a lower hard link written through the mount has the link count of its names alone, whiteouts lose their work link', async () => {
    const mnt = path.join(dir, 'linked');
    const kernel = path.join(dir, 'linked-kernel');
    fs.mkdirSync(mnt);
    fs.mkdirSync(kernel);
    try {
      const mounts = JSON.parse(await ok(root, ['prepare', '--json', 'linked', 'top'])) as { options: string[] }[];
      const option = (name: string): string => mounts[0]!.options.find((o) => o.startsWith(`${name}=`))!.slice(name.length + 1);
      const upper = option('upperdir');
      await ok(root, ['mount', 'linked', mnt]);
      await run('sh', ['-c', 'echo more >> links/a && cat links/a links/b && stat -c %h links/a links/b && rm links/sym'], { cwd: mnt });
      assert.equal(fs.statSync(path.join(upper, 'links', 'a')).nlink, 3, 'while active, the work directory holds a third link');
      assert.equal(fs.lstatSync(path.join(upper, 'links', 'sym')).ino, fs.lstatSync(path.join(option('workdir'), 'whiteout')).ino, 'a whiteout links the shared one');
      await ok(root, ['commit', 'linked-done', 'linked']);
      assert.deepEqual([fs.statSync(path.join(upper, 'links', 'a')).nlink, fs.statSync(path.join(upper, 'links', 'b')).nlink], [2, 2]);
      assert.equal((await run('find', [upper, '-type', 'f', '-links', '+2'])).stdout, '');
      assert.equal(fs.existsSync(path.join(option('workdir'), 'index')), false);
      assert.equal(fs.existsSync(path.join(option('workdir'), 'whiteout')), false);
      assert.equal(fs.lstatSync(path.join(upper, 'links', 'sym')).nlink, 1);
      const { stdout } = await run('sh', ['-c', 'cat links/a links/b && stat -c %h links/a links/b && ls links'], { cwd: mnt });
      assert.equal(stdout, 'linkedmore\nlinkedmore\n2\n2\na\nb\n', 'the frozen mount still reads both names, and no third');
      await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${[upper, ...layers].join(':')}`, kernel]);
      assert.equal((await run('sh', ['-c', 'cat links/a links/b && stat -c %h links/a links/b && ls links'], { cwd: kernel })).stdout, stdout, 'the kernel overlay reads the layer the same');
    } finally {
      await unmountAll(mnt);
      await unmountAll(kernel);
    }
  });

  it("takes fuse-overlayfs's command line, and refuses bad options in one line", async () => {
    const mnt = path.join(dir, 'cmdline');
    const upper = path.join(dir, 'cmdline-upper');
    const work = path.join(dir, 'cmdline-work');
    for (const d of [mnt, upper, work]) fs.mkdirSync(d);
    try {
      await run(process.execPath, [CLI, '-o', `lowerdir=${layers[0]}:${layers[1]}:${layers[2]},upperdir=${upper},workdir=${work}`, mnt], { timeout: 20_000 });
      assert.equal(fs.readFileSync(path.join(mnt, 'etc', 'os-release'), 'utf8'), 'top\n');
      fs.writeFileSync(path.join(mnt, 'written'), 'x');
      assert.equal(fs.readFileSync(path.join(upper, 'written'), 'utf8'), 'x');
      await run('umount', [mnt]);
      await run(process.execPath, [CLI, 'snapfs', mnt, '-o', `rw,nosuid,nodev,squash_to_root,lowerdir=${layers[2]}`], { timeout: 20_000 });
      assert.equal(fs.statSync(path.join(mnt, 'etc', 'passwd')).uid, 0, 'squash_to_root shows root as the owner');
      await assert.rejects(run('touch', [path.join(mnt, 'x')]), /Read-only file system/, 'no upperdir: read-only');
      await run('umount', [mnt]);
      // uidmapping/gidmapping: FROM (shown):TO (stored):COUNT.
      const mapped = path.join(dir, 'mapped-lower');
      fs.mkdirSync(mapped);
      fs.writeFileSync(path.join(mapped, 'theirs'), 'x');
      fs.chownSync(path.join(mapped, 'theirs'), 100_001, 200_003);
      fs.writeFileSync(path.join(mapped, 'unmapped'), 'x');
      fs.chownSync(path.join(mapped, 'unmapped'), 7, 7);
      fs.rmSync(upper, { recursive: true });
      fs.mkdirSync(upper);
      await run(process.execPath, [CLI, '-o', `lowerdir=${mapped},upperdir=${upper},workdir=${work},uidmapping=0:100000:1000,gidmapping=0:200000:1000`, mnt], { timeout: 20_000 });
      const owner = (name: string): number[] => {
        const st = fs.statSync(path.join(mnt, name));
        return [st.uid, st.gid];
      };
      assert.deepEqual(owner('theirs'), [1, 3]);
      assert.deepEqual(owner('unmapped'), [65534, 65534], 'ids outside the mapping show as the overflow id');
      await run('touch', [path.join(mnt, 'created')]);
      assert.deepEqual(owner('created'), [0, 0]);
      const createdSt = fs.statSync(path.join(upper, 'created'));
      assert.deepEqual([createdSt.uid, createdSt.gid], [100_000, 200_000], 'what root creates is stored as the mapped root');
      await run('chown', ['5:6', path.join(mnt, 'theirs')]);
      assert.deepEqual(owner('theirs'), [5, 6]);
      const stored = fs.statSync(path.join(upper, 'theirs'));
      assert.deepEqual([stored.uid, stored.gid], [100_005, 200_006], 'stored as the mapped ids');
      await assert.rejects(run('chown', ['5000', path.join(mnt, 'theirs')]), /Invalid argument/, 'an id without a mapping');
      await run('umount', [mnt]);

      for (const [args, message] of [
        [['-o', `lowerdir=${layers[0]},uidmapping=0:1`, mnt], /^snapfs: -o uidmapping=0:1: expected FROM:TO:COUNT\[:FROM:TO:COUNT…\]\n$/],
        [['-o', `lowerdir=${layers[0]},bogus`, mnt], /^snapfs: -o bogus: unsupported option\n$/],
        [['-o', `upperdir=${upper}`, mnt], /^snapfs: -o lowerdir=DIR\[:DIR…\] is required\n$/],
        [['-o', `lowerdir=${layers[0]},upperdir=${upper}`, mnt], /^snapfs: -o upperdir= needs workdir= as well\n$/],
        [['-o', `lowerdir=${path.join(dir, 'missing')}`, mnt], /^snapfs: \S+missing: no such directory\n$/],
      ] as const) {
        const r = await run(process.execPath, [CLI, ...args]).then(() => ({ code: 0, stderr: '' }), (e: { code: number; stderr: string }) => e);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, message);
      }
    } finally {
      await unmountAll(mnt);
    }
  });

  it("takes fuse-overlayfs 1.10's options: honours squash_to_uid=, squash_to_gid=, static_nlink, volatile; takes harmless ones, named in the daemon's log; refuses redirect_dir=on and metacopy=on", async () => {
    const at = path.join(dir, 'options');
    const [mnt, upper, work] = ['mnt', 'upper', 'work'].map((n) => path.join(at, n)) as [string, string, string];
    for (const d of [mnt, upper, work]) fs.mkdirSync(d, { recursive: true });
    const d = new Daemons(at, 'options');
    try {
      // podman's form: an empty option, then volatile.
      await d.mountO(`lowerdir=${layers[2]},upperdir=${upper},workdir=${work},,volatile,squash_to_uid=1000,squash_to_gid=100,static_nlink,timeout=5,threaded=1,noacl`, mnt);
      const st = fs.statSync(path.join(mnt, 'etc'));
      assert.deepEqual([st.uid, st.gid, st.nlink], [1000, 100, 1]);
      const passwd = fs.statSync(path.join(mnt, 'etc', 'passwd'));
      assert.deepEqual([passwd.uid, passwd.gid], [1000, 100], 'every file shows the squashed owner');
      await run('python3', ['-c', "import os; fd = os.open('written', os.O_WRONLY | os.O_CREAT, 0o644); os.write(fd, b'x'); os.fsync(fd)"], { cwd: mnt });
      assert.equal(fs.readFileSync(path.join(upper, 'written'), 'utf8'), 'x', 'volatile: fsync answers, the data is written');
      assert.deepEqual([fs.statSync(path.join(upper, 'written')).uid], [0], 'the layer keeps the real owner');
      assert.match(d.log, new RegExp(`mounted ${mnt} \\(options taken, not applied: timeout=5,threaded=1,noacl\\)\n`));
      await run('umount', [mnt]);
      for (const [option, message] of [
        ['redirect_dir=on', /^snapfs: -o redirect_dir=on: not supported \(snapfs copies a renamed lower directory up and writes no redirects\)\n$/],
        ['metacopy=on', /^snapfs: -o metacopy=on: not supported \(snapfs copies data up whole and writes no metacopy files\)\n$/],
        ['squash_to_uid=root', /^snapfs: -o squash_to_uid=root: not a uid or gid\n$/],
        ['fsync=2', /^snapfs: -o fsync=2: fsync= takes 0 or 1\n$/],
      ] as const) {
        const r = await run(process.execPath, [CLI, '-o', `lowerdir=${layers[2]},${option}`, mnt], { env: d.env }).then(() => ({ code: 0, stderr: '' }), (e: { code: number; stderr: string }) => e);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, message);
      }
      assert.deepEqual(await d.mounted(), [], 'a refused mount mounts nothing');
    } finally {
      await unmountAll(mnt);
      d.killAll();
    }
  });

  it('ends with umount, fusermount -u or SIGTERM, and refuses bad mount points in one line', async () => {
    const mnt = path.join(dir, 'lifecycle');
    fs.mkdirSync(mnt);
    // Whatever serves the mount: the user's mount daemon, or a process of its own.
    const servers = async (): Promise<number> => {
      const listed = (JSON.parse(await ok(root, ['mounted', '--json'])) as { mountpoint: string }[]).filter((m) => m.mountpoint === mnt).length;
      const own = (await run('pgrep', ['-f', `__serve.*${mnt}`]).catch(() => ({ stdout: '' }))).stdout.trim().split('\n').filter(Boolean).length;
      return listed + own;
    };
    const gone = async (): Promise<void> => {
      for (let i = 0; i < 50 && (await servers()) > 0; i++) await new Promise((r) => setTimeout(r, 100));
      assert.equal(await servers(), 0, 'nothing serves the mount any more');
    };
    try {
      // Served by the user's mount daemon, then by a process of its own.
      for (const [stop, how] of [[['umount', mnt], []], [['fusermount', '-u', mnt], ['--dedicated']]] as const) {
        await ok(root, ['mount', ...how, 'mid', mnt]);
        assert.equal(await servers(), 1, `served (${how.join(' ') || 'by the daemon'})`);
        assert.equal(fs.readFileSync(path.join(mnt, 'etc', 'os-release'), 'utf8'), 'mid\n');
        const flags = fs.readFileSync('/proc/mounts', 'utf8').split('\n').find((l) => l.split(' ')[1] === mnt)!.split(' ')[3]!.split(',');
        assert.ok(!flags.includes('nosuid') && !flags.includes('nodev'), `a root file system needs suid and dev (${flags.join(',')})`);
        const busy = await snapfs(root, ['mount', 'mid', mnt]);
        assert.equal(busy.code, 7);
        assert.match(busy.stderr, /^snapfs: \S+: mountpoint busy/);
        await run(stop[0], stop.slice(1));
        await gone();
      }
      const fg = spawn(process.execPath, [CLI, '--root', root, 'mount', '-f', 'bottom', mnt], { stdio: 'ignore' });
      for (let i = 0; i < 50 && !fs.existsSync(path.join(mnt, 'etc')); i++) await new Promise((r) => setTimeout(r, 100));
      assert.ok(fs.existsSync(path.join(mnt, 'deleted', 'file')));
      fg.kill('SIGTERM');
      const code = await new Promise((r) => fg.once('exit', r));
      assert.equal(code, 0);
      assert.equal(fs.existsSync(path.join(mnt, 'etc')), false, 'unmounted on SIGTERM');

      const missing = await snapfs(root, ['mount', 'top', path.join(dir, 'nope')]);
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /^snapfs: \S+\/nope: no such directory\n$/);
      const notDir = await snapfs(root, ['mount', 'top', path.join(layers[0]!, 'etc', 'os-release')]);
      assert.match(notDir.stderr, /not a directory\n$/);
      // An active snapshot mounts read-write; what is written lands in its upper layer.
      const mounts = JSON.parse(await ok(root, ['prepare', '--json', 'rw', 'top'])) as { options: string[] }[];
      const upper = mounts[0]!.options.find((o) => o.startsWith('upperdir='))!.slice('upperdir='.length);
      await ok(root, ['mount', 'rw', mnt]);
      const second = path.join(dir, 'second');
      fs.mkdirSync(second);
      const twice = await snapfs(root, ['mount', 'rw', second]);
      assert.equal(twice.code, 7, 'one upper layer, one writer');
      assert.match(twice.stderr, /^snapfs: \S+: already mounted read-write by snapfs \(pid \d+\)\n$/);
      await run('sh', ['-c', 'echo written > written.txt && rm etc/passwd'], { cwd: mnt });
      await assert.rejects(run('touch', [path.join(mnt, '.wh.passwd')]), /Invalid argument/, '.wh. names belong to the layer format');
      await run('umount', [mnt]);
      await gone();
      assert.equal(fs.readFileSync(path.join(upper, 'written.txt'), 'utf8'), 'written\n');
      assert.ok(fs.lstatSync(path.join(upper, 'etc', 'passwd')).isCharacterDevice(), 'a whiteout hides the lower file');
    } finally {
      await unmountAll(mnt);
    }
  });
});
