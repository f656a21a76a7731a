import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sys } from '../../src/native/sys';
import { tempDir } from '../support/helpers';
import { describeTree, run, serveStack, unmountAll } from '../support/mount-helpers';

const isRoot = process.getuid?.() === 0;

function file(p: string, content: string, mode = 0o644): void {
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, content);
  fs.chmodSync(p, mode);
}

/** Two lower layers and a starting upper layer covering every place an entry can live. */
function buildLayers(base: string, manyFiles = true): { lowers: string[]; upper: string } {
  const [top, bottom, upper] = ['lower1', 'lower2', 'upper'].map((n) => path.join(base, n)) as [string, string, string];
  for (const d of [top, bottom, upper]) fs.mkdirSync(d, { recursive: true });
  for (const name of ['lower-only', 'lower-mv', 'lower-rm', 'lower-link-src', 'lower-times', 'lower-xattr', 'lower-owned']) file(`${bottom}/${name}`, `${name}\n`);
  file(`${bottom}/lower-exec`, '#!/bin/sh\n', 0o755);
  file(`${bottom}/lower-both`, 'bottom\n');
  file(`${top}/lower-both`, 'top\n');
  file(`${bottom}/shadowed`, 'lower\n');
  file(`${bottom}/dir/lower-file`, 'in dir\n');
  file(`${top}/dir/top-file`, 'in dir, top\n');
  fs.mkdirSync(`${bottom}/lower-empty-dir`);
  file(`${bottom}/merged-dir/a`, 'a');
  file(`${top}/merged-dir/b`, 'b');
  for (let i = 0; i < (manyFiles ? 100 : 10); i++) file(`${bottom}/big-dir/sub${i % 5}/f${i}`, `file ${i}\n`);
  file(`${bottom}/small-dir/x`, 'x');
  fs.mkdirSync(`${top}/empty-target`);
  file(`${bottom}/a/b/c/existing`, 'deep');
  fs.chmodSync(`${bottom}/a`, 0o750);
  fs.chownSync(`${bottom}/a/b`, 42, 43);
  file(`${bottom}/whited`, 'hidden by the upper layer');
  file(`${bottom}/opaque/hidden`, 'hidden');
  file(`${bottom}/sparse`, '');
  fs.truncateSync(`${bottom}/sparse`, 64 << 20);
  file(`${bottom}/holey-lower`, '');
  fs.truncateSync(`${bottom}/holey-lower`, 4 << 20);
  fs.writeFileSync(`${bottom}/holey-lower`, 'data', { flag: 'r+', encoding: 'utf8' });
  sys.setxattr(`${bottom}/lower-xattr`, 'user.color', Buffer.from('red'), 0);
  sys.utimens(`${bottom}/lower-times`, 1_500_000_000, 111_111_111, 1_500_000_000, 222_222_222);
  file(`${bottom}/lower-1960`, 'old\n');
  sys.utimens(`${bottom}/lower-1960`, -315_000_000, 5, -315_000_000, 123_456_789);
  for (const name of ['setid-a', 'setid-b', 'setid-c', 'setid-d', 'setid-e']) file(`${bottom}/${name}`, 'set-ID\n');
  file(`${bottom}/linked-a`, 'one inode, two names\n');
  fs.linkSync(`${bottom}/linked-a`, `${bottom}/linked-b`);

  file(`${upper}/upper-only`, 'upper\n');
  file(`${upper}/upper-only2`, 'upper 2\n');
  file(`${upper}/shadowed`, 'upper\n');
  sys.mknod(`${upper}/whited`, fs.constants.S_IFCHR, 0, 0);
  fs.mkdirSync(`${upper}/opaque`);
  sys.setxattr(`${upper}/opaque`, 'trusted.overlay.opaque', Buffer.from('y'), 0);
  file(`${upper}/opaque/shown`, 'shown');
  return { lowers: [top, bottom], upper };
}

const AS_NOBODY = 'setpriv --reuid=65534 --regid=65534 --clear-groups';

/** A file made, written and read by a path of 4095 bytes; one byte more is refused. The tree goes again (deeper than a path can name from the test's own directory). */
const LONG_PATHS =
  "import os\nd = '/'.join(['long' * 50] * 20)\nos.makedirs(d)\nfull = d + '/' + 'x' * (4095 - len(d) - 1)\nopen(full, 'w').write('deep')\nprint(len(full), open(full).read())\ntry:\n  open(full + 'y', 'w')\nexcept OSError as e:\n  print(e.strerror)\nimport shutil\nshutil.rmtree(d.split('/')[0])";
