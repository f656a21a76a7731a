import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { CLI, layerDirOf, ok, tempDir } from '../support/helpers';
import { serveStack, unmountAll } from '../support/mount-helpers';

const isRoot = process.getuid?.() === 0;

/** How long each race runs: the swapper goes on past it until it has made 10,000 swaps. */
const RACE_SECONDS = Number(process.env.SNAPFS_SWAP_SECONDS ?? 20);
const MIN_SWAPS = 10_000;
/** The name of the sentinel, in the host directory and in the layer's directory alike. */
const SENTINEL = 'shadow';
/** The sentinel's content in the layers: longer than the host's marker (see makeHost). */
const DUMMY = 'dummy sentinel, in the layer\n';
/** The host sentinel's owner: a stat through a mount that shows it has reached the host. */
const HOST_UID = 4242;
const HOST_GID = 4343;
/**
 * Directories of the upper layer in each of which the reader looks up a
 * name never seen before, between two of its operations: more than the
 * daemon keeps descriptors of (OPEN_DIRS, 128), so that the directory under
 * attack is opened again by its name, while it is being swapped, instead of
 * through a descriptor kept from before.
 */
const PADS = 132;
/** Files in the lower directory for copy-up (one a round), and lower directories for rename. */
const LOWER_FILES = 4000;
const LOWER_DIRS = 10_000;
/** Directories of the upper layer to attack one after the other (see upper_round). */
const UPPER_DIRS = 1000;

type Mode = 'upper' | 'copy-up' | 'rename';
const TMPFS_MAGIC = 0x01021994;

/**
 * The attacker with its hands in a layer: exchanges `d` with a symlink to
 * the host directory (absolute, then relative), with renameat2
 * RENAME_EXCHANGE, as fast as it can, until the deadline and at least
 * MIN_SWAPS swaps. Each exchange is done twice, so that the real directory
 * is back at `d` before the other symlink is used. With a progress file it
 * attacks `PK/d` (P the prefix given, K the directory the reader is at),
 * and with a spread of 2 `PK+1/d` too, in turns (a reader that moves on at
 * once meets a directory under attack already).
 */
const SWAPPER = String.raw`
import ctypes, json, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
RENAME_EXCHANGE = 2
layer, deadline, min_swaps, progress_path, parents, spread = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], os.fsencode(sys.argv[5]), int(sys.argv[6])
fd = os.open(layer, os.O_RDONLY | os.O_DIRECTORY)
progress = os.open(progress_path, os.O_RDONLY) if progress_path else -1
# It spins: whoever else wants a processor comes first (it swaps whenever they wait).
os.nice(19)
alts = (b'd.abs', b'd.abs', b'd.rel', b'd.rel')
swaps = failures = 0
prefix = b''
k = 0
i = 0
while True:
    if i % 64 == 0:
        if time.time() >= deadline and swaps >= min_swaps:
            break
        if progress >= 0:
            k = int.from_bytes(os.pread(progress, 8, 0), 'little')
    if progress >= 0 and i % 4 == 0:
        prefix = b'%s%d/' % (parents, k + (i // 4) % spread)
    if libc.renameat2(fd, prefix + b'd', fd, prefix + alts[i % 4], RENAME_EXCHANGE) == 0:
        swaps += 1
    else:
        failures += 1
    i += 1
print(json.dumps({'swaps': swaps, 'failures': failures}))
`;

/**
 * Reads and writes as a container would: through the writable mount,
 * chrooted into it (so that a symlink the kernel follows stays in the
 * mount, as in a container, and only snapfs itself could lead out), or
 * through browse, as anyone on the host does. Everything read (contents,
 * names, link targets, owners, attributes) goes to a log; counts of each
 * operation's outcomes go to stdout. Prints "ready" once warmed up, then
 * runs until the deadline it reads from stdin.
 */
