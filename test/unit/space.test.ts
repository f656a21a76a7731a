import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { FsError } from '../../src/fuse/errno';
import type { Request } from '../../src/fuse/session';
import { LayerFS } from '../../src/layerfs/layerfs';
import { diskUsage } from '../../src/overlay/usage';
import { tempDir } from '../support/helpers';

const req: Request = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, pid: process.pid };
const ROOT = 1;
const ENOSPC = -os.constants.errno.ENOSPC;

/** A mount's upper layer held to max_size=, LayerFS's part of it (writes are the session's), called in process. */
describe('the upper layer under a space limit', () => {
  let dir: string;
  let upper: string;
  let fsys: LayerFS | undefined;
  beforeEach(() => {
    dir = tempDir('snapfs-space-');
    upper = path.join(dir, 'upper');
    for (const d of ['lower', 'upper', 'work']) fs.mkdirSync(path.join(dir, d));
    fs.writeFileSync(path.join(dir, 'lower', 'big'), Buffer.alloc(64 << 10, 1));
    fs.writeFileSync(path.join(dir, 'lower', 'small'), Buffer.alloc(4 << 10, 1));
    fs.writeFileSync(path.join(upper, 'there'), Buffer.alloc(16 << 10, 1));
  });
  afterEach(() => {
    fsys?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const mount = (maxSize: number): LayerFS => (fsys = new LayerFS({ lowers: [path.join(dir, 'lower')], upper, work: path.join(dir, 'work') }, { maxSize }));
  const ino = (name: string): number => fsys!.lookup(req, ROOT, Buffer.from(name)).ino;
  const refused = (what: () => unknown): void => assert.throws(what, (err: unknown) => err instanceof FsError && err.errno === ENOSPC);

  it('counts what the layer holds when mounted, as containerd measures usage', () => {
    const space = mount(1 << 20).space!;
    assert.equal(space.used, diskUsage(upper).size);
    assert.ok(space.used >= 16 << 10);
  });

  it('refuses a copy-up that would not fit, leaving the layer as it was; one that fits is counted', () => {
    const space = mount(diskUsage(upper).size + (32 << 10)).space!;
    const before = fs.readdirSync(upper).sort();
    const used = space.used;
    refused(() => fsys!.setattr(req, ino('big'), { mode: 0o600, killSuidgid: false, touchCtime: false }));
    assert.deepEqual(fs.readdirSync(upper).sort(), before, 'nothing copied up');
    assert.equal(space.used, used);
    fsys!.setattr(req, ino('small'), { mode: 0o600, killSuidgid: false, touchCtime: false });
    assert.equal(space.used, used + fs.statSync(path.join(upper, 'small')).blocks * 512);
  });

  it('gives back what a removed upper file took, and refuses a directory once full', () => {
    const space = mount(diskUsage(upper).size + 4096).space!;
    const used = space.used;
    const taken = fs.statSync(path.join(upper, 'there')).blocks * 512;
    fsys!.mkdir(req, ROOT, Buffer.from('d1'), 0o755);
    refused(() => fsys!.mkdir(req, ROOT, Buffer.from('d2'), 0o755));
    assert.equal(fs.existsSync(path.join(upper, 'd2')), false);
    fsys!.unlink(req, ROOT, Buffer.from('there'));
    assert.equal(space.used, used + fs.statSync(path.join(upper, 'd1')).blocks * 512 - taken);
    fsys!.mkdir(req, ROOT, Buffer.from('d2'), 0o755);
  });

  it('refuses a directory where one was deleted below, keeping the whiteout', () => {
    fs.mkdirSync(path.join(dir, 'lower', 'gone'));
    const space = mount(diskUsage(upper).size).space!;
    fsys!.rmdir(req, ROOT, Buffer.from('gone'));
    const whiteouts = fs.readdirSync(upper).sort();
    assert.ok(whiteouts.some((n) => n === 'gone' || n === '.wh.gone'), String(whiteouts));
    space.add(space.counts[0]! - space.used); // full
    refused(() => fsys!.mkdir(req, ROOT, Buffer.from('gone'), 0o755));
    assert.deepEqual(fs.readdirSync(upper).sort(), whiteouts, 'the whiteout is still there');
  });

  it('gives back what an open with O_TRUNC and a rename over an upper file free', async () => {
    fs.writeFileSync(path.join(upper, 'other'), Buffer.alloc(8 << 10, 1));
    const space = mount(1 << 20).space!;
    const used = space.used;
    const opened = await fsys!.open(req, ino('there'), fs.constants.O_WRONLY | fs.constants.O_TRUNC, false);
    fsys!.release(req, ino('there'), opened.fh);
    assert.equal(space.used, used - (16 << 10));
    fsys!.rename(req, ROOT, Buffer.from('there'), ROOT, Buffer.from('other'), 0);
    assert.equal(space.used, used - (16 << 10) - (8 << 10));
  });

  it('counts what a truncation frees', () => {
    const space = mount(1 << 20).space!;
    const used = space.used;
    fsys!.setattr(req, ino('there'), { size: 0, killSuidgid: false, touchCtime: false });
    assert.equal(space.used, used - (16 << 10));
  });
});
