import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { command, type CliResult } from './helpers';

export type CommandResult = CliResult;

/** Runs argv; never throws. */
function runCommand(argv: readonly string[], timeoutMs = 120_000): Promise<CommandResult> {
  return command(argv, { timeout: timeoutMs });
}

/** Where podman, buildah, runc, conmon, newuidmap and mount(8) are, whoever runs them. */
const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';


/** The subordinate ids the rootless user gets, in the namespace's own /etc/subuid and /etc/subgid. */
const SUBORDINATE_IDS = { first: 100_000, count: 65_536 };

/** FUSE's character device (misc major 10, minor 229: fixed by the kernel). */
const FUSE_DEVICE = { major: 10, minor: 229 };

/**
 * A mount namespace of the test's own, held open by a process it started,
 * in which container tools (podman, buildah, a rootless containerd) run as
 * root or as a user without privileges. It gives them, without changing
 * anything outside it:
 * - an empty /run and /var/lib: rootful podman keeps files at fixed paths
 *   there whatever its storage root (its blob-info cache in
 *   /var/lib/containers/cache, runc's state in /run/runc, netavark's in
 *   /run/containers/networks);
 * - /dev/fuse usable by every user, as udev makes it on a standard system
 *   (a node of its own, mode 0666, bound over the host's);
 * - /etc/subuid and /etc/subgid granting the rootless user SUBORDINATE_IDS,
 *   which newuidmap reads.
 * Copies of mounts that other processes made (FUSE mounts, anything under
 * /tmp, /run or /var/lib) are detached from it first: a copy held here
 * would keep another FUSE session alive after its owner unmounts it.
 */
export class PrivateMountNamespace {
  private constructor(
    private readonly holder: ChildProcess,
    readonly pid: number,
  ) {}

  static async open(dir: string, rootlessUser: string): Promise<PrivateMountNamespace> {
    fs.mkdirSync(dir, { recursive: true });
    const fuse = path.join(dir, 'fuse');
    execFileSync('mknod', ['-m', '0666', fuse, 'c', String(FUSE_DEVICE.major), String(FUSE_DEVICE.minor)]);
    const subIds = path.join(dir, 'subids');
    fs.writeFileSync(subIds, `${rootlessUser}:${SUBORDINATE_IDS.first}:${SUBORDINATE_IDS.count}\n`, { mode: 0o644 });

    const holder = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'echo ready && exec sleep infinity'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const ready = await new Promise<boolean>((resolve) => {
      holder.stdout!.once('data', () => resolve(true));
      holder.once('exit', () => resolve(false));
    });
    if (!ready || holder.pid === undefined) throw new Error('unshare --mount did not start');
    const ns = new PrivateMountNamespace(holder, holder.pid);
    try {
      await ns.detachOthersMounts();
      const setUp = await runCommand(
        ns.enter([
          'sh',
          '-ec',
          `mount -t tmpfs -o mode=0755 tmpfs /run
           mount -t tmpfs -o mode=0755 tmpfs /var/lib
           mount --bind "$1" /dev/fuse
           mount --bind "$2" /etc/subuid
           mount --bind "$2" /etc/subgid`,
          'sh',
          fuse,
          subIds,
        ]),
      );
      if (setUp.code !== 0) throw new Error(`setting up the mount namespace: ${setUp.stderr}`);
    } catch (err) {
      await ns.close();
      throw err;
    }
    return ns;
  }

  /** argv that runs `command` inside the namespace. */
  enter(command: readonly string[]): string[] {
    return ['nsenter', `--target=${this.pid}`, '--mount', ...command];
  }

  /** Ends the namespace's holder; the namespace goes once the processes started in it are gone too. */
  async close(): Promise<void> {
    if (this.holder.exitCode !== null || this.holder.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.holder.once('exit', () => resolve()));
    this.holder.kill('SIGKILL');
    await exited;
  }

