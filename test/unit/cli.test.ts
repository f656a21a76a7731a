import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { COMMAND_GROUPS, COMMAND_NAMES, type CommandGroup } from '../../src/cli/command-names';
import { buildProgram } from '../../src/cli/program';
import { CLI, ok, rootState, snapfs, tempDir } from '../support/helpers';

const EXIT = { InvalidArgument: 2, NotFound: 3, AlreadyExists: 4, FailedPrecondition: 5, Unavailable: 7 } as const;

describe('snapfs CLI', () => {
  let root: string;
  before(async () => {
    root = path.join(tempDir(), 'root');
    await ok(root, ['prepare', 'base-a', '--label', 'stage=base']);
    await ok(root, ['commit', 'base', 'base-a', '--label', 'stage=base']);
    await ok(root, ['prepare', 'work', 'base', '--label', 'role=rw']);
    await ok(root, ['view', 'look', 'base']);
  });
  after(() => fs.rmSync(path.dirname(root), { recursive: true, force: true }));

  it('prints mounts as a mount command line, or as JSON', async () => {
    const line = (await ok(root, ['mounts', 'work'])).trim();
    assert.match(line, /^mount -t fuse\.snapfs snapfs \/mnt -o lowerdir=\S+\/snapshots\/1\/fs,upperdir=\S+\/snapshots\/2\/fs,workdir=\S+\/snapshots\/2\/work$/);
    assert.match(await ok(root, ['mounts', 'work', '/tmp/x']), / \/tmp\/x -o /);
    const json = JSON.parse(await ok(root, ['mounts', '--json', 'look'])) as unknown;
    assert.deepEqual(json, [{ type: 'bind', source: path.join(root, 'snapshots', '1', 'fs'), options: ['ro', 'rbind'] }]);
    const prepared = await ok(root, ['prepare', 'p2', 'base', '--target', '/srv/rootfs']);
    assert.match(prepared, /^mount -t fuse\.snapfs snapfs \/srv\/rootfs -o lowerdir=/);
  });

  it('ls, info, tree, usage: tables by default, JSON with --json', async () => {
    const ls = await ok(root, ['ls']);
    assert.deepEqual(
      ls.trim().split('\n').map((l) => l.split(/\s+/)),
      [['KEY', 'PARENT', 'KIND'], ['base', 'committed'], ['look', 'base', 'view'], ['p2', 'base', 'active'], ['work', 'base', 'active']],
    );
    const filtered = JSON.parse(await ok(root, ['ls', '--json', '--filter', 'kind==view', '--filter', 'labels."role"==rw'])) as {
      name: string;
    }[];
    assert.deepEqual(filtered.map((i) => i.name), ['look', 'work']);

    const info = JSON.parse(await ok(root, ['info', '--json', 'base'])) as Record<string, unknown>;
    assert.deepEqual(Object.keys(info), ['name', 'parent', 'kind', 'labels', 'created', 'updated']);
    assert.equal(info.kind, 'committed');
    assert.deepEqual(info.labels, { stage: 'base' });
    assert.match(String(info.created), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
    const table = await ok(root, ['info', 'work']);
    assert.match(table, /^NAME +work$/m);
    assert.match(table, /^PARENT +base$/m);
    assert.match(table, /^LABELS +role=rw$/m);

    assert.equal(await ok(root, ['tree']), 'base\n \\_ look (view)\n \\_ p2 (active)\n \\_ work (active)\n');
    const tree = JSON.parse(await ok(root, ['tree', '--json'])) as { name: string; children: unknown[] }[];
    assert.equal(tree[0]!.name, 'base');
    assert.equal(tree[0]!.children.length, 3);

    fs.writeFileSync(path.join(root, 'snapshots', '2', 'fs', 'f'), Buffer.alloc(10_000));
    const usage = JSON.parse(await ok(root, ['usage', '--json', 'work'])) as { size: number; inodes: number };
    assert.equal(usage.inodes, 2);
    assert.ok(usage.size >= 10_000);
    assert.match(await ok(root, ['usage']), /^work +\d+\.\d KiB +2$/m);
  });

  it('rm removes several snapshots at once, children first', async () => {
    await ok(root, ['prepare', 'tmp-a']);
    await ok(root, ['commit', 'tmp', 'tmp-a']);
    await ok(root, ['view', 'tmp-v', 'tmp']);
    assert.equal(await ok(root, ['rm', 'tmp-v', 'tmp']), '');
    assert.equal((await snapfs(root, ['info', 'tmp'])).code, EXIT.NotFound);
  });

  it('labels may have any name, __proto__ included; --replace alone drops them all', async () => {
    await ok(root, ['prepare', 'odd', '--label', '__proto__=x', '--label', 'constructor=y']);
    const info = JSON.parse(await ok(root, ['info', '--json', 'odd'])) as { labels: Record<string, string> };
    assert.equal(JSON.stringify(info.labels), '{"__proto__":"x","constructor":"y"}');
    assert.equal(await ok(root, ['label', '--replace', 'odd']), '');
    assert.equal(JSON.stringify((JSON.parse(await ok(root, ['info', '--json', 'odd'])) as { labels: unknown }).labels), '{}');
    await ok(root, ['rm', 'odd']);
  });

  it('shows progress on a terminal while measuring a large tree', async () => {
    await ok(root, ['prepare', 'big']);
    const upper = path.join(root, 'snapshots', JSON.parse(await ok(root, ['mounts', '--json', 'big']))[0].source.split('/').at(-2), 'fs');
    for (let d = 0; d < 10; d++) {
      fs.mkdirSync(path.join(upper, String(d)));
      for (let f = 0; f < 1000; f++) fs.writeFileSync(path.join(upper, String(d), String(f)), '');
    }
    // script(1) gives the command a terminal; plain pipes must stay free of it.
    const tty = await new Promise<string>((resolve) => {
      const child = spawn('script', ['-qec', `${process.execPath} ${CLI} --root ${root} usage big`, '/dev/null'], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.on('close', () => resolve(out));
    });
    assert.match(tty, /measuring: \d+ inodes, [\d.]+ KiB/);
    assert.match(tty, /big +[\d.]+ KiB +10011/);
    const piped = await snapfs(root, ['usage', 'big']);
    assert.doesNotMatch(piped.stdout + piped.stderr, /measuring/);
    await ok(root, ['rm', 'big']);
  });

  it('label sets and removes labels; events shows the journal', async () => {
    assert.equal(await ok(root, ['label', 'work', 'a=1', 'b=2']), 'a=1\nb=2\nrole=rw\n');
    assert.equal(await ok(root, ['label', 'work', 'a=', 'role=']), 'b=2\n');
    assert.equal(await ok(root, ['label', '--replace', 'work', 'z=9']), 'z=9\n');
    const lines = (await ok(root, ['events'])).trim().split('\n');
    assert.match(lines[0]!, /^\S+Z \/snapshot\/prepare \{"key":"base-a","parent":""\}$/);
    assert.match(lines[1]!, /^\S+Z \/snapshot\/commit \{"key":"base-a","name":"base"\}$/);
    assert.match(lines.at(-1)!, /\/snapshot\/update \{"key":"work"\}$/);
    const json = (await ok(root, ['events', '--json', '--since', '3'])).trim().split('\n').map((l) => JSON.parse(l) as { seq: number });
    assert.equal(json[0]!.seq, 4);
  });

  it('events --follow prints events as they happen', { timeout: 20_000 }, async () => {
    const child = spawn(process.execPath, [CLI, '--root', root, 'events', '--follow', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      let out = '';
      const seen = new Promise<void>((resolve) => {
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('"followed"')) resolve();
        });
      });
      await new Promise((r) => setTimeout(r, 300));
      await ok(root, ['prepare', 'followed']);
      await seen;
      assert.match(out, /"topic":"\/snapshot\/prepare","key":"followed"/);
    } finally {
      child.kill();
    }
  });

  it('refuses bad input with one line, a distinct exit code, and no change on disk', async () => {
    fs.writeFileSync(path.join(root, 'snapshots', '2', 'fs', 'g'), 'x');
    const long = 'v'.repeat(4096);
    const cases: [string[], number, RegExp][] = [
      [['prepare', ''], EXIT.InvalidArgument, /key must not be empty/],
      [['prepare', 'a\nb'], EXIT.InvalidArgument, /"a\\nb": key must not contain NUL or newline/],
      [['prepare', 'x', 'nope'], EXIT.NotFound, /snapshot "x": parent "nope" does not exist/],
      [['prepare', 'x', 'work'], EXIT.InvalidArgument, /^snapfs: parent "work" is not committed snapshot\n$/],
      [['view', 'x', 'look'], EXIT.InvalidArgument, /^snapfs: parent "look" is not committed snapshot\n$/],
      [['prepare', 'work'], EXIT.AlreadyExists, /^snapfs: snapshot "work": already exists\n$/],
      [['view', 'base'], EXIT.AlreadyExists, /snapshot "base": already exists/],
      [['commit', 'x', 'look'], EXIT.FailedPrecondition, /^snapfs: snapshot "look" is not active\n$/],
      [['commit', 'x', 'base'], EXIT.FailedPrecondition, /^snapfs: snapshot "base" is not active\n$/],
      [['commit', 'base', 'work'], EXIT.AlreadyExists, /snapshot "base": already exists/],
      [['commit', 'x', 'nope'], EXIT.NotFound, /snapshot "nope": not found/],
      [['rm', 'base'], EXIT.FailedPrecondition, /snapshot "base": cannot remove snapshot with child/],
      [['rm', 'nope'], EXIT.NotFound, /snapshot "nope": not found/],
      [['rm', 'look', 'nope'], EXIT.NotFound, /snapshot "nope": not found/],
      [['rm', 'look', 'base'], EXIT.FailedPrecondition, /snapshot "base": cannot remove snapshot with child/],
      [['label', 'work'], EXIT.InvalidArgument, /--replace/],
      [['mounts', 'base'], EXIT.FailedPrecondition, /snapshot "base": is committed/],
      [['info', 'nope'], EXIT.NotFound, /snapshot "nope": not found/],
      [['usage', 'nope'], EXIT.NotFound, /snapshot "nope": not found/],
      [['prepare', 'x', '--label', 'k'], EXIT.InvalidArgument, /label "k": expected KEY=VALUE/],
      [['prepare', 'x', '--label', '=v'], EXIT.InvalidArgument, /label "=v": key must not be empty/],
      [['prepare', 'x', '--label', `k=${long}`], EXIT.InvalidArgument, /label "k": key and value are 4097 bytes/],
      [['label', 'work', `k=${long}`], EXIT.InvalidArgument, /4097 bytes/],
      [['label', 'work', 'k'], EXIT.InvalidArgument, /label "k": expected KEY=VALUE/],
      [['label', 'nope', 'k=v'], EXIT.NotFound, /snapshot "nope": not found/],
      [['commit', 'x', 'work', '--label', 'k'], EXIT.InvalidArgument, /label "k"/],
      [['ls', '--filter', 'kind=view'], EXIT.InvalidArgument, /filter "kind=view": unsupported operator "="/],
      [['ls', '--filter', 'labels."x'], EXIT.InvalidArgument, /unterminated/],
      [['events', '--since', 'x'], EXIT.InvalidArgument, /since/],
      [['nonsense'], EXIT.InvalidArgument, /unknown command 'nonsense'/],
      [['prepare'], EXIT.InvalidArgument, /missing required argument 'key'/],
      [['ls', '--bogus'], EXIT.InvalidArgument, /unknown option '--bogus'/],
    ];
    const before = rootState(root);
    for (const [args, code, message] of cases) {
      const r = await snapfs(root, args);
      const what = `snapfs ${args.join(' ').slice(0, 60)}`;
      assert.equal(r.code, code, `${what}: exit code (stderr: ${r.stderr})`);
      assert.equal(r.stdout, '', `${what}: stdout`);
      assert.match(r.stderr, /^snapfs: [^\n]*\n$/, `${what}: one line on stderr`);
      assert.match(r.stderr, message, what);
      assert.equal(rootState(root), before, `${what}: root unchanged`);
    }
  });

  it('makes a root only for an operation that succeeds; many processes may make it at once', async () => {
    const dir = tempDir();
    try {
      const root = path.join(dir, 'new');
      for (const args of [['rm', 'x'], ['commit', 'a', 'b'], ['label', 'x', 'k=v'], ['prepare', 'x', 'nope'], ['view', 'x', 'nope'], ['info', 'x'], ['ls'], ['cleanup'], ['usage'], ['events']]) {
        const r = await snapfs(root, args);
        assert.ok(r.code === 0 || r.code === EXIT.NotFound, `${args.join(' ')}: ${r.stderr}`);
        assert.equal(fs.existsSync(root), false, `${args.join(' ')} created the root`);
      }
      const results = await Promise.all([1, 2, 3, 4, 5, 6].map((i) => snapfs(root, ['prepare', `k${i}`])));
      assert.deepEqual(results.map((r) => r.stderr), ['', '', '', '', '', '']);
      assert.equal(JSON.parse(await ok(root, ['ls', '--json'])).length, 6);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses roots it cannot or must not use, changing nothing', async () => {
    const dir = tempDir();
    try {
      const foreign = path.join(dir, 'foreign');
      fs.mkdirSync(foreign);
      fs.writeFileSync(path.join(foreign, 'notes.txt'), 'mine');
      const notDb = path.join(dir, 'notdb');
      fs.mkdirSync(notDb);
      fs.writeFileSync(path.join(notDb, 'metadata.db'), 'garbage'.repeat(100));
      const file = path.join(dir, 'file');
      fs.writeFileSync(file, '');
      const before = rootState(dir);
      for (const [r, why] of [
        [foreign, 'not a snapfs root'],
        [notDb, 'not a SQLite database'],
        [file, 'not a directory'],
      ] as const) {
        for (const args of [['prepare', 'k'], ['ls']]) {
          const res = await snapfs(r, args);
          assert.equal(res.code, EXIT.Unavailable, `${r} ${args[0]}: ${res.stderr}`);
          assert.match(res.stderr, new RegExp(`^snapfs: [^\\n]*${why}[^\\n]*\\n$`));
        }
      }
      assert.equal(rootState(dir), before);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('knows every command by name before loading any, to tell a mount command line from a command', () => {
    const declared = buildProgram().commands.flatMap((c) => [c.name(), ...c.aliases()]);
    assert.deepEqual([...COMMAND_NAMES].sort(), declared.sort());
    // A command line naming a command declares that command's group alone.
    for (const [group, names] of Object.entries(COMMAND_GROUPS)) {
      const alone = buildProgram(group as CommandGroup).commands.flatMap((c) => [c.name(), ...c.aliases()]);
      assert.deepEqual(alone.sort(), [...names].sort(), group);
    }
    // The installed launcher (C) keeps its own list, for the same reason.
    const launcher = fs.readFileSync(path.resolve(__dirname, '..', '..', '..', 'src', 'native', 'launcher.c'), 'utf8');
    const list = /COMMANDS\[\] = \{([^}]*)\}/.exec(launcher)![1]!;
    assert.deepEqual([...list.matchAll(/"([a-z-]+)"/g)].map((m) => m[1]).sort(), declared.sort());
  });

  it('loads what a run needs: the mount helper no commander, gRPC or SQLite; info no gRPC, FUSE or tar code; help no SQLite', async () => {
    const dir = tempDir();
    try {
      const loaded = (args: readonly string[]): Promise<{ code: number; packages: string[] }> =>
        new Promise((resolve) => {
          const out = path.join(dir, 'packages');
          const preload = path.join(__dirname, '..', 'support', 'fixtures', 'loaded-packages.js');
          execFile(process.execPath, ['-r', preload, CLI, ...args], { env: { ...process.env, SNAPFS_LOADED_PACKAGES: out } }, (err) => {
            resolve({ code: err === null ? 0 : Number(err.code), packages: fs.readFileSync(out, 'utf8').split('\n') });
          });
        });
      const none = (packages: readonly string[], unwanted: readonly string[]): string[] => packages.filter((p) => unwanted.includes(p));

      const helper = await loaded(['-o', `lowerdir=${path.join(dir, 'missing')}`, dir]);
      assert.equal(helper.code, EXIT.InvalidArgument, 'refused: no such lower directory');
      assert.deepEqual(none(helper.packages, ['commander', '@grpc/grpc-js', 'better-sqlite3']), []);
      const info = await loaded(['--root', root, 'info', 'work']);
      assert.equal(info.code, 0);
      assert.deepEqual(none(info.packages, ['@grpc/grpc-js', 'fuse-native', 'tar-stream', 'cli-progress']), []);
      const help = await loaded(['--root', root, '--help']);
      assert.equal(help.code, 0);
      assert.deepEqual(none(help.packages, ['better-sqlite3', '@grpc/grpc-js', 'fuse-native', 'tar-stream']), []);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('snapfs CLI as an unprivileged user', { skip: process.getuid?.() !== 0 && 'needs root to switch to another user' }, () => {
  const asNobody = (args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      const child = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'env', '-i', `PATH=${process.env.PATH}`, ...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, CLI, ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    });

  it('defaults to $XDG_DATA_HOME/snapfs, else ~/.local/share/snapfs', async () => {
    const home = tempDir();
    try {
      fs.chmodSync(home, 0o777);
      assert.equal((await asNobody(['prepare', 'a'], { HOME: home })).code, 0);
      assert.ok(fs.existsSync(path.join(home, '.local', 'share', 'snapfs', 'metadata.db')));
      const xdg = path.join(home, 'xdg');
      fs.mkdirSync(xdg, { mode: 0o777 });
      fs.chmodSync(xdg, 0o777);
      assert.equal((await asNobody(['prepare', 'b'], { HOME: home, XDG_DATA_HOME: xdg })).code, 0);
      assert.ok(fs.existsSync(path.join(xdg, 'snapfs', 'metadata.db')));
      const ls = await asNobody(['ls', '--json'], { HOME: home, SNAPFS_ROOT: path.join(xdg, 'snapfs') });
      assert.deepEqual((JSON.parse(ls.stdout) as { name: string }[]).map((i) => i.name), ['b']);
    } finally {
      fs.rmSync(home, { recursive: true, force: true });
    }
  });

  it('an unreadable root is refused with one line, unchanged', async () => {
    const dir = tempDir();
    try {
      fs.chmodSync(dir, 0o755);
      const root = path.join(dir, 'root');
      await ok(root, ['prepare', 'k']);
      const before = rootState(root);
      for (const args of [['ls'], ['info', 'k'], ['prepare', 'x'], ['rm', 'k']]) {
        const r = await asNobody(['--root', root, ...args], { HOME: dir });
        assert.equal(r.code, EXIT.Unavailable, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, /^snapfs: root \S+: permission denied\n$/);
      }
      assert.equal(rootState(root), before);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
