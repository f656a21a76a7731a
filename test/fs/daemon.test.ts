import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { daemonStats } from '../../src/mount/daemon-stats';
import { O_PATH } from '../../src/native/sys';
import { exchangeAsync } from '../../src/native/unix';
import { Daemons } from '../support/daemon-helpers';
import { CLI, type CliResult, command, layerDirOf, NOBODY, tempDir } from '../support/helpers';
import { describeTree, run, unmountAll } from '../support/mount-helpers';

/** The installed snapfs command (src/native/launcher.c). */
const LAUNCHER = path.resolve(__dirname, '..', '..', '..', 'src', 'native', 'build', 'Release', 'snapfs-launcher');

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function isMountPoint(dir: string): boolean {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === dir);
}

/**
 * The start of a script for `node -e` that talks to the daemon at `socket`
 * as a client of its own would, past every check of the helpers: `fs`, and
 * `ask(request, fds)`, which sends a request with descriptors and returns
 * the answer.
 */
function askPreamble(socket: string): string[] {
  const unix = path.resolve(__dirname, '..', '..', 'src', 'native', 'unix.js');
  return [
    `const { exchange } = require(${JSON.stringify(unix)});`,
    `const fs = require('fs');`,
    `const ask = (req, fds) => JSON.parse(exchange(${JSON.stringify(socket)}, Buffer.from(JSON.stringify(req)), fds, 5000).data.toString());`,
  ];
}

/** A shell script run in `cwd` from a child process: the test process never touches a mount itself with blocking calls. */
async function sh(script: string, cwd: string): Promise<string> {
  return (await run('sh', ['-ec', script], { cwd })).stdout;
}