  private othersMounts(): string[] {
    return fs
      .readFileSync(`/proc/${this.pid}/mountinfo`, 'utf8')
      .split('\n')
      .filter((line) => line !== '')
      .flatMap((line) => {
        const mountPoint = decodeMountinfo(line.split(' ')[4]!);
        const fsType = line.split(' - ')[1]?.split(' ')[0] ?? '';
        const theirs = fsType.startsWith('fuse') || ['/tmp/', '/run/', '/var/lib/'].some((top) => mountPoint.startsWith(top));
        return theirs ? [mountPoint] : [];
      });
  }

  private async detachOthersMounts(): Promise<void> {
    const mounts = this.othersMounts();
    if (mounts.length === 0) return;
    // Children before parents (mountinfo lists parents first); a lazy unmount of a parent takes its children too.
    await runCommand(this.enter(['umount', '--lazy', ...mounts.reverse()]));
    const left = this.othersMounts();
    if (left.length > 0) throw new Error(`could not detach from the test's mount namespace: ${left.join(', ')}`);
  }
}

/** A mount point as mountinfo escapes it (space, tab, newline, backslash as \ooo). */
function decodeMountinfo(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/**
 * The mount daemons started with runtime directory `runtime` (one log per
 * user namespace) that still run, by the pids their logs give, each checked
 * to be a daemon still: a pid may have been reused since.
 */
function mountDaemons(runtime: string): number[] {
  if (!fs.existsSync(runtime)) return [];
  return fs
    .readdirSync(runtime)
    .filter((name) => /^daemon.*\.log$/.test(name))
    .flatMap((name) => [...fs.readFileSync(path.join(runtime, name), 'utf8').matchAll(/serving on \S+ \(pid (\d+)\)/g)].map((m) => Number(m[1])))
    .filter((pid) => runs(pid, '__daemon'));
}

/** Whether `pid` runs (a zombie nobody reaped has finished) a command line holding `word`. */
function runs(pid: number, word: string): boolean {
  try {
    const state = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0];
    return state !== 'Z' && fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(word);
  } catch {
    return false;
  }
}

