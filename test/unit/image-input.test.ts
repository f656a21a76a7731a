import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chainIds } from '../../src/layertar/image';
import { sys } from '../../src/native/sys';
import { ok, snapfs, tempDir, type CliResult } from '../support/helpers';
import { makeSentinels, snapshotsOf } from '../support/layer-helpers';
import { rawTar } from '../support/raw-tar';

const isRoot = process.getuid?.() === 0;

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** One image in the four forms import-image takes: docker save directory and tarball, OCI layout directory and tarball. */
interface Forms {
  dockerDir: string;
  dockerTar: string;
  ociDir: string;
  ociTar: string;
  diffIds: string[];
}

/** An image of `layers` (plain layer tars, bottom first) in every form, under `dir`. */
function imageOf(dir: string, layers: Buffer[]): Forms {
  fs.mkdirSync(dir, { recursive: true });
  const diffIds = layers.map((l) => `sha256:${sha(l)}`);
  const configJson = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: diffIds } }));
  const dockerDir = path.join(dir, 'docker');
  fs.mkdirSync(dockerDir);
  layers.forEach((l, i) => {
    fs.mkdirSync(path.join(dockerDir, `l${i}`));
    fs.writeFileSync(path.join(dockerDir, `l${i}`, 'layer.tar'), l);
  });
  fs.writeFileSync(path.join(dockerDir, 'config.json'), configJson);
  fs.writeFileSync(path.join(dockerDir, 'manifest.json'), JSON.stringify([{ Config: 'config.json', RepoTags: ['x:1'], Layers: layers.map((_l, i) => `l${i}/layer.tar`) }]));
  const ociDir = path.join(dir, 'oci');
  const blobs = path.join(ociDir, 'blobs', 'sha256');
  fs.mkdirSync(blobs, { recursive: true });
  const blob = (b: Buffer, mediaType: string): { mediaType: string; digest: string; size: number } => {
    fs.writeFileSync(path.join(blobs, sha(b)), b);
    return { mediaType, digest: `sha256:${sha(b)}`, size: b.length };
  };
  const config = blob(configJson, 'application/vnd.oci.image.config.v1+json');
  const manifest = blob(
    Buffer.from(JSON.stringify({ schemaVersion: 2, config, layers: layers.map((l) => blob(l, 'application/vnd.oci.image.layer.v1.tar')) })),
    'application/vnd.oci.image.manifest.v1+json',
  );
  fs.writeFileSync(path.join(ociDir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  fs.writeFileSync(path.join(ociDir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [manifest] }));
  const dockerTar = path.join(dir, 'docker.tar');
  const ociTar = path.join(dir, 'oci.tar');
  execFileSync('tar', ['-C', dockerDir, '-cf', dockerTar, '.']);
  execFileSync('tar', ['-C', ociDir, '-cf', ociTar, '.']);
  return { dockerDir, dockerTar, ociDir, ociTar, diffIds };
}