/**
 * Page-aligned O_DIRECT reads and writes through a read-only, a read-write and a write-only
 * descriptor. What a short read leaves in the buffer past what it returned is unspecified (ext4
 * zeroes the rest of the block, a FUSE read leaves it): only the bytes returned are compared, and
 * what is written is a pattern of its own.
 */
const DIRECT_IO =
  "import mmap, os\nbuf = mmap.mmap(-1, 4096)\nfor name, flags in [('lower-both', os.O_RDONLY), ('lower-both', os.O_RDWR), ('direct-new', os.O_WRONLY | os.O_CREAT)]:\n  fd = os.open(name, flags | os.O_DIRECT, 0o644)\n  if flags & os.O_ACCMODE != os.O_WRONLY:\n    n = os.preadv(fd, [buf], 0)\n    print(name, n, buf[:n])\n  if flags & os.O_ACCMODE != os.O_RDONLY:\n    buf[:] = b'd' * 4096\n    print(name, os.pwritev(fd, [buf], 0))\n  os.close(fd)\nprint(os.stat('lower-both').st_size, os.stat('direct-new').st_size)";
/** SEEK_DATA and SEEK_HOLE from the start of a new sparse file and of a lower one with data, then a hole. */
const SEEKS = "import os\nfor n in ['holey', 'holey-lower']:\n  fd = os.open(n, os.O_RDONLY)\n  print(n, os.lseek(fd, 0, os.SEEK_DATA), os.lseek(fd, 0, os.SEEK_HOLE))";
const EXCHANGE_FILES =
  "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nfor a, b, flags in [(b'lower-exec', b'lower-1960', 2), (b'lower-exec', b'lower-1960', 1)]:\n  print(libc.renameat2(-100, a, -100, b, flags), os.strerror(ctypes.get_errno()))";

