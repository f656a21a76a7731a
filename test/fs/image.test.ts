import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as zlib from 'node:zlib';
import { chainIds } from '../../src/layertar/image';
import { startContainerd, type Containerd } from '../support/containerd-helpers';
import { describeTree, unmountAll } from '../support/mount-helpers';
import { ok, snapfs, tempDir } from '../support/helpers';


interface Built {
  layout: string;
  ociTar: string;
  dockerTar: string;
  diffIds: string[];
}

/**
 * A three-layer image, as an OCI layout directory, an OCI tarball and a
 * `docker save` tarball: files, a hard-link pair and symlinks; then a
 * deletion, an opaque directory and a new file; then a change and more links.
 */
function buildImage(dir: string, corruptDiffId = false): Built {
  const layers: ((root: string) => void)[] = [
    (r) => {
      for (const d of ['etc', 'usr/share/doc', 'var/cache', 'opt']) fs.mkdirSync(path.join(r, d), { recursive: true });
      fs.writeFileSync(path.join(r, 'etc/os-release'), 'ID=test\n');
      fs.writeFileSync(path.join(r, 'usr/share/doc/a'), 'a\n');
      fs.writeFileSync(path.join(r, 'usr/share/doc/b'), 'b\n');
      fs.writeFileSync(path.join(r, 'var/cache/old'), 'stale\n');
      fs.writeFileSync(path.join(r, 'opt/tool'), Buffer.alloc(50_000, 3), { mode: 0o755 });
      fs.linkSync(path.join(r, 'opt/tool'), path.join(r, 'opt/tool2'));
      fs.symlinkSync('usr/share', path.join(r, 'share'));
      fs.chmodSync(path.join(r, 'var/cache'), 0o750);
    },
    (r) => {
      fs.mkdirSync(path.join(r, 'usr/share/doc'), { recursive: true });
      fs.writeFileSync(path.join(r, 'usr/share/doc/.wh.a'), '');
      fs.mkdirSync(path.join(r, 'var/cache'), { recursive: true, mode: 0o750 });
      fs.writeFileSync(path.join(r, 'var/cache/.wh..wh..opq'), '');
      fs.writeFileSync(path.join(r, 'var/cache/fresh'), 'fresh\n');
      fs.mkdirSync(path.join(r, 'etc'));
      fs.writeFileSync(path.join(r, 'etc/motd'), 'welcome\n');
    },
    (r) => {
      fs.mkdirSync(path.join(r, 'etc'));
      fs.writeFileSync(path.join(r, 'etc/os-release'), 'ID=test\nVERSION=2\n');
      fs.symlinkSync('/etc/os-release', path.join(r, 'release'));
      fs.mkdirSync(path.join(r, 'usr/bin'), { recursive: true });
      fs.writeFileSync(path.join(r, 'usr/bin/run'), '#!/bin/sh\n', { mode: 0o755 });
    },
  ];
  const work = fs.mkdtempSync(path.join(dir, 'image-'));
  const layout = path.join(work, 'layout');
  const blobs = path.join(layout, 'blobs', 'sha256');
  fs.mkdirSync(blobs, { recursive: true });
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  const blob = (b: Buffer): { digest: string; size: number } => {
    fs.writeFileSync(path.join(blobs, sha(b)), b);
    return { digest: `sha256:${sha(b)}`, size: b.length };
  };
  const tars = layers.map((make, i) => {
    const root = path.join(work, `layer${i}`);
    fs.mkdirSync(root);
    make(root);
    return execFileSync('tar', ['-C', root, '--numeric-owner', '--owner=0', '--group=0', '--sort=name', '--mtime=@1600000000', '-cf', '-', '.'], { maxBuffer: 64 << 20 });
  });
  const diffIds = tars.map((t) => `sha256:${sha(t)}`);
  if (corruptDiffId) diffIds[1] = `sha256:${'0'.repeat(64)}`;
  // The OCI form carries gzip layers, as registries do.
  const layerDescs = tars.map((t) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...blob(zlib.gzipSync(t)) }));
  const configJson = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: diffIds } }));
  const config = blob(configJson);
  const manifest = blob(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config }, layers: layerDescs })));
  fs.writeFileSync(path.join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  fs.writeFileSync(
    path.join(layout, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'io.containerd.image.name': 'snapfs.test/layers:1', 'org.opencontainers.image.ref.name': '1' } }] }),
  );
  const ociTar = path.join(work, 'oci.tar');
  execFileSync('tar', ['-C', layout, '-cf', ociTar, '.']);
  // docker save: plain layer tars in directories, manifest.json naming them.
  const docker = path.join(work, 'docker');
  fs.mkdirSync(docker);
  tars.forEach((t, i) => {
    fs.mkdirSync(path.join(docker, `l${i}`));
    fs.writeFileSync(path.join(docker, `l${i}`, 'layer.tar'), t);
  });
  fs.writeFileSync(path.join(docker, `${config.digest.slice(7)}.json`), configJson);
  fs.writeFileSync(path.join(docker, 'manifest.json'), JSON.stringify([{ Config: `${config.digest.slice(7)}.json`, RepoTags: ['snapfs.test/layers:1'], Layers: tars.map((_t, i) => `l${i}/layer.tar`) }]));
  const dockerTar = path.join(work, 'docker.tar');
  execFileSync('tar', ['-C', docker, '-cf', dockerTar, '.']);
  return { layout, ociTar, dockerTar, diffIds };
}

