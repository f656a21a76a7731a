import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Daemons } from '../support/daemon-helpers';
import { SnapshotsClient, startServer, type Server } from '../support/grpc-helpers';
import { snapfs, tempDir } from '../support/helpers';
import { run, unmountAll } from '../support/mount-helpers';

const isRoot = process.getuid?.() === 0;
const DAEMON_STATS = path.resolve(__dirname, '..', '..', 'src', 'mount', 'daemon-stats.js');

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
    const of = (name: string, op?: string): number | undefined => s.get(`${name}{daemon="${socket}"${op === undefined ? '' : `,op="${op}"`}}`);
    for (const op of ['init', 'lookup', 'open', 'read', 'write', 'release']) assert.ok(of('snapfs_fuse_requests_total', op)! >= 1, op);
    assert.equal(of('snapfs_fuse_request_duration_seconds_count', 'write'), of('snapfs_fuse_requests_total', 'write'));
    assert.equal(of('snapfs_copied_up_bytes_total'), 4096, 'the lower file, copied up before the append');
    assert.equal(of('snapfs_internal_errors_total'), 0);

    await run('umount', [mnt]);
    // The daemon hears of the unmount within milliseconds; its counts stay.
    let after = await scrape(port);
    for (let i = 0; i < 50 && after.samples.get(`snapfs_mounts{daemon="${socket}"}`) !== 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = await scrape(port);
    }
    assert.equal(after.samples.get(`snapfs_mounts{daemon="${socket}"}`), 0);
    assert.ok(after.samples.get(`snapfs_fuse_requests_total{daemon="${socket}",op="write"}`)! >= of('snapfs_fuse_requests_total', 'write')!);
    assert.equal(after.samples.get(`snapfs_copied_up_bytes_total{daemon="${socket}"}`), 4096);
    assert.equal((await scrape(port)).samples.get('snapfs_grpc_requests_total{method="Prepare",code="OK"}'), 1);
  });

  it("root's serve asks a user's daemon only in a directory of that user's alone, and only a socket that user made", async () => {
    const made: string[] = [];
    const place = (uid: number, mode: number): string => {
      const at = path.join(os.tmpdir(), `snapfs-${uid}`);
      fs.rmSync(at, { recursive: true, force: true });
      fs.mkdirSync(at, { mode });
      fs.chmodSync(at, mode);
      fs.chownSync(at, uid, uid);
      made.push(at);
      return at;
    };
    const listen = (uid: number, socket: string): ChildProcess => {
      const child = spawn('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', process.execPath, '-e', `require('net').createServer().listen(${JSON.stringify(socket)}, () => console.log('ready'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
      return child;
    };
    const children: ChildProcess[] = [];
    const closers: (() => void)[] = [];
    try {
      const good = place(64_701, 0o700);
      const open = place(64_702, 0o777);
      const elsewhere = place(64_703, 0o700);
      const linked = path.join(os.tmpdir(), 'snapfs-64704');
      fs.rmSync(linked, { recursive: true, force: true });
      fs.symlinkSync(good, linked);
      made.push(linked);
      for (const [uid, dir] of [[64_701, good], [64_702, open]] as const) children.push(listen(uid, path.join(dir, 'daemon.sock')));
      // A socket of another user's in a user's directory, and a symlink in place of one.
      const foreign = net.createServer();
      await new Promise<void>((resolve) => foreign.listen(path.join(elsewhere, 'daemon-userns-1.sock'), resolve));
      fs.chownSync(path.join(elsewhere, 'daemon-userns-1.sock'), 64_701, 64_701);
      fs.symlinkSync('/run/udev/control', path.join(elsewhere, 'daemon.sock'));
      fs.symlinkSync(path.join(good, 'daemon.sock'), path.join(good, 'daemon-userns-2.sock'));
      await Promise.all(children.map((c) => new Promise((resolve) => c.stdout!.once('data', resolve))));
      closers.push(() => foreign.close());
      const env = { ...process.env };
      delete env.SNAPFS_RUNTIME_DIR;
      const { stdout } = await run(process.execPath, ['-e', `process.stdout.write(JSON.stringify(require(${JSON.stringify(DAEMON_STATS)}).reachableDaemons()))`], { env });
      const found = (JSON.parse(stdout) as { socket: string; uid: number }[]).filter((d) => d.socket.includes('snapfs-647')).map(({ socket, uid }) => ({ socket, uid }));
      assert.deepEqual(found, [{ socket: path.join(good, 'daemon.sock'), uid: 64_701 }]);
    } finally {
      for (const c of children) c.kill();
      for (const close of closers) close();
      for (const m of made) fs.rmSync(m, { recursive: true, force: true });
    }
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
