import Database from 'better-sqlite3';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ownLayer } from '../../src/overlay/stack';
import { Snapshotter } from '../../src/snapshotter/snapshotter';

export const CLI = path.resolve(__dirname, '..', '..', 'src', 'cli', 'main.js');

export function tempDir(prefix = 'snapfs-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** The user without privileges the tests run things as: nobody. */
export const NOBODY = 65534;

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `argv` in a child process; never throws: its exit code (137 if SIGKILL ended it, 1 for another signal or a failure to start), stdout and stderr. */
export function command(argv: readonly string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeout?: number } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(argv[0]!, argv.slice(1), { maxBuffer: 64 << 20, ...opts, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : err.signal === 'SIGKILL' ? 137 : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs the snapfs CLI in a child process. */
export function snapfs(root: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return command([process.execPath, CLI, '--root', root, ...args], { env: { ...process.env, ...opts.env } });
}

/** Like snapfs(), but fails unless the command succeeds; returns stdout. */
export async function ok(root: string, args: readonly string[]): Promise<string> {
  const r = await snapfs(root, args);
  if (r.code !== 0) throw new Error(`snapfs ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/**
 * Everything observable about a root: every table's rows and the directory
 * tree (names, kinds, modes, sizes), SQLite's own files aside.
 */
export function rootState(root: string): string {
  const out: string[] = [];
  const dbFile = path.join(root, 'metadata.db');
  if (fs.existsSync(dbFile)) {
    const db = new Database(dbFile, { readonly: true });
    try {
      db.defaultSafeIntegers(true);
      for (const { name } of db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as {
        name: string;
      }[]) {
        for (const row of db.prepare(`SELECT * FROM "${name}"`).all()) {
          out.push(`${name} ${JSON.stringify(row, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}`);
        }
      }
    } finally {
      db.close();
    }
  }
  // Names as bytes (a layer's need not be UTF-8), shown a byte a char.
  const walk = (dir: Buffer, rel: string): void => {
    for (const name of fs.readdirSync(dir, { encoding: 'buffer' }).sort(Buffer.compare)) {
      const shown = name.toString('latin1');
      if (rel === '' && shown.startsWith('metadata.db')) continue;
      const p = Buffer.concat([dir, Buffer.from('/'), name]);
      const st = fs.lstatSync(p);
      out.push(`${path.join(rel, shown)} ${st.mode.toString(8)} ${st.isDirectory() ? '' : st.size}`);
      if (st.isDirectory()) walk(p, path.join(rel, shown));
    }
  };
  if (fs.existsSync(root)) walk(Buffer.from(root), '');
  return out.join('\n');
}

/** Directory names under ROOT/snapshots. */
function snapshotDirs(root: string): string[] {
  return fs.readdirSync(path.join(root, 'snapshots')).sort();
}

/** Snapshot ids in the database, and the ids that have a directory. */
export function idsAndDirs(root: string): { ids: number[]; dirs: string[] } {
  const db = new Database(path.join(root, 'metadata.db'), { readonly: true });
  try {
    const ids = (db.prepare('SELECT id FROM snapshots ORDER BY id').all() as { id: number }[]).map((r) => r.id);
    return { ids, dirs: snapshotDirs(root) };
  } finally {
    db.close();
  }
}

/** The directory of a snapshot's own layer (an active one's upper directory), to write or read it straight. */
export function layerDirOf(root: string, key: string): string {
  const s = new Snapshotter(root);
  try {
    return ownLayer(s.layers(key)).own!;
  } finally {
    s.close();
  }
}

/** Names holding every byte value 1 to 255 but '/', sixteen values a name. */
export function everyByteNames(): Buffer[] {
  const names: Buffer[] = [];
  for (let first = 1; first < 256; first += 16) {
    const values: number[] = [];
    for (let v = first; v < Math.min(first + 16, 256); v++) if (v !== 0x2f) values.push(v);
    names.push(Buffer.from(values));
  }
  return names;
}