const READER = String.raw`
import errno, json, os, random, sys, time
role, mode, top, log_path, progress_path, count, pads = sys.argv[1:8]
count, pads, top = int(count), int(pads), os.fsencode(top)
log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
progress = os.open(progress_path, os.O_RDWR | os.O_CREAT, 0o600) if progress_path else -1
counts = {}

def bump(key):
    counts[key] = counts.get(key, 0) + 1

def note(what, data):
    os.write(log, what + b' ' + data + b'\n')

def attempt(op, fn, *args):
    try:
        result = fn(*args)
        bump(op + ' ok')
        return result
    except OSError as e:
        bump(op + ' ' + errno.errorcode.get(e.errno, str(e.errno)))
        return None

def read(p):
    fd = os.open(p, os.O_RDONLY)
    try:
        # Pages the kernel kept would answer without asking snapfs.
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        data = os.pread(fd, 65536, 0)
    finally:
        os.close(fd)
    note(b'read ' + p, data)
    if data.startswith(b'dummy'):
        bump('dummy read')
    return data

def write(p, flags, data):
    fd = os.open(p, os.O_WRONLY | flags, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)

def stat(p):
    st = os.stat(p)
    note(b'stat ' + p, b'owner %d:%d mode %o size %d' % (st.st_uid, st.st_gid, st.st_mode, st.st_size))

def listdir(p):
    note(b'list ' + p, b' '.join(os.listdir(p)))

def xattrs(p):
    for name in os.listxattr(p):
        note(b'xattr ' + p, name.encode() + b'=' + os.getxattr(p, name))

def readlink(p):
    target = os.readlink(p)
    note(b'readlink ' + p, target)
    # Through browse, every target that is absolute or climbs is shown under the mount.
    bump('link confined' if target.startswith(top + b'/') else 'link NOT confined')

evictions = 0

def evict():
    # A name never seen in each pad: the kernel asks snapfs, which looks in the pad's directory.
    global evictions
    evictions += 1
    for n in range(pads):
        try:
            os.stat(b'/pad%d/none-%d' % (n, evictions))
        except FileNotFoundError:
            pass

def set_progress(k):
    os.pwrite(progress, k.to_bytes(8, 'little'), 0)

gen = 0

def upper_round(i):
    # gK/d is the upper layer's own directory: everything below happens in it or to it.
    global gen
    D = b'/g%d/d' % gen
    S, n, flip = D + b'/' + b'SENTINEL', b'%d' % i, (i // 50) % 2
    ops = [
        ('append', write, S, os.O_APPEND, b'appended\n'),
        ('rewrite', write, S, os.O_TRUNC, b'dummy sentinel, rewritten\n'),
        ('chmod', os.chmod, S, 0o600 if flip else 0o644),
        ('chown', os.chown, S, flip, flip),
        ('utime', os.utime, S, (i, i)),
        ('setxattr', os.setxattr, S, 'user.swap', n),
        ('xattrs', xattrs, S),
        ('stat', stat, S),
        ('list', listdir, D),
        ('create', write, D + b'/new-' + n, os.O_CREAT | os.O_EXCL, b'new\n'),
        ('mkdir', os.mkdir, D + b'/dir-' + n),
        ('symlink', os.symlink, b'SENTINEL', D + b'/ln-' + n),
        ('link', os.link, S, D + b'/hl-' + n),
        # What this cycle's rounds made: renamed, unlinked, removed.
        ('rename', os.rename, D + b'/new-%d' % (i - 8), D + b'/moved-' + n),
        ('unlink', os.unlink, D + b'/hl-%d' % (i - 4)),
        ('rmdir', os.rmdir, D + b'/dir-%d' % (i - 10)),
        # The kernel looks a directory up again after its mode changed: snapfs looks for d by name.
        ('chmod d', os.chmod, D, 0o750 if flip else 0o755),
    ]
    # Every other round a read, between them each of the others in turn.
    op = ('read', read, S) if i % 2 == 0 else ops[(i // 2) % len(ops)]
    evict()
    attempt(op[0], *op[1:])
    # Looked up again while swapped, d may be answered as the symlink, or as
    # nothing: the kernel keeps that for a day. Then on to the next one.
    try:
        isdir = os.lstat(D).st_mode & 0o170000 == 0o040000
    except OSError:
        isdir = False
    if not isdir:
        gen += 1
        set_progress(gen)

def copy_up_round(i):
    # d is a lower directory: each round copies up one more of its files, another way.
    f, n = b'/d/f%d' % i, b'%d' % i
    attempt('stat', stat, f)
    evict()
    ops = [
        ('append', write, f, os.O_APPEND, b'appended\n'),
        ('chmod', os.chmod, f, 0o600),
        ('chown', os.chown, f, 1, 1),
        ('utime', os.utime, f, (i, i)),
        ('setxattr', os.setxattr, f, 'user.swap', n),
        ('truncate', os.truncate, f, 3),
        ('link', os.link, f, b'/d/hl-' + n),
        ('rename', os.rename, f, b'/d/moved-' + n),
        ('unlink', os.unlink, f),
        ('create', write, b'/d/new-' + n, os.O_CREAT | os.O_EXCL, b'new\n'),
    ]
    op = ops[i % len(ops)]
    attempt(op[0], *op[1:])
    attempt('read', read, f)
    evict()
    attempt('read sentinel', read, b'/d/' + b'SENTINEL')
    if i % 32 == 0:
        attempt('list', listdir, b'/d')

def rename_round(i):
    # pK is a lower directory holding d: rename it, or d in it, copying up the whole tree.
    set_progress(i)
    p = b'/p%d' % i
    attempt('stat', stat, p)
    if i % 2 == 0:
        moved = b'/m%d' % i
        attempt('rename parent', os.rename, p, moved)
        d = moved + b'/d'
    else:
        d = p + b'/e'
        attempt('rename', os.rename, p + b'/d', d)
    S = d + b'/' + b'SENTINEL'
    attempt('read', read, S)
    attempt('list', listdir, d)
    attempt('append', write, S, os.O_APPEND, b'appended\n')
    attempt('chmod', os.chmod, S, 0o600)
    attempt('create', write, d + b'/new', os.O_CREAT | os.O_EXCL, b'new\n')
    attempt('stat', stat, S)
    if i % 2 == 0:
        attempt('rename back', os.rename, moved, p)
    else:
        attempt('rename back', os.rename, d, p + b'/d')

def browse_round(i):
    active, base = top + b'/active', top + b'/base'
    k = int.from_bytes(os.pread(progress, 8, 0), 'little') if progress >= 0 else random.randrange(count)
    if mode == 'upper':
        dirs, layer_dir = [active + b'/g%d/d' % k], top + b'/.layers/active/g%d/d' % k
    elif mode == 'copy-up':
        dirs, layer_dir = [active + b'/d', base + b'/d'], top + b'/.layers/base/d'
    else:
        dirs = [base + b'/p%d/d' % k, active + b'/p%d/d' % k, active + b'/p%d/e' % k, active + b'/m%d/d' % k]
        layer_dir = top + b'/.layers/base/p%d/d' % k
    for d in dirs + [layer_dir]:
        attempt('read', read, d + b'/' + b'SENTINEL')
        attempt('stat', stat, d + b'/' + b'SENTINEL')
        attempt('readlink', readlink, d)
        if mode == 'copy-up':
            attempt('read file', read, d + b'/f%d' % random.randrange(count))
        if mode != 'copy-up' or i % 16 == 0:
            attempt('list', listdir, d)
        attempt('xattrs', xattrs, d + b'/' + b'SENTINEL')
    # Many processes race on few processors: this one leaves the others some time.
    time.sleep(0.001)

if role == 'mount':
    # Warm up before the swapping starts: the kernel keeps d as a directory
    # (a lookup answered with the symlink would be kept for a day, and a
    # missing d as missing), and snapfs has listed the lower directories.
    for n in range(pads):
        os.listdir(b'%s/pad%d' % (top, n))
    if mode == 'copy-up':
        os.stat(top + b'/d/' + b'SENTINEL')
        os.listdir(top + b'/d')
    elif mode == 'upper':
        os.stat(top + b'/g0/d/' + b'SENTINEL')
    else:
        os.listdir(top)
    os.chroot(top)
    os.chdir('/')
    round_of = {'upper': upper_round, 'copy-up': copy_up_round, 'rename': rename_round}[mode]
else:
    round_of = browse_round
print('ready', flush=True)
deadline = float(sys.stdin.readline())
i = 0
# Rounds run out with the files or directories made for them (one each), directories with the upper layer's.
rounds = count if role == 'mount' and mode != 'upper' else float('inf')
while time.time() < deadline and i < rounds and gen < count:
    round_of(i)
    i += 1
counts['rounds'] = i
if role == 'mount' and mode == 'upper':
    counts['directories'] = gen + 1
print(json.dumps(counts), flush=True)
`.replaceAll('SENTINEL', SENTINEL);

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A python3 child: its outcome once it ends, and (for readers) once it says "ready". */
function python(script: string, args: readonly string[]): { proc: ChildProcess; ready: Promise<void>; done: Promise<Outcome> } {
  const proc = spawn('python3', ['-c', script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let isReady: () => void = () => undefined;
  let failed: (err: Error) => void = () => undefined;
  const ready = new Promise<void>((resolve, reject) => {
    isReady = resolve;
    failed = reject;
  });
  ready.catch(() => undefined);
  proc.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
    if (stdout.startsWith('ready\n')) isReady();
  });
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  proc.once('error', (err) => (stderr += String(err)));
  const done = new Promise<Outcome>((resolve) =>
    proc.once('close', (code) => {
      failed(new Error(`exited with ${code} before it was ready: ${stderr}`));
      resolve({ code, stdout, stderr });
    }),
  );
  return { proc, ready, done };
}

