import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it, test } from 'node:test';
import { sys } from '../../src/native/sys';
import { everyByteNames, layerDirOf, ok, snapfs, tempDir } from '../support/helpers';
import { run, serveStack, unmountAll } from '../support/mount-helpers';

const isRoot = process.getuid?.() === 0;

/** A name given as one char a byte. */
const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const under = (dir: string, ...names: (Buffer | string)[]): Buffer =>
  Buffer.concat([Buffer.from(dir), ...names.flatMap((n) => [Buffer.from('/'), typeof n === 'string' ? b(n) : n])]);


function file(p: Buffer, content: string | Buffer): void {
  fs.writeFileSync(p, content);
  fs.chmodSync(p, 0o644);
}

/**
 * Two lower layers and an upper one whose names are not UTF-8 wherever a
 * name can be: files, a directory and what it holds, a merged directory,
 * an opaque one, symlink targets, a hard-link pair, whiteouts in the top
 * lower layer and in the upper one.
 */
function buildLayers(base: string): { lowers: string[]; upper: string; work: string } {
  const [top, bottom, upper, work] = ['lower1', 'lower2', 'upper', 'work'].map((n) => path.join(base, n)) as [string, string, string, string];
  for (const d of [top, bottom, upper, work]) fs.mkdirSync(d, { recursive: true });

  file(under(bottom, '\xe9t\xe9'), 'latin-1 été\n');
  // One byte apart, and neither UTF-8: they must stay two files whatever is done to one.
  file(under(bottom, 'a\xff'), 'a ff\n');
  file(under(bottom, 'a\xfe'), 'a fe\n');
  file(under(bottom, '\x80'), 'a lone continuation byte\n');
  file(under(bottom, 'caf\xe9'), 'latin-1 café\n');
  file(under(bottom, 'x'.repeat(200) + '\xff'.repeat(55)), 'a name of 255 bytes\n');
  for (const [i, name] of everyByteNames().entries()) file(under(bottom, name), `every byte ${i}\n`);
  sys.setxattr(under(bottom, 'a\xff'), 'user.note', Buffer.from([0xff, 0, 0x80]), 0);

  fs.mkdirSync(under(bottom, 'd\xe9'), { mode: 0o750 });
  file(under(bottom, 'd\xe9', 'f\xff'), 'in d, f\n');
  file(under(bottom, 'd\xe9', 'g\x80'), 'in d, g\n');
  fs.mkdirSync(under(bottom, 'd\xe9', 's\xfe'));
  file(under(bottom, 'd\xe9', 's\xfe', 'deep\xff'), 'deep\n');

  fs.symlinkSync(b('t\xfe\xfd'), under(bottom, 's\xff')); // dangling, its target not UTF-8
  fs.symlinkSync(b('d\xe9/f\xff'), under(bottom, 'l\xe9')); // followed into the directory

  file(under(bottom, 'h\xff'), 'one inode, two names\n');
  fs.linkSync(under(bottom, 'h\xff'), under(bottom, 'h\xfe'));

  fs.mkdirSync(under(bottom, 'm\xe9'));
  file(under(bottom, 'm\xe9', 'x\xff'), 'merged, bottom\n');
  fs.mkdirSync(under(top, 'm\xe9'));
  file(under(top, 'm\xe9', 'y\xfe'), 'merged, top\n');

  fs.mkdirSync(under(bottom, 'o\xff'));
  file(under(bottom, 'o\xff', 'hidden\xfe'), 'hidden by the opaque directory above\n');
  fs.mkdirSync(under(top, 'o\xff'));
  sys.setxattr(under(top, 'o\xff'), 'trusted.overlay.opaque', Buffer.from('y'), 0);
  file(under(top, 'o\xff', 'shown\xfe'), 'shown\n');

  // Whited out by the top lower layer: a directory with something in it, so that what is made over it must hide that.
  fs.mkdirSync(under(bottom, 'v\xfe'));
  file(under(bottom, 'v\xfe', 'inside'), 'whited out\n');
  sys.mknod(under(top, 'v\xfe'), fs.constants.S_IFCHR, 0, 0);
  file(under(top, 'top\xe9'), 'top only\n');

  // Whited out by the upper layer.
  file(under(bottom, 'w\xff'), 'whited out by the upper layer\n');
  sys.mknod(under(upper, 'w\xff'), fs.constants.S_IFCHR, 0, 0);
  file(under(upper, 'u\xe9'), 'upper only\n');
  return { lowers: [top, bottom], upper, work };
}