describe('import-image reads image input as data, and every refusal leaves nothing', () => {
  let dir: string;
  let root: string;
  let host: ReturnType<typeof makeSentinels>;
  /** import-image with a TMPDIR of its own, which must be empty again after. */
  const importImage = async (source: string): Promise<CliResult & { tmp: string }> => {
    const tmp = fs.mkdtempSync(path.join(dir, 'tmp-'));
    const r = await snapfs(root, ['import-image', source], { env: { TMPDIR: tmp } });
    assert.deepEqual(fs.readdirSync(tmp), [], `${source}: no temporary directory left`);
    return { ...r, tmp };
  };

  before(async () => {
    dir = tempDir('snapfs-image-input-');
    root = path.join(dir, 'root');
    host = makeSentinels(path.join(dir, 'host'));
    await ok(root, ['prepare', 'present']);
  });
  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a hostile layer is refused naming the image, the layer and the entry, in every form of image', async () => {
    const image = imageOf(path.join(dir, 'hostile'), [rawTar([{ name: 'f', data: 'hello', pax: [['size', '-5']] }])]);
    const before = snapshotsOf(root);
    const hostBefore = host.state();
    for (const source of [image.dockerTar, image.ociTar, image.dockerDir, image.ociDir]) {
      const r = await importImage(source);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, `snapfs: layer 1 of ${source}: entry "f": PAX size "-5" is not a number of bytes\n`);
      assert.equal(snapshotsOf(root), before, `${source}: no snapshot and no directory left`);
    }
    assert.deepEqual(host.state(), hostBefore);
  });

  test('a tar cut short inside an archive is refused without naming any temporary path', async () => {
    const image = imageOf(path.join(dir, 'cut'), [rawTar([{ name: 'f', data: 'x' }])]);
    const cut = path.join(dir, 'cut.tar');
    fs.writeFileSync(cut, fs.readFileSync(image.dockerTar).subarray(0, 1536));
    const r = await importImage(cut);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^snapfs: image .*cut\.tar: ends early \(the last entry begun is "[^"]+"\)\n$/);
    assert.ok(!r.stderr.includes(r.tmp));
  });

  test('layers a manifest names that are not in the image are InvalidArgument, and none is imported', async () => {
    const image = imageOf(path.join(dir, 'missing'), [rawTar([{ name: 'a', data: 'a' }]), rawTar([{ name: 'b', data: 'b' }])]);
    fs.rmSync(path.join(image.dockerDir, 'l1'), { recursive: true });
    execFileSync('tar', ['-C', image.dockerDir, '-cf', image.dockerTar, '.']);
    const before = snapshotsOf(root);
    for (const source of [image.dockerDir, image.dockerTar]) {
      const r = await importImage(source);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, `snapfs: image ${source}: layer "l1/layer.tar" named by manifest.json is not in the image\n`);
    }
    const layer = `sha256:${sha(rawTar([{ name: 'b', data: 'b' }]))}`;
    fs.rmSync(path.join(image.ociDir, 'blobs', 'sha256', layer.slice(7)));
    const oci = await importImage(image.ociDir);
    assert.equal(oci.code, 2);
    assert.equal(oci.stderr, `snapfs: image ${image.ociDir}: layer ${layer} is not in the image\n`);
    assert.equal(snapshotsOf(root), before);
  });

  test('index.json, manifest.json and layers are read only as regular files inside the image', { skip: !isRoot && 'a device node in place of a layer needs root to make' }, async () => {
    const hostBefore = host.state();
    const cases: [string, (forms: Forms) => string, string][] = [
      ['index.json to /dev/zero', (f) => (fs.rmSync(path.join(f.ociDir, 'index.json')), fs.symlinkSync('/dev/zero', path.join(f.ociDir, 'index.json')), f.ociDir), 'index.json links outside the image'],
      ['index.json to a host file', (f) => (fs.rmSync(path.join(f.ociDir, 'index.json')), fs.symlinkSync(host.files.secret, path.join(f.ociDir, 'index.json')), f.ociDir), 'index.json links outside the image'],
      ['index.json up and out', (f) => (fs.rmSync(path.join(f.ociDir, 'index.json')), fs.symlinkSync('../../host/etc/secret', path.join(f.ociDir, 'index.json')), f.ociDir), 'index.json leaves the image'],
      ['index.json a fifo', (f) => (fs.rmSync(path.join(f.ociDir, 'index.json')), sys.mknod(path.join(f.ociDir, 'index.json'), fs.constants.S_IFIFO | 0o644, 0, 0), f.ociDir), 'index.json is not a regular file'],
      ['a layer a device', (f) => (fs.rmSync(path.join(f.dockerDir, 'l0', 'layer.tar')), sys.mknod(path.join(f.dockerDir, 'l0', 'layer.tar'), fs.constants.S_IFCHR | 0o644, 1, 5), f.dockerDir), 'layer "l0/layer.tar" named by manifest.json is not a regular file'],
      ['a layer linked out', (f) => (fs.rmSync(path.join(f.dockerDir, 'l0', 'layer.tar')), fs.symlinkSync('../../../host/etc/plain', path.join(f.dockerDir, 'l0', 'layer.tar')), f.dockerDir), 'layer "l0/layer.tar" named by manifest.json leaves the image'],
      ['manifest.json of 5 MiB', (f) => (fs.writeFileSync(path.join(f.dockerDir, 'manifest.json'), `[${' '.repeat(5 << 20)}]`), f.dockerDir), 'manifest.json is more than 4 MiB, too big for an image document'],
      ['an archive linking index.json out', (f) => (fs.rmSync(path.join(f.ociDir, 'index.json')), fs.symlinkSync(host.files.secret, path.join(f.ociDir, 'index.json')), execFileSync('tar', ['-C', f.ociDir, '-cf', f.ociTar, '.']), f.ociTar), 'index.json links outside the image'],
    ];
    const before = snapshotsOf(root);
    for (const [i, [what, spoil, why]] of cases.entries()) {
      const source = spoil(imageOf(path.join(dir, `spoilt-${i}`), [rawTar([{ name: 'a', data: 'a' }])]));
      const r = await importImage(source);
      assert.equal(r.code, 2, `${what}: ${r.stderr}`);
      assert.equal(r.stderr, `snapfs: image ${source}: ${why}\n`, what);
      assert.ok(!r.stderr.includes('SECRET'), `${what}: nothing of the host file shown`);
    }
    assert.equal(snapshotsOf(root), before);
    assert.deepEqual(host.state(), hostBefore);
  });

  test('symlinked layers inside the image are followed, as older docker save writes them', async () => {
    const layer = rawTar([{ name: 'same', data: 'twice' }]);
    const image = imageOf(path.join(dir, 'linked'), [layer, layer]);
    fs.rmSync(path.join(image.dockerDir, 'l1', 'layer.tar'));
    fs.symlinkSync('../l0/layer.tar', path.join(image.dockerDir, 'l1', 'layer.tar'));
    execFileSync('tar', ['-C', image.dockerDir, '-cf', image.dockerTar, '.']);
    const top = `${chainIds(image.diffIds)[1]}\n`;
    assert.equal(await ok(path.join(dir, 'linked-archive'), ['import-image', image.dockerTar]), top);
    assert.equal(await ok(path.join(dir, 'linked-dir'), ['import-image', image.dockerDir]), top);
  });
});