/** Sends SIGTERM to each of `pids`, and SIGKILL to those still running after `graceMs`. */
async function terminate(pids: readonly number[], word: string, graceMs = 10_000): Promise<void> {
  const signal = (pid: number, sig: NodeJS.Signals): void => {
    try {
      process.kill(pid, sig);
    } catch {
      // gone already
    }
  };
  for (const pid of pids) signal(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (pids.some((pid) => runs(pid, word)) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
  for (const pid of pids.filter((p) => runs(p, word))) signal(pid, 'SIGKILL');
}

/** The name of user `uid` (newuidmap looks users up by name in /etc/subuid). */
export function userName(uid: number): string {
  return execFileSync('id', ['-nu', String(uid)], { encoding: 'utf8' }).trim();
}

/**
 * podman and buildah as one user (root, or NOBODY without privileges) in
 * `ns`, with a storage root, configuration and runtime directories of their
 * own under `base` (CONTAINERS_STORAGE_CONF, CONTAINERS_CONF, HOME, TMPDIR):
 * nothing of the system's or a user's own storage is read or written. The
 * storage is containers/storage's overlay driver with `mountProgram` as its
 * mount_program.
 */
export class ContainerTools {
  readonly rootless: boolean;
  /** The snapfs runtime directory of the mount program as this user runs it. */
  readonly snapfsRuntime: string;
  private readonly env: Readonly<Record<string, string>>;

  constructor(
    private readonly ns: PrivateMountNamespace,
    private readonly base: string,
    private readonly uid: number,
    mountProgram: string,
  ) {
    this.rootless = uid !== 0;
    for (const sub of ['home', 'tmp', 'xdg']) fs.mkdirSync(path.join(base, sub), { recursive: true, mode: 0o700 });
    const storageConf = path.join(base, 'storage.conf');
    fs.writeFileSync(
      storageConf,
      `[storage]
driver = "overlay"
graphroot = ${JSON.stringify(path.join(base, 'storage'))}
runroot = ${JSON.stringify(path.join(base, 'storage-run'))}
rootless_storage_path = ${JSON.stringify(path.join(base, 'storage'))}
[storage.options.overlay]
mount_program = ${JSON.stringify(mountProgram)}
`,
    );
    const containersConf = path.join(base, 'containers.conf');
    fs.writeFileSync(
      containersConf,
      `[containers]
${this.rootless ? '' : ROOTFUL_ULIMITS}
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
image_copy_tmp_dir = ${JSON.stringify(path.join(base, 'tmp'))}
lock_type = "file"
tmp_dir = ${JSON.stringify(path.join(base, 'libpod'))}
[network]
network_config_dir = ${JSON.stringify(path.join(base, 'networks'))}
`,
    );
    execFileSync('chown', ['-R', `${uid}:${uid}`, base]);
    const xdg = path.join(base, 'xdg');
    // Rootless, the mount program runs as uid 0 of podman's (or buildah's) user namespace and finds its runtime directory itself.
    this.snapfsRuntime = this.rootless ? path.join(xdg, 'snapfs') : path.join(base, 'snapfs-run');
    this.env = {
      PATH,
      HOME: path.join(base, 'home'),
      TMPDIR: path.join(base, 'tmp'),
      CONTAINERS_STORAGE_CONF: storageConf,
      CONTAINERS_CONF: containersConf,
      ...(this.rootless ? { XDG_RUNTIME_DIR: xdg } : { SNAPFS_RUNTIME_DIR: this.snapfsRuntime }),
    };
  }

  podman(args: readonly string[]): Promise<CommandResult> {
    return runCommand(this.argv(['podman', ...args]));
  }

  buildah(args: readonly string[]): Promise<CommandResult> {
    return runCommand(this.argv(['buildah', ...args]));
  }

  /**
   * Runs a shell script where `tool`'s mounts are: rootful, in the
   * namespace itself; rootless, in the user namespace and mount namespace
   * of `podman unshare` or `buildah unshare` (podman keeps one for all its
   * commands; buildah makes one for each).
   */
  inStorageNamespace(tool: 'podman' | 'buildah', script: string): Promise<CommandResult> {
    return runCommand(this.argv(this.rootless ? [tool, 'unshare', 'sh', '-c', script] : ['sh', '-c', script]));
  }

  /** The upper (diff) directory of a container, as the overlay driver keeps it. */
  async upperDir(container: string): Promise<string> {
    const r = await this.podman(['inspect', '--format', '{{.GraphDriver.Data.UpperDir}}', container]);
    if (r.code !== 0) throw new Error(`podman inspect ${container}: ${r.stderr}`);
    return r.stdout.trim();
  }

  /** Removes every container, then ends what podman and snapfs started for this user and left running: mount daemons, rootless podman's pause process. */
  async cleanUp(): Promise<void> {
    await this.podman(['rm', '--all', '--force']);
    await this.buildah(['rm', '--all']);
    await terminate(mountDaemons(this.snapfsRuntime), '__daemon');
    const pauseFile = path.join(this.base, 'libpod', 'pause.pid');
    const pause = fs.existsSync(pauseFile) ? Number(fs.readFileSync(pauseFile, 'utf8')) : undefined;
    if (pause !== undefined && runs(pause, 'catatonit')) await terminate([pause], 'catatonit');
  }

  private argv(command: readonly string[]): string[] {
    const asUser = this.rootless ? ['setpriv', `--reuid=${this.uid}`, `--regid=${this.uid}`, '--clear-groups'] : [];
    return this.ns.enter([...asUser, 'env', '-i', ...Object.entries(this.env).map(([k, v]) => `${k}=${v}`), ...command]);
  }
}

/**
 * Rootful podman asks runc for open files and processes limits of 1048576
 * (hard and soft), which only a process with CAP_SYS_RESOURCE may set above
 * its own hard limits; where that is denied (containers, sandboxes), runc
 * fails with `error setting rlimit type 7: operation not permitted` (type
 * 6 for processes: podman lowers its own to 32768 first). 1024 fits below
 * the limits of any machine.
 */
const ROOTFUL_ULIMITS = 'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]';
