import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { SnapfsError, type ErrorKind } from '../../src/errors';
import { matches } from '../../src/filters/match';
import { parseFilters } from '../../src/filters/parse';
import { Snapshotter } from '../../src/snapshotter/snapshotter';
import { defaultRoot } from '../../src/snapshotter/root';
import { rootState, tempDir } from '../support/helpers';

function rejects(kind: ErrorKind, fn: () => unknown, text?: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof SnapfsError, `expected a SnapfsError, got ${String(err)}`);
    assert.equal(err.kind, kind, err.message);
    if (text !== undefined) assert.ok(err.message.includes(text), `"${err.message}" should mention ${text}`);
    return true;
  });
}

async function rejectsAsync(kind: ErrorKind, fn: () => Promise<unknown>, text?: string): Promise<void> {
  await assert.rejects(fn, (err: unknown) => {
    assert.ok(err instanceof SnapfsError, `expected a SnapfsError, got ${String(err)}`);
    assert.equal(err.kind, kind, err.message);
    if (text !== undefined) assert.ok(err.message.includes(text), `"${err.message}" should mention ${text}`);
    return true;
  });
}

function upper(s: Snapshotter, key: string): string {
  const m = s.mounts(key)[0]!;
  const opt = m.options.find((o) => o.startsWith('upperdir='));
  return opt === undefined ? m.source : opt.slice('upperdir='.length);
}

/** base ← mid (committed chain) with one file in each layer. */
async function chain(s: Snapshotter): Promise<void> {
  s.prepare('base-a');
  fs.writeFileSync(path.join(upper(s, 'base-a'), 'a'), 'a');
  await s.commit('base', 'base-a');
  s.prepare('mid-a', 'base');
  fs.writeFileSync(path.join(upper(s, 'mid-a'), 'b'), 'b');
  await s.commit('mid', 'mid-a');
}

