import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CLI, NOBODY, ok, tempDir } from '../support/helpers';
import { run, unmountAll } from '../support/mount-helpers';

/** Root's runtime directory, where its mount daemons keep their sockets, pid files and logs. */
const ROOT_MOUNTS = '/run/snapfs/mounts';

/** The daemon files of a work directory: RUNTIME/mounts/DEV-INO.* */
function daemonFilesBase(work: string): string {
  const st = fs.statSync(work, { bigint: true });
  return path.join(ROOT_MOUNTS, `${st.dev}-${st.ino}`);
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 100 && !condition(); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(condition(), what);
}

/** Runs the CLI as uid/gid 65534 with nothing of our environment but PATH and `env`. */
function snapfsAsNobody(args: readonly string[], env: Record<string, string>): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const vars = Object.entries({ PATH: process.env.PATH ?? '', ...env }).map(([k, v]) => `${k}=${v}`);
    const child = spawn('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'env', '-i', ...vars, process.execPath, CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? 1, stderr }));
  });
}

describe("a mount daemon's own files", { skip: process.getuid?.() !== 0 && 'mounts as root, and switches to another user' }, () => {
  let dir: string;
  before(() => {
    dir = tempDir('snapfs-daemon-files-');
    fs.chmodSync(dir, 0o755);
  });
  after(async () => {
    await unmountAll(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a snapshot whose work directory path is 200 bytes long mounts, takes writes, and is frozen by commit', async () => {
    // ROOT/snapshots/1/work, 200 bytes in all.
    const root = path.join(dir, 'r'.repeat(200 - Buffer.byteLength(path.join(dir, '/snapshots/1/work')) - 1));
    const mnt = path.join(dir, 'long');
    fs.mkdirSync(mnt);
    await ok(root, ['prepare', 'long-a']);
    const work = path.join(root, 'snapshots', '1', 'work');
    assert.equal(Buffer.byteLength(work), 200);
    try {
      await ok(root, ['mount', 'long-a', mnt]);
      await run('sh', ['-c', 'echo written > f'], { cwd: mnt });
      assert.equal(fs.readFileSync(path.join(root, 'snapshots', '1', 'fs', 'f'), 'utf8'), 'written\n');
      assert.ok(fs.lstatSync(`${daemonFilesBase(work)}.sock`).isSocket(), 'the control socket is named by the work directory');
      assert.deepEqual(fs.readdirSync(work).filter((n) => /^snapfs\.|\.sock$/.test(n)), [], 'nothing of the daemon in the work directory');
      await ok(root, ['commit', 'long', 'long-a']);
      await assert.rejects(run('touch', [path.join(mnt, 'later')]), /Read-only file system/);
    } finally {
      await unmountAll(mnt);
    }
  });

  it('a root mount follows none of the symlinks planted in its work directory, and works', async () => {
    const sentinel = path.join(tempDir('snapfs-sentinel-'), 'sentinel');
    fs.writeFileSync(sentinel, 'precious\n', { mode: 0o600 });
    fs.chmodSync(sentinel, 0o600);
    const [lower, upper, work, mnt] = ['lower', 'upper', 'planted-work', 'planted'].map((d) => path.join(dir, d)) as [string, string, string, string];
    for (const d of [lower, upper, work, mnt]) fs.mkdirSync(d);
    fs.writeFileSync(path.join(lower, 'f'), 'low\n');
    // A work directory someone else owns, holding their symlinks where the daemon's files went.
    const planted = ['snapfs.pid', 'snapfs.log', 'control.sock'];
    for (const name of planted) {
      fs.symlinkSync(sentinel, path.join(work, name));
      fs.lchownSync(path.join(work, name), NOBODY, NOBODY);
    }
    fs.chownSync(work, NOBODY, NOBODY);
    const untouched = (): void => {
      const st = fs.statSync(sentinel, { bigint: true });
      assert.equal(fs.readFileSync(sentinel, 'utf8'), 'precious\n');
      assert.equal(st.mode & 0o7777n, 0o600n);
      assert.equal(st.ctimeNs, original.ctimeNs, 'the sentinel was not written, chmod-ed or chown-ed');
      for (const name of planted) assert.equal(fs.readlinkSync(path.join(work, name)), sentinel, `${name} is left as it was`);
    };
    const original = fs.statSync(sentinel, { bigint: true });
    const [pidFile, logFile] = ['pid', 'log'].map((ext) => `${daemonFilesBase(work)}.${ext}`) as [string, string];
    try {
      await run(process.execPath, [CLI, '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, mnt], { timeout: 20_000 });
      await run('sh', ['-c', 'echo more >> f'], { cwd: mnt });
      assert.equal(fs.readFileSync(path.join(upper, 'f'), 'utf8'), 'low\nmore\n');
      assert.match(fs.readFileSync(pidFile, 'utf8'), new RegExp(`^\\d+\\n${mnt}$`), 'the pid file is in the runtime directory');
      untouched();
      await run('umount', [mnt]);
      await until(() => !fs.existsSync(pidFile), 'the daemon removed its pid file on the way out');
      assert.equal(fs.existsSync(logFile), false, 'and its log, which it wrote nothing to');
      untouched();
    } finally {
      await unmountAll(mnt);
      fs.rmSync(path.dirname(sentinel), { recursive: true, force: true });
    }
  });

  it('a runtime directory that is a symlink, is owned by another user, or is writable by others is refused in one line, and nothing is written through it', async () => {
    const home = path.join(dir, 'nobody');
    fs.mkdirSync(home);
    const [lower, upper, work, mnt] = ['lower', 'upper', 'work', 'mnt'].map((d) => path.join(home, d)) as [string, string, string, string];
    for (const d of [lower, upper, work, mnt]) fs.mkdirSync(d);
    const root = path.join(home, 'root');
    for (const d of [home, lower, upper, work, mnt]) fs.chownSync(d, NOBODY, NOBODY);
    assert.equal((await snapfsAsNobody(['--root', root, 'prepare', 'a'], { HOME: home })).code, 0);

    const elsewhere = path.join(home, 'elsewhere');
    const cases: { name: string; make: (runtime: string) => string; cause: RegExp }[] = [
      {
        name: 'a symlink',
        make: (runtime) => {
          fs.mkdirSync(elsewhere, { mode: 0o700 });
          fs.chownSync(elsewhere, NOBODY, NOBODY);
          fs.symlinkSync(elsewhere, runtime);
          return elsewhere;
        },
        cause: /a symbolic link, not a directory of its own/,
      },
      { name: 'owned by another user', make: (runtime) => dirOwnedBy(runtime, 4321, 0o777), cause: /owned by uid 4321, not by this user \(uid 65534\)/ },
      { name: 'group-writable', make: (runtime) => dirOwnedBy(runtime, NOBODY, 0o770), cause: /writable by group or others \(mode 0770\)/ },
      { name: 'world-writable', make: (runtime) => dirOwnedBy(runtime, NOBODY, 0o707), cause: /writable by group or others \(mode 0707\)/ },
    ];
    for (const { name, make, cause } of cases) {
      const xdg = path.join(home, 'xdg');
      fs.rmSync(xdg, { recursive: true, force: true });
      fs.rmSync(elsewhere, { recursive: true, force: true });
      fs.mkdirSync(xdg, { mode: 0o700 });
      fs.chownSync(xdg, NOBODY, NOBODY);
      const runtime = path.join(xdg, 'snapfs');
      const inside = make(runtime);
      const env = { HOME: home, XDG_RUNTIME_DIR: xdg };
      for (const args of [['-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, mnt], ['--root', root, 'commit', 'c', 'a']]) {
        const r = await snapfsAsNobody(args, env);
        assert.equal(r.code, 7, `${name}, ${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(`^snapfs: runtime directory ${runtime}: [^\\n]+\\n$`), name);
        assert.match(r.stderr, cause, name);
        assert.deepEqual(fs.readdirSync(inside), [], `${name}: nothing written through it`);
      }
      assert.deepEqual(fs.readdirSync(work), [], `${name}: nor into the work directory`);
    }
  });
});

/** Makes `dir` with this owner and mode, whatever the umask. */
function dirOwnedBy(dir: string, uid: number, mode: number): string {
  fs.mkdirSync(dir);
  fs.chownSync(dir, uid, uid);
  fs.chmodSync(dir, mode);
  return dir;
}
