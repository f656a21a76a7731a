import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildBusyboxImage } from '../support/containerd-helpers';
import { NOBODY, tempDir } from '../support/helpers';
import { ContainerTools, PrivateMountNamespace, userName, type CommandResult } from '../support/podman-helpers';

const MOUNT_PROGRAM = '/usr/local/bin/snapfs';
const IMAGE = 'localhost/snapfs-busybox:test';

const onPath = (tool: string): boolean => (process.env.PATH ?? '').split(':').some((dir) => fs.existsSync(path.join(dir, tool)));
const skipReason =
  process.getuid?.() !== 0
    ? 'needs root (a private mount namespace, and a user without privileges for the rootless half)'
    : !onPath('podman')
      ? 'podman is not installed'
      : !fs.existsSync(MOUNT_PROGRAM) && `scripts/setup installs ${MOUNT_PROGRAM}`;
const noBuildah = !onPath('buildah') && 'buildah is not installed';

function ok(r: CommandResult, what: string): string {
  assert.equal(r.code, 0, `${what}: exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** The line of `mounts` (a /proc/mounts) of the mount at `mountPoint`. */
function mountLine(mounts: string, mountPoint: string): string | undefined {
  return mounts.split('\n').find((line) => line.split(' ')[1] === mountPoint);
}

/**
 * Runs `mount` (a shell command printing a mount point) where `tool`'s
 * mounts are, then `read` with the mount point in $m; returns the mount's
 * line of /proc/mounts there, and what `read` printed.
 */
async function mountAndRead(tools: ContainerTools, tool: 'podman' | 'buildah', mount: string, read: string): Promise<{ mountPoint: string; line: string | undefined; read: string }> {
  const seen = ok(await tools.inStorageNamespace(tool, `m=$(${mount}) && echo "$m" && cat /proc/self/mounts && echo --- && ${read}`), mount);
  const mountPoint = seen.slice(0, seen.indexOf('\n'));
  const [mounts, printed] = seen.slice(mountPoint.length + 1).split('---\n') as [string, string];
  return { mountPoint, line: mountLine(mounts, mountPoint), read: printed };
}

describe('podman and buildah with snapfs as the overlay driver\'s mount_program', { skip: skipReason }, () => {
  let dir: string;
  let ns: PrivateMountNamespace;
  let tarball: string;

  before(async () => {
    dir = tempDir('snapfs-podman-');
    // The rootless user reaches its own directory, the image and the build context through this one.
    fs.chmodSync(dir, 0o755);
    tarball = buildBusyboxImage(dir, IMAGE).tarball;
    fs.chmodSync(tarball, 0o644);
    ns = await PrivateMountNamespace.open(path.join(dir, 'namespace'), userName(NOBODY));
  });
  after(async () => {
    await ns?.close();
    // Every mount was made in the private namespace: none may show outside it.
    const leaked = fs.readFileSync('/proc/mounts', 'utf8').split('\n').filter((line) => line.includes(dir));
    fs.rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(leaked, []);
  });

  for (const rootless of [false, true]) {
    describe(rootless ? 'rootless (uid 65534, in a user namespace of its subordinate ids)' : 'as root', () => {
      // The container's root is the user: what it writes is stored as the user's own.
      const uid = rootless ? NOBODY : 0;
      let tools: ContainerTools;

      before(async () => {
        tools = new ContainerTools(ns, path.join(dir, rootless ? 'rootless' : 'root'), uid, MOUNT_PROGRAM);
        const loaded = ok(await tools.podman(['load', '--input', tarball]), 'podman load');
        assert.match(loaded, new RegExp(`Loaded image: ${IMAGE}`));
      });
      after(() => tools?.cleanUp());

      /** Asserts that `upper` records the deletion of `name` (in directory `parent`) as containers/storage reads it. */
      function assertWhiteout(upper: string, parent: string, name: string): void {
        if (rootless) {
          // Without privileges for device nodes: fuse-overlayfs's form, an empty .wh.NAME file.
          assert.equal(fs.lstatSync(path.join(upper, parent, `.wh.${name}`)).isFile(), true);
          assert.equal(fs.existsSync(path.join(upper, parent, name)), false);
        } else {
          const st = fs.lstatSync(path.join(upper, parent, name));
          assert.equal(st.isCharacterDevice() && st.rdev === 0, true, `${parent}/${name} is a whiteout (character device 0/0)`);
        }
      }

      it('podman create and podman mount: the container\'s root is a fuse.snapfs mount of the image\'s layers', async () => {
        ok(await tools.podman(['create', '--name', 'mounted', IMAGE]), 'podman create');
        const mounted = await mountAndRead(tools, 'podman', 'podman mount mounted', 'cat "$m/etc/motd" && ls "$m/bin"');
        assert.match(mounted.line ?? 'not mounted', /^snapfs \S+ fuse\.snapfs /);
        // The second layer's file, and its whiteout of /bin/ls.
        assert.equal(mounted.read, 'hello from the second layer\nbusybox\ncat\necho\nsh\n');
        ok(await tools.inStorageNamespace('podman', 'podman umount mounted'), 'podman umount');
        const remaining = ok(await tools.inStorageNamespace('podman', 'cat /proc/self/mounts'), 'reading mounts');
        assert.equal(mountLine(remaining, mounted.mountPoint), undefined);
        ok(await tools.podman(['rm', 'mounted']), 'podman rm');
      });

      it('podman run writes into the upper layer through snapfs (new files, whiteouts), podman diff and commit read them', async () => {
        const script = 'echo written > /etc/new && busybox rm /etc/motd && busybox mkdir /made && busybox grep " / " /proc/self/mounts';
        const out = ok(await tools.podman(['run', '--name', 'ran', '--network', 'none', IMAGE, 'sh', '-c', script]), 'podman run');
        assert.match(out, /^snapfs \/ fuse\.snapfs /, 'the container\'s root is served by snapfs');

        const upper = await tools.upperDir('ran');
        assert.equal(fs.readFileSync(path.join(upper, 'etc', 'new'), 'utf8'), 'written\n');
        assert.equal(fs.statSync(path.join(upper, 'etc', 'new')).uid, uid);
        assert.equal(fs.statSync(path.join(upper, 'made')).isDirectory(), true);
        assertWhiteout(upper, 'etc', 'motd');

        const diff = ok(await tools.podman(['diff', 'ran']), 'podman diff').split('\n');
        for (const change of ['A /etc/new', 'D /etc/motd', 'A /made']) assert.ok(diff.includes(change), `${change} in podman diff:\n${diff.join('\n')}`);

        ok(await tools.podman(['commit', 'ran', 'localhost/committed']), 'podman commit');
        ok(await tools.podman(['rm', 'ran']), 'podman rm');
        const committed = ok(
          await tools.podman(['run', '--rm', '--network', 'none', 'localhost/committed', 'sh', '-c', 'cat /etc/new && ls /etc && ls -d /made']),
          'podman run of the committed image',
        );
        assert.match(committed, /^written\n/);
        assert.doesNotMatch(committed, /motd/);
        assert.match(committed, /^\/made$/m);
        ok(await tools.podman(['rmi', 'localhost/committed']), 'podman rmi');
      });

      it('podman build runs a Containerfile\'s RUN on snapfs, and the image has what RUN wrote and not what it deleted', async () => {
        const context = path.join(dir, rootless ? 'rootless' : 'root', 'context');
        fs.mkdirSync(context);
        fs.writeFileSync(path.join(context, 'Containerfile'), `FROM ${IMAGE}\nRUN echo built > /built && busybox rm /bin/cat && busybox grep " / " /proc/self/mounts > /root-mount\n`);
        fs.chmodSync(context, 0o755);
        ok(await tools.podman(['build', '--network', 'none', '--tag', 'localhost/built', context]), 'podman build');
        const layers = ok(await tools.podman(['image', 'inspect', '--format', '{{len .RootFS.Layers}}', 'localhost/built']), 'podman image inspect');
        assert.equal(layers.trim(), '3');
        const seen = ok(await tools.podman(['run', '--rm', '--network', 'none', 'localhost/built', 'sh', '-c', 'busybox cat /built /root-mount && ls /bin']), 'podman run');
        const [built, rootMount, ...bin] = seen.trimEnd().split('\n');
        assert.equal(built, 'built');
        assert.match(rootMount ?? '', /^snapfs \/ fuse\.snapfs /, 'RUN ran on a root served by snapfs');
        assert.deepEqual(bin, ['busybox', 'echo', 'sh']);
        ok(await tools.podman(['rmi', 'localhost/built']), 'podman rmi');
      });

      it('buildah from, run, mount and commit work on snapfs', { skip: noBuildah }, async () => {
        const working = ok(await tools.buildah(['from', IMAGE]), 'buildah from').trim();
        ok(await tools.buildah(['run', '--network', 'none', working, '--', 'sh', '-c', 'echo from buildah > /made-by-buildah && busybox rm /etc/motd']), 'buildah run');
        const mounted = await mountAndRead(tools, 'buildah', `buildah mount ${working}`, `cat "$m/made-by-buildah" && buildah umount ${working} >/dev/null`);
        assert.match(mounted.line ?? 'not mounted', /^snapfs \S+ fuse\.snapfs /);
        assert.equal(mounted.read, 'from buildah\n');
        ok(await tools.buildah(['commit', working, 'localhost/by-buildah']), 'buildah commit');
        ok(await tools.buildah(['rm', working]), 'buildah rm');
        const committed = ok(await tools.podman(['run', '--rm', '--network', 'none', 'localhost/by-buildah', 'sh', '-c', 'cat /made-by-buildah && ls /etc']), 'podman run');
        assert.match(committed, /^from buildah\n/);
        assert.doesNotMatch(committed, /motd/);
        ok(await tools.podman(['rmi', 'localhost/by-buildah']), 'podman rmi');
      });
    });
  }
});