/** The counts a child printed last. */
function countsOf(out: Outcome, who: string): Record<string, number> {
  assert.equal(out.code, 0, `${who}: ${out.stderr}`);
  const last = out.stdout.trim().split('\n').pop()!;
  return JSON.parse(last) as Record<string, number>;
}

/** Sums of counts whose operation is `op` (or any), by outcome. */
function total(counts: Record<string, number>, outcome: string, op?: string): number {
  return Object.entries(counts)
    .filter(([key]) => key.endsWith(` ${outcome}`) && (op === undefined || key === `${op} ${outcome}`) && !key.startsWith('evict '))
    .reduce((sum, [, n]) => sum + n, 0);
}

/**
 * A host directory no layer holds: a sentinel whose content holds a
 * unique marker, with an owner and mode of its own, and a file whose very
 * name holds the marker (a listing that reached the host would show it).
 * Its state is everything a change would touch: names, contents, modes,
 * owners, link counts and change times.
 */
function makeHost(dir: string): { dir: string; marker: string; state: () => string } {
  const host = path.join(dir, 'host');
  // First, and short: the kernel reads a file of a mount no further than the
  // size it holds for it, which is that of the layer's file (DUMMY and longer).
  const marker = randomBytes(8).toString('hex');
  fs.mkdirSync(host, { mode: 0o755 });
  fs.writeFileSync(path.join(host, SENTINEL), `${marker}:root:$6$salt$hash:19000:0:99999:7:::\n`);
  fs.chmodSync(path.join(host, SENTINEL), 0o640);
  fs.chownSync(path.join(host, SENTINEL), HOST_UID, HOST_GID);
  fs.writeFileSync(path.join(host, `only-on-host-${marker}`), `${marker}\n`);
  const state = (): string =>
    ['.', ...fs.readdirSync(host).sort()]
      .map((name) => {
        const p = path.join(host, name);
        const st = fs.lstatSync(p, { bigint: true });
        const content = st.isFile() ? fs.readFileSync(p, 'utf8') : '';
        return `${name} ${st.mode.toString(8)} ${st.uid}:${st.gid} nlink=${st.nlink} ino=${st.ino} size=${st.size} mtime=${st.mtimeNs} ctime=${st.ctimeNs} ${JSON.stringify(content)}`;
      })
      .join('\n');
  return { dir: host, marker, state };
}