/** What every step's script starts with: bytes paths throughout, errors printed as their errno names. */
const PRELUDE = String.raw`
import errno, os, subprocess
# the names of everyByteNames()
NAMES = [bytes(v for v in range(f, min(f + 16, 256)) if v != 0x2f) for f in range(1, 256, 16)]
def E(f, *a):
    try:
        return f(*a)
    except OSError as e:
        return errno.errorcode[e.errno]
def read(p):
    with open(p, 'rb') as f:
        return f.read()
def write(p, data, mode='wb'):
    with open(p, mode) as f:
        f.write(data)
def ls(p=b'.'):
    return sorted(os.listdir(p))
`;

/**
 * Steps run in the mount by a child process (python3, whose os functions
 * take bytes paths), each compared with the kernel overlay: what it prints
 * (bytes shown as Python's repr, every byte kept) and the merged tree after.
 */
const STEPS: [string, string][] = [
  [
    'a listing gives every name as its bytes: a\\xff and a\\xfe are two, whited-out names are not there',
    String.raw`print(ls()); print(ls(b'd\xe9')); print(ls(b'd\xe9/s\xfe')); print(ls(b'm\xe9')); print(ls(b'o\xff'))`,
  ],
  [
    'files open by their bytes, in a directory of such a name and through a symlink into it',
    String.raw`
for p in [b'\xe9t\xe9', b'a\xff', b'a\xfe', b'\x80', b'caf\xe9', b'x' * 200 + b'\xff' * 55, b'd\xe9/f\xff', b'd\xe9/s\xfe/deep\xff', b'l\xe9', b'h\xfe', b'm\xe9/y\xfe', b'o\xff/shown\xfe'] + NAMES:
    print(p, read(p))
print(E(read, b'caf\xc3\xa9'), E(read, b'a\xfd'))`,
  ],
  [
    'readlink gives a target that is not UTF-8 byte for byte, and whited-out names are not found',
    String.raw`print(os.readlink(b's\xff'), os.readlink(b'l\xe9')); print(E(os.stat, b's\xff'), E(os.lstat, b'w\xff'), E(os.lstat, b'v\xfe'), E(os.lstat, b'o\xff/hidden\xfe'))`,
  ],
  ['extended attributes of such a name are read as they are', String.raw`print(sorted(os.listxattr(b'a\xff')), os.getxattr(b'a\xff', 'user.note'))`],
  [
    'appending to a lower file copies it up under the same bytes, and its neighbour one byte away is untouched',
    String.raw`write(b'a\xff', b'appended\n', 'ab'); print(read(b'a\xff'), read(b'a\xfe'), os.getxattr(b'a\xff', 'user.note'))`,
  ],
  [
    'writing a file in a lower directory of such a name copies the directory up first',
    String.raw`write(b'd\xe9/f\xff', b'rewritten\n'); os.truncate(b'd\xe9/g\x80', 3); print(read(b'd\xe9/f\xff'), read(b'd\xe9/g\x80'), read(b'l\xe9'), oct(os.stat(b'd\xe9').st_mode))`,
  ],
  [
    'renaming a lower file to another name that is not UTF-8 leaves a whiteout of the old bytes',
    String.raw`os.rename(b'\xe9t\xe9', b'\xe9t\xe9-renamed\xfe'); print(E(read, b'\xe9t\xe9'), read(b'\xe9t\xe9-renamed\xfe'))`,
  ],
  ['renaming a lower file over another of such a name replaces it', String.raw`os.rename(b'\x80', b'caf\xe9'); print(read(b'caf\xe9'), E(os.lstat, b'\x80'))`],
  [
    'moving a lower directory of such a name moves its whole tree',
    String.raw`subprocess.run([b'mv', b'-T', b'd\xe9', b'D\xff'], check=True); print(ls(b'D\xff'), read(b'D\xff/s\xfe/deep\xff'), E(os.lstat, b'd\xe9'), E(read, b'l\xe9'))`,
  ],
  [
    'unlinking a lower file whites out exactly its bytes: the name one byte away stays',
    String.raw`os.unlink(b'a\xfe'); os.unlink(b'x' * 200 + b'\xff' * 55); os.unlink(NAMES[0]); print(ls(), read(b'a\xff'), read(NAMES[1]))`,
  ],
  [
    'mkdir over a whited-out name makes a directory that hides what was below',
    String.raw`
for p in [b'w\xff', b'a\xfe', b'v\xfe', b'd\xe9', NAMES[0]]:
    os.mkdir(p)
    print(p, ls(p))`,
  ],
  [
    'a new file made over a whiteout of the upper layer holds only what is written',
    String.raw`os.rmdir(b'w\xff'); write(b'w\xff', b'back\n'); print(read(b'w\xff'))`,
  ],
  [
    'files and directories named by every byte value but / and NUL are made and found again',
    String.raw`
for i, n in enumerate(NAMES):
    os.mkdir(n + b'-dir')
    write(n + b'-dir/' + NAMES[(i + 1) % len(NAMES)], b'new %d\n' % i)
    write(n + b'-file', b'file %d\n' % i)
print(ls())
print([ls(n + b'-dir') for n in NAMES])`,
  ],
  [
    'a UTF-8 name and its Latin-1 spelling are two names',
    String.raw`write(b'caf\xc3\xa9', b'utf-8\n'); print(read(b'caf\xc3\xa9'), read(b'caf\xe9'), [n for n in ls() if n.startswith(b'caf')])`,
  ],
  [
    'a hard link to a lower file under such a name is one file with it',
    String.raw`os.link(b'a\xff', b'link\xfe'); write(b'link\xfe', b'through the link\n', 'ab'); print(read(b'a\xff'), os.stat(b'a\xff').st_nlink, os.stat(b'link\xfe').st_ino == os.stat(b'a\xff').st_ino)`,
  ],
  [
    'a lower hard-link pair stays one file when written through one name',
    String.raw`write(b'h\xff', b'more\n', 'ab'); print(read(b'h\xfe'), os.stat(b'h\xff').st_nlink, os.stat(b'h\xfe').st_nlink, os.stat(b'h\xff').st_ino == os.stat(b'h\xfe').st_ino)`,
  ],
  [
    'a lower hard-link pair loses the name written through and stays the other',
    String.raw`os.unlink(b'h\xff'); print(read(b'h\xfe'), os.stat(b'h\xfe').st_nlink, ls())`,
  ],
  [
    'a new symlink keeps a target that is not UTF-8',
    String.raw`os.symlink(b'\xfe\xff/t\x80', b'new-link\xe9'); os.symlink(b'D\xff/f\xff', b'l2\xff'); print(os.readlink(b'new-link\xe9'), read(b'l2\xff'))`,
  ],
  [
    'a merged directory of such a name is removed only once empty, leaving a whiteout',
    String.raw`print(E(os.rmdir, b'm\xe9')); os.unlink(b'm\xe9/x\xff'); os.unlink(b'm\xe9/y\xfe'); os.rmdir(b'm\xe9'); print(E(os.lstat, b'm\xe9'))`,
  ],
  [
    'changes to a file under an opaque directory of such a name stay in the upper layer',
    String.raw`write(b'o\xff/shown\xfe', b'changed\n'); write(b'o\xff/hidden\xfe', b'new over the hidden one\n'); print(ls(b'o\xff'), read(b'o\xff/hidden\xfe'))`,
  ],
  ['attributes set on such a name copy it up', String.raw`os.setxattr(b'top\xe9', 'user.k', b'\xfe'); print(sorted(os.listxattr(b'top\xe9')))`],
];

