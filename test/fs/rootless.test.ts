import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CLI, type CliResult, command, NOBODY, tempDir } from '../support/helpers';
import { serveMinimal, unmountAll } from '../support/mount-helpers';


/** Runs a command as uid/gid 65534 with a clean environment. */
function asNobody(cmd: string[], opts: { home: string }): Promise<CliResult> {
  return command(['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'env', '-i', `PATH=${process.env.PATH}`, `HOME=${opts.home}`, ...cmd], { cwd: opts.home, timeout: 30_000 });
}

describe('rootless: an unprivileged user mounts snapshots of its own root', { skip: process.getuid?.() !== 0 && 'needs root to create the unprivileged user' }, () => {
  let home: string;
  let fuseMode: number;
  before(() => {
    // udev makes /dev/fuse usable by everyone on a standard system; do as udev would.
    fuseMode = fs.statSync('/dev/fuse').mode & 0o777;
    fs.chmodSync('/dev/fuse', 0o666);
    home = tempDir('snapfs-rootless-');
    fs.chmodSync(home, 0o755);
    fs.chownSync(home, NOBODY, NOBODY);
  });
  after(async () => {
    await unmountAll(home);
    fs.chmodSync('/dev/fuse', fuseMode);
    fs.rmSync(home, { recursive: true, force: true });
  });

  const snapfs = async (...args: string[]): Promise<string> => {
    const r = await asNobody([process.execPath, CLI, ...args], { home });
    assert.equal(r.code, 0, `snapfs ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  // The mount is the user's alone (no allow_other): even root may not enter it, so the shell changes into it.
  const sh = async (script: string, cwd: string): Promise<string> => {
    const r = await asNobody(['sh', '-c', `cd "$0" && ${script}`, cwd], { home });
    assert.equal(r.code, 0, `${script}: ${r.stderr}`);
    return r.stdout;
  };

  it("the FUSE binding mounts through the setuid fusermount, and serves the user", async () => {
    const dir = path.join(home, 'binding');
    const mnt = path.join(dir, 'mnt');
    await sh(`mkdir -p ${mnt} && echo for nobody > ${dir}/data`, home);
    const child = await serveMinimal(mnt, path.join(dir, 'data'), NOBODY);
    try {
      assert.match(fs.readFileSync('/proc/self/mountinfo', 'utf8'), new RegExp(` ${mnt} .* fuse\\.minimal minimal .*user_id=${NOBODY}`));
      assert.equal(await sh('cat hello', mnt), 'for nobody\n');
    } finally {
      await sh(`fusermount -u ${mnt}`, home);
      child.kill();
    }
  });

  it('prepares, writes through FUSE, deletes, commits and views without root', async () => {
    const mnt = path.join(home, 'mnt');
    await sh(`mkdir ${mnt}`, home);
    // The default root of a user: ~/.local/share/snapfs.
    await snapfs('prepare', 'base-a');
    await snapfs('mount', 'base-a', mnt);
    await sh('mkdir -p etc && echo base > etc/os-release && echo gone > doomed && mkdir dir && echo old > dir/old', mnt);
    await sh(`fusermount -u ${mnt}`, home);
    await snapfs('commit', 'base', 'base-a');

    const mounts = JSON.parse(await snapfs('prepare', '--json', 'child-a', 'base')) as { options: string[] }[];
    const upper = mounts[0]!.options.find((o) => o.startsWith('upperdir='))!.slice('upperdir='.length);
    await snapfs('mount', 'child-a', mnt);
    assert.equal(await sh('cat etc/os-release', mnt), 'base\n');
    await sh('echo child >> etc/os-release && rm doomed && rm -r dir && mkdir dir && echo new > dir/new', mnt);
    assert.equal(await sh('ls -A dir', mnt), 'new\n');
    await sh(`fusermount -u ${mnt}`, home);
    // Without the privileges for device nodes and trusted.* attributes, the fallback forms.
    assert.ok(fs.existsSync(path.join(upper, '.wh.doomed')), 'whiteout as a .wh. file');
    assert.ok(fs.existsSync(path.join(upper, 'dir', '.wh..wh..opq')), 'opaque directory marker');
    assert.equal(fs.statSync(path.join(upper, 'etc', 'os-release')).uid, NOBODY);
    await snapfs('commit', 'child', 'child-a');

    await snapfs('view', 'look', 'child');
    await snapfs('mount', 'look', mnt);
    assert.equal(await sh('cat etc/os-release && ls -A && ls -A dir', mnt), 'base\nchild\ndir\netc\nnew\n');
    const refused = await asNobody(['touch', path.join(mnt, 'x')], { home });
    assert.match(refused.stderr, /Read-only file system/);
    await sh(`fusermount -u ${mnt}`, home);
  });

  it("mounts with fuse-overlayfs's command line without root", async () => {
    const dirs = ['lower', 'upper', 'work', 'mnt2'].map((d) => path.join(home, d));
    await sh(`mkdir ${dirs.join(' ')} && echo low > lower/f`, home);
    const [lower, upper, work, mnt] = dirs as [string, string, string, string];
    await snapfs('-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, mnt);
    await sh('echo more >> f && cat f', mnt);
    await sh(`fusermount -u ${mnt}`, home);
    assert.equal(fs.readFileSync(path.join(upper, 'f'), 'utf8'), 'low\nmore\n');
    assert.equal(fs.readFileSync(path.join(lower, 'f'), 'utf8'), 'low\n', 'the lower layer is untouched');
  });

  it('browses its root, and reads it offline, without root', async () => {
    const mnt = path.join(home, 'browse');
    await sh(`mkdir ${mnt}`, home);
    // The first test made base, child and look in the user's default root.
    await snapfs('browse', mnt);
    try {
      assert.equal(await sh('ls && cat base/etc/os-release child/dir/new', mnt), 'base\nchild\nlook\nbase\nnew\n');
      assert.match(await sh('ls -A .layers/child', mnt), /^\.wh\.doomed\n/m);
      assert.equal(await snapfs('cat', 'child', 'etc/os-release'), 'base\nchild\n');
      assert.match(await snapfs('changes', 'child'), /^D \/doomed$/m);
    } finally {
      await sh(`fusermount -u ${mnt}`, home);
    }
  });
});
