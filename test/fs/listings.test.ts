import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Daemons } from '../support/daemon-helpers';
import { tempDir } from '../support/helpers';
import { run, unmountAll } from '../support/mount-helpers';

/** Names long enough that 3,000 of them take many READDIR answers. */
const names = Array.from({ length: 3000 }, (_, i) => `${'n'.repeat(90)}-${i}`);
/** Directories in one directory, in each of LAYERS layers: each looked up keeps its copies open, a bounded number of them at once. */
const DIRS = 300;
const LAYERS = 5;

describe('directory listings: the kernel opens directories itself, reads each listing once and keeps it until it changes', { skip: process.getuid?.() !== 0 && 'mounts as root' }, () => {
  let dir: string;
  let mnt: string;
  let daemons: Daemons;
  let requests: () => Promise<number>;
  before(async () => {
    dir = tempDir('snapfs-listings-');
    const [lower, upper, work] = ['lower', 'upper', 'work'].map((d) => path.join(dir, d));
    mnt = path.join(dir, 'mnt');
    for (const d of [lower!, upper!, work!, mnt, path.join(lower!, 'big')]) fs.mkdirSync(d);
    for (const n of names) fs.writeFileSync(path.join(lower!, 'big', n), '');
    daemons = new Daemons(dir, 'listings');
    await daemons.mountO(`lowerdir=${lower},upperdir=${upper},workdir=${work}`, mnt);
    requests = async () => (await daemons.mounted()).find((m) => m.mountpoint === mnt)!.requests;
  });
  after(async () => {
    await unmountAll(mnt);
    daemons.killAll();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** The names `ls -f` lists in big, in the order listed (a child process: this one must not block on its own mount's daemon). */
  const listed = async (): Promise<string[]> => (await run('ls', ['-f', path.join(mnt, 'big')])).stdout.split('\n').filter((n) => n !== '' && n !== '.' && n !== '..');

  it('a listing of many answers is whole, each name once; listed again, it costs no request', async () => {
    const first = await listed();
    assert.equal(first.length, names.length);
    assert.deepEqual([...first].sort(), [...names].sort());
    // Reading a listing from the daemon makes the kernel ask for the directory's times once more.
    assert.deepEqual(await listed(), first);
    const before = await requests();
    assert.deepEqual(await listed(), first);
    assert.equal((await requests()) - before, 0, 'the listing came from the kernel');
  });

  it('a change made through the mount is in the next listing', async () => {
    fs.writeFileSync(path.join(mnt, 'big', 'new'), 'x');
    await run('rm', [path.join(mnt, 'big', names[7]!)]);
    const now = new Set(await listed());
    assert.ok(now.has('new'));
    assert.ok(!now.has(names[7]!));
    assert.equal(now.size, names.length);
  });

  it('a listing given up half way, then read on by another reader or begun again, is whole', async () => {
    const whole = async (): Promise<void> => {
      const again = await listed();
      assert.equal(new Set(again).size, again.length, 'no name twice');
      assert.equal(again.length, names.length);
    };
    // What the kernel keeps is dropped, so that the daemon is asked again.
    const dropCaches = (): void => fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
    dropCaches();
    const script = 'import os, sys\nit = os.scandir(sys.argv[1])\nfor _ in range(5): next(it)\nprint("stopped")';
    assert.equal((await run('python3', ['-c', script, path.join(mnt, 'big')])).stdout.trim(), 'stopped');
    // The kernel kept the first answer: the next reader reads on from its end.
    await whole();
    dropCaches();
    await whole();
  });

  it('a listing comes with every entry looked up (readdirplus): a walk that stats each entry asks for none of them again', async () => {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
    const before = await requests();
    const sizes = (await run('find', [path.join(mnt, 'big'), '-printf', '%s\n'])).stdout.split('\n').filter((l) => l !== '');
    assert.equal(sizes.length, names.length + 1);
    const asked = (await requests()) - before;
    assert.ok(asked < names.length / 10, `${asked} requests for ${names.length} entries`);
  });

  it('a listing of directories that each layer holds, each looked up with it, leaves the daemon holding no more of them open than a few lookups do', async () => {
    const lowers = Array.from({ length: LAYERS }, (_, l) => path.join(dir, `layer${l}`));
    for (const l of lowers) for (let i = 0; i < DIRS; i++) fs.mkdirSync(path.join(l, 'dirs', `d${i}`), { recursive: true });
    const [upper, work, merged] = ['upper2', 'work2', 'mnt2'].map((d) => path.join(dir, d)) as [string, string, string];
    for (const d of [upper, work, merged]) fs.mkdirSync(d);
    await daemons.mountO(`lowerdir=${lowers.join(':')},upperdir=${upper},workdir=${work}`, merged);
    try {
      const [pid] = daemons.started();
      const descriptors = (): number => fs.readdirSync(`/proc/${pid}/fd`).length;
      const before = descriptors();
      const listed = (await run('ls', ['-f', path.join(merged, 'dirs')])).stdout.split('\n').filter((n) => n.startsWith('d'));
      assert.equal(listed.length, DIRS);
      // Without a bound, a part of the listing keeps every copy of every directory in it open: hundreds each.
      assert.ok(descriptors() - before < DIRS, `${descriptors() - before} descriptors more after listing ${DIRS} directories of ${LAYERS} layers`);
    } finally {
      await unmountAll(merged);
    }
  });
});