/**
 * A tree as seen by a child process (python3): every entry's name, type,
 * mode, owner, size, content hash, link count, symlink target, device
 * numbers, `user.*` attributes and hard-link groups. Names, targets and
 * attribute values are read as bytes and shown with each byte outside
 * printable ASCII (and `%`) as `%HH`, which is one-to-one: two names that
 * differ in any byte read differently, so the strings compared are the
 * bytes.
 *
 * As an upper layer (`upper`, with its work directory and the lower layers
 * after it): whiteouts are entries like any other (0/0 character devices);
 * no link counts or groups, but `indexed` for a file linked from the work
 * directory's index (both keep lower hard links' one copy there). Opacity
 * is shown where it hides something, that is where the lower layers, merged,
 * show a directory: the kernel also marks opaque every directory it makes
 * in a merged parent, as a shortcut for later lookups (ovl_create_upper in
 * fs/overlayfs/dir.c), which means nothing where nothing is below.
 */
const DESCRIBE = String.raw`
import hashlib, os, stat, sys
root, upper = os.fsencode(sys.argv[1]), sys.argv[2] == 'upper'
work, lowers = (os.fsencode(sys.argv[3]), [os.fsencode(a) for a in sys.argv[4:]]) if upper else (None, [])
def show(b):
    return ''.join(chr(c) if 0x21 <= c < 0x7f and c != 0x25 else '%%%02x' % c for c in b)
def opaque(p):
    try:
        return os.getxattr(p, 'trusted.overlay.opaque', follow_symlinks=False) == b'y'
    except OSError:
        return False
def dir_below(rel):
    layers, comps = lowers, rel.strip(b'/').split(b'/')
    for i in range(len(comps)):
        sub, merging = b'/'.join(comps[:i + 1]), []
        for l in layers:
            try:
                st = os.lstat(l + b'/' + sub)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                break  # a whiteout or a file hides the layers below
            merging.append(l)
            if opaque(l + b'/' + sub):
                break
        if not merging:
            return False
        layers = merging
    return True
indexed = set()
if upper and os.path.isdir(work + b'/index'):
    indexed = {os.lstat(work + b'/index/' + n).st_ino for n in os.listdir(work + b'/index')}
lines, groups = [], {}
def walk(d, rel):
    for name in sorted(os.listdir(d)):
        p, r = d + b'/' + name, rel + b'/' + name
        st = os.lstat(p)
        m = st.st_mode
        t = 'd' if stat.S_ISDIR(m) else 'l' if stat.S_ISLNK(m) else 'f' if stat.S_ISREG(m) else 'c' if stat.S_ISCHR(m) else 'b' if stat.S_ISBLK(m) else 'p' if stat.S_ISFIFO(m) else 's'
        f = [show(r), t, '%o' % stat.S_IMODE(m), '%d:%d' % (st.st_uid, st.st_gid)]
        if t == 'f':
            with open(p, 'rb') as fh:
                f += ['size=%d' % st.st_size, 'sha=' + hashlib.sha256(fh.read()).hexdigest()[:16]]
            if upper and st.st_ino in indexed:
                f.append('indexed')
            if not upper:
                f.append('n=%d' % st.st_nlink)
                groups.setdefault(st.st_ino, []).append(show(r))
        if t == 'l':
            f.append('-> ' + show(os.readlink(p)))
        if t in 'cb':
            f.append('dev=%d,%d' % (os.major(st.st_rdev), os.minor(st.st_rdev)))
        if t == 'd' and upper and dir_below(r):
            f.append('opaque' if opaque(p) else 'merged')
        for x in sorted(os.listxattr(p, follow_symlinks=False)):
            if x.startswith('user.'):
                f.append('%s=%s' % (x, show(os.getxattr(p, x, follow_symlinks=False))))
        lines.append(' '.join(f))
        if t == 'd':
            walk(p, r)
walk(root, b'')
print('\n'.join(lines))
for g in sorted(' = '.join(sorted(g)) for g in groups.values() if len(g) > 1):
    print('linked: ' + g)
`;