/** A directory holding a sentinel of dummy content, and the symlinks to the host that the swapper exchanges it with. */
function attackedDir(parent: string, host: string): void {
  fs.mkdirSync(path.join(parent, 'd'));
  fs.writeFileSync(path.join(parent, 'd', SENTINEL), DUMMY);
  fs.writeFileSync(path.join(parent, 'd', 'other'), 'dummy other\n');
  fs.symlinkSync(host, path.join(parent, 'd.abs'));
  fs.symlinkSync(path.relative(parent, host), path.join(parent, 'd.rel'));
}

/**
 * A temporary directory for a race, on tmpfs where there is one: setting
 * up and serving thousands of entries is metadata work, many times faster
 * there than on a disk, and what is confined does not depend on the file
 * system the layers are on.
 */
function raceDir(): string {
  try {
    if (fs.statfsSync('/dev/shm').type === TMPFS_MAGIC) return fs.mkdtempSync('/dev/shm/snapfs-swap-');
  } catch {
    // no /dev/shm: the usual temporary directory
  }
  return tempDir('snapfs-swap-');
}

/**
 * `snapfs diff KEY` in a loop until `deadline` (seconds), every tar
 * appended to `log`. A diff of a layer changing under it may fail; what
 * matters is what the tars hold.
 */
