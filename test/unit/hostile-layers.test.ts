import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as zlib from 'node:zlib';
import { CLI, layerDirOf, ok, snapfs, tempDir, type CliResult } from '../support/helpers';
import { asNobody, makeSentinels, nobodysDir, snapshotsOf } from '../support/layer-helpers';
import { rawEntries, rawTar } from '../support/raw-tar';

const isRoot = process.getuid?.() === 0;

/** A base-256 size field (GNU's form for what octal cannot hold) of `value`. */
function base256(value: bigint): Buffer {
  const field = Buffer.alloc(12);
  for (let i = 11, v = value; i > 0; i--, v >>= 8n) field[i] = Number(v & 0xffn);
  field[0] = 0x80;
  return field;
}

/** A negative base-256 size field, as tar-stream reads one: 0xff, then the magnitude's bytes inverted. */
const MINUS_FIVE = Buffer.from([0xff, ...Array<number>(10).fill(0xff), 0xff - 5]);

/** `snapfs import - NAME` with `data` on its standard input. */
function importFromStdin(root: string, name: string, data: Buffer): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, '--root', root, 'import', '-', name], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout: '', stderr }));
    child.stdin.end(data);
  });
}

describe('hostile layers: every refusal settles, as InvalidArgument in one line naming the entry, and leaves nothing', { skip: !isRoot && 'imports run as another user too (setpriv), which needs root' }, () => {
  let dir: string;
  let root: string;
  let userRoot: string;
  let host: ReturnType<typeof makeSentinels>;

  before(async () => {
    dir = tempDir('snapfs-hostile-');
    fs.chmodSync(dir, 0o755); // for nobody
    root = path.join(dir, 'root');
    userRoot = path.join(nobodysDir(dir, 'nobody'), 'root');
    host = makeSentinels(path.join(dir, 'host'));
    await ok(root, ['prepare', 'base-a']);
    await ok(root, ['commit', 'base', 'base-a']);
    const made = await asNobody(userRoot, ['prepare', 'base-a']);
    assert.equal(made.code, 0, made.stderr);
  });
  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Imports `tar` as root and as nobody, plain and gzip: each is refused with `message`, and nothing is left anywhere. */
  const refusedEverywhere = async (what: string, tar: Buffer, message: string, opts: { rootOnly?: boolean } = {}): Promise<void> => {
    const hostBefore = host.state();
    const runs: [string, string, (root: string, args: readonly string[]) => Promise<CliResult>][] = [['root', root, snapfs]];
    if (opts.rootOnly !== true) runs.push(['nobody', userRoot, asNobody]);
    for (const [who, where, importAs] of runs) {
      for (const gzip of [false, true]) {
        const file = path.join(dir, `${what.replace(/\W+/g, '-')}.tar${gzip ? '.gz' : ''}`);
        fs.writeFileSync(file, gzip ? zlib.gzipSync(tar) : tar);
        fs.chmodSync(file, 0o644);
        const before = snapshotsOf(where);
        const r = await importAs(where, ['import', file, 'evil']);
        const context = `${what}, as ${who}${gzip ? ', gzip' : ''}`;
        assert.equal(r.code, 2, `${context}: ${r.stderr}`);
        assert.equal(r.stderr, `snapfs: ${message.replace('TAR', file)}\n`, context);
        assert.ok(!r.stderr.includes(where), `${context}: no path under the root`);
        assert.equal(snapshotsOf(where), before, `${context}: no snapshot and no directory left`);
      }
    }
    assert.deepEqual(host.state(), hostBefore, `${what}: nothing outside the root changed`);
  };

  test('a PAX size that is negative, not a number, or past what can be counted is refused before it is used', async () => {
    await refusedEverywhere('negative PAX size', rawTar([{ name: 'f', data: 'hello', pax: [['size', '-5']] }]), 'entry "f": PAX size "-5" is not a number of bytes');
    await refusedEverywhere('PAX size of junk', rawTar([{ name: 'f', data: 'hello', pax: [['size', '5 bytes']] }]), 'entry "f": PAX size "5 bytes" is not a number of bytes');
    await refusedEverywhere('huge PAX size', rawTar([{ name: 'f', data: 'hello', pax: [['size', '99999999999999999999']] }]), 'entry "f": PAX size "99999999999999999999" is too large');
  });

  test('a header size that is negative or too large (base-256) is refused, naming the entry', async () => {
    await refusedEverywhere('negative header size', rawTar([{ name: 'neg', data: 'hello', size: MINUS_FIVE }]), 'entry "neg": size -5 is negative');
    await refusedEverywhere('huge header size', rawTar([{ name: 'huge', data: 'hello', size: base256(1n << 80n) }]), 'entry "huge": size 1.2089258196146292e+24 is too large');
  });

  test('a tar that ends early, in a header, in an entry\'s data, or in its gzip stream, is refused', async () => {
    const entries = rawEntries([{ name: 'first', data: 'x' }, { name: 'cut', data: Buffer.alloc(5000, 1) }]);
    await refusedEverywhere('ends in data', entries.subarray(0, 2048), 'TAR: ends early (the last entry begun is "cut")');
    await refusedEverywhere('ends in a header', entries.subarray(0, 1024 + 300), 'TAR: ends early (the last entry begun is "first")');
    const file = path.join(dir, 'cut.tar.gz');
    // Data that does not compress: the cut falls inside it.
    fs.writeFileSync(file, zlib.gzipSync(rawTar([{ name: 'big', data: randomBytes(200_000) }])).subarray(0, 100_000));
    const before = snapshotsOf(root);
    const gz = await snapfs(root, ['import', file, 'evil']);
    assert.equal(gz.code, 2);
    assert.equal(gz.stderr, `snapfs: ${file}: ends early (the last entry begun is "big")\n`);
    const stdin = await importFromStdin(root, 'evil', entries.subarray(0, 2048));
    assert.equal(stdin.code, 2);
    assert.equal(stdin.stderr, 'snapfs: stdin: ends early (the last entry begun is "cut")\n');
    assert.equal(snapshotsOf(root), before);
  });

  test('bad layer content is InvalidArgument: a 300-byte name, a path too long, a 1 MB symlink target, a NUL in a name, an invalid security.capability', async () => {
    const long = 'n'.repeat(300);
    await refusedEverywhere('long name', rawTar([{ name: 'x', pax: [['path', `dir/${long}`]], data: '1' }]), `entry "dir/${long}": a name in it is 300 bytes, more than 255`);
    await refusedEverywhere('long link', rawTar([{ name: 'l', type: '2', pax: [['linkpath', 'y'.repeat(1_000_000)]] }]), 'entry "l": its symlink target is 1000000 bytes, more than 4095');
    const deep = Array.from({ length: 20 }, (_v, i) => `${i}`.padEnd(250, 'd')).join('/');
    await refusedEverywhere('path too long', rawTar([{ name: 'x', pax: [['path', deep]], data: '1' }]), `entry "${deep.slice(0, 1024)}…" (${deep.length} bytes): its path is longer than the system takes`);
    await refusedEverywhere('NUL in a name', rawTar([{ name: 'x', pax: [['path', 'a\0b']], data: '1' }]), 'entry "a\\u0000b": name holds a NUL byte');
    await refusedEverywhere('bad capability', rawTar([{ name: 'f', pax: [['SCHILY.xattr.security.capability', 'junk']], data: '1' }]), 'entry "f": extended attribute "security.capability": not a value the system takes', { rootOnly: true });
  });

  test('a directory later replaced by a file leaves the file its own mode', async () => {
    const file = path.join(dir, 'replaced.tar');
    fs.writeFileSync(
      file,
      rawTar([
        { name: 'd/', type: '5', mode: 0o700 },
        { name: 'd', data: 'a file now', mode: 0o644 },
        { name: 'g/', type: '5', mode: 0o700 },
        { name: 'g', data: 'a file for a while' },
        { name: 'g/', type: '5', mode: 0o750 },
      ]),
    );
    fs.chmodSync(file, 0o644);
    await ok(root, ['import', file, 'replaced']);
    const own = layerDirOf(root, 'replaced');
    assert.equal(fs.statSync(path.join(own, 'd')).mode & 0o7777, 0o644);
    assert.equal(fs.statSync(path.join(own, 'g')).mode & 0o7777, 0o750);
    const r = await asNobody(userRoot, ['import', file, 'replaced']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(fs.statSync(path.join(layerDirOf(userRoot, 'replaced'), 'd')).mode & 0o7777, 0o644);
  });

  test('a directory later replaced by a symlink to a host file never changes that file', async () => {
    const before = host.state();
    const file = path.join(dir, 'to-host.tar');
    fs.writeFileSync(
      file,
      rawTar([
        { name: 'd/', type: '5', mode: 0o6777 },
        { name: 'd', type: '2', linkname: host.files.script },
        { name: 'e/', type: '5', mode: 0o777, mtime: 1 },
        { name: 'e', type: '2', linkname: host.files.secret },
      ]),
    );
    await ok(root, ['import', file, 'to-host']);
    assert.equal(fs.readlinkSync(path.join(layerDirOf(root, 'to-host'), 'd')), host.files.script);
    assert.deepEqual(host.state(), before);
    assert.equal(fs.statSync(host.files.script).mode & 0o7777, 0o755);
    assert.equal(fs.statSync(host.files.secret).mode & 0o7777, 0o600);
  });
});
