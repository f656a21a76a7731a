import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { CLI, tempDir } from '../support/helpers';

const run = promisify(execFile);

/** containerd's own snapshotter test suite (Debian's golang-github-containerd-containerd-dev), in GOPATH mode. */
const CONTAINERD_SOURCE = '/usr/share/gocode';
const SUITE = [
  'Basic',
  'StatActive',
  'StatComitted',
  'TransitivityTest',
  'PreareViewFailingtest',
  'Update',
  'Remove',
  'Walk',
  'LayerFileupdate',
  'RemoveDirectoryInLowerLayer',
  'Chown',
  'DirectoryPermissionOnCommit',
  'RemoveIntermediateSnapshot',
  'DeletedFilesInChildSnapshot',
  'MoveFileFromLowerLayer',
  'ViewReadonly',
  'StatInWalk',
  'CloseTwice',
  'RootPermission',
  '128LayersMount',
];

describe("containerd's snapshotter test suite, through containerd's proxy client", () => {
  let dir: string;
  let driver: string;

  before(async () => {
    dir = tempDir('snapfs-conformance-');
    // GOPATH mode: the driver's package lives in a GOPATH of its own, beside Debian's sources.
    const gopath = path.join(dir, 'gopath');
    fs.mkdirSync(path.join(gopath, 'src', 'snapfs.test'), { recursive: true });
    fs.symlinkSync(path.resolve(__dirname, '..', '..', '..', 'test', 'conformance'), path.join(gopath, 'src', 'snapfs.test', 'conformance'));
    driver = path.join(dir, 'conformance.test');
    await run('go', ['test', '-c', '-o', driver, 'snapfs.test/conformance'], {
      env: { ...process.env, GO111MODULE: 'off', GOPATH: `${gopath}:${CONTAINERD_SOURCE}`, GOFLAGS: '', GOCACHE: process.env.GOCACHE ?? path.join(os.tmpdir(), 'snapfs-go-cache') },
    });
  });
  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('every test of the suite passes, and the Rename check it skips passes too', async () => {
    let output: string;
    try {
      ({ stdout: output } = await run(driver, ['-test.v', '-test.parallel=4', '-test.timeout=15m'], {
        cwd: dir,
        env: { ...process.env, SNAPFS: `${process.execPath} ${CLI}` },
        maxBuffer: 256 << 20,
      }));
    } catch (err) {
      output = (err as { stdout?: string }).stdout ?? String(err);
    }
    const result = (name: string): string | undefined => new RegExp(`--- (PASS|FAIL|SKIP): ${name} `).exec(output)?.[1];
    const failed = SUITE.filter((name) => result(`TestSnapfs/${name}`) !== 'PASS');
    // The suite's own messages, without its dumps of whole directories on failure.
    const why = output.split('\n').filter((l) => /^\s*(---|\w+\.go:\d+:)/.test(l) && !/helpers\.go:\d+: [-dlrwx]{10} /.test(l) && !/DumpDir/.test(l));
    assert.deepEqual(failed, [], why.slice(-80).join('\n'));
    // The suite skips Rename for every snapshotter (old kernels' overlayfs); TestRename is that check.
    assert.equal(result('TestSnapfs/Rename'), 'SKIP');
    assert.equal(result('TestRename'), 'PASS', output);
    const left = fs.readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => l.includes('snapshot-suite-snapfs') || l.includes(dir));
    assert.deepEqual(left, []);
  });
});
