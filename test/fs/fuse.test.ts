import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tempDir } from '../support/helpers';
import { run, serveMinimal, unmountAll } from '../support/mount-helpers';

const isRoot = process.getuid?.() === 0;

/** The fixture's names: every byte but NUL and `/`, in names of 16 bytes. */
function allNames(): Buffer[] {
  const bytes = [...Array(255).keys()].map((i) => i + 1).filter((b) => b !== 0x2f);
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += 16) out.push(Buffer.from(bytes.slice(i, i + 16)));
  return out;
}

interface Counts {
  lookups: [number, number][];
  forgets: [number, number][];
  opcodes: string[];
}

function ask(child: ChildProcess): Promise<Counts> {
  return new Promise((resolve) => {
    child.once('message', (msg: { counts: Counts }) => resolve(msg.counts));
    child.send('counts');
  });
}

describe("the FUSE binding: fuse-native mounts, snapfs's session serves by node id", { skip: !isRoot && 'drops the kernel caches, which needs root' }, () => {
  let dir: string;
  let mnt: string;
  let data: string;
  let child: ChildProcess;
  before(async () => {
    dir = tempDir('snapfs-fuse-');
    mnt = path.join(dir, 'mnt');
    data = path.join(dir, 'data');
    fs.mkdirSync(mnt);
    // Larger than one request: reads come in pieces of up to 1 MiB.
    fs.writeFileSync(data, randomBytes(3 * 1024 * 1024 + 17));
    child = await serveMinimal(mnt, data);
  });
  after(async () => {
    await unmountAll(dir);
    child.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('the addon mounts through the system\'s libfuse, not a bundled copy', () => {
    const maps = fs.readFileSync(`/proc/${child.pid}/maps`, 'utf8');
    const libfuse = [...new Set(maps.split('\n').map((l) => l.split(/\s+/)[5] ?? '').filter((f) => /libfuse\.so/.test(f)))];
    assert.equal(libfuse.length, 1, maps);
    assert.match(libfuse[0]!, /^\/(usr\/)?lib\//);
  });

  it('an answer given later, as a Promise, holds up no other request', async () => {
    const order: string[] = [];
    const slow = fs.promises.stat(path.join(mnt, 'slow')).then(() => order.push('slow'));
    await new Promise((r) => setTimeout(r, 50));
    await fs.promises.stat(path.join(mnt, 'hello')).then(() => order.push('hello'));
    await slow;
    assert.deepEqual(order, ['hello', 'slow']);
  });

  it('reads go straight to the descriptor open answered with, whole', async () => {
    const sum = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    const { stdout } = await run('sha256sum', [path.join(mnt, 'hello')]);
    assert.equal(stdout.split(' ')[0], sum(fs.readFileSync(data)));
  });

  it('names are bytes: every byte but / and NUL is listed and looked up as it is', () => {
    // The file system is served by another process: this one may use blocking calls on it.
    const listed = fs.readdirSync(mnt, { encoding: 'buffer' });
    for (const name of allNames()) {
      assert.ok(listed.some((n) => n.equals(name)), `listed: ${name.toString('hex')}`);
      assert.equal(fs.statSync(Buffer.concat([Buffer.from(`${mnt}/`), name])).size, fs.statSync(data).size);
    }
  });

  it('an errno thrown is the answer; an operation not implemented is ENOSYS; anything else is EIO, and logged', () => {
    assert.throws(() => fs.statSync(path.join(mnt, 'eacces')), { code: 'EACCES' });
    assert.throws(() => fs.statSync(path.join(mnt, 'bug')), { code: 'EIO' });
    assert.throws(() => fs.statSync(path.join(mnt, 'missing')), { code: 'ENOENT' });
    assert.throws(() => fs.readlinkSync(path.join(mnt, 'link')), { code: 'ENOSYS' });
  });

  it('readdirplus answers a listing with every entry, and the kernel forgets every lookup it was given', async () => {
    await run('sh', ['-c', 'echo 2 > /proc/sys/vm/drop_caches']);
    // (eacces, bug and link fail to show, each as it should.)
    await run('sh', ['-c', `ls -l "$0" > /dev/null 2>&1 || true`, mnt]);
    const listed = await ask(child);
    assert.ok(listed.opcodes.includes('readdirplus'), JSON.stringify(listed.opcodes));
    // Dropping the caches makes the kernel forget every node it holds but the root.
    await run('sh', ['-c', 'echo 2 > /proc/sys/vm/drop_caches']);
    const counts = await ask(child);
    assert.ok(counts.lookups.length >= allNames().length, 'every entry was looked up');
    assert.deepEqual(new Map(counts.forgets), new Map(counts.lookups));
  });

  it('an unmount from outside ends the session, and its process', async () => {
    const ended = new Promise<{ ended?: true; error?: string }>((resolve) => child.on('message', (m: { ended?: true; error?: string }) => m.ended && resolve(m)));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    await run('fusermount', ['-u', mnt]);
    assert.deepEqual(await ended, { ended: true });
    assert.equal(await exited, 0);
    assert.ok(!fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${mnt} `));
  });
});
