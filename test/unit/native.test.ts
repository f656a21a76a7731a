import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as nativeFiles from '../../src/native/sys';
import { sys } from '../../src/native/sys';
import { Connection, Listener, type Peer } from '../../src/native/unix';
import { tempDir } from '../support/helpers';

describe('native system calls', () => {
  it('mknod makes overlayfs whiteouts (character device 0/0) and fifos', () => {
    const dir = tempDir();
    try {
      sys.mknod(path.join(dir, 'wh'), fs.constants.S_IFCHR | 0o000, 0, 0);
      const st = fs.lstatSync(path.join(dir, 'wh'));
      assert.ok(st.isCharacterDevice());
      assert.equal(st.rdev, 0);
      sys.mknod(path.join(dir, 'fifo'), fs.constants.S_IFIFO | 0o640, 0, 0);
      assert.ok(fs.lstatSync(path.join(dir, 'fifo')).isFIFO());
      assert.throws(() => sys.mknod(path.join(dir, 'wh'), fs.constants.S_IFCHR, 0, 0), { code: 'EEXIST', syscall: 'mknod' });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('utimens sets nanosecond times, on symlinks too, and honours UTIME_OMIT', () => {
    const dir = tempDir();
    try {
      const f = path.join(dir, 'f');
      fs.writeFileSync(f, 'x');
      sys.utimens(f, 1_000_000_000, 123_456_789, 1_700_000_000, 987_654_321);
      const st = fs.lstatSync(f, { bigint: true });
      assert.equal(st.atimeNs, 1_000_000_000_123_456_789n);
      assert.equal(st.mtimeNs, 1_700_000_000_987_654_321n);
      sys.utimens(f, 5, sys.UTIME_OMIT, 1_600_000_000, 1);
      const st2 = fs.lstatSync(f, { bigint: true });
      assert.equal(st2.atimeNs, st.atimeNs);
      assert.equal(st2.mtimeNs, 1_600_000_000_000_000_001n);
      const l = path.join(dir, 'l');
      fs.symlinkSync('f', l);
      sys.utimens(l, 0, 0, 42, 42);
      assert.equal(fs.lstatSync(l, { bigint: true }).mtimeNs, 42_000_000_042n);
      assert.equal(fs.statSync(f, { bigint: true }).mtimeNs, st2.mtimeNs, 'the target is untouched');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('extended attributes: set, get, list, remove, and ENODATA', () => {
    const dir = tempDir();
    try {
      const d = path.join(dir, 'd');
      fs.mkdirSync(d);
      sys.setxattr(d, 'user.snapfs.test', Buffer.from('y'), 0);
      sys.setxattr(d, 'user.empty', Buffer.alloc(0), 0);
      assert.deepEqual(sys.getxattr(d, 'user.snapfs.test'), Buffer.from('y'));
      assert.deepEqual(sys.getxattr(d, 'user.empty'), Buffer.alloc(0));
      assert.deepEqual(sys.listxattr(d).map(String).filter((n) => n.startsWith('user.')).sort(), ['user.empty', 'user.snapfs.test']);
      sys.removexattr(d, 'user.snapfs.test');
      assert.equal(sys.getxattr(d, 'user.snapfs.test'), undefined);
      if (process.getuid?.() === 0) {
        sys.setxattr(d, 'trusted.overlay.opaque', Buffer.from('y'), 0);
        assert.equal(sys.getxattr(d, 'trusted.overlay.opaque')?.toString(), 'y');
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('createFileAt makes a new file with content, owner, mode and time in one call, and replaces nothing', () => {
    const dir = tempDir();
    const dirfd = fs.openSync(dir, 'r');
    try {
      const f = path.join(dir, 'f');
      sys.createFileAt(dirfd, 'f', Buffer.from('content'), 0o4755, process.getuid?.() === 0, 1000, 1000, 1_600_000_000, 123_456_789);
      const st = fs.statSync(f, { bigint: true });
      assert.equal(fs.readFileSync(f, 'utf8'), 'content');
      assert.equal(Number(st.mode) & 0o7777, 0o4755); // set-id kept: chown came first
      if (process.getuid?.() === 0) assert.deepEqual([st.uid, st.gid], [1000n, 1000n]);
      assert.equal(st.mtimeNs, 1_600_000_000_123_456_789n);
      assert.throws(() => sys.createFileAt(dirfd, 'f', Buffer.alloc(0), 0o644, false, 0, 0, 0, 0), { code: 'EEXIST' });
      fs.symlinkSync(path.join(dir, 'target'), path.join(dir, 'link'));
      assert.throws(() => sys.createFileAt(dirfd, 'link', Buffer.from('x'), 0o644, false, 0, 0, 0, 0), { code: 'EEXIST' });
      assert.equal(fs.existsSync(path.join(dir, 'target')), false, 'a symlink is not followed');
    } finally {
      fs.closeSync(dirfd);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('copyData and copyDataAsync copy data with its holes; copyDataAsync rejects as copyData throws', async () => {
    const dir = tempDir();
    const MiB = 1 << 20;
    try {
      // Data, a hole, data, and a hole at the end.
      const src = path.join(dir, 'src');
      const data = [Buffer.alloc(MiB, 'a'), Buffer.alloc(MiB, 'b')];
      const fd = fs.openSync(src, 'w');
      fs.writeSync(fd, data[0]!, 0, MiB, 0);
      fs.writeSync(fd, data[1]!, 0, MiB, 4 * MiB);
      fs.ftruncateSync(fd, 8 * MiB);
      fs.closeSync(fd);
      const expected = fs.readFileSync(src);
      for (const [name, copy] of [
        ['sync', (from: number, to: number) => sys.copyData(from, to, 8 * MiB)],
        ['async', (from: number, to: number) => sys.copyDataAsync(from, to, 8 * MiB)],
      ] as const) {
        const from = fs.openSync(src, 'r');
        const to = fs.openSync(path.join(dir, name), 'w');
        try {
          await copy(from, to);
        } finally {
          fs.closeSync(from);
          fs.closeSync(to);
        }
        const st = fs.statSync(path.join(dir, name));
        assert.equal(st.size, 8 * MiB, name);
        assert.ok(st.blocks * 512 < 4 * MiB, `${name}: the holes stay holes (${st.blocks} blocks)`);
        assert.ok(fs.readFileSync(path.join(dir, name)).equals(expected), name);
      }
      const readOnly = fs.openSync(src, 'r');
      try {
        assert.throws(() => sys.copyData(readOnly, readOnly, MiB), { code: 'EBADF' });
        await assert.rejects(sys.copyDataAsync(readOnly, readOnly, MiB), (err: NodeJS.ErrnoException) => {
          assert.ok(err instanceof Error);
          assert.equal(err.code, 'EBADF');
          assert.equal(err.errno, -9);
          assert.equal(typeof err.syscall, 'string');
          return true;
        });
      } finally {
        fs.closeSync(readOnly);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('descriptor primitives: one name in one directory, nothing followed', () => {
  const { O_PATH, statAt, readdirFd, openBeneath } = nativeFiles;
  let dir: string;
  let dirfd: number;
  let outside: string;
  before(() => {
    dir = tempDir();
    outside = tempDir();
    fs.writeFileSync(path.join(outside, 'secret'), 'host file\n', { mode: 0o600 });
    fs.mkdirSync(path.join(dir, 'sub'));
    fs.writeFileSync(path.join(dir, 'sub', 'file'), 'inside\n');
    fs.symlinkSync(outside, path.join(dir, 'escape'));
    fs.symlinkSync(path.join(outside, 'secret'), path.join(dir, 'secret-link'));
    dirfd = fs.openSync(dir, 'r');
  });
  after(() => {
    fs.closeSync(dirfd);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(outside, { recursive: true, force: true });
  });

  it('openAt takes one name: "..", "." and names with "/" are refused before any system call', () => {
    for (const name of ['..', '.', 'sub/file', '', Buffer.from('a/b')]) {
      assert.throws(() => sys.openAt(dirfd, name, fs.constants.O_RDONLY, 0), { code: 'EINVAL' }, String(name));
    }
  });

  it('openAt never follows a symlink, even a last one; O_PATH gives the link itself', () => {
    assert.throws(() => sys.openAt(dirfd, 'secret-link', fs.constants.O_RDONLY, 0), { code: 'ELOOP' });
    const link = sys.openAt(dirfd, 'secret-link', O_PATH, 0);
    try {
      assert.equal(sys.readlinkAt(link, '').toString(), path.join(outside, 'secret'));
      assert.throws(() => sys.reopen(link, fs.constants.O_RDONLY), { code: 'ELOOP' });
    } finally {
      fs.closeSync(link);
    }
  });

  it('openBeneath walks several names but never out of its directory, nor through a symlink', () => {
    const fd = openBeneath(dirfd, 'sub/file', fs.constants.O_RDONLY);
    assert.equal(fs.readFileSync(fd, 'utf8'), 'inside\n');
    fs.closeSync(fd);
    assert.throws(() => openBeneath(dirfd, 'escape/secret', fs.constants.O_RDONLY), { code: 'ELOOP' });
    assert.throws(() => openBeneath(dirfd, 'sub/../../x', fs.constants.O_RDONLY), { code: 'EXDEV' });
    assert.throws(() => openBeneath(dirfd, '/etc/passwd', fs.constants.O_RDONLY), { code: 'EINVAL' });
  });

  it('metadata changes through an O_PATH descriptor reach exactly its file: a symlink, never its target', () => {
    const before = fs.statSync(path.join(outside, 'secret'), { bigint: true });
    const link = sys.openAt(dirfd, 'secret-link', O_PATH, 0);
    try {
      assert.throws(() => sys.chmodFd(link, 0o777), { code: 'EOPNOTSUPP' });
      sys.utimens(link, 5, 0, 7, 0);
      sys.chownAt(link, '', process.getuid?.() ?? 0, process.getgid?.() ?? 0);
    } finally {
      fs.closeSync(link);
    }
    assert.equal(fs.lstatSync(path.join(dir, 'secret-link')).mtimeMs, 7000);
    const after = fs.statSync(path.join(outside, 'secret'), { bigint: true });
    assert.deepEqual([after.mode, after.mtimeNs, after.ctimeNs], [before.mode, before.mtimeNs, before.ctimeNs]);
    const file = sys.openAt(dirfd, 'sub', O_PATH | fs.constants.O_DIRECTORY, 0);
    try {
      sys.chmodFd(file, 0o750);
      assert.equal(fs.statSync(path.join(dir, 'sub')).mode & 0o777, 0o750);
    } finally {
      fs.closeSync(file);
    }
  });

  it('chmodAt, utimensAt and getxattrAt change and read the entry named, a symlink itself, never its target', () => {
    const before = fs.statSync(path.join(outside, 'secret'), { bigint: true });
    assert.throws(() => sys.chmodAt(dirfd, 'secret-link', 0o777), { code: 'EOPNOTSUPP' });
    sys.utimensAt(dirfd, 'secret-link', 5, 0, 9, 0);
    assert.equal(fs.lstatSync(path.join(dir, 'secret-link')).mtimeMs, 9000);
    const after = fs.statSync(path.join(outside, 'secret'), { bigint: true });
    assert.deepEqual([after.mode, after.mtimeNs, after.ctimeNs], [before.mode, before.mtimeNs, before.ctimeNs]);
    fs.writeFileSync(path.join(dir, 'attrs'), '');
    sys.chmodAt(dirfd, 'attrs', 0o640);
    assert.equal(fs.statSync(path.join(dir, 'attrs')).mode & 0o777, 0o640);
    sys.utimensAt(dirfd, 'attrs', 0, sys.UTIME_OMIT, 11, 5);
    assert.equal(fs.statSync(path.join(dir, 'attrs'), { bigint: true }).mtimeNs, 11_000_000_005n);
    assert.equal(sys.getxattrAt(dirfd, 'attrs', 'user.absent'), undefined);
    sys.setxattr(path.join(dir, 'attrs'), 'user.color', Buffer.from('blue'), 0);
    assert.equal(sys.getxattrAt(dirfd, 'attrs', 'user.color')?.toString(), 'blue');
    assert.throws(() => sys.getxattrAt(dirfd, 'gone', 'user.color'), { code: 'ENOENT' });
    for (const name of ['..', 'sub/file', '']) assert.throws(() => sys.chmodAt(dirfd, name, 0o600), { code: 'EINVAL' }, name);
  });

  it('openFile opens the data of regular files only: never a fifo (which would block), a device, a symlink or a directory', () => {
    sys.mknod(path.join(dir, 'fifo'), fs.constants.S_IFIFO | 0o666, 0, 0);
    assert.throws(() => sys.openFile(dirfd, 'fifo', fs.constants.O_RDONLY), { code: 'ENXIO' });
    if (process.getuid?.() === 0) {
      sys.mknod(path.join(dir, 'null'), fs.constants.S_IFCHR | 0o666, 1, 3);
      assert.throws(() => sys.openFile(dirfd, 'null', fs.constants.O_RDONLY), { code: 'ENXIO' });
    }
    assert.throws(() => sys.openFile(dirfd, 'secret-link', fs.constants.O_RDONLY), { code: 'ELOOP' });
    assert.throws(() => sys.openFile(dirfd, 'sub', fs.constants.O_RDONLY), { code: 'EISDIR' });
    const p = sys.openAt(dirfd, 'sub', O_PATH | fs.constants.O_DIRECTORY, 0);
    try {
      const fd = sys.openFile(p, 'file', fs.constants.O_RDONLY);
      assert.equal(fs.readFileSync(fd, 'utf8'), 'inside\n');
      fs.closeSync(fd);
    } finally {
      fs.closeSync(p);
    }
  });

  it('statAt answers undefined for no entry, and describes a symlink as itself', () => {
    assert.equal(statAt(dirfd, 'nothing'), undefined);
    const st = statAt(dirfd, 'secret-link')!;
    assert.equal(st.mode & 0o170000, 0o120000);
    assert.equal(st.ino, fs.lstatSync(path.join(dir, 'secret-link'), { bigint: true }).ino);
  });

  it('names are bytes: readdirFd lists them, the *at calls take them', () => {
    const name = Buffer.from([0x61, 0xff, 0x0a, 0xe9]);
    sys.mkdirAt(dirfd, name, 0o755);
    sys.renameAt(dirfd, name, dirfd, Buffer.from([0x62, 0xfe]), 0);
    assert.ok(readdirFd(dirfd).some((e) => e.name.equals(Buffer.from([0x62, 0xfe])) && e.type === nativeFiles.DT_DIR));
    assert.throws(() => sys.renameAt(dirfd, 'sub', dirfd, Buffer.from([0x62, 0xfe]), 1), { code: 'EEXIST' }, 'RENAME_NOREPLACE');
    sys.unlinkAt(dirfd, Buffer.from([0x62, 0xfe]), true);
  });

  it('tryLock takes a lock another open file holds only once that is closed', () => {
    const a = fs.openSync(dir, 'r');
    const b = fs.openSync(dir, 'r');
    try {
      assert.equal(sys.tryLock(a), true);
      assert.equal(sys.tryLock(b), false);
      fs.closeSync(a);
      assert.equal(sys.tryLock(b), true);
    } finally {
      fs.closeSync(b);
    }
  });

  it('linkAt gives the file of a descriptor a new name, without following it', () => {
    const link = sys.openAt(dirfd, 'secret-link', O_PATH, 0);
    try {
      sys.linkAt(link, dirfd, 'second-link');
    } finally {
      fs.closeSync(link);
    }
    assert.ok(fs.lstatSync(path.join(dir, 'second-link')).isSymbolicLink());
    assert.equal(fs.lstatSync(path.join(dir, 'second-link')).ino, fs.lstatSync(path.join(dir, 'secret-link')).ino);
  });

  it('linkNameAt gives an entry a new name, a symlink itself, and takes one name on each side', () => {
    sys.linkNameAt(dirfd, 'secret-link', dirfd, 'third-link');
    assert.ok(fs.lstatSync(path.join(dir, 'third-link')).isSymbolicLink());
    assert.equal(fs.lstatSync(path.join(dir, 'third-link')).ino, fs.lstatSync(path.join(dir, 'secret-link')).ino);
    assert.throws(() => sys.linkNameAt(dirfd, 'secret-link', dirfd, 'third-link'), { code: 'EEXIST' });
    assert.throws(() => sys.linkNameAt(dirfd, '../secret-link', dirfd, 'fourth-link'), { code: 'EINVAL' });
    assert.throws(() => sys.linkNameAt(dirfd, 'secret-link', dirfd, 'a/b'), { code: 'EINVAL' });
    assert.equal(fs.existsSync(path.join(dir, 'fourth-link')), false);
  });
});

describe('unix sockets that carry descriptors', () => {
  let dir: string;
  before(() => {
    dir = tempDir('snapfs-unix-');
    fs.chmodSync(dir, 0o755); // for nobody's client
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A client in a child process (a blocking exchange must not run on the thread serving the socket), as `uid` when given. */
  const client = (socket: string, script: string, uid?: number): Promise<{ code: number | null; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      const unix = path.join(__dirname, '..', '..', 'src', 'native', 'unix.js');
      const child = spawn(process.execPath, ['-e', `const u = require(${JSON.stringify(unix)}); const fs = require('fs'); const socket = ${JSON.stringify(socket)};\n${script}`], {
        stdio: ['ignore', 'pipe', 'pipe'],
        ...(uid === undefined ? {} : { uid, gid: uid }),
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });

  it("hands descriptors over with a message, says who sent it, and carries the answer back", async () => {
    const socket = path.join(dir, 'a.sock');
    fs.writeFileSync(path.join(dir, 'handed'), 'read through the descriptor handed over\n');
    const got: { text: string; content: string; peer: Peer }[] = [];
    const conns: Connection[] = [];
    const listener = new Listener(socket, (fd) => {
      conns.push(
        new Connection(
          fd,
          (conn, msg) => {
            got.push({ text: msg.data.toString(), content: msg.fds.map((f) => fs.readFileSync(f, 'utf8')).join(''), peer: conn.peer });
            for (const f of msg.fds) fs.closeSync(f);
            conn.send(Buffer.from(`answer to ${msg.data.toString()}`));
          },
          () => undefined,
        ),
      );
    });
    try {
      const file = path.join(dir, 'handed');
      const r = await client(socket, `const fd = fs.openSync(${JSON.stringify(file)}, 'r'); const a = u.exchange(socket, Buffer.from('hello'), [fd], 5000); process.stdout.write(a.data.toString() + ' ' + process.pid);`);
      assert.equal(r.code, 0, r.stderr);
      const [answer, pid] = [r.stdout.slice(0, r.stdout.lastIndexOf(' ')), Number(r.stdout.slice(r.stdout.lastIndexOf(' ') + 1))];
      assert.equal(answer, 'answer to hello');
      assert.equal(got.length, 1);
      assert.equal(got[0]!.text, 'hello');
      assert.equal(got[0]!.content, 'read through the descriptor handed over\n');
      assert.deepEqual(got[0]!.peer, { pid, uid: process.getuid!(), gid: process.getgid!() });
    } finally {
      conns.forEach((c) => c.close());
      listener.close();
    }
  });

  it('says which user connected: another user is known by its own uid', { skip: process.getuid?.() !== 0 && 'switches to nobody' }, async () => {
    const socket = path.join(dir, 'b.sock');
    const peers: Peer[] = [];
    const conns: Connection[] = [];
    const listener = new Listener(socket, (fd) => {
      const conn = new Connection(fd, (c) => c.send(Buffer.from('no')), () => undefined);
      peers.push(conn.peer);
      conns.push(conn);
    });
    fs.chmodSync(socket, 0o777);
    try {
      const r = await client(socket, `process.stdout.write(u.exchange(socket, Buffer.from('let me in'), [], 5000).data.toString());`, 65534);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'no');
      assert.deepEqual(peers.map((p) => p.uid), [65534]);
    } finally {
      conns.forEach((c) => c.close());
      listener.close();
    }
  });

  it('a client waits for an answer only as long as it was told, and a closed connection is an end, not a hang', async () => {
    const socket = path.join(dir, 'c.sock');
    const conns: Connection[] = [];
    let closedSeen = 0;
    const listener = new Listener(socket, (fd) => {
      conns.push(
        new Connection(
          fd,
          (conn, msg) => {
            if (msg.data.toString() === 'hang up') conn.close();
          },
          () => closedSeen++,
        ),
      );
    });
    try {
      const silent = await client(socket, `try { u.exchange(socket, Buffer.from('wait'), [], 200); } catch (e) { process.stdout.write(e.code); }`);
      assert.equal(silent.stdout, 'ETIMEDOUT', silent.stderr);
      const hung = await client(socket, `try { u.exchange(socket, Buffer.from('hang up'), [], 5000); } catch (e) { process.stdout.write(e.code); }`);
      assert.equal(hung.stdout, 'ECONNRESET', hung.stderr);
      const none = await client(path.join(dir, 'nobody-listens.sock'), `try { u.exchange(socket, Buffer.from('x'), [], 200); } catch (e) { process.stdout.write(e.code); }`);
      assert.equal(none.stdout, 'ENOENT', none.stderr);
      assert.equal(closedSeen, 1, 'the client that left after its timeout is seen to go');
    } finally {
      conns.forEach((c) => c.close());
      listener.close();
    }
  });
});