describe("one mount daemon serves every mount of its user", { skip: process.getuid?.() !== 0 && 'needs root (kernel overlay twins, tmpfs, another user)' }, () => {
  let dir: string;
  const sets: Daemons[] = [];
  const daemons = (name: string, extra: NodeJS.ProcessEnv = {}): Daemons => {
    const d = new Daemons(dir, name, extra);
    sets.push(d);
    return d;
  };

  before(() => {
    dir = tempDir('snapfs-daemon-');
    fs.chmodSync(dir, 0o755);
  });
  after(async () => {
    await unmountAll(dir);
    for (const d of sets) d.killAll();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('50 mounts (active, views, fuse-overlayfs command lines) from one daemon, started once by 20 at once, each as its kernel overlay twin; unmounted in any order, then it exits', async () => {
    const d = daemons('fifty');
    const root = path.join(dir, 'root50');
    const base = path.join(dir, 'base');
    const [l1, l2] = [path.join(base, 'l1'), path.join(base, 'l2')];
    await sh(`mkdir -p ${l1}/d ${l2}/d && echo one > ${l1}/a && echo x > ${l1}/d/x && echo b > ${l1}/b && echo two > ${l2}/b && echo y > ${l2}/d/y`, dir);
    // A committed snapshot holding the same files, for the mounts of snapshots.
    await d.cli(root, ['prepare', 'fill']);
    await run('cp', ['-a', `${l1}/.`, `${l2}/.`, layerDirOf(root, 'fill')]);
    await d.cli(root, ['commit', 'base', 'fill']);

    interface Pair {
      readonly mnt: string;
      readonly twin: string;
      readonly writable: boolean;
      readonly snapfs: () => Promise<void>;
      readonly overlay: string;
    }
    const pairs: Pair[] = [];
    for (let i = 0; i < 50; i++) {
      const at = path.join(dir, `m${i}`);
      const [mnt, twin, upper, work, tupper, twork] = ['mnt', 'twin', 'upper', 'work', 'tupper', 'twork'].map((n) => path.join(at, n)) as [string, string, string, string, string, string];
      for (const p of [mnt, twin, upper, work, tupper, twork]) fs.mkdirSync(p, { recursive: true });
      const kind = i % 5;
      if (kind <= 1) {
        pairs.push({ mnt, twin, writable: true, snapfs: () => d.mountO(`lowerdir=${l2}:${l1},upperdir=${upper},workdir=${work}`, mnt), overlay: `lowerdir=${l2}:${l1},upperdir=${tupper},workdir=${twork}` });
      } else if (kind === 2) {
        pairs.push({ mnt, twin, writable: false, snapfs: () => d.mountO(`lowerdir=${l2}:${l1}`, mnt), overlay: `lowerdir=${l2}:${l1}` });
      } else {
        const key = `${kind === 3 ? 'active' : 'view'}-${i}`;
        await d.cli(root, [kind === 3 ? 'prepare' : 'view', key, 'base']);
        const lower = layerDirOf(root, 'base');
        const emptyLower = path.join(at, 'empty');
        fs.mkdirSync(emptyLower);
        pairs.push({
          mnt,
          twin,
          writable: kind === 3,
          snapfs: () => d.cli(root, ['mount', key, mnt]).then(() => undefined),
          overlay: kind === 3 ? `lowerdir=${lower},upperdir=${tupper},workdir=${twork}` : `lowerdir=${lower}:${emptyLower}`,
        });
      }
    }

    // The first 20 at once, with no daemon running: one daemon starts.
    await Promise.all(pairs.slice(0, 20).map((p) => p.snapfs()));
    assert.equal(d.started().length, 1, `one daemon started for 20 mounts at once:\n${d.log}`);
    for (let i = 20; i < 50; i += 10) await Promise.all(pairs.slice(i, i + 10).map((p) => p.snapfs()));
    for (const p of pairs) await run('mount', ['-t', 'overlay', 'overlay', p.twin, '-o', p.overlay]);
    assert.equal(d.started().length, 1, 'all 50 served by that daemon');
    const listed = await d.mounted(root);
    assert.deepEqual(listed.map((m) => m.mountpoint).sort(), pairs.map((p) => p.mnt).sort());
    const keyed = (prefix: string): number => listed.filter((m) => m.snapshot?.startsWith(prefix) === true && m.mountpoint === pairs[Number(m.snapshot.split('-')[1])]!.mnt).length;
    assert.deepEqual([keyed('active-'), keyed('view-')], [10, 10], 'snapshot keys shown where known');

    // The same changes through each mount and its twin, all at once, each from a child process.
    const changes = 'echo "$0" > new && echo more >> a && rm b && mkdir -p d/sub && mv d/x d/sub/x && ln a a2 && chmod 600 a && cat d/y >/dev/null';
    const reads = 'ls -lR >/dev/null && cat a b d/x d/y >/dev/null';
    await Promise.all(pairs.flatMap((p, i) => [p.mnt, p.twin].map((m) => run('sh', ['-ec', p.writable ? changes : reads, String(i)], { cwd: m }))));
    for (const p of pairs) assert.equal(await describeTree(p.mnt, { times: false }), await describeTree(p.twin, { times: false }), p.mnt);
    assert.ok((await d.mounted()).every((m) => m.requests > 0), 'requests counted per mount');

    // Unmounted in random order; each one goes from the daemon's list.
    const order = pairs.map((p) => p.mnt).sort(() => Math.random() - 0.5);
    for (const [n, mnt] of order.entries()) {
      await run('umount', [mnt]);
      await until(`${mnt} gone from the daemon`, async () => (await d.mounted()).length === 49 - n);
    }
    for (const p of pairs) await run('umount', [p.twin]);
    const [pid] = d.started() as [number];
    await until('the idle daemon exits', () => !fs.existsSync(`/proc/${pid}`));
    assert.match(d.log, /no mount for 2 s: exiting/);
    assert.equal(fs.existsSync(path.join(d.runtime, 'daemon.sock')), false, 'its socket is gone');
  });

  it('a mount made inside unshare -m, over layers only there, is live there and absent outside', async () => {
    const d = daemons('unshare');
    const outside = path.join(dir, 'ns-outside');
    const ns = path.join(dir, 'ns');
    fs.mkdirSync(path.join(outside, 'mnt'), { recursive: true });
    fs.mkdirSync(ns);
    // The daemon runs here, started by a mount made here.
    await d.mountO(`lowerdir=${dir}`, path.join(outside, 'mnt'));
    const inside = [
      `mount -t tmpfs ns ${ns}`,
      `mkdir ${ns}/lower ${ns}/mnt && echo only here > ${ns}/lower/f`,
      `"${process.execPath}" "${CLI}" -o lowerdir=${ns}/lower ${ns}/mnt`,
      `cat ${ns}/mnt/f`,
      'echo ready',
      'read line',
    ].join(' && ');
    const child = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-ec', inside], { env: d.env, stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      let out = '';
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (b: Buffer) => {
          out += b.toString();
          if (out.includes('ready')) resolve();
        });
        child.once('exit', (code) => reject(new Error(`the script inside exited with ${code}: ${out}`)));
      });
      assert.equal(out, 'only here\nready\n');
      assert.equal(isMountPoint(path.join(ns, 'mnt')), false, 'not mounted outside');
      assert.deepEqual((await d.mounted()).map((m) => m.mountpoint).sort(), [path.join(outside, 'mnt'), path.join(ns, 'mnt')].sort(), 'served by the daemon outside');
      child.stdin.end('done\n');
      await new Promise((r) => child.once('exit', r));
      // The namespace is gone, and its mount with it: the daemon lets go of it.
      await until('the mount of the namespace leaves the daemon', async () => (await d.mounted()).length === 1);
    } finally {
      child.kill('SIGKILL');
      await run('umount', [path.join(outside, 'mnt')]).catch(() => undefined);
    }
  });

  it('SIGTERM: the daemon unmounts the mounts of its own namespace, and ends the sessions of mounts made elsewhere without unmounting their paths here', async () => {
    const d = daemons('sigterm');
    const [starter, ns, other] = ['sigterm-starter', 'sigterm-ns', 'sigterm-other'].map((n) => path.join(dir, n)) as [string, string, string];
    for (const p of [starter, path.join(ns, 'mnt'), other]) fs.mkdirSync(p, { recursive: true });
    fs.writeFileSync(path.join(other, 'f'), 'another mount\n');
    await d.mountO(`lowerdir=${dir}`, starter);
    const inside = [
      `mount -t tmpfs ns ${ns}`,
      `mkdir ${ns}/lower ${ns}/mnt && echo inside > ${ns}/lower/f`,
      `"${process.execPath}" "${CLI}" -o lowerdir=${ns}/lower ${ns}/mnt`,
      'echo ready',
      'read line',
      `(stat ${ns}/mnt 2>&1 || true)`,
      `umount ${ns}/mnt`,
      'echo unmounted',
    ].join(' && ');
    const child = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-ec', inside], { env: d.env, stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      let out = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      const exited = new Promise((r) => child.once('exit', r));
      await until('the mount inside is live', () => out.includes('ready'));
      // Here, at the path the namespace's mount has there, a mount the daemon does not serve.
      await d.mountO(`lowerdir=${other},dedicated`, path.join(ns, 'mnt'));
      assert.equal((await d.mounted()).length, 2);
      const [pid] = d.started() as [number];
      process.kill(pid, 'SIGTERM');
      await until('the daemon exits', () => !fs.existsSync(`/proc/${pid}`));
      assert.equal(isMountPoint(starter), false, 'its own mount is unmounted');
      assert.equal(await sh('cat f', path.join(ns, 'mnt')), 'another mount\n', 'the mount at the same path here is left alone');
      child.stdin.end('go\n');
      await exited;
      assert.match(out, /Transport endpoint is not connected/, 'the mount inside answers ENOTCONN');
      assert.match(out, /unmounted\n$/);
    } finally {
      child.kill('SIGKILL');
      await run('umount', [path.join(ns, 'mnt')]).catch(() => undefined);
      await run('umount', [starter]).catch(() => undefined);
    }
  });

  it("root's daemon refuses requests of another user, and changes nothing; that user's mounts have a daemon of their own", async () => {
    const d = daemons('refuse');
    const lower = path.join(dir, 'refuse-lower');
    const mnt = path.join(dir, 'refuse-mnt');
    fs.mkdirSync(lower);
    fs.mkdirSync(mnt);
    fs.writeFileSync(path.join(lower, 'f'), 'root\n');
    await d.mountO(`lowerdir=${lower}`, mnt);
    const socket = path.join(d.runtime, 'daemon.sock');
    const home = path.join(dir, 'nobody');
    fs.mkdirSync(path.join(home, 'mnt'), { recursive: true });
    fs.chownSync(home, NOBODY, NOBODY);
    fs.chownSync(path.join(home, 'mnt'), NOBODY, NOBODY);
    const fuseMode = fs.statSync('/dev/fuse').mode & 0o777;
    // The runtime directory keeps other users out on its own; opened up here to reach the check behind it.
    fs.chmodSync(d.runtime, 0o711);
    fs.chmodSync(socket, 0o666);
    fs.chmodSync('/dev/fuse', 0o666);
    const asNobody = (args: string[], env: Record<string, string> = {}): Promise<CliResult> =>
      command(['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'env', '-i', `PATH=${process.env.PATH}`, ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...args], { cwd: home });
    try {
      const probe = [
        ...askPreamble(socket),
        `const dev = fs.openSync('/dev/null', 'r');`,
        `console.log(JSON.stringify([ask({ op: 'list' }, []), ask({ op: 'stats' }, []), ask({ op: 'mount', mountpoint: ${JSON.stringify(path.join(home, 'mnt'))}, lowers: ['/'] }, [dev, dev])]));`,
      ].join('\n');
      const r = await asNobody([process.execPath, '-e', probe]);
      assert.equal(r.code, 0, r.stderr);
      const answers = JSON.parse(r.stdout) as { error?: string }[];
      assert.equal(answers.length, 3);
      for (const a of answers) assert.match(a.error ?? '', /^refused: this daemon serves uid 0 only$/);
      assert.match(d.log, new RegExp(`refused a request from uid ${NOBODY}`));
      assert.deepEqual((await d.mounted()).map((m) => m.mountpoint), [mnt], "root's mounts are as they were");
      assert.equal(isMountPoint(path.join(home, 'mnt')), false);

      // The user's own mount: served by a daemon of the user's own.
      const own = await asNobody([process.execPath, CLI, '-o', `lowerdir=${lower}`, path.join(home, 'mnt')], { SNAPFS_RUNTIME_DIR: path.join(home, 'run'), SNAPFS_DAEMON_IDLE_SECONDS: '1' });
      assert.equal(own.code, 0, own.stderr);
      const theirs = fs.readFileSync(path.join(home, 'run', 'daemon.log'), 'utf8').match(/\(pid (\d+)\)/)![1]!;
      assert.equal(fs.statSync(`/proc/${theirs}`).uid, NOBODY, "the user's daemon runs as the user");
      assert.equal((await asNobody(['cat', path.join(home, 'mnt', 'f')])).stdout, 'root\n');
      // Root may read what the user's mounts cost (snapfs serve's metrics), and nothing more.
      const userSocket = path.join(home, 'run', 'daemon.sock');
      const socketFd = (): number => fs.openSync(userSocket, O_PATH | fs.constants.O_NOFOLLOW);
      assert.equal((await daemonStats({ socket: userSocket, uid: NOBODY, fd: socketFd() })).mounts, 1);
      await assert.rejects(daemonStats({ socket: userSocket, uid: 4242, fd: socketFd() }), /EPERM: listened on by uid 65534, not 4242/);
      const listed = JSON.parse((await exchangeAsync(userSocket, Buffer.from(JSON.stringify({ op: 'list' })), 2000)).data.toString()) as { error?: string };
      assert.match(listed.error ?? '', /^refused: this daemon serves uid 65534 only$/);
      assert.equal((await asNobody(['fusermount', '-u', path.join(home, 'mnt')])).code, 0);
      await until("the user's daemon exits once idle", () => !fs.existsSync(`/proc/${theirs}`));
    } finally {
      fs.chmodSync('/dev/fuse', fuseMode);
      await run('umount', [mnt]).catch(() => undefined);
      await unmountAll(home);
    }
  });

  it('layers on a tmpfs: once umount returns and the daemon has let go of the mount, the tmpfs unmounts at the first try', async () => {
    const d = daemons('tmpfs');
    const t = path.join(dir, 'tmpfs');
    fs.mkdirSync(t);
    try {
      for (const written of [true, false]) {
        await run('mount', ['-t', 'tmpfs', 'layers', t]);
        await sh(`mkdir lower upper work mnt && echo low > lower/f`, t);
        const mnt = path.join(t, 'mnt');
        await d.mountO(`lowerdir=${t}/lower,upperdir=${t}/upper,workdir=${t}/work`, mnt);
        await sh(written ? 'echo new > g && echo more >> f && cat g f' : 'cat f', mnt);
        await run('umount', [mnt]);
        await until('the daemon lets go of the mount', async () => (await d.mounted()).length === 0);
        await run('umount', [t]);
        assert.equal(isMountPoint(t), false, `tmpfs unmounted (written: ${written})`);
      }
    } finally {
      await unmountAll(t);
    }
  });

  it('kill -9 of the daemon: its mounts answer ENOTCONN, umount clears them, every acknowledged write is in the upper layer, the next mount starts a new daemon', async () => {
    const d = daemons('kill');
    const at = path.join(dir, 'kill');
    const [lower, upper, work, mnt, other] = ['lower', 'upper', 'work', 'mnt', 'other'].map((n) => path.join(at, n)) as [string, string, string, string, string];
    for (const p of [lower, upper, work, mnt, other]) fs.mkdirSync(p, { recursive: true });
    fs.writeFileSync(path.join(lower, 'f'), 'low\n');
    await d.mountO(`lowerdir=${lower},upperdir=${upper},workdir=${work}`, mnt);
    await d.mountO(`lowerdir=${lower}`, other);
    await sh('for i in $(seq 1 50); do echo "line $i" >> f; done; echo made > new; mkdir dir', mnt);
    const [pid] = d.started() as [number];
    process.kill(pid, 'SIGKILL');
    await until('the daemon is gone', () => !fs.existsSync(`/proc/${pid}`));
    for (const m of [mnt, other]) {
      const r = await run('stat', [m]).then(() => '', (e: { stderr: string }) => e.stderr);
      assert.match(r, /Transport endpoint is not connected/, m);
    }
    assert.equal(fs.readFileSync(path.join(upper, 'f'), 'utf8'), `low\n${Array.from({ length: 50 }, (_, i) => `line ${i + 1}\n`).join('')}`);
    assert.equal(fs.readFileSync(path.join(upper, 'new'), 'utf8'), 'made\n');
    assert.ok(fs.statSync(path.join(upper, 'dir')).isDirectory());
    for (const m of [mnt, other]) {
      await run('umount', [m]);
      assert.equal(isMountPoint(m), false);
    }
    await d.mountO(`lowerdir=${lower},upperdir=${upper},workdir=${work}`, mnt);
    try {
      assert.equal(d.started().length, 2, 'a new daemon');
      assert.equal(await sh('cat new', mnt), 'made\n');
    } finally {
      await run('umount', [mnt]);
    }
  });

  it("a fault while serving one mount fails that request with EIO, is logged, and the daemon's other mounts, and that one, go on", async () => {
    const d = daemons('fault', { SNAPFS_FAULT: 'lookup:boom' });
    const at = path.join(dir, 'fault');
    const [lower, a, b] = ['lower', 'a', 'b'].map((n) => path.join(at, n)) as [string, string, string];
    for (const p of [lower, a, b]) fs.mkdirSync(p, { recursive: true });
    fs.writeFileSync(path.join(lower, 'f'), 'fine\n');
    fs.writeFileSync(path.join(lower, 'boom'), 'never read\n');
    await d.mountO(`lowerdir=${lower}`, a);
    await d.mountO(`lowerdir=${lower}`, b);
    try {
      const failed = await run('cat', [path.join(a, 'boom')]).then(() => '', (e: { stderr: string }) => e.stderr);
      assert.match(failed, /Input\/output error/);
      // A serving thread's output reaches the log through the daemon's main thread, a moment later.
      await until('the fault is logged', () => /internal error: Error: fault injected at lookup:boom/.test(d.log));
      assert.equal(await sh('cat f', a), 'fine\n');
      assert.equal(await sh('cat f', b), 'fine\n');
      assert.equal(d.started().length, 1);
    } finally {
      await run('umount', [a]);
      await run('umount', [b]);
    }
  });

  it('the launcher hands a mount command line to the running daemon without starting Node, and passes everything else to the CLI', async () => {
    const d = daemons('launcher');
    const at = path.join(dir, 'launcher');
    const [lower, upper, work, first, mnt, ro, second, sizedUpper, sizedWork, sized] = ['lower', 'upper', 'work', 'first', 'mnt', 'ro', 'second', 'sized-upper', 'sized-work', 'sized'].map((n) => path.join(at, n)) as [
      string, string, string, string, string, string, string, string, string, string,
    ];
    for (const p of [lower, upper, work, first, mnt, ro, second, sizedUpper, sizedWork, sized]) fs.mkdirSync(p, { recursive: true });
    fs.writeFileSync(path.join(lower, 'f'), 'low\n');
    // With Node unreachable, only what the launcher does alone can succeed.
    const noNode = { ...d.env, SNAPFS_NODE: '/bin/false' };
    const launch = (args: string[], env: NodeJS.ProcessEnv): Promise<CliResult> => command([LAUNCHER, ...args], { env });
    try {
      assert.equal((await launch(['-o', `lowerdir=${lower}`, first], noNode)).code, 1, 'no daemon yet: passed on to Node, which is /bin/false');
      assert.equal(isMountPoint(first), false);
      assert.equal((await launch(['-o', `lowerdir=${lower}`, first], d.env)).code, 0, 'Node starts the daemon');
      // As mount(8) runs /sbin/mount.fuse.snapfs: SOURCE MOUNTPOINT -o OPTIONS, and its own flags.
      const fast = await launch(['snapfs', mnt, '-o', `rw,lowerdir=${lower},upperdir=${upper},workdir=${work}`, '-n'], noNode);
      assert.equal(fast.code, 0, fast.stderr);
      assert.equal((await launch(['-o', `lowerdir=${lower},ro`, ro], noNode)).code, 0, "a view's ro");
      // As containers/storage runs a mount program (an empty option, volatile), with a size limit.
      const podmanLike = await launch(['-o', `lowerdir=${lower},upperdir=${sizedUpper},workdir=${sizedWork},,volatile,max_size=1048576`, sized], noNode);
      assert.equal(podmanLike.code, 0, podmanLike.stderr);
      await assert.rejects(sh('dd if=/dev/zero of=big bs=1M count=2', sized), /No space left on device/);
      // Relative paths are the working directory's, as fuse-overlayfs takes them; `..` goes by its spelling, as in the Node CLI.
      for (const p of ['rel-upper', 'rel-work', 'rel']) fs.mkdirSync(path.join(at, p));
      const relative = await command([LAUNCHER, '-o', 'lowerdir=lower,upperdir=./rel-upper,workdir=gone/../rel-work', 'rel'], { env: noNode, cwd: at });
      assert.equal(relative.code, 0, relative.stderr);
      assert.equal(await sh('cat f', path.join(at, 'rel')), 'low\n');
      assert.equal(await sh('cat f && echo new > g && cat g', mnt), 'low\nnew\n');
      assert.equal(fs.readFileSync(path.join(upper, 'g'), 'utf8'), 'new\n');
      await assert.rejects(sh('touch g', ro), /Read-only file system/);
      assert.deepEqual((await d.mounted()).map((m) => m.mountpoint).sort(), [first, mnt, ro, sized, path.join(at, 'rel')].sort());
      const flags = (m: string): string => fs.readFileSync('/proc/mounts', 'utf8').split('\n').find((l) => l.split(' ')[1] === m)!.split(' ').slice(0, 4).join(' ');
      assert.match(flags(mnt), /^snapfs \S+ fuse\.snapfs rw,.*default_permissions,allow_other/);
      assert.doesNotMatch(flags(mnt), /nosuid|nodev/, "a container's root needs suid and dev");
      assert.match(flags(ro), /^snapfs \S+ fuse\.snapfs ro,/);
      // Whatever it is unsure of goes to Node: a second writer of one upper layer, a busy mount point, an option of another kind, a command.
      for (const args of [
        ['-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, second],
        ['-o', `lowerdir=${lower}`, mnt],
        ['-o', `lowerdir=${lower},noexec`, second],
        ['-o', `lowerdir=${lower},upperdir=${upper}2,workdir=${work}2,max_size=0`, second],
        ['-o', `lowerdir=${lower},max_size=10`, second],
        ['-o', `lowerdir=${lower},upperdir=${upper}2,workdir=${work}2,ro`, second],
        ['-o', `lowerdir=${lower}`, path.join(at, 'not-there')],
        ['--root', at, 'info', 'x'],
        ['diff', 'KEY', '-o', `lowerdir=${lower}`],
      ]) {
        const r = await launch(args, noNode);
        assert.equal(r.code, 1, `passed on: ${args.join(' ')}`);
      }
      const busy = await launch(['-o', `lowerdir=${lower}`, mnt], d.env);
      assert.equal(busy.code, 7);
      assert.match(busy.stderr, /mountpoint busy/);
      const writer = await launch(['-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, second], d.env);
      assert.equal(writer.code, 7);
      assert.match(writer.stderr, /already mounted read-write by snapfs/);
      assert.equal(isMountPoint(second), false);
    } finally {
      for (const m of [first, mnt, ro, sized, path.join(at, 'rel')]) await run('umount', [m]).catch(() => undefined);
    }
  });

  it("a mount whose layers are on a snapfs mount (nested containers) is served by a process of its own, not by the daemon serving those layers", async () => {
    const d = daemons('nested');
    const at = path.join(dir, 'nested');
    const [lower, upper, work, outer, inner] = ['lower', 'upper', 'work', 'outer', 'inner'].map((n) => path.join(at, n)) as [string, string, string, string, string];
    for (const p of [lower, upper, work, outer, inner]) fs.mkdirSync(p, { recursive: true });
    await d.mountO(`lowerdir=${lower},upperdir=${upper},workdir=${work}`, outer);
    try {
      await sh('mkdir -p layers/lower layers/upper layers/work && echo nested > layers/lower/f', outer);
      const options = `lowerdir=${outer}/layers/lower,upperdir=${outer}/layers/upper,workdir=${outer}/layers/work`;
      const launched = await command([LAUNCHER, '-o', options, inner], { env: { ...d.env, SNAPFS_NODE: '/bin/false' } });
      assert.equal(launched.code, 1, 'the launcher passes it on');
      await d.mountO(options, inner);
      assert.equal(await sh('cat f && echo written > g && cat g', inner), 'nested\nwritten\n');
      assert.deepEqual((await d.mounted()).map((m) => m.mountpoint), [outer], 'the daemon serves the outer mount only');
      const own = (await run('pgrep', ['-f', `__serve.*${inner}`])).stdout.trim().split('\n');
      assert.equal(own.length, 1, 'a process of its own serves the inner one');
      await run('umount', [inner]);
      assert.equal(await sh('cat layers/upper/g', outer), 'written\n');
    } finally {
      await run('umount', [inner]).catch(() => undefined);
      await run('umount', [outer]).catch(() => undefined);
    }
  });

  it('a mount over its own lower directory (as fuse-overlayfs allows) serves what the directory held, through the CLI and the launcher', async () => {
    const d = daemons('over-lower');
    const first = path.join(dir, 'over-first');
    const at = path.join(dir, 'over-lower');
    fs.mkdirSync(first);
    fs.mkdirSync(at);
    fs.writeFileSync(path.join(at, 'f'), 'under\n');
    await d.mountO(`lowerdir=${dir}`, first); // the daemon runs: the launcher serves what follows itself
    try {
      for (const mount of [() => d.mountO(`lowerdir=${at}`, at), () => run(LAUNCHER, ['-o', `lowerdir=${at}`, at], { env: { ...d.env, SNAPFS_NODE: '/bin/false' } })]) {
        await mount();
        try {
          assert.ok(isMountPoint(at));
          assert.equal(await sh('cat f', at), 'under\n');
        } finally {
          await run('umount', [at]);
        }
      }
    } finally {
      await run('umount', [first]).catch(() => undefined);
    }
  });

  it('socket activation: a daemon started by the first connection to a socket made for it serves the mount, and leaves the socket to whoever made it', async () => {
    const d = daemons('activation');
    const mnt = path.join(dir, 'activation');
    fs.mkdirSync(mnt);
    fs.mkdirSync(d.runtime, { mode: 0o700 });
    const socket = path.join(d.runtime, 'daemon.sock');
    // systemd's test tool: listens, and starts the daemon with the socket at the first connection.
    const activator = spawn('systemd-socket-activate', ['--seqpacket', '-l', socket, '-E', 'SNAPFS_RUNTIME_DIR', '-E', 'SNAPFS_DAEMON_IDLE_SECONDS', process.execPath, CLI, 'daemon', '--idle-exit', '1'], {
      env: d.env,
      stdio: ['ignore', 'ignore', fs.openSync(path.join(d.runtime, 'daemon.log'), 'a')],
    });
    try {
      await until('the socket is made', () => fs.existsSync(socket));
      // With Node unreachable, only a daemon already listening can serve the launcher.
      await run(LAUNCHER, ['-o', `lowerdir=${dir}`, mnt], { env: { ...d.env, SNAPFS_NODE: '/bin/false' } });
      assert.ok(isMountPoint(mnt));
      assert.match(d.log, /serving on \S+ \(pid \d+, socket from systemd\)/);
      await run('umount', [mnt]);
      await until('the idle daemon exits', () => /no mount for 1 s: exiting/.test(d.log));
      assert.ok(fs.lstatSync(socket).isSocket(), "the socket is left: it is systemd's");
    } finally {
      activator.kill();
      await run('umount', [mnt]).catch(() => undefined);
    }
  });

  it('browse mounts are served by the daemon too, beside mounts of layers, and see snapshots made later', async () => {
    const d = daemons('browse');
    const root = path.join(dir, 'browse-root');
    const [one, two] = ['browse-1', 'browse-2'].map((n) => path.join(dir, n)) as [string, string];
    for (const p of [one, two]) fs.mkdirSync(p);
    await d.cli(root, ['prepare', 'first']);
    fs.writeFileSync(path.join(layerDirOf(root, 'first'), 'f'), 'in first\n');
    try {
      await d.cli(root, ['browse', one]);
      await d.cli(root, ['mount', 'first', two]);
      assert.equal(d.started().length, 1);
      const listed = await d.mounted(root);
      assert.deepEqual(listed.map((m) => m.mountpoint).sort(), [one, two].sort());
      assert.equal(await sh('cat first/f', one), 'in first\n');
      await d.cli(root, ['prepare', 'later']);
      assert.equal(await sh('ls', one), 'first\nlater\n');
      assert.equal((await run('pgrep', ['-f', `__serve.*${one}`]).catch(() => ({ stdout: '' }))).stdout, '', 'no process of its own');
    } finally {
      for (const m of [one, two]) await run('umount', [m]).catch(() => undefined);
    }
  });

  it('the daemon itself refuses a second writer of an upper layer, and answers a request with stray descriptors with a refusal, closing them', async () => {
    const d = daemons('writers');
    const at = path.join(dir, 'writers');
    const [lower, upper, work, mnt] = ['lower', 'upper', 'work', 'mnt'].map((n) => path.join(at, n)) as [string, string, string, string];
    for (const p of [lower, upper, work, mnt]) fs.mkdirSync(p, { recursive: true });
    await d.mountO(`lowerdir=${lower},upperdir=${upper},workdir=${work}`, mnt);
    try {
      const [pid] = d.started() as [number];
      // What the daemon holds of what is sent (a directory it opens for a while for its own
      // mount's requests is a child of these, never one of them).
      const sentKinds = (): number =>
        fs
          .readdirSync(`/proc/${pid}/fd`)
          .map((fd) => {
            try {
              return fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
            } catch {
              return '';
            }
          })
          .filter((target) => ['/dev/null', lower, upper, work].includes(target)).length;
      const heldBefore = sentKinds();
      // A client of the daemon's own user, past the helpers' own checks.
      const probe = [
        ...askPreamble(path.join(d.runtime, 'daemon.sock')),
        `const dir = (p) => fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);`,
        `const second = { op: 'mount', mountpoint: ${JSON.stringify(path.join(at, 'other'))}, lowers: [${JSON.stringify(lower)}], upper: ${JSON.stringify(upper)}, work: ${JSON.stringify(work)} };`,
        `console.log(JSON.stringify([ask(second, [fs.openSync('/dev/null', 'r'), dir(${JSON.stringify(lower)}), dir(${JSON.stringify(upper)}), dir(${JSON.stringify(work)})]), ask({ op: 'list' }, [dir(${JSON.stringify(lower)})])]));`,
      ].join('\n');
      const { stdout } = await run(process.execPath, ['-e', probe]);
      const [writer, list] = JSON.parse(stdout) as [{ error?: string }, { error?: string }];
      assert.equal(writer.error, `${upper}: already mounted read-write by this daemon`);
      assert.equal(list.error, 'request: 1 descriptors for 0');
      assert.equal(sentKinds(), heldBefore, 'every descriptor sent is closed');
      assert.deepEqual((await d.mounted()).map((m) => m.mountpoint), [mnt]);
    } finally {
      await run('umount', [mnt]).catch(() => undefined);
    }
  });
});
