import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CLI, snapfs } from './helpers';
import { run } from './mount-helpers';

/**
 * A separate set of daemons for one test: its own runtime directory (so
 * the daemon it starts is its own, not that of other suites running
 * meanwhile), and a short idle exit.
 */
export class Daemons {
  readonly runtime: string;
  readonly env: NodeJS.ProcessEnv;

  constructor(dir: string, name: string, extra: NodeJS.ProcessEnv = {}) {
    this.runtime = path.join(dir, `run-${name}`);
    this.env = { ...process.env, SNAPFS_RUNTIME_DIR: this.runtime, SNAPFS_DAEMON_IDLE_SECONDS: '2', ...extra };
  }

  get log(): string {
    return fs.readFileSync(path.join(this.runtime, 'daemon.log'), 'utf8');
  }

  /** The pids of the daemons started, in order (from their log). */
  started(): number[] {
    if (!fs.existsSync(path.join(this.runtime, 'daemon.log'))) return [];
    return [...this.log.matchAll(/serving on \S+ \(pid (\d+)\)/g)].map((m) => Number(m[1]));
  }

  /** fuse-overlayfs's command line, served by this set's daemon. */
  async mountO(options: string, mnt: string): Promise<void> {
    await run(process.execPath, [CLI, '-o', options, mnt], { env: this.env });
  }

  async cli(root: string, args: readonly string[]): Promise<string> {
    const r = await snapfs(root, args, { env: this.env });
    assert.equal(r.code, 0, `snapfs ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  }

  /** What `snapfs mounted` lists, with snapshot keys of `root` where given. */
  async mounted(root = path.join(this.runtime, 'no-root')): Promise<{ mountpoint: string; requests: number; snapshot: string | null }[]> {
    return JSON.parse(await this.cli(root, ['mounted', '--json'])) as { mountpoint: string; requests: number; snapshot: string | null }[];
  }

  /** Kills every daemon this set started (tests leave none behind). */
  killAll(): void {
    for (const pid of this.started()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  }
}