describe('snapshotter semantics', () => {
  let root: string;
  let s: Snapshotter;
  beforeEach(() => {
    root = tempDir();
    s = new Snapshotter(root);
  });
  afterEach(() => {
    s.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('prepare, commit, view: kinds, parents, one key namespace', async () => {
    await chain(s);
    s.prepare('work', 'mid');
    s.view('look', 'mid');
    assert.deepEqual(
      s.walk().map((i) => [i.name, i.parent, i.kind]),
      [
        ['base', '', 'committed'],
        ['look', 'mid', 'view'],
        ['mid', 'base', 'committed'],
        ['work', 'mid', 'active'],
      ],
    );
    rejects('NotFound', () => s.stat('base-a'), '"base-a"');
    for (const key of ['base', 'look', 'work']) {
      rejects('AlreadyExists', () => s.prepare(key), `"${key}"`);
      rejects('AlreadyExists', () => s.view(key), `"${key}"`);
    }
    await rejectsAsync('AlreadyExists', () => s.commit('look', 'work'), '"look"');
  });

  it('parents must exist and be committed', async () => {
    await chain(s);
    s.prepare('work', 'mid');
    s.view('look', 'mid');
    rejects('NotFound', () => s.prepare('x', 'nope'), '"nope"');
    rejects('NotFound', () => s.view('x', 'nope'), '"nope"');
    rejects('InvalidArgument', () => s.prepare('x', 'work'), 'not committed');
    rejects('InvalidArgument', () => s.view('x', 'look'), 'not committed');
    assert.equal(s.walk().length, 4);
  });

  it('commit: only active snapshots; the key becomes the name with the same parent and directory', async () => {
    await chain(s);
    s.prepare('work', 'mid', { keep: 'no' });
    const dir = upper(s, 'work');
    fs.writeFileSync(path.join(dir, 'c'), 'c');
    await s.commit('top', 'work', { stage: 'top' });
    rejects('NotFound', () => s.stat('work'));
    const top = s.stat('top');
    assert.equal(top.kind, 'committed');
    assert.equal(top.parent, 'mid');
    assert.deepEqual(top.labels, { stage: 'top' }, 'labels are replaced, not inherited');
    assert.equal(top.created, top.updated);
    s.prepare('next', 'top');
    const lower = s.mounts('next')[0]!.options[0]!;
    assert.equal(lower.split('=')[1]!.split(':')[0], dir, 'the committed layer is the same directory');
    s.view('v', 'top');
    await rejectsAsync('FailedPrecondition', () => s.commit('x', 'v'), 'snapshot "v" is not active');
    await rejectsAsync('FailedPrecondition', () => s.commit('x', 'top'), 'snapshot "top" is not active');
    await rejectsAsync('NotFound', () => s.commit('x', 'nope'));
    await rejectsAsync('AlreadyExists', () => s.commit('base', 'next'));
  });

  it('commit with a parent (rebase): a snapshot prepared without one joins the chain; anything else is refused and changes nothing', async () => {
    await chain(s);
    s.prepare('loose', '', { 'containerd.io/snapshot/parent-chain-id': 'mid' });
    const dir = upper(s, 'loose');
    // Root's containerd writes the layer's whiteouts straight into an overlay mount's upper directory; a bind mount would lose them.
    assert.deepEqual(
      s.mounts('loose'),
      process.getuid?.() === 0
        ? [{ type: 'overlay', source: 'overlay', options: [`workdir=${path.join(path.dirname(dir), 'work')}`, `upperdir=${dir}`, `lowerdir=${path.join(root, 'empty')}`] }]
        : [{ type: 'bind', source: dir, options: ['rw', 'rbind'] }],
    );
    fs.writeFileSync(path.join(dir, 'c'), 'c');
    s.prepare('child', 'base');
    s.prepare('open', 'mid');
    const before = rootState(root);
    await rejectsAsync('NotFound', () => s.commit('x', 'loose', {}, { parent: 'nope' }), 'parent "nope" does not exist');
    await rejectsAsync('InvalidArgument', () => s.commit('x', 'loose', {}, { parent: 'open' }), 'parent "open" is not committed snapshot');
    await rejectsAsync('FailedPrecondition', () => s.commit('x', 'child', {}, { parent: 'mid' }), 'it already has parent "base"');
    await rejectsAsync('InvalidArgument', () => s.commit('x', 'loose', {}, { parent: 'a\nb' }), 'parent');
    assert.equal(rootState(root), before);

    await s.commit('top', 'loose', {}, { parent: 'mid' });
    assert.equal(s.stat('top').parent, 'mid');
    s.view('v', 'top');
    assert.deepEqual(s.layers('v').lowers, [dir, ...s.layers('mid').lowers], 'the layer over mid over base');
    await s.commit('child-c', 'child', {}, { parent: 'base' });
    assert.equal(s.stat('child-c').parent, 'base');
  });

  it('remove: refused while children exist; directories go away; ids are never reused', async () => {
    await chain(s);
    rejects('FailedPrecondition', () => s.remove('base'), 'cannot remove snapshot with child');
    rejects('NotFound', () => s.remove('nope'));
    s.prepare('gone');
    const goneDir = path.dirname(upper(s, 'gone'));
    s.remove('gone');
    assert.equal(fs.existsSync(goneDir), false);
    s.prepare('again');
    assert.ok(Number(path.basename(path.dirname(upper(s, 'again')))) > Number(path.basename(goneDir)));
    s.remove('mid', 'base', 'again');
    assert.deepEqual(s.walk(), []);
    assert.deepEqual(fs.readdirSync(path.join(root, 'snapshots')), []);
  });

  it('mounts: fuse.snapfs over the chain, bind mounts where fuse-overlayfs uses them', async () => {
    await chain(s);
    const fsOf = (key: string): string => {
      s.view(`probe-${key}`, key);
      const src = s.mounts(`probe-${key}`)[0]!;
      s.remove(`probe-${key}`);
      return src.type === 'bind' ? src.source : src.options[0]!.slice('lowerdir='.length).split(':')[0]!;
    };
    const base = fsOf('base');
    const mid = fsOf('mid');
    s.prepare('a0');
    s.view('v0');
    s.view('v1', 'base');
    s.view('v2', 'mid');
    s.prepare('a2', 'mid');
    const a0 = s.mounts('a0');
    assert.equal(a0.length, 1);
    assert.equal(a0[0]!.type, 'bind');
    assert.deepEqual(a0[0]!.options, ['rw', 'rbind']);
    assert.deepEqual(s.mounts('v0')[0]!.options, ['ro', 'rbind']);
    assert.deepEqual(s.mounts('v1'), [{ type: 'bind', source: base, options: ['ro', 'rbind'] }]);
    assert.deepEqual(s.mounts('v2'), [{ type: 'fuse.snapfs', source: 'snapfs', options: [`lowerdir=${mid}:${base}`, 'ro'] }]);
    const a2 = s.mounts('a2')[0]!;
    assert.equal(a2.type, 'fuse.snapfs');
    assert.equal(a2.source, 'snapfs');
    const dir = path.dirname(a2.options[1]!.slice('upperdir='.length));
    assert.equal(path.dirname(dir), path.join(root, 'snapshots'));
    assert.deepEqual(a2.options, [`lowerdir=${mid}:${base}`, `upperdir=${dir}/fs`, `workdir=${dir}/work`]);
    assert.ok(fs.statSync(`${dir}/fs`).isDirectory());
    assert.ok(fs.statSync(`${dir}/work`).isDirectory());
    rejects('FailedPrecondition', () => s.mounts('mid'), 'committed');
    rejects('NotFound', () => s.mounts('nope'));
  });

  it("mounts of id-mapped snapshots (containerd's labels): fuse.snapfs always, uidmapping=/gidmapping= with colons, as the fuse-overlayfs snapshotter makes them", async () => {
    await chain(s);
    const labels = { 'containerd.io/snapshot/uidmapping': '0:100000:65536,65536:300000:10', 'containerd.io/snapshot/gidmapping': '0:200000:65536' };
    const mapping = ['uidmapping=0:100000:65536:65536:300000:10', 'gidmapping=0:200000:65536'];
    const m0 = s.prepare('mapped-0', '', labels);
    const dir0 = path.join(root, 'snapshots', path.basename(path.dirname(m0[0]!.options[1]!.slice('upperdir='.length))));
    assert.deepEqual(m0, [{ type: 'fuse.snapfs', source: 'snapfs', options: [`lowerdir=${path.join(root, 'empty')}`, `upperdir=${dir0}/fs`, `workdir=${dir0}/work`, ...mapping] }], 'no parent: over the empty layer, not a bind mount');
    assert.deepEqual(fs.readdirSync(path.join(root, 'empty')), []);
    const v1 = s.view('mapped-v1', 'base', labels);
    assert.equal(v1[0]!.type, 'fuse.snapfs', 'a view of one parent too');
    assert.deepEqual(v1[0]!.options.slice(1), ['ro', ...mapping]);
    assert.deepEqual(s.mounts('mapped-v1'), v1, 'mounts says the same');
    const a2 = s.prepare('mapped-2', 'mid', { 'containerd.io/snapshot/uidmapping': '0:100000:65536' });
    assert.deepEqual(a2[0]!.options.slice(3), ['uidmapping=0:100000:65536']);
    rejects('InvalidArgument', () => s.prepare('bad-map', 'mid', { 'containerd.io/snapshot/uidmapping': '0:1' }), 'uidmapping');
    rejects('NotFound', () => s.mounts('bad-map'), 'bad-map');
  });

  it("mounts of active snapshots held to a size (containerd's max-size label): fuse.snapfs always, with max_size=; views are read-only and take none", async () => {
    await chain(s);
    const labels = { 'containerd.io/snapshot/max-size': '1048576' };
    const m0 = s.prepare('sized-0', '', labels);
    const dir0 = path.join(root, 'snapshots', path.basename(path.dirname(m0[0]!.options[1]!.slice('upperdir='.length))));
    assert.deepEqual(m0, [{ type: 'fuse.snapfs', source: 'snapfs', options: [`lowerdir=${path.join(root, 'empty')}`, `upperdir=${dir0}/fs`, `workdir=${dir0}/work`, 'max_size=1048576'] }]);
    assert.deepEqual(s.prepare('sized-2', 'mid', labels)[0]!.options.slice(3), ['max_size=1048576']);
    assert.deepEqual(s.view('sized-v', 'base', labels), [{ type: 'bind', source: upper(s, 'sized-v'), options: ['ro', 'rbind'] }]);
    const before = rootState(root);
    for (const bad of ['0', '-1', '1e6', ' 10', '1048576 ', '99999999999999999']) {
      rejects('InvalidArgument', () => s.prepare('bad-size', 'mid', { 'containerd.io/snapshot/max-size': bad }), 'max-size');
      rejects('InvalidArgument', () => s.update('sized-2', { 'containerd.io/snapshot/max-size': bad }, ['labels.containerd.io/snapshot/max-size']), 'max-size');
    }
    assert.equal(rootState(root), before);
  });

  it('timestamps: nanoseconds, created == updated at creation, within the caller clock', () => {
    const before = BigInt(Date.now()) * 1_000_000n;
    s.prepare('a');
    const after = (BigInt(Date.now()) + 1n) * 1_000_000n;
    const a = s.stat('a');
    assert.equal(a.created, a.updated);
    assert.ok(a.created >= before && a.created <= after, `${a.created} in [${before}, ${after}]`);
    const stamps = new Set<bigint>();
    for (let i = 0; i < 20; i++) {
      s.prepare(`t${i}`);
      stamps.add(s.stat(`t${i}`).created);
    }
    assert.ok([...stamps].some((t) => t % 1_000_000n !== 0n), 'sub-millisecond digits are real');
    const u = s.update('a', { x: '1' });
    assert.equal(u.created, a.created);
    assert.ok(u.updated > a.updated);
  });

  it('update: labels only; replace all, set one, delete with empty value', () => {
    s.prepare('a', '', { x: '1', y: '2' });
    assert.deepEqual(s.update('a', { z: '3' }).labels, { z: '3' });
    assert.deepEqual(s.update('a', { w: '4', q: 'nope' }, ['labels.w']).labels, { z: '3', w: '4' });
    assert.deepEqual(s.update('a', { z: '' }, ['labels.z']).labels, { w: '4' });
    assert.deepEqual(s.update('a', {}, ['labels.w']).labels, {});
    assert.deepEqual(s.update('a', { k: 'v' }, ['labels']).labels, { k: 'v' });
    for (const p of ['parent', 'kind', 'name', 'labels.', 'created']) {
      rejects('InvalidArgument', () => s.update('a', {}, [p]), p === 'labels.' ? 'labels.' : `"${p}"`);
    }
    rejects('NotFound', () => s.update('nope', {}));
    assert.deepEqual(s.stat('a').labels, { k: 'v' });
  });

  it('labels: key and value up to 4096 bytes together', async () => {
    const key = 'k'.repeat(96);
    s.prepare('ok', '', { [key]: 'v'.repeat(4000) });
    rejects('InvalidArgument', () => s.prepare('big', '', { [key]: 'v'.repeat(4001) }), '4097 bytes');
    rejects('InvalidArgument', () => s.update('ok', { [key]: 'é'.repeat(2001) }), 'bytes');
    await rejectsAsync('InvalidArgument', () => s.commit('c', 'ok', { '': 'x' }), 'empty');
    assert.equal(s.walk().length, 1);
  });

  it('keys: empty, NUL and newline are refused', () => {
    rejects('InvalidArgument', () => s.prepare(''), 'empty');
    rejects('InvalidArgument', () => s.prepare('a\0b'), 'NUL');
    rejects('InvalidArgument', () => s.view('a\nb'), 'newline');
    rejects('InvalidArgument', () => s.prepare('ok', 'a\nb'), 'newline');
    s.prepare('default/12/sha256:abc def');
    assert.equal(s.stat('default/12/sha256:abc def').kind, 'active');
    assert.equal(fs.existsSync(path.join(root, 'metadata.db')), true);
  });

  it('walk: indexed filters give exactly what matching every row gives', async () => {
    await chain(s);
    let n = 0;
    for (const kind of ['prepare', 'view'] as const) {
      for (let i = 0; i < 30; i++) {
        const labels: Record<string, string> = { idx: String(i % 7), [`only${i % 3}`]: 'yes' };
        if (i % 5 === 0) labels['a.b'] = 'dotted';
        s[kind](`${kind}-${n++}`, i % 2 === 0 ? 'mid' : 'base', labels);
      }
    }
    const all = s.walk();
    const filters = [
      ['name==mid'],
      ['name==nope'],
      ['kind==view'],
      ['kind==committed', 'labels.idx==3'],
      ['labels.idx==3,kind==active'],
      ['labels.idx==3,labels.only1'],
      ['labels.only2'],
      ['labels."a.b"==dotted'],
      ['labels.a.b==dotted,parent==mid'],
      ['parent==base'],
      ['parent==""'],
      ['parent==base,name~=view'],
      ['name~=-1[0-9]$'],
      ['labels.idx!=3,kind==view'],
      ['kind==view', 'name~=^base$'],
      ['labels.idx'],
    ];
    for (const f of filters) {
      const filter = parseFilters(f);
      const expected = all.filter((i) =>
        matches(filter, (p) =>
          p[0] === 'name' ? i.name : p[0] === 'kind' ? i.kind : p[0] === 'parent' ? i.parent : p[0] === 'labels' ? i.labels[p.slice(1).join('.')] : undefined,
        ),
      );
      assert.deepEqual(s.walk(f).map((i) => i.name), expected.map((i) => i.name), f.join(' | '));
    }
    assert.equal(s.walk(['labels.idx==3,kind==active']).length, 4);
    rejects('InvalidArgument', () => s.walk(['kind=']), 'filter');
  });

  it('usage: blocks and inodes, hard links once, as du counts them; fixed at commit', async () => {
    s.prepare('a');
    const dir = upper(s, 'a');
    fs.mkdirSync(path.join(dir, 'd'));
    fs.writeFileSync(path.join(dir, 'd', 'f'), Buffer.alloc(100_000, 1));
    fs.linkSync(path.join(dir, 'd', 'f'), path.join(dir, 'link'));
    fs.symlinkSync('d/f', path.join(dir, 'sym'));
    const fd = fs.openSync(path.join(dir, 'sparse'), 'w');
    fs.writeSync(fd, 'x', 50 << 20);
    fs.closeSync(fd);
    const du = Number(execFileSync('du', ['-s', '-B1', dir], { encoding: 'utf8' }).split('\t')[0]);
    const duInodes = Number(execFileSync('du', ['-s', '--inodes', dir], { encoding: 'utf8' }).split('\t')[0]);
    const live = s.usage('a');
    assert.deepEqual(live, { size: du, inodes: duInodes });
    assert.equal(live.inodes, 5);
    await s.commit('c', 'a');
    fs.writeFileSync(path.join(dir, 'later'), Buffer.alloc(100_000, 1));
    assert.deepEqual(s.usage('c'), live, 'usage of a committed snapshot is the one measured at commit');
    rejects('NotFound', () => s.usage('nope'));
  });

  it("usage never follows a symlink, the snapshot's own directory included", () => {
    s.prepare('a');
    const dir = upper(s, 'a');
    const outside = tempDir();
    try {
      fs.writeFileSync(path.join(outside, 'big'), Buffer.alloc(1 << 20, 1));
      fs.rmdirSync(dir);
      fs.symlinkSync(outside, dir);
      // O_DIRECTORY | O_NOFOLLOW on a symlink: Linux says ENOTDIR.
      assert.throws(() => s.usage('a'), { code: 'ENOTDIR' });
    } finally {
      fs.rmSync(outside, { recursive: true, force: true });
    }
  });

  it('events: a journal of every change, with containerd topics', async () => {
    await chain(s);
    s.view('v', 'mid');
    s.update('v', { a: 'b' });
    s.remove('v');
    assert.deepEqual(
      s.events().map((e) => [e.topic, e.key, e.parent ?? e.name ?? '']),
      [
        ['/snapshot/prepare', 'base-a', ''],
        ['/snapshot/commit', 'base-a', 'base'],
        ['/snapshot/prepare', 'mid-a', 'base'],
        ['/snapshot/commit', 'mid-a', 'mid'],
        ['/snapshot/view', 'v', 'mid'],
        ['/snapshot/update', 'v', ''],
        ['/snapshot/remove', 'v', ''],
      ],
    );
    const all = s.events();
    assert.deepEqual(s.events(all[4]!.seq), all.slice(5));
    assert.ok(all.every((e, i) => i === 0 || e.time > all[i - 1]!.time));
  });

  it('cleanup: removes what no snapshot owns, and nothing else', async () => {
    await chain(s);
    s.prepare('keep', 'mid');
    const dirs = path.join(root, 'snapshots');
    const owned = fs.readdirSync(dirs).sort();
    fs.mkdirSync(path.join(dirs, '999', 'fs'), { recursive: true });
    fs.mkdirSync(path.join(dirs, '.new-7-999999999', 'fs'), { recursive: true });
    fs.mkdirSync(path.join(dirs, '.rm-0123456789ab'));
    fs.mkdirSync(path.join(dirs, 'stray'));
    fs.chmodSync(path.join(dirs, '999', 'fs'), 0o555);
    assert.deepEqual(s.cleanup().sort(), ['.new-7-999999999', '.rm-0123456789ab', '999', 'stray']);
    assert.deepEqual(fs.readdirSync(dirs).sort(), owned);
    assert.deepEqual(s.cleanup(), []);
    assert.equal(s.walk().length, 3);
  });
});

describe('roots', () => {
  it('reading a root that does not exist creates nothing', () => {
    const parent = tempDir();
    const root = path.join(parent, 'not-yet');
    const s = new Snapshotter(root);
    assert.deepEqual(s.walk(), []);
    rejects('NotFound', () => s.stat('x'));
    assert.deepEqual(s.events(), []);
    assert.equal(fs.existsSync(root), false);
    s.prepare('x');
    assert.equal(s.stat('x').kind, 'active');
    s.close();
    fs.rmSync(parent, { recursive: true });
  });

  it('refuses foreign roots and files that are not its database, touching nothing', () => {
    const parent = tempDir();
    const foreign = path.join(parent, 'foreign');
    fs.mkdirSync(foreign);
    fs.writeFileSync(path.join(foreign, 'precious'), 'data');
    const notDb = path.join(parent, 'notdb');
    fs.mkdirSync(notDb);
    fs.writeFileSync(path.join(notDb, 'metadata.db'), 'this is not SQLite, but it is long enough to have a header of its own.');
    const file = path.join(parent, 'file');
    fs.writeFileSync(file, 'x');
    const otherDb = path.join(parent, 'other');
    fs.mkdirSync(otherDb);
    execFileSync('sqlite3', [path.join(otherDb, 'metadata.db'), 'CREATE TABLE t (x); INSERT INTO t VALUES (1);']);
    const before = rootState(parent);
    const cases: [string, string][] = [
      [foreign, 'not a snapfs root'],
      [notDb, 'not a SQLite database'],
      [file, 'not a directory'],
      [otherDb, 'not a snapfs metadata database'],
    ];
    for (const [root, why] of cases) {
      const s = new Snapshotter(root);
      rejects('Unavailable', () => s.prepare('k'), why);
      rejects('Unavailable', () => s.walk(), why);
      s.close();
    }
    assert.equal(rootState(parent), before);
    fs.rmSync(parent, { recursive: true });
  });

  it('default root: $SNAPFS_ROOT, then by user', () => {
    assert.equal(defaultRoot({ SNAPFS_ROOT: '/x/y' }), '/x/y');
    if (process.getuid?.() === 0) assert.equal(defaultRoot({}), '/var/lib/snapfs');
  });
});

describe('schema', () => {
  it('a database from a newer snapfs is refused, not downgraded', () => {
    const root = tempDir();
    try {
      const s = new Snapshotter(root);
      s.prepare('a');
      s.close();
      execFileSync('sqlite3', [path.join(root, 'metadata.db'), 'PRAGMA user_version = 99;']);
      const before = rootState(root);
      const again = new Snapshotter(root);
      rejects('Unavailable', () => again.stat('a'), 'schema version 99 is newer');
      again.close();
      assert.equal(rootState(root), before);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
