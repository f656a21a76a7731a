import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Request } from '../../src/fuse/session';
import { LayerFS } from '../../src/layerfs/layerfs';
import { sys } from '../../src/native/sys';
import { tempDir } from '../support/helpers';

const isRoot = process.getuid?.() === 0;
const req: Request = { uid: 0, gid: 0, pid: process.pid };
const ROOT = 1;
/** ext4's most links to one inode. */
const EXT4_LINK_MAX = 65_000;

/**
 * Whiteouts share one inode, as the kernel overlay's do; ext4 gives an
 * inode at most 65,000 links, so the one that has them all is replaced.
 * LayerFS in process (no FUSE mount) over an upper layer on a small ext4.
 */
const skip = !isRoot ? 'mounts an ext4 image, which needs root' : !fs.existsSync('/dev/loop-control') && 'mounts an ext4 image, which needs loop devices (/dev/loop-control)';

describe('shared whiteouts on ext4: one with every link it can take is replaced', { skip }, () => {
  let dir: string;
  let disk: string;
  let fsys: LayerFS | undefined;
  before(() => {
    dir = tempDir('snapfs-wh-links-');
    disk = path.join(dir, 'disk');
    fs.mkdirSync(disk);
    const image = path.join(dir, 'ext4.img');
    fs.writeFileSync(image, '');
    fs.truncateSync(image, 32 << 20);
    execFileSync('mkfs.ext4', ['-q', '-F', image]);
    execFileSync('mount', ['-o', 'loop', image, disk]);
  });
  after(() => {
    fsys?.close();
    execFileSync('umount', [disk]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('the next whiteout links a new one, made when the link count is full', () => {
    const lower = path.join(dir, 'lower');
    fs.mkdirSync(lower);
    for (const name of ['first', 'second']) fs.writeFileSync(path.join(lower, name), `${name}\n`);
    const [upper, work, filler] = ['upper', 'work', 'filler'].map((n) => path.join(disk, n)) as [string, string, string];
    for (const d of [upper, work, filler]) fs.mkdirSync(d);
    fsys = new LayerFS({ lowers: [lower], upper, work });
    const shared = path.join(work, 'whiteout');
    fsys.unlink(req, ROOT, Buffer.from('first'));
    const first = fs.lstatSync(path.join(upper, 'first'));
    assert.equal(first.ino, fs.lstatSync(shared).ino);
    const workFd = fs.openSync(work, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    const fillerFd = fs.openSync(filler, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    try {
      for (let i = fs.lstatSync(shared).nlink; i < EXT4_LINK_MAX; i++) sys.linkNameAt(workFd, 'whiteout', fillerFd, `l${i}`);
      assert.throws(() => sys.linkNameAt(workFd, 'whiteout', fillerFd, 'one-more'), { code: 'EMLINK' });
    } finally {
      fs.closeSync(workFd);
      fs.closeSync(fillerFd);
    }
    fsys.unlink(req, ROOT, Buffer.from('second'));
    const second = fs.lstatSync(path.join(upper, 'second'));
    assert.ok(second.isCharacterDevice() && second.rdev === 0, 'a whiteout');
    assert.notEqual(second.ino, first.ino);
    assert.equal(second.ino, fs.lstatSync(shared).ino, 'the new one is the one shared now');
    assert.equal(second.nlink, 2);
    assert.equal(fs.lstatSync(path.join(upper, 'first')).nlink, EXT4_LINK_MAX - 1, 'the old one lost only its work link');
    assert.equal(fsys.lookup(req, ROOT, Buffer.from('second')).ino, 0);
  });
});
