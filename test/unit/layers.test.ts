import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import * as tar from 'tar-stream';
import { sys } from '../../src/native/sys';
import { CLI, layerDirOf, ok, snapfs, tempDir } from '../support/helpers';

const isRoot = process.getuid?.() === 0;

const run = promisify(execFile);

/** A tar built entry by entry, for crafted layers. */
async function makeTar(entries: (tar.Headers & { body?: string })[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise((resolve) => pack.on('end', resolve));
  for (const { body, ...header } of entries) {
    await new Promise<void>((resolve, reject) => pack.entry({ mode: 0o644, mtime: new Date(1_600_000_000_000), ...header }, body ?? (header.type === undefined || header.type === 'file' ? '' : undefined), (err) => (err ? reject(err) : resolve())));
  }
  pack.finalize();
  await ended;
  return Buffer.concat(chunks);
}

/** Everything observable about a layer directory, whiteouts and attributes included. */
function describeLayer(dir: string): string[] {
  const inodes = new Map<string, string>();
  const out: string[] = [];
  const walk = (d: string, rel: string): void => {
    for (const name of fs.readdirSync(d).sort()) {
      const p = path.join(d, name);
      const at = `${rel}/${name}`;
      const st = fs.lstatSync(p);
      const attrs = sys
        .listxattr(p)
        .map(String)
        .filter((n) => !n.startsWith('security.'))
        .sort()
        .map((n) => `${n}=${String(sys.getxattr(p, n))}`)
        .join(',');
      const key = `${st.dev}:${st.ino}`;
      const linkedTo = st.isFile() && st.nlink > 1 ? inodes.get(key) : undefined;
      if (st.isFile() && st.nlink > 1 && linkedTo === undefined) inodes.set(key, at);
      const what = st.isFile() ? (linkedTo !== undefined ? `link to ${linkedTo}` : createHash('sha256').update(fs.readFileSync(p)).digest('hex').slice(0, 12)) : st.isSymbolicLink() ? `-> ${fs.readlinkSync(p)}` : st.isCharacterDevice() ? `char ${st.rdev}` : '';
      // Tar keeps whole seconds; a whiteout's own time means nothing.
      const time = st.isDirectory() || (st.isCharacterDevice() && st.rdev === 0) ? '' : Math.floor(st.mtimeMs / 1000);
      out.push(`${at} ${(st.mode & 0o170000).toString(8)} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid} ${time} ${what} [${attrs}]`);
      if (st.isDirectory()) walk(p, at);
    }
  };
  walk(dir, '');
  return out;
}

function snapshotDirs(root: string): string[] {
  return fs.readdirSync(path.join(root, 'snapshots')).sort();
}

describe('layers as OCI tars: diff and import', { skip: !isRoot && 'its layers hold device nodes and whiteouts as the kernel writes them, which need root to make' }, () => {
  let dir: string;
  let root: string;

  before(async () => {
    dir = tempDir('snapfs-layers-');
    root = path.join(dir, 'root');
    await ok(root, ['prepare', 'base-a']);
    const base = layerDirOf(root, 'base-a');
    fs.mkdirSync(path.join(base, 'etc'));
    fs.writeFileSync(path.join(base, 'etc', 'hostname'), 'snapfs\n');
    fs.mkdirSync(path.join(base, 'gone'));
    fs.writeFileSync(path.join(base, 'gone', 'file'), 'x');
    fs.mkdirSync(path.join(base, 'opq'));
    fs.writeFileSync(path.join(base, 'opq', 'old'), 'old');
    await ok(root, ['commit', 'base', 'base-a']);

    await ok(root, ['prepare', 'work', 'base']);
    const up = layerDirOf(root, 'work');
    fs.mkdirSync(path.join(up, 'private'), { mode: 0o700 });
    fs.writeFileSync(path.join(up, 'private', 'data'), Buffer.alloc(100_000, 7));
    fs.writeFileSync(path.join(up, 'empty'), '');
    fs.linkSync(path.join(up, 'private', 'data'), path.join(up, 'hardlink'));
    fs.symlinkSync('private/data', path.join(up, 'symlink'));
    sys.mknod(path.join(up, 'fifo'), fs.constants.S_IFIFO | 0o644, 0, 0);
    sys.mknod(path.join(up, 'null'), fs.constants.S_IFCHR | 0o666, 1, 3);
    fs.writeFileSync(path.join(up, 'setuid'), '#!/bin/sh\n', { mode: 0o755 });
    fs.chownSync(path.join(up, 'setuid'), 1000, 1000); // before chmod: chown clears set-id bits
    fs.chmodSync(path.join(up, 'setuid'), 0o4755);
    sys.setxattr(path.join(up, 'empty'), 'user.note', Buffer.from('hello'), 0);
    sys.mknod(path.join(up, 'gone'), fs.constants.S_IFCHR, 0, 0);
    fs.mkdirSync(path.join(up, 'opq'));
    sys.setxattr(path.join(up, 'opq'), 'trusted.overlay.opaque', Buffer.from('y'), 0);
    fs.writeFileSync(path.join(up, 'opq', 'new'), 'new');
    fs.mkdirSync(path.join(up, 'a'.repeat(80)));
    fs.writeFileSync(path.join(up, 'a'.repeat(80), 'b'.repeat(80)), 'long name');
    await ok(root, ['commit', 'layer', 'work']);
  });
  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("diff writes the layer as OCI says: .wh. entries, opaque markers, hard links, attributes", async () => {
    const file = path.join(dir, 'layer.tar');
    await ok(root, ['diff', 'layer', '-o', file]);
    const { stdout } = await run('tar', ['--xattrs', '--xattrs-include=*', '-tvvf', file]);
    const lines = stdout.split('\n');
    const line = (name: string): string => lines.find((l) => l.endsWith(` ${name}`) || l.includes(` ${name} `)) ?? assert.fail(`${name} not in:\n${stdout}`);
    assert.match(line('.wh.gone'), /^-rw-r--r-- +0\/0 +0 /);
    assert.match(line('opq/.wh..wh..opq'), /^-/);
    // The first name in path order carries the data; the others link to it.
    assert.match(line('hardlink'), /^-rw-r--r-- +0\/0 +100000 /);
    assert.match(line('private/data'), /^h.* private\/data link to hardlink$/);
    assert.match(line('fifo'), /^p/);
    assert.match(line('null'), /^c.* 1,3 /);
    assert.match(line('setuid'), /^-rwsr-xr-x +1000\/1000 /);
    assert.match(line(`${'a'.repeat(80)}/${'b'.repeat(80)}`), /^-/);
    assert.ok(lines.some((l) => /x: +5 user\.note/.test(l)), stdout);
    assert.ok(!stdout.includes('trusted.overlay'), 'overlay attributes stay private');
    // Directories come before what they hold; .wh. entries sit where the name was.
    const names = lines.map((l) => l.split(' ').pop()!).filter((n) => n !== '');
    assert.ok(names.indexOf('opq/') < names.indexOf('opq/.wh..wh..opq') && names.indexOf('opq/.wh..wh..opq') < names.indexOf('opq/new'));

    const gz = path.join(dir, 'layer.tar.gz');
    await ok(root, ['diff', 'layer', '--gzip', '-o', gz]);
    assert.deepEqual(zlib.gunzipSync(fs.readFileSync(gz)), fs.readFileSync(file));
    const size = fs.statSync(file).size;
    const taken = await snapfs(root, ['diff', 'layer', '-o', file]);
    assert.equal(taken.code, 4);
    assert.equal(taken.stderr, `snapfs: ${file}: already exists\n`);
    assert.equal(fs.statSync(file).size, size);
    const missing = await snapfs(root, ['diff', 'nope', '-o', path.join(dir, 'nope.tar')]);
    assert.equal(missing.code, 3);
    assert.equal(fs.existsSync(path.join(dir, 'nope.tar')), false);
  });

  test('import of a diff recreates the same layer; diff of the import gives the same tar entries', async () => {
    const file = path.join(dir, 'roundtrip.tar');
    await ok(root, ['diff', 'layer', '-o', file]);
    await ok(root, ['import', file, 'again', '--parent', 'base', '--label', 'origin=roundtrip']);
    assert.match(await ok(root, ['info', 'again']), /origin=roundtrip/);
    const original = describeLayer(layerDirOf(root, 'layer'));
    const imported = describeLayer(layerDirOf(root, 'again'));
    assert.deepEqual(imported, original);
    assert.equal(await ok(root, ['changes', 'again']), await ok(root, ['changes', 'layer']));
    const back = path.join(dir, 'back.tar');
    await ok(root, ['diff', 'again', '-o', back]);
    const list = async (f: string): Promise<string> => (await run('tar', ['--xattrs', '--xattrs-include=*', '-tvvf', f])).stdout;
    assert.equal(await list(back), await list(file));
    // From stdin, compressed.
    await run('sh', ['-c', `gzip -c ${file} | ${process.execPath} ${CLI} --root ${root} import - again-gz --parent base`]);
    assert.equal(await ok(root, ['changes', 'again-gz']), await ok(root, ['changes', 'layer']));
  });

  test('import reads what GNU tar writes, and turns .wh. entries into whiteouts', async () => {
    const src = path.join(dir, 'gnu');
    fs.mkdirSync(path.join(src, 'etc'), { recursive: true });
    fs.writeFileSync(path.join(src, 'etc', 'hostname'), 'changed\n');
    fs.writeFileSync(path.join(src, '.wh.gone'), '');
    fs.utimesSync(path.join(src, '.wh.gone'), 1_000_000_000, 1_000_000_000);
    fs.mkdirSync(path.join(src, 'opq'));
    fs.writeFileSync(path.join(src, 'opq', '.wh..wh..opq'), '');
    const file = path.join(dir, 'gnu.tar');
    await run('tar', ['-C', src, '-cf', file, '.']);
    await ok(root, ['import', file, 'gnu', '--parent', 'base']);
    assert.equal(await ok(root, ['changes', 'gnu']), 'C /etc\nC /etc/hostname\nD /gone\nC /opq\nD /opq/old\n');
    assert.equal(await ok(root, ['ls', 'gnu']), 'etc\nopq\n');
    assert.equal(await ok(root, ['cat', 'gnu', 'etc/hostname']), 'changed\n');
    const own = layerDirOf(root, 'gnu');
    const whiteout = fs.lstatSync(fs.existsSync(path.join(own, '.wh.gone')) ? path.join(own, '.wh.gone') : path.join(own, 'gone'));
    assert.equal(whiteout.mtimeMs, 1_000_000_000_000, "a whiteout keeps its entry's time");
  });

  test('entries that would land outside the layer are refused in one line, and nothing is left', async () => {
    const outside = path.join(dir, 'outside');
    fs.mkdirSync(outside);
    const cases: [string, (tar.Headers & { body?: string })[], RegExp][] = [
      ['dotdot', [{ name: '../../escaped', body: 'x' }], /^snapfs: entry "\.\.\/\.\.\/escaped": path leaves the layer\n$/],
      ['nested dotdot', [{ name: 'a/../../escaped', body: 'x' }], /^snapfs: entry "a\/\.\.\/\.\.\/escaped": path leaves the layer\n$/],
      [
        'through a symlink it made',
        [
          { name: 'link', type: 'symlink', linkname: outside },
          { name: 'link/file', body: 'x' },
        ],
        /^snapfs: entry "link\/file": path goes through a symlink \("link"\)\n$/,
      ],
      [
        'through a relative symlink',
        [
          { name: 'up', type: 'symlink', linkname: '../../../..' },
          { name: 'up/tmp/file', body: 'x' },
        ],
        /path goes through a symlink \("up"\)/,
      ],
      ['whiteout of the parent', [{ name: 'usr/', type: 'directory' }, { name: 'usr/.wh..', body: '' }], /^snapfs: entry "usr\/\.wh\.\.": a whiteout of "\." is no name\n$/],
      ['whiteout of the grandparent', [{ name: '.wh...', body: '' }], /^snapfs: entry "\.wh\.\.\.": a whiteout of "\.\." is no name\n$/],
      ['hard link out', [{ name: 'hl', type: 'link', linkname: '../../../etc/passwd' }], /^snapfs: hard link "hl" to "\.\.\/\.\.\/\.\.\/etc\/passwd": path leaves the layer\n$/],
      ['hard link to the host', [{ name: 'hl', type: 'link', linkname: '/etc/passwd' }], /^snapfs: entry "hl": "etc\/passwd" is not in the layer\n$/],
      [
        'hard link through a symlink',
        [
          { name: 'etc', type: 'symlink', linkname: '/etc' },
          { name: 'hl', type: 'link', linkname: 'etc/passwd' },
        ],
        /^snapfs: entry "hl": path goes through a symlink \("etc"\)\n$/,
      ],
    ];
    const before = { dirs: snapshotDirs(root), list: await ok(root, ['ls']) };
    for (const [what, entries, message] of cases) {
      const file = path.join(dir, `evil-${what.replace(/ /g, '-')}.tar`);
      fs.writeFileSync(file, await makeTar(entries));
      const r = await snapfs(root, ['import', file, `evil-${what.replace(/ /g, '-')}`, '--parent', 'base']);
      assert.equal(r.code, 2, `${what}: ${r.stderr}`);
      assert.match(r.stderr, message, what);
      assert.deepEqual(fs.readdirSync(outside), [], what);
      assert.deepEqual({ dirs: snapshotDirs(root), list: await ok(root, ['ls']) }, before, `${what}: nothing left`);
    }
    assert.equal(fs.existsSync(path.join(dir, 'escaped')), false);
    assert.equal(fs.existsSync('/escaped'), false);

    // Absolute names are taken as inside the layer.
    fs.writeFileSync(path.join(dir, 'abs.tar'), await makeTar([{ name: '/abs/file', body: 'inside' }]));
    await ok(root, ['import', path.join(dir, 'abs.tar'), 'abs']);
    assert.equal(await ok(root, ['cat', 'abs', 'abs/file']), 'inside');
    // A tar that is no tar changes nothing either.
    fs.writeFileSync(path.join(dir, 'junk.tar'), Buffer.alloc(4096, 0x41));
    const junk = await snapfs(root, ['import', path.join(dir, 'junk.tar'), 'junk']);
    assert.equal(junk.code, 2);
    assert.match(junk.stderr, /^snapfs: .*junk\.tar: not a layer tar \([^\n]+\)\n$/);
    const missing = await snapfs(root, ['import', path.join(dir, 'missing.tar'), 'missing']);
    assert.equal(missing.code, 3);
    assert.equal(missing.stderr, `snapfs: ${path.join(dir, 'missing.tar')}: no such file\n`);
    const name = await snapfs(root, ['import', path.join(dir, 'abs.tar'), 'abs']);
    assert.equal(name.code, 4);
    assert.equal(name.stderr, 'snapfs: snapshot "abs": already exists\n');
  });

  test('import and diff show entries and bytes on a terminal, and nothing on a pipe', async () => {
    const file = path.join(dir, 'many.tar');
    fs.writeFileSync(file, await makeTar(Array.from({ length: 3000 }, (_v, i) => ({ name: `m/${i}`, body: 'x'.repeat(100) }))));
    const onTerminal = (args: string): Promise<string> =>
      new Promise((resolve) => {
        const child = spawn('script', ['-qec', `${process.execPath} ${CLI} --root ${root} ${args}`, '/dev/null'], { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.on('close', () => resolve(out));
      });
    assert.match(await onTerminal(`import ${file} many`), /importing many: \d+ entries, [\d.]+ KiB/);
    assert.match(await onTerminal(`diff many -o ${path.join(dir, 'many-out.tar')}`), /packing many: \d+ entries, [\d.]+ KiB/);
    const piped = await snapfs(root, ['diff', 'many', '-o', path.join(dir, 'many-out2.tar')]);
    assert.equal(piped.stderr, '');
  });

  test('later entries replace earlier ones, however the writes overlap', async () => {
    const entries: (tar.Headers & { body?: string })[] = [];
    for (let i = 0; i < 100; i++) entries.push({ name: `many/f${i}`, body: `file ${i}` });
    entries.push(
      { name: 'a', body: 'first' },
      { name: 'a', body: 'second' },
      { name: 'b', body: 'linked' },
      { name: 'c', type: 'link', linkname: 'b' },
      { name: 'd', body: 'a file, then a directory' },
      { name: 'd/', type: 'directory' },
      { name: 'd/x', body: 'inside' },
      { name: 'e/', type: 'directory' },
      { name: 'e/x', body: 'gone with its directory' },
      { name: 'e', body: 'a directory, then a file' },
      { name: 'f', body: 'a file, then a symlink' },
      { name: 'f', type: 'symlink', linkname: 'b' },
      // A directory named again after another one was replaced.
      { name: 'g/', type: 'directory' },
      { name: 'h/', type: 'directory' },
      { name: 'h', body: 'a directory, then a file' },
      { name: 'g/', type: 'directory', mode: 0o700 },
      { name: 'g/y', body: 'in g' },
    );
    const file = path.join(dir, 'replacing.tar');
    fs.writeFileSync(file, await makeTar(entries));
    await ok(root, ['import', file, 'replacing']);
    const own = layerDirOf(root, 'replacing');
    assert.equal(fs.readFileSync(path.join(own, 'a'), 'utf8'), 'second');
    assert.equal(fs.statSync(path.join(own, 'b')).ino, fs.statSync(path.join(own, 'c')).ino);
    assert.equal(fs.readFileSync(path.join(own, 'c'), 'utf8'), 'linked');
    assert.equal(fs.readFileSync(path.join(own, 'd', 'x'), 'utf8'), 'inside');
    assert.equal(fs.readFileSync(path.join(own, 'e'), 'utf8'), 'a directory, then a file');
    assert.equal(fs.readlinkSync(path.join(own, 'f')), 'b');
    assert.equal(fs.readFileSync(path.join(own, 'g', 'y'), 'utf8'), 'in g');
    assert.equal(fs.statSync(path.join(own, 'g')).mode & 0o777, 0o700);
    assert.equal(fs.readdirSync(path.join(own, 'many')).length, 100);
    assert.equal(fs.readFileSync(path.join(own, 'many', 'f99'), 'utf8'), 'file 99');
  });

  test('without root, device nodes are left out, set-id bits dropped, and whiteouts written in the rootless form', async () => {
    const userDir = path.join(dir, 'user');
    fs.chmodSync(dir, 0o711); // mkdtemp's 0700 would keep the user out
    fs.mkdirSync(userDir);
    fs.chownSync(userDir, 65534, 65534);
    const file = path.join(userDir, 'layer.tar');
    fs.writeFileSync(
      file,
      await makeTar([
        { name: 'dev/', type: 'directory', mode: 0o755 },
        { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
        { name: 'suid', body: 'x', mode: 0o4755 },
        { name: '.wh.gone', body: '' },
        { name: 'opq/', type: 'directory', mode: 0o755 },
        { name: 'opq/.wh..wh..opq', body: '' },
        { name: 'opq/kept', body: 'k' },
        { name: 'private/', type: 'directory', mode: 0o550 },
        { name: 'private/.bashrc', body: 'read-only directory, written first', mode: 0o640 },
      ]),
    );
    const asUser = (...args: string[]): Promise<{ stdout: string }> =>
      run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, '--root', path.join(userDir, 'root'), ...args]);
    await asUser('prepare', 'base-a');
    await asUser('commit', 'base', 'base-a');
    await asUser('import', file, 'layer', '--parent', 'base');
    assert.equal((await asUser('ls', 'layer')).stdout, 'dev\nopq\nprivate\nsuid\n');
    assert.equal((await asUser('cat', 'layer', 'private/.bashrc')).stdout, 'read-only directory, written first');
    assert.match((await asUser('ls', 'layer', 'private/', '-l')).stdout, /^-rw-r----- /);
    assert.equal((await asUser('ls', 'layer', 'dev')).stdout, '');
    assert.match((await asUser('ls', 'layer', 'suid', '-l')).stdout, /^-rwxr-xr-x +1 +65534 +65534 /);
    assert.equal((await asUser('changes', 'layer')).stdout, 'A /dev\nD /gone\nA /opq\nA /opq/kept\nA /private\nA /private/.bashrc\nA /suid\n');
    const own = layerDirOf(path.join(userDir, 'root'), 'layer');
    assert.deepEqual(fs.readdirSync(own).sort(), ['.wh.gone', 'dev', 'opq', 'private', 'suid']);
    assert.equal(fs.statSync(path.join(own, 'private')).mode & 0o777, 0o550);
    assert.deepEqual(fs.readdirSync(path.join(own, 'opq')).sort(), ['.wh..wh..opq', 'kept']);
  });
});
