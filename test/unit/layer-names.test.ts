import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as zlib from 'node:zlib';
import * as tar from 'tar-stream';
import { quoted } from '../../src/names';
import { sys } from '../../src/native/sys';
import { everyByteNames, layerDirOf, ok, snapfs, tempDir, type CliResult } from '../support/helpers';
import { asNobody, describeBytes, nobodysDir, snapshotsOf } from '../support/layer-helpers';
import { rawTar, type RawEntry } from '../support/raw-tar';

const isRoot = process.getuid?.() === 0;

const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');
const under = (dir: string, ...names: Buffer[]): Buffer => Buffer.concat([Buffer.from(dir), ...names.flatMap((n) => [Buffer.from('/'), n])]);


/** The names of a tar's entries, as bytes. */
async function entryNames(file: string): Promise<Buffer[]> {
  const extract = tar.extract({ filenameEncoding: 'latin1' });
  const names: Buffer[] = [];
  extract.on('entry', (header, stream, next) => {
    names.push(Buffer.from(header.name, 'latin1'));
    stream.on('end', next);
    stream.resume();
  });
  await new Promise<void>((resolve, reject) => {
    extract.on('finish', resolve);
    extract.on('error', reject);
    fs.createReadStream(file).pipe(extract);
  });
  return names;
}

/**
 * Entries whose names and link names are not UTF-8, in every place a tar
 * keeps names: the ustar name and linkname fields, a GNU long name, PAX
 * path and linkpath records.
 */
const crafted: RawEntry[] = [
  { name: bytes('a\xff'), data: 'one' },
  { name: bytes('a\xfe'), data: 'two' },
  { name: 'café', data: 'UTF-8 as it was' },
  { name: 'stand-in', type: '5', mode: 0o750, pax: [['path', bytes('d\xe9/')]] },
  { name: 'stand-in', data: 'in d', pax: [['path', bytes('d\xe9/f')], ['SCHILY.xattr.user.note', 'through its directory']] },
  { name: bytes('d\xe9/g\x80'), data: 'staged', pax: [['SCHILY.xattr.user.note', 'staged']] },
  { name: bytes('d\xe9/.wh..wh..opq') },
  { name: bytes('s\xff'), type: '2', linkname: bytes('t\xfe\xfd') },
  { name: 's2', type: '2', pax: [['linkpath', bytes('\xc0\xc1/x')]] },
  { name: bytes('h\xff'), type: '1', linkname: bytes('a\xff') },
  { name: bytes('.wh.w\xff') },
  { name: bytes('p\xff'), type: '6' },
  { name: bytes('c\xff'), type: '3', mode: 0o666, devmajor: 1, devminor: 3 },
  { name: '././@LongLink', type: 'L', data: Buffer.concat([bytes('long\xff/'), Buffer.alloc(120, 0x6c), bytes('\xfe\0')]) },
  { name: 'cut short by the long name', data: 'long' },
];

