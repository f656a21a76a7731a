import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Request } from '../src/fuse/session';
import { LayerFS } from '../src/layerfs/layerfs';
import { tempDir } from './helpers';

const req: Request = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, pid: process.pid };
const ROOT = 1;
const b = (s: string): Buffer => Buffer.from(s, 'latin1');

/** LayerFS called in process, as the FUSE session would call it: no mount, no root. */
describe('LayerFS in process', () => {
  let dir: string;
  let lower: string;
  let upper: string;
  let outside: string;
  let fsys: LayerFS;
  before(() => {
    dir = tempDir('snapfs-unit-');
    lower = path.join(dir, 'lower');
    upper = path.join(dir, 'upper');
    outside = path.join(dir, 'outside');
    for (const d of [lower, upper, path.join(dir, 'work'), outside]) fs.mkdirSync(d);
    fs.mkdirSync(path.join(lower, 'etc'));
    fs.writeFileSync(path.join(lower, 'etc', 'os-release'), 'lower\n');
    fs.writeFileSync(path.join(lower, 'gone'), 'hidden by the upper layer\n');
    fs.writeFileSync(path.join(upper, '.wh.gone'), '');
    fs.writeFileSync(path.join(lower, 'a'), 'linked\n');
    fs.linkSync(path.join(lower, 'a'), path.join(lower, 'b'));
    fs.writeFileSync(path.join(outside, 'secret'), 'host\n');
    fs.symlinkSync(outside, path.join(lower, 'escape'));
    fs.writeFileSync(Buffer.concat([Buffer.from(`${lower}/`), b('caf\xe9')]), 'bytes\n');
    fsys = new LayerFS({ lowers: [lower], upper, work: path.join(dir, 'work') });
  });
  after(() => {
    fsys.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const lookup = (parent: number, name: string | Buffer): number => fsys.lookup(req, parent, typeof name === 'string' ? Buffer.from(name) : name).ino;
  const names = (ino: number): string[] => {
    const { fh } = fsys.opendir(req, ino);
    try {
      return fsys.readdir(req, ino, fh).map((e) => e.name.toString('latin1')).sort();
    } finally {
      fsys.releasedir(req, ino, fh);
    }
  };
  /** Whether the upper layer hides `name` below it, in either form (the kernel's as root, fuse-overlayfs's without). */
  const whitedOut = (name: string): boolean => {
    if (fs.existsSync(path.join(upper, `.wh.${name}`))) return true;
    const st = fs.lstatSync(path.join(upper, name), { throwIfNoEntry: false });
    return st !== undefined && st.isCharacterDevice() && st.rdev === 0;
  };
  const read = (ino: number): string => {
    const { fh } = fsys.open(req, ino, fs.constants.O_RDONLY, false);
    try {
      return fs.readFileSync(fh, 'utf8');
    } finally {
      fsys.release(req, ino, fh);
    }
  };

  it('merges the layers: whiteouts (rootless form) hide, their markers never show', () => {
    assert.deepEqual(names(ROOT), ['.', '..', 'a', 'b', b('caf\xe9').toString('latin1'), 'escape', 'etc']);
    assert.equal(lookup(ROOT, 'gone'), 0);
    assert.equal(lookup(ROOT, '.wh.gone'), 0);
    assert.equal(read(lookup(lookup(ROOT, 'etc'), 'os-release')), 'lower\n');
  });

  it('names are bytes: a name that is not UTF-8 is found by its bytes alone', () => {
    assert.equal(read(lookup(ROOT, b('caf\xe9'))), 'bytes\n');
    assert.equal(lookup(ROOT, 'café'), 0, 'the UTF-8 spelling is another name');
  });

  it('hard links are one node with one number', () => {
    const a = lookup(ROOT, 'a');
    assert.equal(lookup(ROOT, 'b'), a);
    assert.equal(fsys.getattr(req, a).attr.nlink, 2);
  });

  it('a symlink is a file of its own: nothing is looked up through it, and readlink gives it as stored', () => {
    const link = lookup(ROOT, 'escape');
    assert.throws(() => fsys.lookup(req, link, Buffer.from('secret')), { errno: -20 }, 'ENOTDIR');
    assert.equal(fsys.readlink(req, link).toString(), outside);
  });

  it('a write copies up, keeping the other name of a hard link one file with it', () => {
    const a = lookup(ROOT, 'a');
    const { fh } = fsys.open(req, a, fs.constants.O_WRONLY | fs.constants.O_APPEND, false);
    fs.writeSync(fh, 'more\n');
    fsys.release(req, a, fh);
    assert.equal(read(lookup(ROOT, 'b')), 'linked\nmore\n');
    assert.equal(fs.readFileSync(path.join(lower, 'a'), 'utf8'), 'linked\n', 'the lower layer is untouched');
    assert.equal(fs.readFileSync(path.join(upper, 'a'), 'utf8'), 'linked\nmore\n');
  });

  it('unlink of a lower file leaves a whiteout; rename of a lower directory copies its tree up first', () => {
    fsys.unlink(req, ROOT, Buffer.from('escape'));
    assert.ok(whitedOut('escape'));
    assert.equal(lookup(ROOT, 'escape'), 0);
    const etc = lookup(ROOT, 'etc');
    fsys.rename(req, ROOT, Buffer.from('etc'), ROOT, Buffer.from('moved'), 0);
    assert.equal(lookup(ROOT, 'moved'), etc, 'the directory keeps its node');
    assert.equal(fs.readFileSync(path.join(upper, 'moved', 'os-release'), 'utf8'), 'lower\n');
    assert.ok(whitedOut('etc'));
    assert.equal(lookup(ROOT, 'etc'), 0);
  });

  it('a frozen file system refuses every change with EROFS', () => {
    const frozen = new LayerFS({ lowers: [lower], upper, work: path.join(dir, 'work') });
    try {
      frozen.freeze();
      assert.throws(() => frozen.mkdir(req, ROOT, Buffer.from('new'), 0o755), { errno: -30 });
      assert.throws(() => frozen.create(req, ROOT, Buffer.from('new'), 0o644, fs.constants.O_WRONLY), { errno: -30 });
      assert.equal(fs.existsSync(path.join(upper, 'new')), false);
    } finally {
      frozen.close();
    }
  });
});