function diffLoop(root: string, key: string, log: string, deadline: number): { proc: ChildProcess; done: Promise<{ runs: number; ok: number }> } {
  const script = 'n=0; good=0; while [ "$(date +%s)" -lt "$1" ]; do n=$((n+1)); "$2" "$3" --root "$4" diff "$5" >>"$6" 2>/dev/null && good=$((good+1)); done; echo "$n $good"';
  const proc = spawn('sh', ['-c', script, 'sh', String(Math.ceil(deadline)), process.execPath, CLI, root, key, log], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const done = new Promise<{ runs: number; ok: number }>((resolve) =>
    proc.on('close', () => {
      const [runs, good] = out.trim().split(' ').map(Number) as [number, number];
      resolve({ runs: runs || 0, ok: good || 0 });
    }),
  );
  return { proc, done };
}

/**
 * One race: a root with a committed base and an active snapshot on it,
 * the active one mounted writable (served by a child) and the root
 * browsed; the swapper attacks the upper layer or the base's while a
 * reader works through the mount and another through browse.
 */
async function race(mode: Mode, t: TestContext): Promise<void> {
  const dir = raceDir();
  const host = makeHost(dir);
  const root = path.join(dir, 'root');
  const mnt = path.join(dir, 'mnt');
  const browse = path.join(dir, 'browse');
  fs.mkdirSync(mnt);
  fs.mkdirSync(browse);
  // Where the reader says which directory it is at, for the swapper (and the browse reader) to attack it.
  const progress = mode === 'copy-up' ? '' : path.join(dir, 'progress');
  if (progress !== '') fs.writeFileSync(progress, Buffer.alloc(8));

  await ok(root, ['prepare', 'base-a']);
  const lower = layerDirOf(root, 'base-a');
  if (mode === 'copy-up') {
    attackedDir(lower, host.dir);
    for (let i = 0; i < LOWER_FILES; i++) fs.writeFileSync(path.join(lower, 'd', `f${i}`), `dummy f${i}, in the lower layer\n`);
  } else if (mode === 'rename') {
    for (let i = 0; i < LOWER_DIRS; i++) {
      fs.mkdirSync(path.join(lower, `p${i}`));
      attackedDir(path.join(lower, `p${i}`), host.dir);
    }
  }
  await ok(root, ['commit', 'base', 'base-a']);
  const mounts = JSON.parse(await ok(root, ['prepare', '--json', 'active', 'base'])) as { options: string[] }[];
  const option = (name: string): string => mounts[0]!.options.find((o) => o.startsWith(`${name}=`))!.slice(name.length + 1);
  const stack = { lowers: option('lowerdir').split(':'), upper: option('upperdir'), work: option('workdir') };
  if (mode === 'upper') {
    for (let i = 0; i < UPPER_DIRS; i++) {
      fs.mkdirSync(path.join(stack.upper, `g${i}`));
      attackedDir(path.join(stack.upper, `g${i}`), host.dir);
    }
  }
  // Each rename round works in directories never seen before: no need to make snapfs forget any.
  const pads = mode === 'rename' ? 0 : PADS;
  for (let i = 0; i < pads; i++) fs.mkdirSync(path.join(stack.upper, `pad${i}`));
  const layer = mode === 'upper' ? stack.upper : lower;
  const hostBefore = host.state();

  const children: ChildProcess[] = [];
  let server: ChildProcess | undefined;
  try {
    server = await serveStack(stack, mnt);
    await ok(root, ['browse', browse]);
    // Files or directories made for the reader to go through (the swapper attacks K + 1 too).
    const count = String(mode === 'copy-up' ? LOWER_FILES : mode === 'rename' ? LOWER_DIRS - 1 : UPPER_DIRS - 1);
    const mountLog = path.join(dir, 'mount-reads.log');
    const browseLog = path.join(dir, 'browse-reads.log');
    const reader = python(READER, ['mount', mode, mnt, mountLog, progress, count, String(pads)]);
    const browser = python(READER, ['browse', mode, browse, browseLog, progress, count, '0']);
    children.push(reader.proc, browser.proc);
    await Promise.all([reader.ready, browser.ready]);
    const deadline = Date.now() / 1000 + RACE_SECONDS;
    reader.proc.stdin!.end(`${deadline}\n`);
    browser.proc.stdin!.end(`${deadline}\n`);
    const swapper = python(SWAPPER, [layer, String(deadline), String(MIN_SWAPS), progress, mode === 'upper' ? 'g' : 'p', mode === 'rename' ? '2' : '1']);
    children.push(swapper.proc);
    // The upper layer is also written out as a tar, again and again, as a container's is diffed while it runs.
    const diffLog = path.join(dir, 'diffs.tar');
    const differ = mode === 'upper' ? diffLoop(root, 'active', diffLog, deadline) : undefined;
    if (differ !== undefined) children.push(differ.proc);
    // Should anything hang, everything is killed well past the deadline, and the test fails.
    const watchdog = setTimeout(() => children.forEach((c) => c.kill('SIGKILL')), (RACE_SECONDS + 60) * 1000);
    const [swapped, read, browsed, diffs] = await Promise.all([swapper.done, reader.done, browser.done, differ?.done]);
    clearTimeout(watchdog);

    const swaps = countsOf(swapped, 'swapper');
    const byMount = countsOf(read, 'reader through the mount');
    const byBrowse = countsOf(browsed, 'reader through browse');
    const summary = JSON.stringify({ mode, swaps, byMount, byBrowse, diffs });
    t.diagnostic(summary);

    // Nothing of the host was read, through either, nor written into a tar.
    if (diffs !== undefined) {
      assert.ok(diffs.runs >= 3, summary);
      assert.equal(fs.readFileSync(diffLog).includes(host.marker), false, 'a diff wrote the host\'s marker');
    }
    for (const log of [mountLog, browseLog]) {
      const text = fs.readFileSync(log);
      assert.equal(text.includes(host.marker), false, `${path.basename(log)}: the host's marker was read`);
      assert.equal(text.includes(`owner ${HOST_UID}:`), false, `${path.basename(log)}: the host sentinel's owner was seen`);
    }
    assert.equal(byBrowse['link NOT confined'] ?? 0, 0, 'browse shows every symlink under the mount');
    // Nothing of the host changed: content, mode, owner, links, times, and no new names.
    assert.equal(host.state(), hostBefore, 'the host directory is as it was');

    // And the race was run: many swaps, the real directory read and written
    // through both, and the swapped one seen too (the daemon found the
    // symlink where the directory was: ENOENT). In the upper layer any ENOENT
    // says so (a name made in a directory the reader left for that included);
    // below, the reads of a sentinel nobody removes.
    const swappedSeen = { upper: undefined, 'copy-up': 'read sentinel', rename: 'read' }[mode];
    assert.equal(swaps.failures, 0, summary);
    assert.ok(swaps.swaps >= MIN_SWAPS, summary);
    assert.ok(byMount.rounds >= 50, summary);
    assert.ok((byMount['dummy read'] ?? 0) >= 10, summary);
    assert.ok(total(byMount, 'ok') >= 50, summary);
    assert.ok(total(byMount, 'ENOENT', swappedSeen) > 0, summary);
    assert.ok((byBrowse['dummy read'] ?? 0) >= 10, summary);
    assert.ok(total(byBrowse, 'ENOENT', 'read') > 0, summary);
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await unmountAll(mnt);
    await unmountAll(browse);
    server?.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('a directory swapped for a symlink to a host directory, in a loop, while it is used', { skip: !isRoot && 'mounts as root', concurrency: true }, () => {
  test('in the upper layer, while it is read and written through the mount and browse: the host is never read nor changed', { timeout: (RACE_SECONDS + 120) * 1000 }, async (t) => {
    await race('upper', t);
  });

  test('in a lower layer, while its files are copied up through the mount and read through browse: the host is never read nor changed', { timeout: (RACE_SECONDS + 120) * 1000 }, async (t) => {
    await race('copy-up', t);
  });

  test('in a lower layer, while it and its parent are renamed through the mount and read through browse: the host is never read nor changed', { timeout: (RACE_SECONDS + 120) * 1000 }, async (t) => {
    await race('rename', t);
  });
});