describe('names are bytes: import keeps every byte of names and symlink targets, diff writes them back', { skip: !isRoot && 'it compares imports as root and as another user (setpriv), which needs root' }, () => {
  let dir: string;
  let root: string;

  before(() => {
    dir = tempDir('snapfs-names-');
    fs.chmodSync(dir, 0o755); // for nobody
    root = path.join(dir, 'root');
    fs.writeFileSync(path.join(dir, 'crafted.tar'), rawTar(crafted));
    fs.writeFileSync(path.join(dir, 'crafted.tar.gz'), zlib.gzipSync(rawTar(crafted)));
  });
  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** What the crafted tar must have made in `layer`, whoever imported it. */
  const checkCrafted = (layer: string, privileged: boolean): void => {
    const top = fs.readdirSync(layer, { encoding: 'buffer' }).map((n) => n.toString('latin1')).sort();
    const whiteout = privileged ? 'w\xff' : '.wh.w\xff';
    assert.deepEqual(top, ['a\xfe', 'a\xff', ...(privileged ? ['c\xff'] : []), Buffer.from('café').toString('latin1'), 'd\xe9', 'h\xff', 'long\xff', 'p\xff', 's2', 's\xff', whiteout].sort());
    assert.equal(fs.readFileSync(under(layer, bytes('a\xff')), 'utf8'), 'one');
    assert.equal(fs.readFileSync(under(layer, bytes('a\xfe')), 'utf8'), 'two');
    assert.equal(fs.readFileSync(path.join(layer, 'café'), 'utf8'), 'UTF-8 as it was');
    assert.deepEqual(fs.readlinkSync(under(layer, bytes('s\xff')), { encoding: 'buffer' }), bytes('t\xfe\xfd'));
    assert.deepEqual(fs.readlinkSync(path.join(layer, 's2'), { encoding: 'buffer' }), bytes('\xc0\xc1/x'));
    assert.equal(fs.statSync(under(layer, bytes('h\xff'))).ino, fs.statSync(under(layer, bytes('a\xff'))).ino);
    assert.ok(fs.lstatSync(under(layer, bytes('p\xff'))).isFIFO());
    assert.equal(fs.readFileSync(under(layer, bytes('long\xff'), Buffer.concat([Buffer.alloc(120, 0x6c), bytes('\xfe')])), 'utf8'), 'long');
    const d = under(layer, bytes('d\xe9'));
    assert.equal(fs.statSync(d).mode & 0o7777, 0o750);
    const w = fs.lstatSync(under(layer, bytes(whiteout)));
    assert.ok(privileged ? w.isCharacterDevice() && w.rdev === 0 : w.isFile() && w.size === 0);
    if (privileged) assert.equal(fs.lstatSync(under(layer, bytes('c\xff'))).rdev, 0x103);
    // The attributes, read where the test can reach them: through the directory's descriptor, or under a second name.
    const fd = fs.openSync(d, 'r');
    try {
      assert.equal(sys.getxattr(`/proc/self/fd/${fd}/f`, 'user.note')?.toString(), 'through its directory');
      fs.linkSync(under(layer, bytes('d\xe9/g\x80')), under(layer, bytes('d\xe9/g-read')));
      assert.equal(sys.getxattr(`/proc/self/fd/${fd}/g-read`, 'user.note')?.toString(), 'staged');
      fs.unlinkSync(under(layer, bytes('d\xe9/g-read')));
      if (privileged) assert.equal(sys.getxattr(`/proc/self/fd/${fd}/.`, 'trusted.overlay.opaque')?.toString(), 'y');
      else assert.ok(fs.existsSync(under(layer, bytes('d\xe9/.wh..wh..opq'))));
    } finally {
      fs.closeSync(fd);
    }
  };

  test('names and link names that are not UTF-8 keep every byte, from ustar fields, GNU long names and PAX records, plain or gzip', async () => {
    await ok(root, ['import', path.join(dir, 'crafted.tar'), 'crafted']);
    checkCrafted(layerDirOf(root, 'crafted'), true);
    await ok(root, ['import', path.join(dir, 'crafted.tar.gz'), 'crafted-gz']);
    assert.deepEqual(describeBytes(layerDirOf(root, 'crafted-gz')), describeBytes(layerDirOf(root, 'crafted')));
  });

  test('without root too, whiteouts and opaque markers of such names in the rootless form', async () => {
    const userRoot = path.join(nobodysDir(dir, 'nobody'), 'root');
    const r = await asNobody(userRoot, ['import', path.join(dir, 'crafted.tar.gz'), 'crafted']);
    assert.equal(r.code, 0, r.stderr);
    checkCrafted(layerDirOf(userRoot, 'crafted'), false);
  });

  test('a refused name is shown with \\xHH for bytes that are not UTF-8, and nothing is left', async () => {
    const file = path.join(dir, 'leaves.tar');
    fs.writeFileSync(file, rawTar([{ name: bytes('bad\xff\xc3/../../x'), data: 'x' }]));
    const before = snapshotsOf(root);
    const r: CliResult = await snapfs(root, ['import', file, 'leaves']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'snapfs: entry "bad\\xff\\xc3/../../x": path leaves the layer\n');
    assert.equal(snapshotsOf(root), before);
    assert.equal(quoted(Buffer.from('é\n"\\\xff', 'latin1')), '"\\xe9\\n\\"\\\\\\xff"');
    assert.equal(quoted(Buffer.from('é', 'utf8')), '"é"');
  });

  test('diff, import, diff: names of every byte but / and NUL give the same tar bytes and the same tree', async () => {
    const names = everyByteNames();
    await ok(root, ['prepare', 'bytes-work']);
    const up = layerDirOf(root, 'bytes-work');
    const [n0, n1, n2, n3, n4, n5, ...rest] = names as [Buffer, Buffer, Buffer, Buffer, Buffer, Buffer, ...Buffer[]];
    // A directory of every name, each holding a file of the next one.
    for (const [i, name] of names.entries()) {
      fs.mkdirSync(under(up, name), { mode: 0o750 });
      fs.writeFileSync(under(up, name, names[(i + 1) % names.length]!), `file ${i}`);
    }
    for (const [i, name] of rest.entries()) fs.writeFileSync(under(up, Buffer.concat([name, bytes('-file')])), `top ${i}`);
    fs.symlinkSync(Buffer.concat([n3, bytes('/'), n4]), under(up, Buffer.concat([bytes('link-'), n5])));
    fs.linkSync(under(up, n0, n1), under(up, Buffer.concat([bytes('hard-'), n2])));
    // Deep enough for the ustar prefix and past it, into a PAX path.
    fs.mkdirSync(under(up, bytes('deep'), n1, n2, n3, n4, n5), { recursive: true });
    fs.writeFileSync(under(up, bytes('deep'), n1, n2, n3, n4, n5, n0), 'deep');
    // Binary attribute values, on a UTF-8 name and on one that is not.
    fs.writeFileSync(path.join(up, 'attributes'), '');
    sys.setxattr(path.join(up, 'attributes'), 'user.note', Buffer.from([0, 0xff, 0x80]), 0);
    const attributed = bytes('attributes-\xff');
    fs.writeFileSync(under(up, attributed), '');
    sys.setxattr(under(up, attributed), 'user.note', Buffer.from([0x80, 0]), 0);
    sys.mknod(path.join(up, 'fifo'), fs.constants.S_IFIFO | 0o640, 0, 0);
    fs.renameSync(path.join(up, 'fifo'), under(up, Buffer.concat([bytes('fifo-'), n2])));
    await ok(root, ['commit', 'bytes', 'bytes-work']);

    const first = path.join(dir, 'bytes-1.tar');
    await ok(root, ['diff', 'bytes', '-o', first]);
    const inTar = (await entryNames(first)).map((n) => n.toString('latin1'));
    for (const name of names) assert.ok(inTar.includes(`${name.toString('latin1')}/`), `${quoted(name)} is in the tar as it is`);
    await ok(root, ['import', first, 'bytes-again']);
    assert.deepEqual(describeBytes(layerDirOf(root, 'bytes-again')), describeBytes(layerDirOf(root, 'bytes')));
    assert.deepEqual(sys.getxattr(under(layerDirOf(root, 'bytes-again'), attributed), 'user.note'), Buffer.from([0x80, 0]), 'attributes of a file whose name is not UTF-8 go through');
    const second = path.join(dir, 'bytes-2.tar');
    await ok(root, ['diff', 'bytes-again', '-o', second]);
    assert.ok(fs.readFileSync(second).equals(fs.readFileSync(first)), 'the same tar, byte for byte');
  });
});
