import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Daemons } from '../support/daemon-helpers';
import { command, tempDir, type CliResult } from '../support/helpers';
import { run, unmountAll } from '../support/mount-helpers';

const isRoot = process.getuid?.() === 0;
const LIMIT = 1 << 20;

/** A shell command in `cwd` (a mount: never touched from this process); its exit code and stderr. */
function sh(script: string, cwd: string): Promise<CliResult> {
  return command(['sh', '-c', script], { cwd });
}

describe("an active snapshot held to containerd's max-size label: writes past it are ENOSPC", { skip: !isRoot && 'mount -t fuse.snapfs needs root' }, () => {
  let dir: string;
  let root: string;
  let d: Daemons;
  before(async () => {
    dir = tempDir('snapfs-max-size-');
    root = path.join(dir, 'root');
    d = new Daemons(dir, 'max-size');
    await d.cli(root, ['prepare', 'base-a']);
    fs.writeFileSync(path.join(root, 'snapshots', '1', 'fs', 'lower'), Buffer.alloc(512 << 10, 1));
    await d.cli(root, ['commit', 'base', 'base-a']);
  });
  after(async () => {
    await unmountAll(dir);
    d.killAll();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const how of ['mount -t fuse.snapfs, as containerd mounts it', 'snapfs mount KEY'] as const) {
    it(`${how}: a write, an allocation or a copy-up past the limit fails, and what is freed may be written again`, async () => {
      const key = how.startsWith('mount') ? 'helper' : 'by-key';
      const mnt = path.join(dir, `mnt-${key}`);
      fs.mkdirSync(mnt);
      const printed = await d.cli(root, ['prepare', '--label', `containerd.io/snapshot/max-size=${LIMIT}`, '--target', mnt, key, 'base']);
      assert.match(printed, new RegExp(`max_size=${LIMIT}`));
      if (how.startsWith('mount')) await run('sh', ['-c', printed], { env: d.env });
      else await d.cli(root, ['mount', key, mnt]);
      try {
        const upper = (JSON.parse(await d.cli(root, ['mounts', '--json', key])) as { options: string[] }[])[0]!.options.find((o) => o.startsWith('upperdir='))!.slice('upperdir='.length);
        const full = await sh('dd if=/dev/zero of=a bs=64k count=32', mnt);
        assert.notEqual(full.code, 0);
        assert.match(full.stderr, /No space left on device/);
        const written = fs.statSync(path.join(upper, 'a')).size;
        assert.ok(written > 0 && written <= LIMIT, `${written} bytes written`);
        // A copy-up of the 512 KiB lower file does not fit either, and leaves nothing behind.
        assert.match((await sh('echo more >> lower', mnt)).stderr, /No space left on device/);
        assert.equal(fs.existsSync(path.join(upper, 'lower')), false);
        assert.match((await sh('fallocate -l 2M b', mnt)).stderr, /No space left on device/);
        // Space comes back with the file.
        assert.equal((await sh('rm a && dd if=/dev/zero of=c bs=64k count=4 2>/dev/null && echo more >> lower', mnt)).code, 0);
        assert.equal(fs.statSync(path.join(upper, 'c')).size, 256 << 10);
      } finally {
        await run('umount', [mnt]);
      }
    });
  }
});
