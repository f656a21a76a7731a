import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { invalidArgument, notFound } from '../errors';
import type { Snapshotter, UsageProgress } from '../snapshotter/snapshotter';
import { exists, importLayer } from './import';

/** An image's layers, bottom first: where each layer tar is, and its diff ID. */
interface ImageLayers {
  readonly ref: string;
  readonly layers: readonly { readonly file: string; readonly diffId: string }[];
}

const NAME_ANNOTATIONS = ['io.containerd.image.name', 'org.opencontainers.image.ref.name'];
const INDEX_TYPES = ['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json'];

/** containerd's chain IDs: the first layer's diff ID, then sha256 of "PARENT_CHAIN DIFF_ID". */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const diff of diffIds) {
    const previous = out[out.length - 1];
    out.push(previous === undefined ? diff : `sha256:${createHash('sha256').update(`${previous} ${diff}`).digest('hex')}`);
  }
  return out;
}

/**
 * Unpacks every layer of an image (an OCI image layout directory, or a
 * `docker save` tarball or directory) as a chain of committed snapshots
 * named by chain ID, as containerd names them, skipping those present.
 * `name` picks one image where there are several. Returns the top chain ID.
 */
export async function importImage(
  s: Snapshotter,
  source: string,
  opts: { name?: string; onLayer?: (i: number, n: number, chain: string, skipped: boolean) => void; onProgress?: UsageProgress } = {},
): Promise<{ ref: string; top: string }> {
  const st = fs.statSync(source, { throwIfNoEntry: false }) ?? fail(notFound, `image ${source}: no such file or directory`);
  const temp = st.isDirectory() ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), 'snapfs-image-'));
  try {
    const dir = temp === undefined ? source : await unpackArchive(source, temp);
    const image = fs.existsSync(path.join(dir, 'index.json')) ? ociLayers(dir, opts.name) : dockerLayers(dir, opts.name, source);
    const chains = chainIds(image.layers.map((l) => l.diffId));
    for (const [i, layer] of image.layers.entries()) {
      const chain = chains[i]!;
      const skipped = exists(s, chain);
      opts.onLayer?.(i, image.layers.length, chain, skipped);
      if (skipped) continue;
      await importLayer(s, fs.createReadStream(layer.file), chain, {
        diffId: layer.diffId,
        source: `layer ${i + 1} of ${source}`,
        ...(i > 0 ? { parent: chains[i - 1]! } : {}),
        ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      });
    }
    return { ref: image.ref, top: chains[chains.length - 1] ?? fail(invalidArgument, `image ${source}: no layers`) };
  } finally {
    if (temp !== undefined) fs.rmSync(temp, { recursive: true, force: true });
  }
}

/** A tarball's regular files, unpacked under `dir` by their names (which must stay inside it). */
async function unpackArchive(file: string, dir: string): Promise<string> {
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    const parts = header.name.split('/').filter((c) => c !== '' && c !== '.');
    if (header.type !== 'file' || parts.length === 0 || parts.includes('..')) {
      stream.resume();
      return void stream.on('end', next);
    }
    const target = path.join(dir, ...parts);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    pipeline(stream, fs.createWriteStream(target, { flags: 'wx' })).then(() => next(), (err: Error) => extract.destroy(err));
  });
  await pipeline(fs.createReadStream(file), extract);
  return dir;
}

function readJson<T>(file: string, what: string): T {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch (err) {
    throw invalidArgument(`${what}: ${(err as Error).message}`);
  }
}

interface Descriptor {
  mediaType?: string;
  digest: string;
  annotations?: Record<string, string>;
  platform?: { os?: string; architecture?: string };
}