/** Steps run as a user would, with a shell in the mount; each compared with the kernel's overlay. */
const STEPS: [string, string][] = [
  ['write-open copies up', 'echo appended >> lower-only && cat lower-only'],
  ['O_TRUNC copies up and truncates', 'echo new > lower-both && cat lower-both'],
  ['truncate', 'truncate -s 3 dir/lower-file && cat dir/lower-file'],
  ['chmod', 'chmod 600 lower-exec'],
  ['chown', 'chown 123:456 lower-owned'],
  ['utimens with nanoseconds', 'touch -d "2020-01-02 03:04:05.123456789" lower-times && stat -c %y lower-times'],
  ['times before 1970, set and kept by copy-up', 'touch -d "1960-01-02 03:04:05.123456789" new-1960 && chmod 600 lower-1960 && stat -c %y new-1960 lower-1960'],
  ['setxattr', 'python3 -c "import os; os.setxattr(\'lower-xattr\', \'user.k\', b\'v\'); print(sorted(os.listxattr(\'lower-xattr\')))"'],
  ['removexattr', 'python3 -c "import os; os.removexattr(\'lower-xattr\', \'user.color\'); print(os.listxattr(\'lower-xattr\'))"'],
  ['link of a lower file', 'ln lower-link-src hl && echo more >> hl && cat lower-link-src'],
  ['unlink lower', 'rm lower-rm && ! ls lower-rm'],
  ['unlink upper only', 'rm upper-only'],
  ['a file with two names loses the one it was made by, and stays the other', 'echo two > named-a && ln named-a named-b && stat -c %h named-a && rm named-a && cat named-b && stat -c %h named-b && echo more >> named-b && cat named-b'],
  ['touch -a and touch -m change one time each (UTIME_OMIT)', 'touch -d "2001-01-01" lower-times && touch -a -d "2002-02-02" lower-times && touch -m -d "2003-03-03" lower-times && stat -c "%x %y" lower-times'],
  ['chown(f, -1, -1) still changes the change time', 'a=$(stat -c %z lower-owned) && sleep 0.05 && python3 -c "import os; os.chown(\'lower-owned\', -1, -1)" && b=$(stat -c %z lower-owned) && test "$a" != "$b" && echo changed'],
  ['unlink upper over lower', 'rm shadowed && ! cat shadowed'],
  ['rmdir of a lower dir', 'rmdir lower-empty-dir'],
  ['rmdir of a non-empty merged dir fails', 'rmdir merged-dir'],
  ['rm -r of a merged dir', 'rm -r merged-dir'],
  ['mkdir over a whiteout is opaque', 'mkdir merged-dir && ls -A merged-dir'],
  ['rename a lower file', 'mv lower-mv moved && cat moved'],
  ['rename over an existing file', 'mv upper-only2 lower-both && cat lower-both'],
  ['rename a lower dir of many files', 'mv big-dir big-moved && ls big-moved/sub3 | wc -l'],
  ['rename a dir onto an empty dir', 'mv -T small-dir empty-target && ls empty-target'],
  ['symlink', 'ln -s lower-only sym && cat sym'],
  ['fifo and device', 'mkfifo fifo && mknod chr c 1 3'],
  ['O_EXCL', 'set -C; echo a > excl-new && ! (echo b > lower-only) 2>/dev/null'],
  ['O_APPEND', 'python3 -c "import os; fd = os.open(\'lower-both\', os.O_WRONLY | os.O_APPEND); os.write(fd, b\'tail\\n\'); os.close(fd)" && cat lower-both'],
  ['a whiteout in the upper layer hides the lower file', '! ls whited 2>/dev/null && echo back > whited && cat whited'],
  ['an opaque upper dir hides the lower one', 'ls -A opaque'],
  ['parents are copied up with their metadata', 'echo x > a/b/c/deep && stat -c "%a %u %g" a a/b'],
  ['paths of 4095 bytes, the longest the kernel takes, and ENAMETOOLONG beyond (pjdfstest */03.t)', `python3 -c "${LONG_PATHS}"`],
  ['O_DIRECT reads and writes, of a lower file being copied up and of a new one (fsx -Z)', `python3 -c "${DIRECT_IO}"`],
  ['names of 255 bytes, ENAMETOOLONG beyond', 'touch "$(head -c 255 /dev/zero | tr "\\0" x)" && ! touch "$(head -c 256 /dev/zero | tr "\\0" y)"'],
  ['an unlinked open file keeps working', 'python3 -c "import os; fd = os.open(\'lower-only\', os.O_RDWR); os.unlink(\'lower-only\'); os.write(fd, b\'still\'); print(os.fstat(fd).st_nlink); os.lseek(fd, 0, 0); print(os.read(fd, 100))"'],
  ['writing into a sparse lower file keeps its holes', 'printf x | dd of=sparse bs=1 seek=1000 conv=notrunc 2>/dev/null && stat -c "%s %b" sparse'],
  ['hard links of a lower file', 'cat linked-b && ls -i linked-a linked-b | awk "{print \\$1}" | uniq | wc -l'],
  ['a device 0/0 is refused: it would be a whiteout', 'mknod wh c 0 0'],
  ['fallocate: allocate, keep the size, punch a hole, zero a range (each copying up first)', 'fallocate -l 8192 lower-only && fallocate -n -o 1048576 -l 4096 dir/lower-file && fallocate -p -o 0 -l 2 lower-both && fallocate -z -o 1 -l 1 lower-mv && stat -c %s lower-only dir/lower-file lower-both && od -c lower-both lower-mv'],
  ['lseek SEEK_DATA and SEEK_HOLE find the holes of a lower file and of a new one', `truncate -s 4M holey && printf x | dd of=holey bs=1 seek=1048576 conv=notrunc 2>/dev/null && python3 -c "${SEEKS}"`],
  ['renameat2: RENAME_EXCHANGE swaps two lower files, RENAME_NOREPLACE refuses an existing name', `python3 -c "${EXCHANGE_FILES}" && cat lower-exec lower-1960`],
  // Writes, truncates and O_TRUNC opens by someone without CAP_FSETID drop the set-user-ID bit, and the set-group-ID bit of a file that is group-executable or not of their group.
  ['a write by a user drops set-ID bits', `chmod 6777 setid-a && chmod 6766 setid-b && ${AS_NOBODY} sh -c "echo more >> setid-a; echo more >> setid-b" && stat -c %a setid-a setid-b`],
  ['a truncate and an O_TRUNC open by a user drop them too', `chmod 4777 setid-c setid-d && ${AS_NOBODY} sh -c "truncate -s 1 setid-c; : > setid-d" && stat -c %a setid-c setid-d`],
  ['root keeps set-ID bits when writing', 'chmod 6755 setid-e && echo more >> setid-e && truncate -s 2 setid-e && stat -c %a setid-e'],
];

