import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Daemons } from '../support/daemon-helpers';
import { SnapshotsClient, startServer, type Server } from '../support/grpc-helpers';
import { snapfs, tempDir } from '../support/helpers';
import { run, unmountAll } from '../support/mount-helpers';

const isRoot = process.getuid?.() === 0;

/** A TCP port nobody listens on now. */
async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

function scrape(port: number): Promise<{ status: number; type: string; samples: Map<string, number> }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => {
          const samples = new Map(
            body
              .split('\n')
              .filter((l) => l !== '' && !l.startsWith('#'))
              .map((l) => [l.slice(0, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1))] as const),
          );
          resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), samples });
        });
      })
      .on('error', reject);
  });
}

describe('snapfs serve --metrics-address: Prometheus metrics of the API and of the mount daemon', { skip: !isRoot && 'mounts need root here' }, () => {
  let dir: string;
  let d: Daemons;
  let server: Server;
  let client: SnapshotsClient;
  let port: number;
  let mnt: string;
  before(async () => {
    dir = tempDir('snapfs-metrics-');
    // Passthrough off: reads reach the daemon, to be counted.
    d = new Daemons(dir, 'metrics', { SNAPFS_PASSTHROUGH: '0' });
    port = await freePort();
    server = await startServer(path.join(dir, 'root'), path.join(dir, 'snapfs.sock'), ['--metrics-address', `127.0.0.1:${port}`], d.env);
    client = new SnapshotsClient(path.join(dir, 'snapfs.sock'));
  });
  after(async () => {
    client.close();
    await server.stop();
    await unmountAll(dir);
    d.killAll();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('counts calls by method and code, and FUSE requests, copy-ups and mounts of the daemon, which never count down', async () => {
    const [lower, upper, work] = ['lower', 'upper', 'work'].map((n) => path.join(dir, n)) as [string, string, string];
    mnt = path.join(dir, 'mnt');
    for (const p of [lower, upper, work, mnt]) fs.mkdirSync(p);
    fs.writeFileSync(path.join(lower, 'data'), Buffer.alloc(4096, 'x'));
    await d.mountO(`lowerdir=${lower},upperdir=${upper},workdir=${work}`, mnt);
    await run('sh', ['-c', 'cat data >/dev/null && echo y >> data && ls >/dev/null'], { cwd: mnt });
    await client.call('Prepare', { key: 'a' });
    await client.failure('Stat', { key: 'missing' });

    const first = await scrape(port);
    assert.equal(first.status, 200);
    assert.match(first.type, /^text\/plain; version=0\.0\.4/);
    const s = first.samples;
    const socket = path.join(d.runtime, 'daemon.sock');
    assert.equal(s.get('snapfs_grpc_requests_total{method="Prepare",code="OK"}'), 1);
    assert.equal(s.get('snapfs_grpc_requests_total{method="Stat",code="NOT_FOUND"}'), 1);
    assert.equal(s.get(`snapfs_mount_daemon_up{daemon="${socket}"}`), 1);
    assert.equal(s.get(`snapfs_mounts{daemon="${socket}"}`), 1);
    assert.ok(s.get('snapfs_fuse_mounts')! >= 1);
    for (const op of ['init', 'lookup', 'open', 'read', 'write', 'release']) assert.ok(s.get(`snapfs_fuse_requests_total{op="${op}"}`)! >= 1, op);
    assert.equal(s.get('snapfs_fuse_request_duration_seconds_count{op="write"}'), s.get('snapfs_fuse_requests_total{op="write"}'));
    assert.equal(s.get('snapfs_copied_up_bytes_total'), 4096, 'the lower file, copied up before the append');
    assert.equal(s.get('snapfs_internal_errors_total'), 0);

    await run('umount', [mnt]);
    // The daemon hears of the unmount within milliseconds; its counts stay.
    let after = await scrape(port);
    for (let i = 0; i < 50 && after.samples.get(`snapfs_mounts{daemon="${socket}"}`) !== 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = await scrape(port);
    }
    assert.equal(after.samples.get(`snapfs_mounts{daemon="${socket}"}`), 0);
    assert.ok(after.samples.get('snapfs_fuse_requests_total{op="write"}')! >= s.get('snapfs_fuse_requests_total{op="write"}')!);
    assert.equal(after.samples.get('snapfs_copied_up_bytes_total'), 4096);
    assert.equal((await scrape(port)).samples.get('snapfs_grpc_requests_total{method="Prepare",code="OK"}'), 1);
  });

  it('only GET /metrics is there', async () => {
    const status = await new Promise<number>((resolve, reject) => http.get({ host: '127.0.0.1', port, path: '/' }, (res) => { res.resume(); resolve(res.statusCode ?? 0); }).on('error', reject));
    assert.equal(status, 404);
  });

  it('an address that is none, or is taken, is refused in one line, and nothing is left served', async () => {
    const root = path.join(dir, 'other-root');
    const sock = path.join(dir, 'other.sock');
    const bad = await snapfs(root, ['serve', '--address', sock, '--metrics-address', 'nowhere']);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /^snapfs: metrics address "nowhere": expected HOST:PORT/);
    assert.equal(bad.stderr.trim().split('\n').length, 1);
    const taken = await snapfs(root, ['serve', '--address', sock, '--metrics-address', `127.0.0.1:${port}`]);
    assert.equal(taken.code, 7, taken.stderr);
    assert.match(taken.stderr, /metrics address 127\.0\.0\.1:\d+: EADDRINUSE/);
    assert.equal(fs.existsSync(sock), false, 'the socket is gone again');
    assert.equal(fs.existsSync(path.join(root, 'served-by.json')), false, 'the root is not left claimed');
  });
});
