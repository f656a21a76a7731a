import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { tempDir } from '../support/helpers';

const PROVISION = path.resolve(__dirname, '..', '..', '..', 'vagrant', 'provision.sh');

describe("vagrant/provision.sh, as it is, on this machine", () => {
  const dir = tempDir('snapfs-provision-');
  const state = path.join(dir, 'state');
  after(async () => {
    // Without systemd the script started both daemons itself.
    for (const name of ['containerd', 'snapfs']) {
      const pidFile = path.join(state, `${name}.pid`);
      if (!fs.existsSync(pidFile)) continue;
      const pid = Number(fs.readFileSync(pidFile, 'utf8'));
      try {
        process.kill(pid, 'SIGTERM');
        for (let i = 0; i < 100 && fs.existsSync(`/proc/${pid}`); i++) await new Promise((resolve) => setTimeout(resolve, 100));
      } catch {
        // gone already
      }
    }
    const left = fs.readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => l.includes(dir));
    fs.rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(left, []);
  });

  test('provisions snapfs and a containerd that uses it, and its end-to-end check passes', async () => {
    const env = {
      ...process.env,
      SNAPFS_ROOT: path.join(dir, 'snapfs'),
      SNAPFS_ADDRESS: path.join(dir, 'snapfs.sock'),
      CONTAINERD_CONFIG: path.join(dir, 'containerd.toml'),
      CONTAINERD_ADDRESS: path.join(dir, 'containerd.sock'),
      CONTAINERD_ROOT: path.join(dir, 'containerd-root'),
      CONTAINERD_STATE: path.join(dir, 'containerd-state'),
      PROVISION_STATE: state,
    };
    const { stdout } = await new Promise<{ stdout: string }>((resolve, reject) =>
      execFile(PROVISION, { env, timeout: 600_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
        err === null ? resolve({ stdout }) : reject(new Error(`${err.message}\n${stdout}\n${stderr}\n${readLogs(state)}`)),
      ),
    );
    assert.match(stdout, /check: hello from snapfs\ncheck: passed\n$/);
    assert.match(fs.readFileSync(path.join(dir, 'containerd.toml'), 'utf8'), /\[proxy_plugins\.snapfs\]\n\s+type = "snapshot"\n\s+address = ".*snapfs\.sock"/);
    // The image's snapshots went with it, from snapfs too (containerd's garbage collection).
    assert.deepEqual(fs.readdirSync(path.join(dir, 'snapfs', 'snapshots')), []);
  });
});

function readLogs(state: string): string {
  if (!fs.existsSync(state)) return '';
  return fs
    .readdirSync(state)
    .filter((f) => f.endsWith('.log'))
    .map((f) => `--- ${f}\n${fs.readFileSync(path.join(state, f), 'utf8')}`)
    .join('\n');
}