describe('the copy-on-write view, step by step against the kernel overlay', { skip: !isRoot && 'the kernel overlay needs root' }, () => {
  let dir: string;
  let mine: string;
  let kernel: string;
  let server: ChildProcess | undefined;
  const stacks: Record<'mine' | 'kernel', { lowers: string[]; upper: string; work: string }> = {} as never;
  before(async () => {
    dir = tempDir('snapfs-layerfs-');
    for (const side of ['mine', 'kernel'] as const) {
      const layers = buildLayers(path.join(dir, `${side}-layers`));
      const work = path.join(dir, `${side}-layers`, 'work');
      fs.mkdirSync(work);
      stacks[side] = { ...layers, work };
    }
    mine = path.join(dir, 'mine');
    kernel = path.join(dir, 'kernel');
    fs.mkdirSync(mine);
    fs.mkdirSync(kernel);
    server = await serveStack(stacks.mine, mine);
    const k = stacks.kernel;
    await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${k.lowers.join(':')},upperdir=${k.upper},workdir=${k.work},index=on`, kernel]);
  });
  after(async () => {
    await unmountAll(mine);
    await unmountAll(kernel);
    server?.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('starts from the same merged tree', async () => {
    assert.equal(await describeTree(mine, { times: false }), await describeTree(kernel, { times: false }));
  });

  for (const [label, script] of STEPS) {
    it(label, async () => {
      const outcome = async (cwd: string): Promise<string> => {
        const r = await run('sh', ['-c', script], { cwd }).then(
          (ok) => `ok\n${ok.stdout}`,
          (err: { code: number; stdout: string; stderr: string }) => `exit ${err.code}\n${err.stdout}${err.stderr}`,
        );
        return r.replaceAll(cwd, 'MNT');
      };
      const expected = await outcome(kernel);
      assert.equal(await outcome(mine), expected, 'same output and status');
      assert.equal(await describeTree(mine, { times: false }), await describeTree(kernel, { times: false }), 'same merged tree');
    });
  }

  it('leaves the same entries in the upper layer', async () => {
    const list = async (d: string): Promise<string> => (await run('find', ['.', '-printf', '%p %y %m %U %G\n'], { cwd: d })).stdout.split('\n').sort().join('\n');
    assert.equal(await list(stacks.mine.upper), await list(stacks.kernel.upper));
  });

  it('the layers each wrote mount with the other: snapfs reads the kernel\'s upper layer and the kernel reads snapfs\'s', async () => {
    const expected = await describeTree(kernel, { times: false });
    await unmountAll(mine);
    await unmountAll(kernel);
    server?.kill();
    server = await serveStack({ lowers: [stacks.kernel.upper, ...stacks.kernel.lowers] }, mine);
    await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${[stacks.mine.upper, ...stacks.mine.lowers].join(':')}`, kernel]);
    try {
      assert.equal(await describeTree(mine, { times: false }), expected, 'snapfs over the layers the kernel wrote');
      assert.equal(await describeTree(kernel, { times: false }), expected, 'the kernel over the layers snapfs wrote');
    } finally {
      await unmountAll(mine);
      await unmountAll(kernel);
    }
  });

  it('copy-up keeps nanosecond times, modes, owners and attributes of what it copies', () => {
    const st = fs.lstatSync(path.join(stacks.mine.upper, 'lower-owned'), { bigint: true });
    const lower = fs.lstatSync(path.join(stacks.mine.lowers[1]!, 'lower-owned'), { bigint: true });
    assert.equal(st.mtimeNs, lower.mtimeNs);
    assert.equal(st.uid, 123n);
    const dirTimes = (d: string): bigint => fs.lstatSync(d, { bigint: true }).mtimeNs;
    assert.equal(dirTimes(path.join(stacks.mine.upper, 'a')), dirTimes(path.join(stacks.mine.lowers[1]!, 'a')), 'copying up a child does not touch its parent');
    assert.equal(dirTimes(path.join(stacks.mine.upper, 'a')), dirTimes(path.join(stacks.kernel.upper, 'a')) - dirTimes(path.join(stacks.kernel.lowers[1]!, 'a')) + dirTimes(path.join(stacks.mine.lowers[1]!, 'a')), 'as with the kernel overlay');
    assert.deepEqual(sys.getxattr(path.join(stacks.mine.upper, 'lower-xattr'), 'user.k'), Buffer.from('v'));
    assert.ok(Number(fs.statSync(path.join(stacks.mine.upper, 'sparse')).blocks) < 64, 'the holes stayed holes');
  });
});

const NAMES = ['lower-only', 'lower-both', 'shadowed', 'dir', 'dir/lower-file', 'dir/top-file', 'merged-dir', 'merged-dir/a', 'merged-dir/b', 'a/b', 'a/b/c', 'opaque', 'opaque/shown', 'whited', 'new1', 'dir/new2', 'newdir', 'newdir/x', 'linked-a', 'linked-b'];

