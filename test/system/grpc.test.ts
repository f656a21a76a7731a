import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { mountHelperProblems } from '../../src/grpc/server';
import { snapshotsClientConstructor } from '../../src/grpc/service';
import { SnapshotsClient, startServer, type Reply, type Server } from '../support/grpc-helpers';
import { sys } from '../../src/native/sys';
import { CLI, layerDirOf, ok, rootState, snapfs, tempDir } from '../support/helpers';

const S = grpc.status;
/** Bytes written as hex, spaces allowed. */
const hex = (text: string): Buffer => Buffer.from(text.replace(/ /g, ''), 'hex');

describe('snapfs serve: the Snapshots gRPC API', () => {
  let dir: string;
  let root: string;
  let address: string;
  let server: Server;
  let client: SnapshotsClient;

  before(async () => {
    dir = tempDir('snapfs-grpc-');
    root = path.join(dir, 'root');
    address = path.join(dir, 'snapfs.sock');
    server = await startServer(root, address, ['--log-level', 'debug']);
    client = new SnapshotsClient(address);
  });
  after(async () => {
    client.close();
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('all ten methods do what containerd asks of them', async () => {
    const base = (await client.call('Prepare', { key: 'base', labels: { a: '1' } })).mounts as Reply[];
    assert.deepEqual(base, [{ type: 'bind', source: path.join(root, 'snapshots', '1', 'fs'), target: '', options: ['rw', 'rbind'] }]);
    fs.writeFileSync(path.join(root, 'snapshots', '1', 'fs', 'hello'), 'hello\n');
    assert.deepEqual(await client.call('Commit', { name: 'layer1', key: 'base', labels: { b: '2' } }), {});

    const mounts = (await client.call('Prepare', { key: 'ctr', parent: 'layer1' })).mounts as Reply[];
    assert.deepEqual(mounts, [
      {
        type: 'fuse.snapfs',
        source: 'snapfs',
        target: '',
        options: [`lowerdir=${path.join(root, 'snapshots', '1', 'fs')}`, `upperdir=${path.join(root, 'snapshots', '2', 'fs')}`, `workdir=${path.join(root, 'snapshots', '2', 'work')}`],
      },
    ]);
    await client.call('Commit', { name: 'layer2', key: 'ctr' });
    const top = (await client.call('Prepare', { key: 'top', parent: 'layer2' })).mounts as Reply[];
    assert.equal(top[0]!.type, 'fuse.snapfs');
    assert.deepEqual(top[0]!.options, [
      `lowerdir=${path.join(root, 'snapshots', '2', 'fs')}:${path.join(root, 'snapshots', '1', 'fs')}`,
      `upperdir=${path.join(root, 'snapshots', '3', 'fs')}`,
      `workdir=${path.join(root, 'snapshots', '3', 'work')}`,
    ]);
    assert.deepEqual((await client.call('Mounts', { key: 'top' })).mounts, top);
    const view = (await client.call('View', { key: 'v', parent: 'layer2' })).mounts as Reply[];
    assert.equal(view[0]!.type, 'fuse.snapfs');
    assert.ok((view[0]!.options as string[]).includes('ro'));

    const stat = (await client.call('Stat', { key: 'layer1' })).info as Reply;
    assert.equal(stat.name, 'layer1');
    assert.equal(stat.parent, '');
    assert.equal(stat.kind, 'COMMITTED');
    assert.deepEqual(stat.labels, { b: '2' }); // commit's labels replace the active snapshot's, as in containerd
    const created = stat.created_at as { seconds: number; nanos: number };
    assert.ok(Math.abs(created.seconds - Date.now() / 1000) < 60);
    assert.equal(((await client.call('Stat', { key: 'top' })).info as Reply).kind, 'ACTIVE');
    assert.equal(((await client.call('Stat', { key: 'v' })).info as Reply).kind, 'VIEW');

    // Update: one label by path, a label removed by an empty value, all labels replaced.
    const labelsAfter = async (paths: string[] | null, labels: Record<string, string>): Promise<unknown> =>
      ((await client.call('Update', { info: { name: 'top', labels }, ...(paths === null ? {} : { update_mask: { paths } }) })).info as Reply).labels;
    assert.deepEqual(await labelsAfter(['labels.x'], { x: '1', ignored: 'y' }), { x: '1' });
    assert.deepEqual(await labelsAfter(['labels.y'], { y: '2' }), { x: '1', y: '2' });
    assert.deepEqual(await labelsAfter(['labels.x'], {}), { y: '2' });
    assert.deepEqual(await labelsAfter(['labels'], { z: '3' }), { z: '3' });
    assert.deepEqual(await labelsAfter(null, { w: '4' }), { w: '4' });

    // Usage of an active snapshot is measured now.
    const before = (await client.call('Usage', { key: 'top' })) as { size: number; inodes: number };
    fs.writeFileSync(path.join(root, 'snapshots', '3', 'fs', 'big'), Buffer.alloc(1 << 20, 1));
    const afterWrite = (await client.call('Usage', { key: 'top' })) as { size: number; inodes: number };
    assert.ok(afterWrite.size >= before.size + (1 << 20), `${JSON.stringify(before)} → ${JSON.stringify(afterWrite)}`);
    assert.equal(afterWrite.inodes, before.inodes + 1);

    const names = (await client.list()).flat().map((i) => i.name);
    assert.deepEqual(names, ['layer1', 'layer2', 'top', 'v']);
    assert.deepEqual((await client.list(['kind==committed'])).flat().map((i) => i.name), ['layer1', 'layer2']);
    assert.deepEqual((await client.list(['labels.w==4', 'parent==layer1'])).flat().map((i) => i.name), ['layer2', 'top']);

    await client.call('Remove', { key: 'v' });
    await client.call('Remove', { key: 'top' });
    const orphan = path.join(root, 'snapshots', '99');
    fs.mkdirSync(orphan);
    await client.call('Cleanup', {});
    assert.equal(fs.existsSync(orphan), false);
    assert.deepEqual((await client.list()).flat().map((i) => i.name), ['layer1', 'layer2']);
  });

  test("errors carry containerd's gRPC codes, and a refused call changes nothing", async () => {
    await client.call('Prepare', { key: 'e-active' });
    await client.call('Prepare', { key: 'e-parent' });
    await client.call('Commit', { name: 'e-committed', key: 'e-parent' });
    await client.call('Prepare', { key: 'e-child', parent: 'e-committed' });
    const cases: [string, Reply, grpc.status, RegExp][] = [
      ['Stat', { key: 'missing' }, S.NOT_FOUND, /missing/],
      ['Mounts', { key: 'missing' }, S.NOT_FOUND, /missing/],
      ['Usage', { key: 'missing' }, S.NOT_FOUND, /missing/],
      ['Remove', { key: 'missing' }, S.NOT_FOUND, /missing/],
      ['Commit', { name: 'x', key: 'missing' }, S.NOT_FOUND, /missing/],
      ['Prepare', { key: 'x', parent: 'missing' }, S.NOT_FOUND, /missing/],
      ['Prepare', { key: 'e-active' }, S.ALREADY_EXISTS, /e-active/],
      ['Commit', { name: 'e-committed', key: 'e-active' }, S.ALREADY_EXISTS, /e-committed/],
      ['Prepare', { key: 'x', parent: 'e-active' }, S.INVALID_ARGUMENT, /^failed to create snapshot: parent "e-active" is not committed snapshot$/],
      ['Commit', { name: 'x', key: 'e-committed' }, S.FAILED_PRECONDITION, /^failed to commit snapshot: snapshot "e-committed" is not active$/],
      ['Remove', { key: 'e-committed' }, S.FAILED_PRECONDITION, /child/],
      ['Prepare', { key: 'x', parent: 'e-committed', labels: { 'containerd.io/snapshot/max-size': 'lots' } }, S.INVALID_ARGUMENT, /max-size="lots": not a size in bytes/],
      ['Commit', { name: 'x', key: 'e-active', parent: 'missing' }, S.NOT_FOUND, /parent "missing" does not exist/],
      ['Commit', { name: 'x', key: 'e-active', parent: 'e-child' }, S.INVALID_ARGUMENT, /^failed to commit snapshot: parent "e-child" is not committed snapshot$/],
      ['Commit', { name: 'x', key: 'e-child', parent: 'x' }, S.FAILED_PRECONDITION, /"e-child": cannot rebase onto "x", it already has parent "e-committed"/],
      ['Prepare', { key: '' }, S.INVALID_ARGUMENT, /key/],
      ['Update', { info: { name: 'e-active', labels: {} }, update_mask: { paths: ['parent'] } }, S.INVALID_ARGUMENT, /parent/],
      ['Update', {}, S.INVALID_ARGUMENT, /key/],
    ];
    const state = rootState(root);
    for (const [method, request, code, details] of cases) {
      const err = await client.failure(method, request);
      assert.equal(S[err.code], S[code], `${method} ${JSON.stringify(request)}: ${err.details}`);
      assert.match(err.details, details);
      assert.doesNotMatch(err.details, /\n/);
    }
    await assert.rejects(client.list(['labels.a=~']), (err: grpc.ServiceError) => err.code === S.INVALID_ARGUMENT);
    assert.equal(rootState(root), state);
  });

  test('a request that does not decode gets InvalidArgument, and the server carries on', async () => {
    const garbage = new grpc.Client(`unix:${address}`, grpc.credentials.createInsecure());
    try {
      const err = await new Promise<grpc.ServiceError>((resolve) =>
        garbage.makeUnaryRequest(
          '/containerd.services.snapshots.v1.Snapshots/Stat',
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.from([0x12]), // field 2 (key) cut off before its length
          (e) => resolve(e!),
        ),
      );
      assert.equal(err.code, S.INVALID_ARGUMENT, err.details);
      assert.match(err.details, /malformed Stat request/);
    } finally {
      garbage.close();
    }
    assert.equal(((await client.call('Stat', { key: 'e-active' })).info as Reply).kind, 'ACTIVE');
  });

  test('a request that does not decode completely is InvalidArgument, says in one line what is wrong, and changes nothing', async () => {
    // Most would prepare "a" (key is field 2: 12 01 61) if read as protobufjs alone reads them.
    const cases: [method: string, bytes: string, problem: string][] = [
      ['Prepare', '12 0a 74 72 75 6e 63 31', 'field 2 (key) runs past the end of the message'], // key declares 10 bytes, 6 follow
      ['Prepare', '12 01 61 78 ff', 'unknown field 15 runs past the end of the message'], // a varint cut short
      ['Prepare', '12 01 61 1a 80', 'field 3 (parent) runs past the end of the message'], // a length cut short
      ['Prepare', '12 01 61 80', 'the tag at byte 3 runs past the end of the message'],
      ['Prepare', `12 01 61 78 ${'ff '.repeat(10)}01`, 'unknown field 15 has a varint of more than 64 bits'], // 11 bytes
      ['Prepare', `12 01 61 78 ${'ff '.repeat(9)}02`, 'unknown field 15 has a varint of more than 64 bits'], // 10 bytes, bit 64 set
      ['Prepare', '12 01 61 7d 01 02 03', 'unknown field 15 runs past the end of the message'], // fixed32, 3 bytes
      ['Prepare', '12 01 61 79 01 02 03 04 05 06 07', 'unknown field 15 runs past the end of the message'], // fixed64, 7 bytes
      ['Prepare', '0b 01 62 12 01 61', 'field 1 (snapshotter) has wire type 3, a group, which proto3 does not have'],
      ['Prepare', '0c 01 62 12 01 61', 'field 1 (snapshotter) has wire type 4, a group, which proto3 does not have'],
      ['Prepare', '12 01 61 7b 7c', 'unknown field 15 has wire type 3, a group, which proto3 does not have'], // a whole empty group
      ['Prepare', '0e 01 62 12 01 61', 'field 1 (snapshotter) has wire type 6, which protobuf does not define'],
      ['Prepare', '0f 01 62 12 01 61', 'field 1 (snapshotter) has wire type 7, which protobuf does not define'],
      ['Prepare', '02 01 62 12 01 61', 'the tag at byte 0 has field number 0, outside 1 to 536870911'],
      ['Prepare', '12 01 61 80 80 80 80 10 00', 'the tag at byte 3 has field number 536870912, outside 1 to 536870911'],
      ['Prepare', '12 01 61 18 00', 'field 3 (parent) is sent as varint, not as length-delimited'],
      ['Prepare', '12 02 ff 61', 'field 2 (key) is not valid UTF-8'],
      ['Prepare', '12 04 61 ed a0 80', 'field 2 (key) is not valid UTF-8'], // a UTF-16 surrogate
      // Map entries: labels is field 4, an entry's key field 1 and value field 2.
      ['Prepare', '22 03 0a 05 6b 12 01 61', 'field 4.1 (labels.key) runs past the end of the message'], // past the entry, not the request
      ['Prepare', '12 01 61 22 05 0a 01 6b 10 00', 'field 4.2 (labels.value) is sent as varint, not as length-delimited'],
      ['Prepare', '12 01 61 22 05 0a 01 ff 12 00', 'field 4.1 (labels.key) is not valid UTF-8'],
      ['Prepare', '12 01 61 22 09 0a 01 6b', 'field 4 (labels) runs past the end of the message'],
      ['Prepare', '12 01 61 22 05 0a 01 6b 02 00', 'the tag at byte 8 in field 4 (labels) has field number 0, outside 1 to 536870911'],
      // Deeper: Update's info (2) holds created_at (4), a Timestamp whose seconds (1) are a varint; update_mask (3) holds paths (1).
      ['Update', '12 07 22 05 0d 01 02 03 04', 'field 2.4.1 (info.created_at.seconds) is sent as fixed32, not as varint'],
      ['Update', '1a 03 0a 01 ff', 'field 3.1 (update_mask.paths) is not valid UTF-8'],
    ];
    const state = rootState(root);
    for (const [method, bytes, problem] of cases) {
      const err = await client.statusOfBytes(method, hex(bytes));
      assert.deepEqual(err, { code: S.INVALID_ARGUMENT, details: `malformed ${method} request: ${problem}` }, bytes);
    }
    assert.equal(rootState(root), state);
    assert.deepEqual((await client.list()).flat().filter((i) => i.name === 'a'), []);
  });

  test('every method refuses a well-formed request followed by a field cut short', async () => {
    await client.call('Prepare', { key: 'every' });
    const requests: [method: string, request: Reply][] = [
      ['Prepare', { key: 'every-new' }],
      ['View', { key: 'every-view' }],
      ['Mounts', { key: 'every' }],
      ['Commit', { name: 'every-committed', key: 'every' }],
      ['Remove', { key: 'every' }],
      ['Stat', { key: 'every' }],
      ['Update', { info: { name: 'every', labels: { x: 'y' } } }],
      ['List', { filters: ['kind==active'] }],
      ['Usage', { key: 'every' }],
      ['Cleanup', {}],
    ];
    const service = snapshotsClientConstructor().service;
    const state = rootState(root);
    for (const [method, request] of requests) {
      const bytes = Buffer.concat([service[method]!.requestSerialize(request), hex('0a 05 61 62')]); // snapshotter declares 5 bytes, 2 follow
      const err = await client.statusOfBytes(method, bytes);
      assert.deepEqual(err, { code: S.INVALID_ARGUMENT, details: `malformed ${method} request: field 1 (snapshotter) runs past the end of the message` });
    }
    assert.equal(rootState(root), state);
  });

  test('a truncated Update changes no labels, and a truncated List streams nothing', async () => {
    await client.call('Prepare', { key: 'upd', labels: { kept: 'yes' } });
    const state = rootState(root);
    // info (field 2, 13 bytes): labels {k: v}, then name "upd" declaring 10 bytes where 3 follow.
    const update = hex('12 0d 32 06 0a 01 6b 12 01 76 0a 0a 75 70 64');
    assert.deepEqual(await client.statusOfBytes('Update', update), {
      code: S.INVALID_ARGUMENT,
      details: 'malformed Update request: field 2.1 (info.name) runs past the end of the message',
    });
    // filters (field 2): "kind==view" declaring 16 bytes where 10 follow.
    const list = Buffer.concat([Buffer.from([0x12, 0x10]), Buffer.from('kind==view')]);
    assert.deepEqual(await client.statusOfBytes('List', list), {
      code: S.INVALID_ARGUMENT,
      details: 'malformed List request: field 2 (filters) runs past the end of the message',
    });
    assert.equal(rootState(root), state);
    assert.deepEqual(((await client.call('Stat', { key: 'upd' })).info as Reply).labels, { kept: 'yes' });
  });

  test('well-formed fields the .proto does not have are skipped, as a newer containerd may send them', async () => {
    const prepare = hex(
      [
        '12 03 75 6e 6b', // key "unk"
        '78 01', // field 15, varint
        '81 01 01 02 03 04 05 06 07 08', // field 16, fixed64
        '8a 01 02 68 69', // field 17, length-delimited
        '95 01 01 02 03 04', // field 18, fixed32
        '22 08 0a 01 6b 12 01 76 18 01', // labels {k: v}, the entry with a field 3
      ].join(' '),
    );
    assert.equal(S[(await client.statusOfBytes('Prepare', prepare)).code], 'OK');
    assert.deepEqual(((await client.call('Stat', { key: 'unk' })).info as Reply).labels, { k: 'v' });
    const commit = hex('12 05 75 6e 6b 2d 63 1a 03 75 6e 6b 32 01 78'); // name "unk-c", key "unk", field 6
    assert.equal(S[(await client.statusOfBytes('Commit', commit)).code], 'OK');
    assert.equal(((await client.call('Stat', { key: 'unk-c' })).info as Reply).kind, 'COMMITTED');
  });

  test("Commit with a parent rebases a snapshot prepared without one, as containerd 2.2's unpacker does", async () => {
    await client.call('Prepare', { key: 'rb-base-a' });
    const base = layerDirOf(root, 'rb-base-a');
    fs.writeFileSync(path.join(base, 'kept'), 'kept\n');
    fs.writeFileSync(path.join(base, 'doomed'), 'doomed\n');
    fs.mkdirSync(path.join(base, 'dir'));
    fs.writeFileSync(path.join(base, 'dir', 'old'), 'old\n');
    await client.call('Commit', { name: 'rb-base', key: 'rb-base-a' });

    // Unpacked side by side: prepared without parent, the parent to come in a label.
    const labels = { 'containerd.io/snapshot/parent-chain-id': 'rb-base', 'containerd.io/snapshot/diff-id': 'sha256:' + '0'.repeat(64) };
    const mounts = (await client.call('Prepare', { key: 'rb-layer-a', labels })).mounts as Reply[];
    const layer = layerDirOf(root, 'rb-layer-a');
    if (process.getuid?.() === 0) {
      // containerd's applier writes whiteouts straight into an overlay mount's upper directory.
      assert.deepEqual(mounts, [
        { type: 'overlay', source: 'overlay', target: '', options: [`workdir=${path.join(path.dirname(layer), 'work')}`, `upperdir=${layer}`, `lowerdir=${path.join(root, 'empty')}`] },
      ]);
      assert.deepEqual((await client.call('Mounts', { key: 'rb-layer-a' })).mounts, mounts);
      // As containerd's OverlayConvertWhiteout makes them.
      assert.equal(spawnSync('mknod', [path.join(layer, 'doomed'), 'c', '0', '0']).status, 0);
      fs.mkdirSync(path.join(layer, 'dir'));
      const dirfd = fs.openSync(path.join(layer, 'dir'), 'r');
      sys.setxattr(dirfd, 'trusted.overlay.opaque', Buffer.from('y'), 0);
      fs.closeSync(dirfd);
      fs.writeFileSync(path.join(layer, 'dir', 'new'), 'new\n');
    } else {
      assert.equal(mounts[0]!.type, 'bind');
    }
    fs.writeFileSync(path.join(layer, 'added'), 'added\n');
    assert.equal(((await client.call('Stat', { key: 'rb-layer-a' })).info as Reply).parent, '');
    assert.deepEqual(await client.call('Commit', { name: 'rb-layer', key: 'rb-layer-a', parent: 'rb-base', labels }), {});
    const info = (await client.call('Stat', { key: 'rb-layer' })).info as Reply;
    assert.equal(info.parent, 'rb-base');
    assert.equal(info.kind, 'COMMITTED');
    assert.deepEqual(info.labels, labels);

    // What a container on it sees: the layer over its new parent.
    const names = (JSON.parse(await ok(root, ['ls', '--json', 'rb-layer', '/'])) as { name: string }[]).map((e) => e.name).sort();
    assert.deepEqual(names, process.getuid?.() === 0 ? ['added', 'dir', 'kept'] : ['added', 'dir', 'doomed', 'kept']);
    if (process.getuid?.() === 0) {
      const dir = JSON.parse(await ok(root, ['ls', '--json', 'rb-layer', '/dir'])) as { name: string }[];
      assert.deepEqual(dir.map((e) => e.name), ['new']);
    }
    // Held to a size: a FUSE mount with max_size=, whose writes past it are ENOSPC (test/fs/max-size.test.ts).
    const sized = (await client.call('Prepare', { key: 'rb-sized', parent: 'rb-layer', labels: { 'containerd.io/snapshot/max-size': '4096' } })).mounts as Reply[];
    assert.equal(sized[0]!.type, 'fuse.snapfs');
    assert.equal((sized[0]!.options as string[]).at(-1), 'max_size=4096');
    // A snapshot with a parent is committed onto that same one, or refused.
    await client.call('Prepare', { key: 'rb-child-a', parent: 'rb-layer' });
    assert.equal(S[(await client.failure('Commit', { name: 'rb-child', key: 'rb-child-a', parent: 'rb-base' })).code], 'FAILED_PRECONDITION');
    await client.call('Commit', { name: 'rb-child', key: 'rb-child-a', parent: 'rb-layer' });
    assert.equal(((await client.call('Stat', { key: 'rb-child' })).info as Reply).parent, 'rb-layer');
  });

  test('List streams batches of 100, and a client leaving mid-stream does no harm', async () => {
    for (let i = 0; i < 250; i++) await client.call('View', { key: `many-${String(i).padStart(3, '0')}`, parent: 'e-committed', labels: { many: 'yes' } });
    const batches = await client.list(['labels.many==yes']);
    assert.deepEqual(
      batches.map((b) => b.length),
      [100, 100, 50],
    );
    assert.equal(batches.flat()[249]!.name, 'many-249');

    for (let round = 0; round < 5; round++) {
      await new Promise<void>((resolve) => {
        const stream = client.raw.List!({ filters: [] }) as grpc.ClientReadableStream<unknown>;
        stream.once('data', () => {
          stream.cancel();
          resolve();
        });
        stream.on('error', () => undefined);
      });
    }
    assert.equal((await client.list(['labels.many==yes'])).flat().length, 250);
  });

  test('--log-level debug logs one line per call', () => {
    const lines = server.log().split('\n');
    assert.ok(lines.some((l) => /level=debug call=Prepare key="base" result="ok" ms=/.test(l)));
    assert.ok(lines.some((l) => /level=debug call=Stat key="missing" result="NOT_FOUND: .*missing/.test(l)));
    assert.ok(lines.some((l) => /level=debug call=List filters=\["labels.many==yes"\] result="ok \(250\)"/.test(l)));
  });

  test('the CLI warns before it writes to a served root, and reads quietly', async () => {
    const read = await snapfs(root, ['ls']);
    assert.equal(read.code, 0);
    assert.equal(read.stderr, '');
    const write = await snapfs(root, ['label', 'e-active', 'k=v']);
    assert.equal(write.code, 0);
    assert.match(write.stderr, new RegExp(`^snapfs: warning: root ${root} is served to containerd by snapfs serve \\(pid ${server.proc.pid}, ${address}\\); containerd removes snapshots it does not know of\\n$`));
  });
});

describe('snapfs serve: socket and life cycle', () => {
  let dir: string;
  before(() => {
    dir = tempDir('snapfs-grpc-life-');
  });
  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const serveOnce = (root: string, address: string, ...args: string[]): { status: number | null; stderr: string } => {
    const r = spawnSync(process.execPath, [CLI, '--root', root, 'serve', '--address', address, ...args], { encoding: 'utf8', timeout: 20_000 });
    return { status: r.status, stderr: r.stderr };
  };

  test('the socket is 0600, or 0660 for --group; SIGTERM stops cleanly and leaves nothing behind', async () => {
    const root = path.join(dir, 'r1');
    const address = path.join(dir, 'deep', 'er', 'a.sock');
    const server = await startServer(root, address);
    try {
      assert.equal(fs.statSync(address).mode & 0o777, 0o600);
      assert.ok(fs.existsSync(path.join(root, 'served-by.json')));
    } finally {
      assert.equal(await server.stop(), 0);
    }
    assert.equal(fs.existsSync(address), false);
    assert.equal(fs.existsSync(path.join(root, 'served-by.json')), false);
    assert.match(server.log(), /level=info SIGTERM: finishing calls in flight\n.*level=info stopped\n$/);

    const grouped = await startServer(root, address, ['--group', 'nogroup']);
    try {
      const st = fs.statSync(address);
      assert.equal(st.mode & 0o777, 0o660);
      assert.equal(st.gid, 65534);
    } finally {
      await grouped.stop();
    }
  });

  test("a live server's socket and root are refused; a dead server's socket is replaced", async () => {
    const root = path.join(dir, 'r2');
    const address = path.join(dir, 'b.sock');
    const first = await startServer(root, address);
    try {
      const taken = serveOnce(path.join(dir, 'other-root'), address);
      assert.equal(taken.status, 4);
      assert.equal(taken.stderr, `snapfs: socket ${address}: in use by a running server\n`);
      const owned = serveOnce(root, path.join(dir, 'c.sock'));
      assert.equal(owned.status, 4);
      assert.equal(owned.stderr, `snapfs: root ${root}: already served by snapfs serve (pid ${first.proc.pid}, ${address})\n`);
      assert.equal(fs.existsSync(path.join(dir, 'c.sock')), false);
    } finally {
      first.proc.kill('SIGKILL');
      await first.exited;
    }
    assert.ok(fs.existsSync(address)); // left by the killed server
    const second = await startServer(root, address);
    try {
      const client = new SnapshotsClient(address);
      await client.call('Prepare', { key: 'after-restart' });
      client.close();
    } finally {
      await second.stop();
    }
  });

  test('the mount helpers containerd needs are looked for where mount(8) looks', () => {
    const empty = path.join(dir, 'no-helpers');
    fs.mkdirSync(empty);
    assert.deepEqual(mountHelperProblems([empty]), [
      `no snapfs on mount(8)'s PATH (${empty}): containerd cannot mount fuse.snapfs snapshots (see the README: npm install -g, or a link in /usr/local/bin)`,
      'no mount.fuse3 or mount.fuse: install the fuse3 package',
    ]);
    const full = path.join(dir, 'helpers');
    fs.mkdirSync(full);
    for (const name of ['snapfs', 'mount.fuse3']) fs.writeFileSync(path.join(full, name), '#!/bin/sh\n', { mode: 0o755 });
    assert.deepEqual(mountHelperProblems([empty, full]), []);
    fs.chmodSync(path.join(full, 'snapfs'), 0o644); // not executable: not a helper
    assert.equal(mountHelperProblems([full]).length, 1);
    // This machine is set up (scripts/setup): serve starts without a warning.
    assert.deepEqual(mountHelperProblems(), []);
  });

  test('what cannot be a socket is refused in one line', async () => {
    const root = path.join(dir, 'r3');
    const file = path.join(dir, 'plain-file');
    fs.writeFileSync(file, 'keep me');
    const notSocket = serveOnce(root, file);
    assert.equal(notSocket.status, 4);
    assert.equal(notSocket.stderr, `snapfs: socket ${file}: exists and is not a socket\n`);
    assert.equal(fs.readFileSync(file, 'utf8'), 'keep me');
    const long = path.join(dir, 'x'.repeat(120));
    const tooLong = serveOnce(root, long);
    assert.equal(tooLong.status, 2);
    assert.match(tooLong.stderr, /^snapfs: socket .*: path longer than 107 bytes\n$/);
    const badLevel = serveOnce(root, path.join(dir, 'd.sock'), '--log-level', 'chatty');
    assert.equal(badLevel.status, 2);
    assert.match(badLevel.stderr, /chatty/);
    // A socket someone else listens on is not ours to replace.
    const foreign = net.createServer().listen(path.join(dir, 'e.sock'));
    await new Promise((resolve) => foreign.once('listening', resolve));
    try {
      assert.equal(serveOnce(root, path.join(dir, 'e.sock')).status, 4);
    } finally {
      foreign.close();
    }
  });
});
