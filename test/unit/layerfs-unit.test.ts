import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Request } from '../../src/fuse/session';
import { LayerFS } from '../../src/layerfs/layerfs';
import { tempDir } from '../support/helpers';

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
    fs.writeFileSync(path.join(lower, 'gone-too'), 'removed through the mount\n');
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
  const names = (ino: number): string[] => fsys.readdir(req, ino).map((e) => e.name.toString('latin1')).sort();
  /** Whether the upper layer hides `name` below it, in either form (the kernel's as root, fuse-overlayfs's without). */
  const whitedOut = (name: string): boolean => {
    if (fs.existsSync(path.join(upper, `.wh.${name}`))) return true;
    const st = fs.lstatSync(path.join(upper, name), { throwIfNoEntry: false });
    return st !== undefined && st.isCharacterDevice() && st.rdev === 0;
  };
  const read = async (ino: number): Promise<string> => {
    const { fh } = await fsys.open(req, ino, fs.constants.O_RDONLY, false);
    try {
      return fs.readFileSync(fh, 'utf8');
    } finally {
      fsys.release(req, ino, fh);
    }
  };

  it('merges the layers: whiteouts (rootless form) hide, their markers never show', async () => {
    assert.deepEqual(names(ROOT), ['.', '..', 'a', 'b', b('caf\xe9').toString('latin1'), 'escape', 'etc', 'gone-too']);
    assert.equal(lookup(ROOT, 'gone'), 0);
    assert.equal(lookup(ROOT, '.wh.gone'), 0);
    assert.equal(await read(lookup(lookup(ROOT, 'etc'), 'os-release')), 'lower\n');
  });

  it('names are bytes: a name that is not UTF-8 is found by its bytes alone', async () => {
    assert.equal(await read(lookup(ROOT, b('caf\xe9'))), 'bytes\n');
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

  it('a write copies up, keeping the other name of a hard link one file with it', async () => {
    const a = lookup(ROOT, 'a');
    const { fh } = await fsys.open(req, a, fs.constants.O_WRONLY | fs.constants.O_APPEND, false);
    fs.writeSync(fh, 'more\n');
    fsys.release(req, a, fh);
    assert.equal(await read(lookup(ROOT, 'b')), 'linked\nmore\n');
    assert.equal(fs.readFileSync(path.join(lower, 'a'), 'utf8'), 'linked\n', 'the lower layer is untouched');
    assert.equal(fs.readFileSync(path.join(upper, 'a'), 'utf8'), 'linked\nmore\n');
  });

  it('unlink of a lower file leaves a whiteout; rename of a lower directory copies its tree up first', async () => {
    fsys.unlink(req, ROOT, Buffer.from('escape'));
    assert.ok(whitedOut('escape'));
    assert.equal(lookup(ROOT, 'escape'), 0);
    const etc = lookup(ROOT, 'etc');
    await fsys.rename(req, ROOT, Buffer.from('etc'), ROOT, Buffer.from('moved'), 0);
    assert.equal(lookup(ROOT, 'moved'), etc, 'the directory keeps its node');
    assert.equal(fs.readFileSync(path.join(upper, 'moved', 'os-release'), 'utf8'), 'lower\n');
    assert.ok(whitedOut('etc'));
    assert.equal(lookup(ROOT, 'etc'), 0);
  });

  it('every whiteout a mount makes is a link to one in the work directory, made again when gone', () => {
    const entryOf = (name: string): string => (fs.existsSync(path.join(upper, `.wh.${name}`)) ? path.join(upper, `.wh.${name}`) : path.join(upper, name));
    const shared = path.join(dir, 'work', 'whiteout');
    const ino = (p: string): number => fs.lstatSync(p).ino;
    assert.ok(whitedOut('escape') && whitedOut('etc'), 'the test before made two');
    assert.equal(ino(entryOf('escape')), ino(shared));
    assert.equal(ino(entryOf('etc')), ino(shared));
    fs.unlinkSync(shared);
    fsys.unlink(req, ROOT, Buffer.from('gone-too'));
    assert.ok(whitedOut('gone-too'));
    assert.equal(ino(entryOf('gone-too')), ino(shared), 'a new shared whiteout');
    assert.notEqual(ino(entryOf('gone-too')), ino(entryOf('escape')));
    assert.equal(lookup(ROOT, 'gone-too'), 0);
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

/** Inode numbers in process: the layers' own, so the same in every mount of the same layers. */
describe('LayerFS in process: inode numbers', () => {
  let dir: string;
  const layers = (): { lowers: string[]; upper: string; work: string } => ({ lowers: [path.join(dir, 'lower')], upper: path.join(dir, 'upper'), work: path.join(dir, 'work') });
  before(() => {
    dir = tempDir('snapfs-unit-numbers-');
    for (const d of ['lower', 'upper', 'work']) fs.mkdirSync(path.join(dir, d));
    fs.writeFileSync(path.join(dir, 'lower', 'a'), 'a\n');
    fs.linkSync(path.join(dir, 'lower', 'a'), path.join(dir, 'lower', 'b'));
    fs.mkdirSync(path.join(dir, 'lower', 'd'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const shown = (fsys: LayerFS, name: string): number => fsys.lookup(req, ROOT, Buffer.from(name)).attr!.ino;
  const listed = (fsys: LayerFS): Record<string, number> => Object.fromEntries(fsys.readdir(req, ROOT).map((e) => [e.name.toString(), e.ino]));

  it("shows each file's own inode number in its layer, in stat and in listings, the same in every mount", () => {
    const lowerIno = Number(fs.statSync(path.join(dir, 'lower', 'a')).ino);
    for (const fsys of [new LayerFS(layers()), new LayerFS(layers())]) {
      try {
        assert.deepEqual([shown(fsys, 'a'), shown(fsys, 'b'), shown(fsys, 'd')], [lowerIno, lowerIno, Number(fs.statSync(path.join(dir, 'lower', 'd')).ino)]);
        assert.equal(fsys.getattr(req, ROOT).attr.ino, Number(fs.statSync(path.join(dir, 'upper')).ino));
        const l = listed(fsys);
        assert.deepEqual([l.a, l.b, l['.']], [lowerIno, lowerIno, fsys.getattr(req, ROOT).attr.ino]);
      } finally {
        fsys.close();
      }
    }
  });

  it("a copy shows its original's number while mounted, and its own in the next mount", async () => {
    const lowerIno = Number(fs.statSync(path.join(dir, 'lower', 'a')).ino);
    const first = new LayerFS(layers());
    try {
      const opened = await first.open(req, first.lookup(req, ROOT, Buffer.from('a')).ino, fs.constants.O_WRONLY | fs.constants.O_APPEND, false);
      first.release(req, 0, opened.fh);
      assert.deepEqual([shown(first, 'a'), shown(first, 'b')], [lowerIno, lowerIno]);
    } finally {
      first.close();
    }
    const next = new LayerFS(layers());
    try {
      const upperIno = Number(fs.statSync(path.join(dir, 'upper', 'a')).ino);
      assert.notEqual(upperIno, lowerIno);
      assert.deepEqual([shown(next, 'a'), shown(next, 'b')], [upperIno, upperIno]);
    } finally {
      next.close();
    }
  });
});

/** renameat2(RENAME_EXCHANGE) in process: both names swap what they show, and nothing below either shows through. */
describe('LayerFS in process: RENAME_EXCHANGE', () => {
  const EXCHANGE = 2;
  let dir: string;
  let fsys: LayerFS;
  before(() => {
    dir = tempDir('snapfs-unit-exchange-');
    const [lower, upper, work] = ['lower', 'upper', 'work'].map((d) => path.join(dir, d)) as [string, string, string];
    for (const d of [lower, upper, work, `${lower}/d1`, `${lower}/d2`, `${upper}/d2`, `${lower}/d1/sub`]) fs.mkdirSync(d);
    fs.writeFileSync(`${lower}/d1/x`, 'x\n');
    fs.writeFileSync(`${lower}/d1/sub/deep`, 'deep\n');
    fs.writeFileSync(`${lower}/d2/y`, 'y\n');
    fs.writeFileSync(`${upper}/d2/z`, 'z\n');
    fs.writeFileSync(`${lower}/f`, 'f\n');
    fs.writeFileSync(`${lower}/g`, 'g\n');
    fsys = new LayerFS({ lowers: [lower], upper, work });
  });
  after(() => {
    fsys.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const lookup = (parent: number, name: string): number => fsys.lookup(req, parent, Buffer.from(name)).ino;
  const names = (ino: number): string[] =>
    fsys
      .readdir(req, ino)
      .map((e) => e.name.toString('latin1'))
      .filter((n) => n !== '.' && n !== '..')
      .sort();
  const exchange = (a: string, c: string, parentA = ROOT, parentC = ROOT): unknown => fsys.rename(req, parentA, Buffer.from(a), parentC, Buffer.from(c), EXCHANGE);

  it('two lower files swap, each keeping its node', async () => {
    const [f, g] = [lookup(ROOT, 'f'), lookup(ROOT, 'g')];
    await exchange('f', 'g');
    assert.deepEqual([lookup(ROOT, 'f'), lookup(ROOT, 'g')], [g, f]);
    assert.equal(fs.readFileSync(path.join(dir, 'upper', 'f'), 'utf8'), 'g\n');
  });

  it('two merged directories swap whole: neither shows what the layers below hold under its new name', async () => {
    const [d1, d2] = [lookup(ROOT, 'd1'), lookup(ROOT, 'd2')];
    await exchange('d1', 'd2');
    assert.deepEqual([lookup(ROOT, 'd1'), lookup(ROOT, 'd2')], [d2, d1]);
    assert.deepEqual(names(lookup(ROOT, 'd1')), ['y', 'z']);
    assert.deepEqual(names(lookup(ROOT, 'd2')), ['sub', 'x']);
    assert.deepEqual(names(lookup(lookup(ROOT, 'd2'), 'sub')), ['deep']);
  });

  it('a file and a directory swap', async () => {
    await exchange('f', 'd2');
    assert.deepEqual(names(lookup(ROOT, 'f')), ['sub', 'x']);
    assert.equal(fs.readFileSync(path.join(dir, 'upper', 'd2'), 'utf8'), 'g\n');
  });

  it('refuses a missing name (ENOENT) and a directory swapped into itself (EINVAL), changing nothing', async () => {
    await assert.rejects(async () => exchange('f', 'missing'), { errno: -2 });
    const f = lookup(ROOT, 'f');
    await assert.rejects(async () => exchange('f', 'x', ROOT, f), { errno: -22 });
    assert.deepEqual(names(ROOT), ['d1', 'd2', 'f', 'g']);
  });
});

/**
 * A big file's copy-up, in process: its data is copied on libuv's pool
 * while the thread goes on answering, once however many ask for it.
 */
describe('LayerFS in process: copy-up of big files off the thread', () => {
  const MiB = 1 << 20;
  let dir: string;
  let lower: string;
  let upper: string;
  let work: string;
  let fsys: LayerFS;
  before(() => {
    dir = tempDir('snapfs-unit-big-');
    [lower, upper, work] = ['lower', 'upper', 'work'].map((d) => path.join(dir, d)) as [string, string, string];
    for (const d of [lower, upper, work]) fs.mkdirSync(d);
    for (const name of ['big', 'removed', 'renamed', 'closing', 'frozen']) writeSparse(path.join(lower, name));
    fs.writeFileSync(path.join(lower, 'small'), 'small\n');
    fsys = new LayerFS({ lowers: [lower], upper, work });
  });
  after(() => {
    fsys.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** 3 MiB of data around a 2 MiB hole, and a hole at the end: 8 MiB. */
  function writeSparse(file: string): void {
    const fd = fs.openSync(file, 'w', 0o640);
    fs.writeSync(fd, Buffer.alloc(3 * MiB, 'a'), 0, 3 * MiB, 0);
    fs.writeSync(fd, Buffer.alloc(MiB, 'b'), 0, MiB, 5 * MiB);
    fs.ftruncateSync(fd, 8 * MiB);
    fs.closeSync(fd);
  }
  const lookup = (name: string): number => fsys.lookup(req, ROOT, Buffer.from(name)).ino;
  const copying = (): string[] => fs.readdirSync(work).filter((n) => n.startsWith('.copyup-'));
  const sha = (file: string): string => createHash('sha256').update(fs.readFileSync(file)).digest('hex');
  const WRITE = fs.constants.O_WRONLY | fs.constants.O_APPEND;

  it('a small file is copied up at once', () => {
    const opened = fsys.open(req, lookup('small'), WRITE, false);
    assert.ok(!(opened instanceof Promise));
    fsys.release(req, lookup('small'), opened.fh);
    assert.equal(fs.readFileSync(path.join(upper, 'small'), 'utf8'), 'small\n');
  });

  it('one copy for every request that needs it; reads go to the lower file meanwhile; nobody sees half of it', async () => {
    const ino = lookup('big');
    const opening = fsys.open(req, ino, WRITE, false);
    const chmod = fsys.setattr(req, ino, { mode: 0o600, touchCtime: true, killSuidgid: false });
    assert.ok(opening instanceof Promise && chmod instanceof Promise, 'both wait for the copy');
    assert.equal(copying().length, 1, 'one copy, in the work directory');
    assert.equal(fs.existsSync(path.join(upper, 'big')), false, 'nothing in the upper layer yet');
    const reading = fsys.open(req, ino, fs.constants.O_RDONLY, false);
    assert.ok(!(reading instanceof Promise), 'a read does not wait');
    assert.equal(createHash('sha256').update(fs.readFileSync(reading.fh)).digest('hex'), sha(path.join(lower, 'big')));
    fsys.release(req, ino, reading.fh);
    assert.equal(fsys.getattr(req, ino).attr.mode & 0o7777, 0o640, 'the lower file answers meanwhile');

    const { fh } = await opening;
    assert.equal((await chmod).attr.mode & 0o7777, 0o600);
    fsys.release(req, ino, fh);
    const st = fs.statSync(path.join(upper, 'big'));
    assert.equal(sha(path.join(upper, 'big')), sha(path.join(lower, 'big')));
    assert.equal(st.size, 8 * MiB);
    assert.ok(st.blocks * 512 < 6 * MiB, `the holes stay holes (${st.blocks} blocks)`);
    assert.equal(fsys.getattr(req, ino).attr.ino, Number(fs.statSync(path.join(lower, 'big')).ino), "the copy keeps its node, and its original's number");
    assert.deepEqual(copying(), []);
  });

  it('a file removed while its copy is made is not brought back', async () => {
    const ino = lookup('removed');
    const opening = fsys.open(req, ino, WRITE, false);
    assert.ok(opening instanceof Promise);
    fsys.unlink(req, ROOT, Buffer.from('removed'));
    await assert.rejects(Promise.resolve(opening), { errno: -os.constants.errno.ENOENT });
    assert.equal(lookup('removed'), 0);
    assert.ok(!fs.lstatSync(path.join(upper, 'removed'), { throwIfNoEntry: false })?.isFile(), 'no copy in the upper layer');
    assert.deepEqual(copying(), []);
  });

  it('a rename waits for the copy under way, and moves it', async () => {
    const ino = lookup('renamed');
    const opening = fsys.open(req, ino, WRITE, false);
    const renaming = fsys.rename(req, ROOT, Buffer.from('renamed'), ROOT, Buffer.from('moved'), 0);
    assert.ok(opening instanceof Promise && renaming instanceof Promise);
    const { fh } = await opening;
    await renaming;
    fs.writeSync(fh, 'end');
    fsys.release(req, ino, fh);
    assert.equal(lookup('moved'), ino);
    assert.equal(fs.statSync(path.join(upper, 'moved')).size, 8 * MiB + 3, 'the open file is the one moved');
    assert.equal(lookup('renamed'), 0);
    assert.deepEqual(copying(), []);
  });

  it('a freeze or a close meanwhile: the copy never reaches the upper layer, nor stays in the work directory', async () => {
    const other = new LayerFS({ lowers: [lower], upper, work });
    try {
      const frozen = other.open(req, other.lookup(req, ROOT, Buffer.from('frozen')).ino, WRITE, false);
      other.freeze();
      await assert.rejects(Promise.resolve(frozen), { errno: -os.constants.errno.EROFS });
    } finally {
      other.close();
    }
    const closing = new LayerFS({ lowers: [lower], upper, work });
    const opening = closing.open(req, closing.lookup(req, ROOT, Buffer.from('closing')).ino, WRITE, false);
    closing.close();
    await assert.rejects(Promise.resolve(opening), { errno: -os.constants.errno.ENOTCONN });
    for (const name of ['frozen', 'closing']) assert.equal(fs.existsSync(path.join(upper, name)), false, name);
    assert.deepEqual(copying(), []);
  });
});

describe('LayerFS in process: renaming a lower directory', () => {
  it('copies up a tree whose directories nobody looked up, an empty one last (unionmount-testsuite rename-dir)', async () => {
    const dir = tempDir('snapfs-unit-rename-');
    try {
      const [lower, upper, work] = ['lower', 'upper', 'work'].map((n) => path.join(dir, n)) as [string, string, string];
      fs.mkdirSync(path.join(lower, 'a', 'dir100', 'pop', 'c'), { recursive: true });
      fs.mkdirSync(path.join(lower, 'a', 'empty100'));
      fs.writeFileSync(path.join(lower, 'a', 'dir100', 'a'), '');
      fs.writeFileSync(path.join(lower, 'a', 'dir100', 'pop', 'b'), 'b\n');
      fs.mkdirSync(upper);
      fs.mkdirSync(work);
      const fsys = new LayerFS({ lowers: [lower], upper, work });
      try {
        const a = fsys.lookup(req, ROOT, b('a')).ino;
        fsys.lookup(req, a, b('dir100'));
        const empty = fsys.lookup(req, a, b('empty100')).ino;
        await fsys.rename(req, a, b('dir100'), empty, b('x'), 0);
        const moved = path.join(upper, 'a', 'empty100', 'x');
        assert.equal(fs.readFileSync(path.join(moved, 'pop', 'b'), 'utf8'), 'b\n');
        assert.ok(fs.statSync(path.join(moved, 'pop', 'c')).isDirectory());
        assert.ok(fs.statSync(path.join(moved, 'a')).isFile());
      } finally {
        fsys.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