describe('import-image: an image as a chain of committed snapshots named by chain ID', () => {
  let dir: string;
  let root: string;
  let image: Built;

  before(() => {
    dir = tempDir('snapfs-image-');
    root = path.join(dir, 'root');
    image = buildImage(dir);
  });
  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('an OCI layout unpacks as containerd names it; the same image again, as docker save, is all present', async () => {
    const chains = chainIds(image.diffIds);
    assert.equal(await ok(root, ['import-image', image.layout]), `${chains[2]}\n`);
    const listed = JSON.parse(await ok(root, ['ls', '--json'])) as { name: string; parent: string; kind: string; labels: Record<string, string> }[];
    assert.deepEqual(
      listed.map(({ name, parent, kind, labels }) => ({ name, parent, kind, labels })).sort((a, b) => chains.indexOf(a.name) - chains.indexOf(b.name)),
      chains.map((name, i) => ({ name, parent: i === 0 ? '' : chains[i - 1], kind: 'committed', labels: { 'containerd.io/snapshot/diff-id': image.diffIds[i] } })),
    );
    assert.equal(await ok(root, ['changes', chains[1]!]), 'C /etc\nA /etc/motd\nC /usr\nC /usr/share\nC /usr/share/doc\nD /usr/share/doc/a\nC /var\nC /var/cache\nA /var/cache/fresh\nD /var/cache/old\n');
    assert.equal(await ok(root, ['cat', chains[2]!, 'release']), 'ID=test\nVERSION=2\n');

    const dirs = fs.readdirSync(path.join(root, 'snapshots')).length;
    assert.equal(await ok(root, ['import-image', image.dockerTar]), `${chains[2]}\n`);
    assert.equal(await ok(root, ['import-image', image.ociTar, '--name', 'snapfs.test/layers:1']), `${chains[2]}\n`);
    assert.equal(fs.readdirSync(path.join(root, 'snapshots')).length, dirs);
  });

  test('what it unpacks is what containerd unpacks with its native snapshotter', async () => {
    const ctrd: Containerd = await startContainerd(dir, path.join(dir, 'no-proxy.sock'));
    const top = chainIds(image.diffIds)[2]!;
    const mnt = path.join(dir, 'mnt');
    try {
      const imported = await ctrd.ctr(['images', 'import', '--snapshotter', 'native', image.ociTar]);
      assert.equal(imported.code, 0, imported.stderr);
      const view = await ctrd.ctr(['snapshots', '--snapshotter', 'native', 'view', '--mounts', 'reference', top]);
      assert.equal(view.code, 0, view.stderr);
      // Go's field names: containerd's mount.Mount has no JSON tags.
      const [mount] = JSON.parse(view.stdout) as { Type: string; Source: string }[];
      assert.equal(mount!.Type, 'bind');
      fs.mkdirSync(mnt);
      await ok(root, ['mount', top, mnt]);
      try {
        assert.equal(await describeTree(mnt, { times: false }), await describeTree(mount!.Source, { times: false }));
      } finally {
        await unmountAll(mnt);
      }
    } finally {
      await ctrd.stop();
    }
  });

  test('a layer that does not match its diff ID is refused, and nothing is left', async () => {
    const bad = buildImage(dir, true);
    const other = path.join(dir, 'other-root');
    await ok(other, ['import-image', image.layout]); // the first layer is shared: present
    const before = fs.readdirSync(path.join(other, 'snapshots')).sort();
    const r = await snapfs(other, ['import-image', bad.layout]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^snapfs: layer 2 of .*: content is sha256:[0-9a-f]{64}, not its diff ID sha256:0{64}\n$/);
    assert.deepEqual(fs.readdirSync(path.join(other, 'snapshots')).sort(), before);
    // A gzipped docker save, and one whose manifest is not one.
    const gz = path.join(dir, 'docker.tar.gz');
    fs.writeFileSync(gz, zlib.gzipSync(fs.readFileSync(image.dockerTar)));
    assert.equal(await ok(other, ['import-image', gz]), `${chainIds(image.diffIds)[2]}\n`);
    const odd = path.join(dir, 'odd');
    fs.mkdirSync(odd);
    fs.writeFileSync(path.join(odd, 'manifest.json'), '{"Config": 1}');
    const oddRun = await snapfs(other, ['import-image', odd]);
    assert.equal(oddRun.code, 2);
    assert.equal(oddRun.stderr, `snapfs: image ${odd}: manifest.json is not a docker save manifest\n`);
    const junk = path.join(dir, 'junk.tar');
    fs.writeFileSync(junk, Buffer.alloc(2048, 0x41));
    const junkRun = await snapfs(other, ['import-image', junk]);
    assert.equal(junkRun.code, 2);
    assert.match(junkRun.stderr, /^snapfs: image .*junk\.tar: not an image archive \([^\n]+\)\n$/);
    const notImage = await snapfs(other, ['import-image', dir]);
    assert.equal(notImage.code, 2);
    assert.match(notImage.stderr, /neither an OCI image layout \(index\.json\) nor a docker save archive \(manifest\.json\)\n$/);
    const missing = await snapfs(other, ['import-image', path.join(dir, 'nope')]);
    assert.equal(missing.code, 3);
  });
});
