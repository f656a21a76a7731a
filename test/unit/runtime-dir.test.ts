import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type CliResult, command, NOBODY, tempDir } from '../support/helpers';

const SRC = path.resolve(__dirname, '..', '..', 'src');
/** Prints, as JSON, the places a process takes for its own by default. */
const DEFAULTS = `process.stdout.write(JSON.stringify({
  runtime: require(${JSON.stringify(path.join(SRC, 'mount', 'runtime.js'))}).runtimeDir(),
  root: require(${JSON.stringify(path.join(SRC, 'snapshotter', 'root.js'))}).defaultRoot(),
  address: require(${JSON.stringify(path.join(SRC, 'grpc', 'options.js'))}).defaultAddress(),
}))`;
const asRoot = process.getuid?.() === 0;

/**
 * Runs DEFAULTS as uid 0 of a new user namespace that maps it to a user
 * without privileges, as rootless podman runs its mount program: as root,
 * the user is 65534 (setpriv); otherwise the caller.
 */
function defaultsInUserNamespace(env: NodeJS.ProcessEnv): Promise<CliResult> {
  const inNamespace = ['unshare', '--user', '--map-root-user', process.execPath, '-e', DEFAULTS];
  return command(asRoot ? ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', ...inNamespace] : inNamespace, { env });
}

describe('the places a process takes by default', () => {
  let dir: string;
  let xdg: string;
  before(() => {
    dir = tempDir('snapfs-runtime-dir-');
    xdg = path.join(dir, 'xdg');
    fs.mkdirSync(xdg, { mode: 0o700 });
    if (asRoot) {
      fs.chmodSync(dir, 0o755);
      fs.chownSync(xdg, NOBODY, NOBODY);
    }
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("of uid 0 in a user namespace (rootless podman's, buildah's, RootlessKit's) are the user's, not root's /run/snapfs and /var/lib/snapfs", async (t) => {
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, XDG_RUNTIME_DIR: xdg, XDG_DATA_HOME: path.join(dir, 'data') };
    const r = await defaultsInUserNamespace(env);
    if (r.code !== 0 && /unshare failed|Operation not permitted/.test(r.stderr)) {
      t.skip(`no user namespaces here: ${r.stderr.trim()}`);
      return;
    }
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { runtime: path.join(xdg, 'snapfs'), root: path.join(dir, 'data', 'snapfs'), address: path.join(xdg, 'snapfs', 'snapfs.sock') });
    assert.equal(fs.statSync(path.join(xdg, 'snapfs')).mode & 0o777, 0o700);
  });
});