/** A merged tree as `DESCRIBE` shows it. */
async function describeMerged(root: string): Promise<string> {
  return (await run('python3', ['-c', DESCRIBE, root, 'merged'], { maxBuffer: 64 << 20 })).stdout;
}

/** An upper layer as `DESCRIBE` shows it, one entry a line. */
async function describeUpper(stack: { lowers: string[]; upper: string; work: string }): Promise<string[]> {
  const { stdout } = await run('python3', ['-c', DESCRIBE, stack.upper, 'upper', stack.work, ...stack.lowers], { maxBuffer: 64 << 20 });
  return stdout.trimEnd().split('\n');
}

/** A step's script run in `cwd` by python3: its status and everything it printed. */
async function outcome(cwd: string, script: string): Promise<string> {
  return run('python3', ['-c', PRELUDE + script], { cwd }).then(
    (r) => `ok\n${r.stdout}`,
    (err: { code: number; stdout: string; stderr: string }) => `exit ${err.code}\n${err.stdout}${err.stderr}`,
  );
}

/** The kernel's overlay of `lowers` at `mnt`: writable with `index=on` (hard links stay one file, as in snapfs) when given an upper layer. */
async function mountKernel(mnt: string, lowers: string[], rw?: { upper: string; work: string }): Promise<void> {
  const options = [`lowerdir=${lowers.join(':')}`, ...(rw === undefined ? [] : [`upperdir=${rw.upper}`, `workdir=${rw.work}`, 'index=on'])];
  await run('mount', ['-t', 'overlay', 'overlay', '-o', options.join(','), mnt]);
}