/** A seeded sequence of shell steps over NAMES: reproducible from its seed. */
function randomSteps(seed: number, count: number): string[] {
  let s = seed >>> 0;
  const random = (n: number): number => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return s % n;
  };
  const name = (): string => NAMES[random(NAMES.length)]!;
  const makers: (() => string)[] = [
    () => `echo ${random(1000)} >> ${name()}`,
    () => `echo ${random(1000)} > ${name()}`,
    () => `truncate -s ${random(10)} ${name()}`,
    () => `mkdir -p ${name()}`,
    () => `rm -f ${name()}`,
    () => `rm -rf ${name()}`,
    () => `rmdir ${name()}`,
    () => `mv -T ${name()} ${name()}`,
    () => `ln ${name()} ${name()}`,
    () => `ln -s ${name()} ${name()}`,
    () => `chmod ${['600', '755', '640', '700'][random(4)]} ${name()}`,
    () => `cat ${name()}`,
    () => `ls -A ${name()}`,
  ];
  return Array.from({ length: count }, () => makers[random(makers.length)]!());
}

describe('random sequences of changes, against the kernel overlay', { skip: !isRoot && 'the kernel overlay needs root' }, () => {
  const seeds = process.env.SNAPFS_SEED !== undefined ? [Number(process.env.SNAPFS_SEED)] : [1, 2, 3];
  for (const seed of seeds) {
    it(`seed ${seed} (rerun one with SNAPFS_SEED=${seed})`, async () => {
      const dir = tempDir('snapfs-random-');
      const mounts: string[] = [];
      let server: ChildProcess | undefined;
      try {
        const stacks = (['mine', 'kernel'] as const).map((side) => {
          const layers = buildLayers(path.join(dir, `${side}-layers`), false);
          const work = path.join(dir, `${side}-layers`, 'work');
          fs.mkdirSync(work);
          const mnt = path.join(dir, side);
          fs.mkdirSync(mnt);
          mounts.push(mnt);
          return { ...layers, work };
        });
        const [mine, kernel] = mounts as [string, string];
        server = await serveStack(stacks[0]!, mine);
        const k = stacks[1]!;
        await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${k.lowers.join(':')},upperdir=${k.upper},workdir=${k.work},index=on`, kernel]);
        const steps = randomSteps(seed, 40);
        for (const [i, step] of steps.entries()) {
          const outcome = async (cwd: string): Promise<string> =>
            run('sh', ['-c', step], { cwd }).then(
              (r) => `ok ${r.stdout}`,
              (err: { code: number; stdout: string; stderr: string }) => `exit ${err.code} ${err.stdout}${err.stderr}`,
            );
          const where = `seed ${seed}, step ${i}: ${step}\n(steps so far: ${steps.slice(0, i + 1).join(' ; ')})`;
          assert.equal(await outcome(mine), await outcome(kernel), where);
          assert.equal(await describeTree(mine, { times: false }), await describeTree(kernel, { times: false }), where);
        }
      } finally {
        for (const m of mounts) await unmountAll(m);
        server?.kill();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

describe('hard links of a lower file stay one file, against the kernel overlay with index=on', { skip: !isRoot && 'the kernel overlay needs root' }, () => {
  for (const [label, script] of [
    ['written through one name, that name removed', 'echo new > a && rm a && cat b && stat -c %h b'],
    ['written through one name, that name renamed', 'echo new > a && mv a c && cat b c && stat -c %h b c'],
    ['another file renamed over one name', 'echo new > a && echo other > x && mv x a && cat a b && stat -c %h a b'],
  ] as const) {
    it(label, async () => {
      const dir = tempDir('snapfs-links-');
      const mounts: string[] = [];
      let server: ChildProcess | undefined;
      try {
        const outcome: string[] = [];
        for (const side of ['mine', 'kernel'] as const) {
          const [lower, upper, work, mnt] = ['lower', 'upper', 'work', 'mnt'].map((d) => path.join(dir, side, d)) as [string, string, string, string];
          for (const d of [lower, upper, work, mnt]) fs.mkdirSync(d, { recursive: true });
          fs.writeFileSync(path.join(lower, 'a'), 'old\n');
          fs.linkSync(path.join(lower, 'a'), path.join(lower, 'b'));
          mounts.push(mnt);
          if (side === 'mine') server = await serveStack({ lowers: [lower], upper, work }, mnt);
          else await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work},index=on`, mnt]);
          outcome.push((await run('sh', ['-c', script], { cwd: mnt })).stdout);
        }
        assert.equal(outcome[0], outcome[1]);
      } finally {
        for (const m of mounts) await unmountAll(m);
        server?.kill();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
