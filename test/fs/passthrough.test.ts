import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Backing, Request } from '../../src/fuse/session';
import { PASSTHROUGH_MIN_BYTES } from '../../src/layerfs/io-modes';
import { LayerFS } from '../../src/layerfs/layerfs';
import { Daemons } from '../support/daemon-helpers';
import { tempDir } from '../support/helpers';
import { run, unmountAll } from '../support/mount-helpers';

const req: Request = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, pid: process.pid };
const ROOT = 1;
const C = fs.constants;

/** A Backing that hands out ids as the kernel would, and records what it was asked. */
class FakeBacking implements Backing {
  next = 1;
  readonly registered: number[] = [];
  readonly closed: number[] = [];
  refuse: string | undefined;
  open(fd: number): number {
    if (this.refuse !== undefined) throw Object.assign(new Error(this.refuse), { code: this.refuse });
    this.registered.push(fd);
    return this.next++;
  }
  close(id: number): void {
    this.closed.push(id);
  }
}

/** Which opens LayerFS passes through, in process (no mount, no root): what the kernel allows per node. */
describe('FUSE passthrough: which opens pass through, in process', () => {
  let dir: string;
  let fsys: LayerFS;
  let backing: FakeBacking;
  before(() => {
    dir = tempDir('snapfs-passthrough-unit-');
    const [lower, upper, work] = ['lower', 'upper', 'work'].map((d) => path.join(dir, d)) as [string, string, string];
    for (const d of [lower, upper, work]) fs.mkdirSync(d);
    for (const n of ['shared', 'written', 'busy', 'chmodded']) fs.writeFileSync(path.join(lower, n), `${n}\n`);
    // Every file passed through, however small: what the kernel allows is the same for all.
    fsys = new LayerFS({ lowers: [lower], upper, work }, { passthroughMinBytes: 0 });
    backing = new FakeBacking();
    fsys.passthrough(backing);
  });
  after(() => {
    fsys.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const lookup = (name: string): { ino: number; number: number } => {
    const e = fsys.lookup(req, ROOT, Buffer.from(name));
    return { ino: e.ino, number: e.attr!.ino };
  };
  const open = async (ino: number, flags: number): Promise<{ fh: number; backingId?: number }> => fsys.open(req, ino, flags, false);

  it('read-only opens of one node share one backing file, let go of when the last is released', async () => {
    const { ino } = lookup('shared');
    const a = await open(ino, C.O_RDONLY);
    const b = await open(ino, C.O_RDONLY);
    assert.equal(a.backingId, 1);
    assert.equal(b.backingId, 1, 'the kernel takes one backing file per node');
    assert.equal(backing.registered.length, 1);
    fsys.release(req, ino, a.fh);
    assert.deepEqual(backing.closed, []);
    fsys.release(req, ino, b.fh);
    assert.deepEqual(backing.closed, [1]);
  });

  it('a writer of a node passed through gets ESTALE, and the lookup the kernel then makes finds a new node with the same number', async () => {
    const before = lookup('written');
    const reader = await open(before.ino, C.O_RDONLY);
    assert.notEqual(reader.backingId, undefined);
    await assert.rejects(async () => open(before.ino, C.O_WRONLY | C.O_APPEND), { errno: -116 });
    const now = lookup('written');
    assert.notEqual(now.ino, before.ino);
    assert.equal(now.number, before.number, 'st_ino stays');
    const writer = await open(now.ino, C.O_WRONLY | C.O_APPEND);
    assert.equal(writer.backingId, undefined, 'writes are never passed through');
    fs.writeSync(writer.fh, 'more\n');
    assert.equal(fsys.getattr(req, before.ino).attr.size, 13, 'the old node still answers, for the opens the kernel holds of it');
    assert.equal(fs.readFileSync(path.join(dir, 'lower', 'written'), 'utf8'), 'written\n', 'the lower file never changes');
    await assert.rejects(async () => open(before.ino, C.O_RDONLY), { errno: -116 }, 'the old node, opened again (through /proc/PID/fd), is stale');
    fsys.release(req, now.ino, writer.fh);
    fsys.release(req, before.ino, reader.fh);
  });

  it('a reader after a copy-up made by another way (chmod) gets a new node too, and the new file', async () => {
    const { ino } = lookup('chmodded');
    const reader = await open(ino, C.O_RDONLY);
    await fsys.setattr(req, ino, { mode: 0o600, touchCtime: false, killSuidgid: false });
    await assert.rejects(async () => open(ino, C.O_RDONLY), { errno: -116 });
    const again = lookup('chmodded').ino;
    const fresh = await open(again, C.O_RDONLY);
    assert.notEqual(fresh.backingId, reader.backingId, 'the copy is another backing file');
    fsys.release(req, again, fresh.fh);
    fsys.release(req, ino, reader.fh);
  });

  it('a node open through the page cache (a writer) is not passed through meanwhile', async () => {
    const { ino } = lookup('busy');
    const writer = await open(ino, C.O_RDWR);
    const reader = await open(ino, C.O_RDONLY);
    assert.equal(reader.backingId, undefined);
    fsys.release(req, ino, reader.fh);
    fsys.release(req, ino, writer.fh);
    const later = await open(ino, C.O_RDONLY);
    assert.notEqual(later.backingId, undefined, 'once it is closed, readers pass through again');
    fsys.release(req, ino, later.fh);
  });

  it('by default, a file smaller than PASSTHROUGH_MIN_BYTES is read through the page cache, and one of that size is passed through', async () => {
    const lower = path.join(dir, 'lower');
    fs.writeFileSync(path.join(lower, 'small'), Buffer.alloc(PASSTHROUGH_MIN_BYTES - 1));
    fs.writeFileSync(path.join(lower, 'large'), Buffer.alloc(PASSTHROUGH_MIN_BYTES));
    const sized = new LayerFS({ lowers: [lower] });
    const fake = new FakeBacking();
    sized.passthrough(fake);
    try {
      for (const [name, passed] of [['small', false], ['large', true]] as const) {
        const ino = sized.lookup(req, ROOT, Buffer.from(name)).ino;
        const opened = await sized.open(req, ino, C.O_RDONLY, false);
        assert.equal(opened.backingId !== undefined, passed, name);
        sized.release(req, ino, opened.fh);
      }
      assert.equal(fake.registered.length, 1);
    } finally {
      sized.close();
    }
  });

  it('a file the kernel refuses (ELOOP: stacked too deep) is served as before; EPERM stops asking', async () => {
    const { ino } = lookup('shared');
    backing.refuse = 'ELOOP';
    const refused = await open(ino, C.O_RDONLY);
    assert.equal(refused.backingId, undefined);
    fsys.release(req, ino, refused.fh);
    backing.refuse = 'EPERM';
    const denied = await open(ino, C.O_RDONLY);
    fsys.release(req, ino, denied.fh);
    backing.refuse = undefined;
    const after = await open(ino, C.O_RDONLY);
    assert.equal(after.backingId, undefined, 'not asked again');
    fsys.release(req, ino, after.fh);
  });
});

const isRoot = process.getuid?.() === 0;
const [major = 0, minor = 0] = fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').split('.').map(Number);
const passthroughKernel = isRoot && (major > 6 || (major === 6 && minor >= 9));

/** Through a real mount: reads pass the daemon by, what a writer writes is what later readers read. */
describe('FUSE passthrough through a mount (root, Linux 6.9 and later)', { skip: !passthroughKernel && 'passthrough needs root and Linux 6.9' }, () => {
  let dir: string;
  let layers: { lower: string; upper: string; work: string };
  const daemons: Daemons[] = [];
  before(() => {
    dir = tempDir('snapfs-passthrough-');
    layers = { lower: path.join(dir, 'lower'), upper: path.join(dir, 'upper'), work: path.join(dir, 'work') };
    for (const d of Object.values(layers)) fs.mkdirSync(d);
    fs.writeFileSync(path.join(layers.lower, 'big'), Buffer.alloc(64 << 20, 'x'));
    // Big enough to be passed through; what the test reads is its last line, `first`.
    fs.writeFileSync(path.join(layers.lower, 'log'), Buffer.concat([Buffer.alloc(PASSTHROUGH_MIN_BYTES - 6, '.'), Buffer.from('first\n')]));
    fs.copyFileSync('/bin/busybox', path.join(layers.lower, 'busybox'));
    fs.chmodSync(path.join(layers.lower, 'busybox'), 0o755);
  });
  after(async () => {
    for (const d of daemons) d.killAll();
    for (const m of fs.readdirSync(dir).filter((n) => n.startsWith('mnt'))) await unmountAll(path.join(dir, m));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Mounts the layers (a fresh upper each time) by a daemon of its own; `env` is the daemon's. */
  async function mount(name: string, env: NodeJS.ProcessEnv = {}): Promise<{ mnt: string; requests: () => Promise<number> }> {
    const d = new Daemons(dir, name, env);
    daemons.push(d);
    const mnt = path.join(dir, `mnt-${name}`);
    const upper = path.join(dir, `upper-${name}`);
    const work = path.join(dir, `work-${name}`);
    for (const p of [mnt, upper, work]) fs.mkdirSync(p);
    await d.mountO(`lowerdir=${layers.lower},upperdir=${upper},workdir=${work}`, mnt);
    return { mnt, requests: async () => (await d.mounted()).find((m) => m.mountpoint === mnt)!.requests };
  }

  it('reading a 64 MiB lower file costs a few requests, against one per MiB without passthrough', async () => {
    const sides = { passthrough: await mount('on'), served: await mount('off', { SNAPFS_PASSTHROUGH: '0' }) };
    const cost: Record<string, number> = {};
    for (const [name, side] of Object.entries(sides)) {
      const before = await side.requests();
      const { stdout } = await run('sha256sum', [path.join(side.mnt, 'big')]);
      assert.match(stdout, /^[0-9a-f]{64} /);
      cost[name] = (await side.requests()) - before;
      await unmountAll(side.mnt);
    }
    assert.ok(cost.passthrough! < 10, `passthrough: ${cost.passthrough} requests`);
    assert.ok(cost.served! >= 64, `without: ${cost.served} requests`);
  });

  it('a reader keeps its file; a writer appends (ESTALE retried by the kernel, never seen); later readers, exec and mmap see the new file', async () => {
    const { mnt } = await mount('rw');
    try {
      const script = [
        'import mmap, os, subprocess',
        "at = os.path.getsize('log') - 6",
        "r = os.open('log', os.O_RDONLY)",
        "print(os.pread(r, 100, at))",
        "with open('log', 'a') as w: w.write('second\\n')",
        "print(os.pread(os.open('log', os.O_RDONLY), 100, at))",
        'print(os.pread(r, 100, at))',
        "print(os.fstat(r).st_ino == os.stat('log').st_ino)",
        "f = open('log', 'rb'); print(mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)[at:])",
        "print(subprocess.run(['./busybox', 'tail', '-c', '13', 'log'], capture_output=True).stdout)",
      ].join('\n');
      const { stdout } = await run('python3', ['-c', script], { cwd: mnt });
      assert.equal(stdout, [
        "b'first\\n'",
        "b'first\\nsecond\\n'",
        "b'first\\n'", // opened before the copy-up: the lower file, as without passthrough
        'True',
        "b'first\\nsecond\\n'",
        "b'first\\nsecond\\n'",
        '',
      ].join('\n'));
    } finally {
      await unmountAll(mnt);
    }
  });
});