describe('names that are not UTF-8 through a mount, step by step against the kernel overlay', { skip: !isRoot && 'the kernel overlay needs root' }, () => {
  let dir: string;
  let mine: string;
  let kernel: string;
  let server: ChildProcess | undefined;
  const stacks = {} as Record<'mine' | 'kernel', { lowers: string[]; upper: string; work: string }>;

  before(async () => {
    dir = tempDir('snapfs-mount-names-');
    for (const side of ['mine', 'kernel'] as const) stacks[side] = buildLayers(path.join(dir, `${side}-layers`));
    mine = path.join(dir, 'mine');
    kernel = path.join(dir, 'kernel');
    fs.mkdirSync(mine);
    fs.mkdirSync(kernel);
    server = await serveStack(stacks.mine, mine);
    await mountKernel(kernel, stacks.kernel.lowers, stacks.kernel);
  });
  after(async () => {
    await unmountAll(mine);
    await unmountAll(kernel);
    server?.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('starts from the same merged tree, which holds every name byte for byte', async () => {
    const expected = await describeMerged(kernel);
    // The description itself tells the names apart: a mangled name (a\xff and a\xfe both read as a U+FFFD) could not pass.
    for (const name of ['/a%ff f', '/a%fe f', '/%e9t%e9 f', '/%80 f', '/d%e9/s%fe/deep%ff f', '/s%ff l 777 0:0 -> t%fe%fd', `/${'%01%02%03%04%05%06%07%08%09%0a%0b%0c%0d%0e%0f%10'} f`]) {
      assert.ok(expected.split('\n').some((l) => l.startsWith(name)), `${name} is in the kernel's tree`);
    }
    assert.equal(await describeMerged(mine), expected);
  });

  for (const [label, script] of STEPS) {
    it(label, async () => {
      const expected = await outcome(kernel, script);
      assert.equal(await outcome(mine, script), expected, 'same output and status');
      assert.equal(await describeMerged(mine), await describeMerged(kernel), 'same merged tree');
    });
  }

  it('leaves the same entries in the upper layer: whiteouts as 0/0 character devices of the same bytes, opaque directories', async () => {
    const expected = await describeUpper(stacks.kernel);
    for (const entry of [`/${'x'.repeat(200)}${'%ff'.repeat(55)} c 0 0:0 dev=0,0`, '/%e9t%e9 c 0 0:0 dev=0,0', '/%80 c 0 0:0 dev=0,0', '/m%e9 c 0 0:0 dev=0,0', '/d%e9 d 755 0:0 opaque']) {
      assert.ok(expected.includes(entry), `${entry} is in the kernel's upper layer`);
    }
    const actual = await describeUpper(stacks.mine);
    // One difference by design. Once one name of a lower hard link is
    // copied up, the kernel shows its other names through its index and
    // links them into the upper layer only when they are changed; snapfs
    // links them as soon as it sees them, since a committed layer has no
    // index (read without it, the kernel's upper layer gives the old
    // content: next test). Such a name is in snapfs's upper layer alone, as
    // a link of the index's copy, and is the same in both merged trees.
    const linkedEarly = actual.filter((l) => !expected.includes(l));
    assert.deepEqual(linkedEarly, ['/h%fe f 644 0:0 size=26 sha=b2d8aee79859186e indexed']);
    assert.deepEqual(actual.filter((l) => !linkedEarly.includes(l)), expected);
  });

  it('the layers each wrote read the same through snapfs and through the kernel', async () => {
    const live = await describeMerged(kernel);
    await unmountAll(mine);
    await unmountAll(kernel);
    server?.kill();
    for (const side of ['kernel', 'mine'] as const) {
      const layers = [stacks[side].upper, ...stacks[side].lowers];
      server = await serveStack({ lowers: layers }, mine);
      await mountKernel(kernel, layers);
      try {
        const byKernel = await describeMerged(kernel);
        assert.equal(await describeMerged(mine), byKernel, `the layers ${side === 'mine' ? 'snapfs' : 'the kernel'} wrote`);
        const [read, shown] = [byKernel.split('\n'), live.split('\n')];
        if (side === 'kernel') {
          // The kernel's upper layer needs its index for the lower hard link written through one name (see above).
          assert.ok(read.includes('/h%fe f 644 0:0 size=21 sha=2d224def5335f2fe n=2'), "without its index, the kernel's upper layer shows h\\xfe as it was");
        } else {
          // snapfs's upper layer is the whole change. Only the link count of that file differs from what the mount showed: its
          // upper copy is linked from the work directory's index too, and read as a lower layer that link counts (in the
          // kernel's upper layers as in snapfs's).
          assert.deepEqual(read.filter((l) => !shown.includes(l)), ['/h%fe f 644 0:0 size=26 sha=b2d8aee79859186e n=2']);
          assert.deepEqual(shown.filter((l) => !read.includes(l)), ['/h%fe f 644 0:0 size=26 sha=b2d8aee79859186e n=1']);
        }
      } finally {
        await unmountAll(mine);
        await unmountAll(kernel);
        server?.kill();
      }
    }
  });
});

// The layers are written straight, not imported: import and diff of such names are layer-names.test.ts's.
describe('names that are not UTF-8 through ls, cat and changes: shown as \\xHH, in JSON as base64, taken back with --escaped', () => {
  let dir: string;
  let root: string;
  const b64 = (s: string): string => b(s).toString('base64');

  /** A whiteout and an opaque directory in the form this process writes (the kernel's as root, fuse-overlayfs's otherwise). */
  const whiteout = (layer: string, ...p: string[]): void => {
    if (isRoot) sys.mknod(under(layer, ...p), fs.constants.S_IFCHR, 0, 0);
    else file(under(layer, ...p.slice(0, -1), `.wh.${p[p.length - 1]!}`), '');
  };
  const opaqueDir = (layer: string, name: string): void => {
    fs.mkdirSync(under(layer, name));
    if (isRoot) sys.setxattr(under(layer, name), 'trusted.overlay.opaque', Buffer.from('y'), 0);
    else file(under(layer, name, '.wh..wh..opq'), '');
  };

  before(async () => {
    dir = tempDir('snapfs-names-cli-');
    root = path.join(dir, 'root');
    await ok(root, ['prepare', 'base-a']);
    const base = layerDirOf(root, 'base-a');
    file(under(base, 'a\xff'), 'ff\n');
    file(under(base, 'a\xfe'), 'fe\n');
    file(under(base, 'caf\xe9'), 'latin-1\n');
    file(Buffer.from(`${base}/café`), 'utf-8\n');
    file(under(base, 'back\\slash'), 'backslash\n');
    file(under(base, 'two\nlines'), 'newline\n');
    fs.mkdirSync(under(base, 'd\xe9'));
    file(under(base, 'd\xe9', 'f\x80'), 'in d\n');
    file(under(base, 'd\xe9', 'gone\xfe'), 'deleted above\n');
    fs.symlinkSync(b('d\xe9/f\x80'), under(base, 's\xff'));
    fs.mkdirSync(under(base, 'o\xfe'));
    file(under(base, 'o\xfe', 'hidden\xff'), 'hidden\n');
    file(under(base, 'o\xfe', 'kept'), 'kept below\n');
    await ok(root, ['commit', 'base', 'base-a']);
    await ok(root, ['prepare', 'top', 'base']);
    const top = layerDirOf(root, 'top');
    whiteout(top, 'a\xfe');
    fs.mkdirSync(under(top, 'd\xe9'));
    whiteout(top, 'd\xe9', 'gone\xfe');
    opaqueDir(top, 'o\xfe');
    file(under(top, 'o\xfe', 'again\xff'), 'again\n');
    file(under(top, 'a\xff'), 'changed ff\n');
    file(under(top, 'n\xe9w'), 'new\n');
    file(under(top, 'plain'), 'plain\n');
  });
  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('ls shows each byte that is not part of a UTF-8 character, each control character and each backslash as \\xHH', async () => {
    assert.equal(await ok(root, ['ls', 'top']), ['a\\xff', 'back\\x5cslash', 'café', 'caf\\xe9', 'd\\xe9', 'n\\xe9w', 'o\\xfe', 'plain', 's\\xff', 'two\\x0alines', ''].join('\n'));
    assert.equal(await ok(root, ['ls', 'base']), ['a\\xfe', 'a\\xff', 'back\\x5cslash', 'café', 'caf\\xe9', 'd\\xe9', 'o\\xfe', 's\\xff', 'two\\x0alines', ''].join('\n'));
    const long = (await ok(root, ['ls', 'top', '-l'])).split('\n');
    assert.match(long.find((l) => l.includes(' s\\xff'))!, /^lrwxrwxrwx .* s\\xff -> d\\xe9\/f\\x80$/);
  });

  test('ls --json gives name, path and target as text when UTF-8, as name_b64, path_b64 and target_b64 when not', async () => {
    const entries = JSON.parse(await ok(root, ['ls', 'top', '--json'])) as Record<string, unknown>[];
    const names = (e: Record<string, unknown>): Record<string, unknown> =>
      Object.fromEntries(Object.entries(e).filter(([k]) => ['name', 'name_b64', 'path', 'path_b64', 'target', 'target_b64'].includes(k)));
    assert.deepEqual(entries.map(names), [
      { name_b64: b64('a\xff'), path_b64: b64('/a\xff') },
      { name: 'back\\slash', path: '/back\\slash' },
      { name: 'café', path: '/café' },
      { name_b64: b64('caf\xe9'), path_b64: b64('/caf\xe9') },
      { name_b64: b64('d\xe9'), path_b64: b64('/d\xe9') },
      { name_b64: b64('n\xe9w'), path_b64: b64('/n\xe9w') },
      { name_b64: b64('o\xfe'), path_b64: b64('/o\xfe') },
      { name: 'plain', path: '/plain' },
      { name_b64: b64('s\xff'), path_b64: b64('/s\xff'), target_b64: b64('d\xe9/f\x80') },
      { name: 'two\nlines', path: '/two\nlines' },
    ]);
    const inside = JSON.parse(await ok(root, ['ls', '--escaped', 'top', 'd\\xe9', '--json'])) as Record<string, unknown>[];
    assert.deepEqual(inside.map(names), [{ name_b64: b64('f\x80'), path_b64: b64('/d\xe9/f\x80') }]);
  });

  test('ls --escaped lists a directory named by its escapes: whiteouts and opaque directories of such names as overlayfs shows them', async () => {
    assert.equal(await ok(root, ['ls', '--escaped', 'top', 'd\\xe9']), 'f\\x80\n');
    assert.equal(await ok(root, ['ls', '--escaped', 'base', '/d\\xe9']), 'f\\x80\ngone\\xfe\n');
    assert.equal(await ok(root, ['ls', '--escaped', 'top', 'o\\xfe']), 'again\\xff\n');
    assert.equal(await ok(root, ['ls', '--escaped', 'base', 'o\\xfe']), 'hidden\\xff\nkept\n');
    // Without --escaped the argument is the UTF-8 text it is: a backslash, an x, two hex digits.
    const plain = await snapfs(root, ['ls', 'top', 'd\\xe9']);
    assert.equal(plain.code, 3);
    assert.equal(plain.stderr, 'snapfs: snapshot "top": "d\\x5cxe9": no such file or directory\n');
  });

  test('cat --escaped reads a file by its bytes, through a symlink whose target is not UTF-8 too', async () => {
    const cases: [string[], string][] = [
      [['top', 'a\\xff'], 'changed ff\n'],
      [['base', 'a\\xff'], 'ff\n'],
      [['base', 'a\\xfe'], 'fe\n'],
      [['top', 'caf\\xe9'], 'latin-1\n'],
      [['top', 'caf\\xc3\\xa9'], 'utf-8\n'], // the UTF-8 bytes, escaped, are the same name as unescaped
      [['top', 'back\\\\slash'], 'backslash\n'],
      [['top', 'back\\x5cslash'], 'backslash\n'],
      [['top', 'two\\x0alines'], 'newline\n'],
      [['top', 'n\\xe9w'], 'new\n'],
      [['top', 's\\xff'], 'in d\n'],
      [['top', 'o\\xfe/again\\xff'], 'again\n'],
    ];
    const read = await Promise.all(cases.map(([args]) => ok(root, ['cat', '--escaped', ...args])));
    assert.deepEqual(read, cases.map(([, content]) => content));
    assert.equal(await ok(root, ['cat', 'top', 'café']), 'utf-8\n');
  });

  test('cat names what it cannot read with \\xHH: a whited-out name, a name hidden by an opaque directory, a bad escape', async () => {
    for (const [p, shown] of [['a\\xfe', 'a\\xfe'], ['d\\xe9/gone\\xfe', 'd\\xe9/gone\\xfe'], ['o\\xfe/hidden\\xff', 'o\\xfe/hidden\\xff']] as const) {
      const r = await snapfs(root, ['cat', '--escaped', 'top', p]);
      assert.equal(r.code, 3, p);
      assert.equal(r.stderr, `snapfs: snapshot "top": "${shown}": no such file or directory\n`);
    }
    const bad = await snapfs(root, ['cat', '--escaped', 'top', 'a\\xf']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^snapfs: path "a\\\\xf": a backslash starts \\xHH or \\\\ \(--escaped\)\n$/);
  });

  test("changes lists a layer's changes to such names as \\xHH, and --json gives path_b64", async () => {
    assert.equal(
      await ok(root, ['changes', 'top']),
      ['D /a\\xfe', 'C /a\\xff', 'C /d\\xe9', 'D /d\\xe9/gone\\xfe', 'A /n\\xe9w', 'C /o\\xfe', 'A /o\\xfe/again\\xff', 'D /o\\xfe/hidden\\xff', 'D /o\\xfe/kept', 'A /plain', ''].join('\n'),
    );
    const json = JSON.parse(await ok(root, ['changes', 'top', '--json'])) as Record<string, unknown>[];
    assert.deepEqual(json.slice(0, 2), [
      { kind: 'D', path_b64: b64('/a\xfe') },
      { kind: 'C', path_b64: b64('/a\xff') },
    ]);
    assert.deepEqual(json.slice(-2), [
      { kind: 'D', path_b64: b64('/o\xfe/kept') },
      { kind: 'A', path: '/plain' },
    ]);
  });
});