function ociLayers(dir: string, name: string | undefined): ImageLayers {
  const blob = (digest: string): string => {
    const [alg, hex] = digest.split(':');
    if (alg !== 'sha256' || !/^[0-9a-f]{64}$/.test(hex ?? '')) throw invalidArgument(`image ${dir}: unsupported digest ${JSON.stringify(digest)}`);
    return path.join(dir, 'blobs', 'sha256', hex!);
  };
  const index = readJson<{ manifests?: Descriptor[] }>(path.join(dir, 'index.json'), `image ${dir}: index.json`);
  const named = (d: Descriptor): string | undefined => NAME_ANNOTATIONS.map((a) => d.annotations?.[a]).find((n) => n !== undefined);
  const candidates = (index.manifests ?? []).filter((d) => name === undefined || NAME_ANNOTATIONS.some((a) => d.annotations?.[a] === name));
  if (candidates.length === 0) throw notFound(`image ${dir}: ${name === undefined ? 'no manifests' : `no image named ${JSON.stringify(name)}`}`);
  if (candidates.length > 1) throw invalidArgument(`image ${dir}: holds several images (${candidates.map((d) => named(d) ?? d.digest).join(', ')}); pick one with --name`);
  let manifest = candidates[0]!;
  const ref = named(manifest) ?? manifest.digest;
  // A multi-platform index: this machine's platform.
  while (INDEX_TYPES.includes(manifest.mediaType ?? '')) {
    const inner = readJson<{ manifests: Descriptor[] }>(blob(manifest.digest), `image ${dir}: index ${manifest.digest}`).manifests;
    const arch = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', s390x: 's390x', ppc64: 'ppc64le' }[process.arch as string] ?? process.arch;
    manifest = inner.find((d) => d.platform?.os === 'linux' && d.platform.architecture === arch) ?? fail(notFound, `image ${dir}: no manifest for linux/${arch}`);
  }
  const m = readJson<{ config: Descriptor; layers: Descriptor[] }>(blob(manifest.digest), `image ${dir}: manifest ${manifest.digest}`);
  const config = readJson<{ rootfs?: { diff_ids?: string[] } }>(blob(m.config.digest), `image ${dir}: config ${m.config.digest}`);
  return { ref, layers: pairLayers(dir, m.layers.map((l) => blob(l.digest)), config.rootfs?.diff_ids) };
}

function dockerLayers(dir: string, name: string | undefined, source: string): ImageLayers {
  const file = path.join(dir, 'manifest.json');
  if (!fs.existsSync(file)) throw invalidArgument(`image ${source}: neither an OCI image layout (index.json) nor a docker save archive (manifest.json)`);
  const all = readJson<{ Config: string; RepoTags?: string[]; Layers: string[] }[]>(file, `image ${source}: manifest.json`);
  const candidates = all.filter((m) => name === undefined || (m.RepoTags ?? []).includes(name));
  if (candidates.length === 0) throw notFound(`image ${source}: no image named ${JSON.stringify(name)}`);
  if (candidates.length > 1) throw invalidArgument(`image ${source}: holds several images (${candidates.map((m) => m.RepoTags?.[0] ?? m.Config).join(', ')}); pick one with --name`);
  const m = candidates[0]!;
  const inside = (p: string): string => {
    const parts = p.split('/').filter((c) => c !== '' && c !== '.');
    if (parts.includes('..')) throw invalidArgument(`image ${source}: path ${JSON.stringify(p)} leaves the archive`);
    return path.join(dir, ...parts);
  };
  const config = readJson<{ rootfs?: { diff_ids?: string[] } }>(inside(m.Config), `image ${source}: ${m.Config}`);
  return { ref: m.RepoTags?.[0] ?? m.Config, layers: pairLayers(source, m.Layers.map(inside), config.rootfs?.diff_ids) };
}

function pairLayers(source: string, files: string[], diffIds: string[] | undefined): ImageLayers['layers'] {
  if (diffIds === undefined || diffIds.length !== files.length) throw invalidArgument(`image ${source}: the config's diff_ids do not match the layers`);
  return files.map((file, i) => ({ file, diffId: diffIds[i]! }));
}

function fail(kind: (m: string) => Error, message: string): never {
  throw kind(message);
}
