import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chainIds } from '../../src/layertar/image';
import { buildBusyboxImage, runOnceMoreOnEchild, type Containerd, type CtrResult } from '../support/containerd-helpers';
import { CLI, command, NOBODY, tempDir } from '../support/helpers';
import { PrivateMountNamespace, userName } from '../support/podman-helpers';

const SCRIPT = path.resolve(__dirname, '..', '..', '..', 'scripts', 'rootless-containerd');
const IMAGE = 'snapfs.test/busybox:rootless';
/** runc can make no cgroup for a user on cgroup v1, nor set the cpu shares ctr asks for (see the script's start). */
const NO_CGROUPS = ['--cgroup', '', '--cpu-shares', '0'];
/** The TUN device slirp4netns opens (misc major 10, minor 200: fixed by the kernel). */
const TUN_DEVICE = { major: 10, minor: 200 };
const HAS_TUN = fs.existsSync('/dev/net/tun');

/**
 * Whether the process `pid` runs: a zombie does not (this machine's init
 * may take its time to reap what the script detached).
 */
function runs(pid: number): boolean {
  try {
    return !/^State:\s*Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/** The processes that run in the user namespace `userns` (readlink of /proc/PID/ns/user). */
function processesIn(userns: string): number[] {
  const inIt = (pid: number): boolean => {
    try {
      return fs.readlinkSync(`/proc/${pid}/ns/user`) === userns;
    } catch {
      return false; // gone meanwhile
    }
  };
  return fs
    .readdirSync('/proc')
    .filter((name) => /^[0-9]+$/.test(name))
    .map(Number)
    .filter((pid) => inIt(pid) && runs(pid));
}

/**
 * RootlessKit, containerd and snapfs as a user without privileges, set up
 * by the script. Everything they need that the system may not give runs in
 * a mount namespace of the test's own (PrivateMountNamespace): the user's
 * subordinate ids, /dev/fuse and /dev/net/tun usable by everyone, as udev
 * makes them. Nothing outside it changes.
 */
describe('rootless containerd on snapfs under RootlessKit (scripts/rootless-containerd)', { skip: process.getuid?.() !== 0 ? 'needs root to give an unprivileged user subordinate ids' : !fs.existsSync('/dev/fuse') && 'needs /dev/fuse' }, () => {
  let home: string;
  let ns: PrivateMountNamespace;
  /** The user namespace of RootlessKit's child, once started. */
  let userns: string | undefined;
  let rootlesskitPid: number;

  /** argv running `cmd` as nobody, with a clean environment whose XDG directories are in `home`. */
  const asNobody = (cmd: readonly string[]): string[] => [
    'setpriv',
    `--reuid=${NOBODY}`,
    `--regid=${NOBODY}`,
    '--clear-groups',
    'env',
    '-i',
    `PATH=${path.dirname(process.execPath)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
    `HOME=${home}`,
    `XDG_RUNTIME_DIR=${path.join(home, 'run')}`,
    `XDG_DATA_HOME=${path.join(home, 'data')}`,
    // Without /dev/net/tun, no slirp4netns: RootlessKit keeps the host's network.
    ...(HAS_TUN ? [] : ['SNAPFS_ROOTLESS_NET=host']),
    ...cmd,
  ];
  const exec = (argv: readonly string[], timeoutMs = 120_000): Promise<CtrResult> => command(argv, { cwd: home, timeout: timeoutMs });
  /** Runs `cmd` as nobody in the test's mount namespace. */
  const inNamespace = (cmd: readonly string[], timeoutMs?: number): Promise<CtrResult> => exec(ns.enter(asNobody(cmd)), timeoutMs);
  const script = (...args: string[]): Promise<CtrResult> => inNamespace([SCRIPT, ...args]);
  const ctr: Containerd['ctr'] = (args, timeoutMs) => inNamespace([SCRIPT, 'ctr', ...args], timeoutMs);
  const run = runOnceMoreOnEchild(ctr);

  before(async () => {
    home = tempDir('snapfs-rootless-ctrd-');
    fs.chmodSync(home, 0o755);
    fs.mkdirSync(path.join(home, 'run'), { mode: 0o700 });
    for (const dir of [home, path.join(home, 'run')]) fs.chownSync(dir, NOBODY, NOBODY);
    ns = await PrivateMountNamespace.open(path.join(home, 'namespace'), userName(NOBODY));
    if (HAS_TUN) {
      const tun = path.join(home, 'namespace', 'tun');
      execFileSync('mknod', ['-m', '0666', tun, 'c', String(TUN_DEVICE.major), String(TUN_DEVICE.minor)]);
      const bound = await exec(ns.enter(['mount', '--bind', tun, '/dev/net/tun']));
      assert.equal(bound.code, 0, bound.stderr);
    }
  });
  after(async () => {
    if (ns !== undefined) {
      await script('stop');
      // Should stop have left anything, it is ours alone: that namespace is this test's.
      if (userns !== undefined) for (const pid of processesIn(userns)) process.kill(pid, 'SIGKILL');
      await ns.close();
    }
    fs.rmSync(home, { recursive: true, force: true });
  });

  const nobodyHasSubids = /^(nobody|65534):/m.test(fs.readFileSync('/etc/subuid', 'utf8'));
  it('check, outside the namespace, names what is missing, one line each: the subordinate ids among them', { skip: nobodyHasSubids && 'nobody has subordinate ids on this machine' }, async () => {
    const r = await exec(asNobody([SCRIPT, 'check']));
    assert.equal(r.code, 7, r.stderr);
    const lines = r.stderr.trimEnd().split('\n');
    assert.ok(lines.includes('rootless-containerd: /etc/subuid: no subordinate uid range for nobody (as root: usermod --add-subuids 100000-165535 nobody)'), r.stderr);
    assert.ok(lines.includes('rootless-containerd: /etc/subgid: no subordinate gid range for nobody (as root: usermod --add-subgids 100000-165535 nobody)'), r.stderr);
    for (const line of lines) assert.match(line, /^rootless-containerd: \S+: /);
  });

  it('start runs containerd as root of a user namespace mapping it to the user, with snapfs serve and the mount daemon beside it', async () => {
    const checked = await script('check');
    assert.equal(checked.code, 0, checked.stderr);
    const started = await script('start');
    assert.equal(started.code, 0, started.stderr);
    const pids = /RootlessKit pid (\d+), containerd pid (\d+)/.exec(started.stdout);
    assert.ok(pids, started.stdout);
    rootlesskitPid = Number(pids[1]);
    const containerd = Number(pids[2]);
    userns = fs.readlinkSync(`/proc/${containerd}/ns/user`);
    assert.notEqual(userns, fs.readlinkSync('/proc/self/ns/user'));
    assert.match(fs.readFileSync(`/proc/${containerd}/status`, 'utf8'), new RegExp(`^Uid:\\s+${NOBODY}\\s`, 'm'));
    // uid 0 is the user; 1 on, the subordinate ids the namespace's /etc/subuid grants.
    const [, first, count] = fs.readFileSync(`/proc/${ns.pid}/root/etc/subuid`, 'utf8').trim().split(':');
    assert.equal(fs.readFileSync(`/proc/${containerd}/uid_map`, 'utf8').replace(/\s+/g, ' ').trim(), `0 ${NOBODY} 1 1 ${first} ${count}`);
    // The mount daemon of that namespace, listening in the user's runtime directory.
    const ino = fs.statSync(`/proc/${containerd}/ns/user`).ino;
    assert.ok(fs.statSync(path.join(home, 'run', 'snapfs', `daemon-userns-${ino}.sock`)).isSocket());
    assert.equal((await script('start')).code, 7, 'a second start is refused');
  });

  it('imports an image onto snapfs: one committed snapfs snapshot per layer, owned by the user', async () => {
    const { tarball, diffIds } = buildBusyboxImage(home, IMAGE);
    const imported = await ctr(['images', 'import', '--snapshotter', 'snapfs', tarball]);
    assert.equal(imported.code, 0, imported.stderr);
    const listed = await ctr(['snapshots', '--snapshotter', 'snapfs', 'ls']);
    const chains = chainIds(diffIds);
    for (const [i, chain] of chains.entries()) {
      assert.match(listed.stdout, new RegExp(`^${chain}\\s+${i === 0 ? '' : chains[i - 1]!}\\s*Committed`, 'm'), listed.stdout);
    }
    // The same snapshots in the snapfs root, read by the user from outside RootlessKit's namespaces.
    const root = path.join(home, 'data', 'snapfs-containerd', 'snapfs');
    const own = await inNamespace([process.execPath, CLI, '--root', root, 'ls', '--json']);
    assert.equal(own.code, 0, own.stderr);
    // containerd's names carry its namespace and a number of its own before the chain ID.
    const snapshots = JSON.parse(own.stdout) as { name: string; kind: string }[];
    assert.deepEqual(snapshots.map((s) => `${s.name.replace(/^default\/\d+\//, '')} ${s.kind}`).sort(), chains.map((chain) => `${chain} committed`).sort());
    // Root of the namespace is the user outside it.
    assert.equal(fs.statSync(path.join(root, 'snapshots', '1', 'fs', 'bin', 'busybox')).uid, NOBODY);
  });

  it('runs a container on a fuse.snapfs root, where chown to an id of the namespace works', async () => {
    const ran = await run(['--rm', '--snapshotter', 'snapfs', ...NO_CGROUPS, IMAGE, 'rootless-c1', '/bin/sh', '-c', 'echo hello from a rootless container; cat /etc/motd; ls /bin; echo data > /written; chown 1:1 /written; ls -n /written; grep " / / " /proc/self/mountinfo']);
    assert.equal(ran.code, 0, ran.stderr);
    const lines = ran.stdout.replace(/\r/g, '').split('\n');
    assert.deepEqual(lines.slice(0, 6), ['hello from a rootless container', 'hello from the second layer', 'busybox', 'cat', 'echo', 'sh']);
    assert.match(lines[6]!, /^-rw-r--r-- +1 1 +1 +5 .* \/written$/);
    assert.match(lines[7]!, / - fuse\.snapfs snapfs rw,/);
  });

  it("a running container's root is a mount of RootlessKit's namespace alone, served by its mount daemon; stop leaves no process and no mount", async () => {
    // A detached run whose task did not start leaves its container: it goes before the run is tried again.
    const runDetached = runOnceMoreOnEchild(async (args, timeoutMs) => {
      await ctr(['containers', 'rm', 'rootless-c2']);
      return ctr(args, timeoutMs);
    });
    const started = await runDetached(['-d', '--snapshotter', 'snapfs', ...NO_CGROUPS, IMAGE, 'rootless-c2', '/bin/busybox', 'sleep', '600']);
    assert.equal(started.code, 0, started.stderr);
    const rootfs = path.join(home, 'run', 'snapfs-containerd', 'containerd', 'io.containerd.runtime.v2.task', 'default', 'rootless-c2', 'rootfs');
    const inside = await script('nsenter', 'cat', '/proc/self/mountinfo');
    assert.match(inside.stdout, new RegExp(` ${rootfs} \\S+( \\S+)* - fuse\\.snapfs snapfs `), inside.stdout);
    for (const outside of ['/proc/self/mountinfo', `/proc/${ns.pid}/mountinfo`]) assert.ok(!fs.readFileSync(outside, 'utf8').includes(rootfs), `not in ${outside}`);
    const served = await script('nsenter', process.execPath, CLI, 'mounted', '--json');
    assert.equal(served.code, 0, served.stderr);
    assert.ok((JSON.parse(served.stdout) as { mountpoint: string }[]).some((m) => m.mountpoint === rootfs), served.stdout);

    const stopped = await script('stop');
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.equal(stopped.stderr, '', 'every process went on SIGTERM, none was left to kill');
    assert.deepEqual(processesIn(userns!), []);
    assert.equal(runs(rootlesskitPid), false, 'RootlessKit is gone');
    assert.deepEqual(fs.readdirSync(path.join(home, 'run', 'snapfs')).filter((name) => name.endsWith('.sock')), [], "the mount daemon's socket is gone with it");
    const inTestNamespace = fs.readFileSync(`/proc/${ns.pid}/mountinfo`, 'utf8');
    for (const mountinfo of [fs.readFileSync('/proc/self/mountinfo', 'utf8'), inTestNamespace]) assert.ok(!mountinfo.includes(path.join(home, 'run')), 'no mount of the test left');
  });
});
