import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { sys } from '../src/native/sys';
import { tempDir } from './helpers';

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
});
