import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { invalidArgument, messageOf, notFound } from '../errors';
import { decompressed, READ_CHUNK } from './apply';
import type { Snapshotter, UsageProgress } from '../snapshotter/snapshotter';
import { exists, importLayer } from './import';

/** An image's layers, bottom first: where each layer tar is, and its diff ID. */
type ImageLayers = readonly { readonly file: string; readonly diffId: string }[];

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
): Promise<string> {
  const st = fs.statSync(source, { throwIfNoEntry: false }) ?? fail(notFound, `image ${source}: no such file or directory`);
  const temp = st.isDirectory() ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), 'snapfs-image-'));
  try {
    const archive: Archive = temp === undefined ? { dir: source, links: new Map() } : await unpackArchive(source, temp, source);
    const image = fs.existsSync(path.join(archive.dir, 'index.json')) ? ociLayers(archive.dir, opts.name) : dockerLayers(archive, opts.name, source);
    const chains = chainIds(image.map((l) => l.diffId));
    for (const [i, layer] of image.entries()) {
      const chain = chains[i]!;
      const skipped = exists(s, chain);
      opts.onLayer?.(i, image.length, chain, skipped);
      if (skipped) continue;
      await importLayer(s, fs.createReadStream(layer.file, { highWaterMark: READ_CHUNK }), chain, {
        diffId: layer.diffId,
        source: `layer ${i + 1} of ${source}`,
        ...(i > 0 ? { parent: chains[i - 1]! } : {}),
        ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      });
    }
    return chains[chains.length - 1] ?? fail(invalidArgument, `image ${source}: no layers`);
  } finally {
    if (temp !== undefined) fs.rmSync(temp, { recursive: true, force: true });
  }
}

/**
 * A tarball's (plain or gzip) regular files, unpacked under `dir` by their
 * names, which must stay inside it. Symlinks are not made: older
 * `docker save` links a repeated layer to its first copy, so they are
 * recorded, and `inside` follows them within the archive.
 */
async function unpackArchive(file: string, dir: string, source: string): Promise<Archive> {
  const links = new Map<string, string>();
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    const parts = pathComponents(header.name);
    const skip = (): void => {
      stream.on('end', next);
      stream.resume();
    };
    if (parts.length === 0 || parts.includes('..')) return skip();
    if (header.type === 'symlink') {
      links.set(parts.join('/'), header.linkname ?? '');
      return skip();
    }
    if (header.type !== 'file') return skip();
    const target = path.join(dir, ...parts);
    try {
      fs.mkdirSync(path.dirname(target), { recursive: true });
    } catch (err) {
      return void extract.destroy(err as Error);
    }
    pipeline(stream, fs.createWriteStream(target, { flags: 'wx' })).then(
      () => next(),
      (err: Error) => extract.destroy(err),
    );
  });
  try {
    await pipeline(await decompressed(fs.createReadStream(file, { highWaterMark: READ_CHUNK })), extract);
  } catch (err) {
    throw invalidArgument(`image ${source}: not an image archive (${messageOf(err)})`);
  }
  return { dir, links };
}

/** An image's files: a directory, and (for an archive) the symlinks it held. */
interface Archive {
  readonly dir: string;
  readonly links: ReadonlyMap<string, string>;
}

/** Where archive path `p` is, symlinks of the archive followed; nothing outside the archive. */
function inside(archive: Archive, p: string, source: string): string {
  let parts = pathComponents(p);
  for (let hops = 0; hops <= 40; hops++) {
    const resolved: string[] = [];
    for (const c of parts) {
      if (c === '..') {
        if (resolved.pop() === undefined) throw invalidArgument(`image ${source}: path ${JSON.stringify(p)} leaves the archive`);
      } else resolved.push(c);
    }
    const link = archive.links.get(resolved.join('/'));
    if (link === undefined) return path.join(archive.dir, ...resolved);
    if (link.startsWith('/')) throw invalidArgument(`image ${source}: ${JSON.stringify(p)} links outside the archive`);
    parts = [...resolved.slice(0, -1), ...pathComponents(link)];
  }
  throw invalidArgument(`image ${source}: too many levels of symbolic links at ${JSON.stringify(p)}`);
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
  if (!Array.isArray(index?.manifests ?? []) || !(index.manifests ?? []).every((d) => typeof d?.digest === 'string')) throw invalidArgument(`image ${dir}: index.json is not an image index`);
  const named = (d: Descriptor): string | undefined => NAME_ANNOTATIONS.map((a) => d.annotations?.[a]).find((n) => n !== undefined);
  const candidates = (index.manifests ?? []).filter((d) => name === undefined || NAME_ANNOTATIONS.some((a) => d.annotations?.[a] === name));
  if (candidates.length === 0) throw notFound(`image ${dir}: ${name === undefined ? 'no manifests' : `no image named ${JSON.stringify(name)}`}`);
  if (candidates.length > 1) throw invalidArgument(`image ${dir}: holds several images (${candidates.map((d) => named(d) ?? d.digest).join(', ')}); pick one with --name`);
  let manifest = candidates[0]!;
  // A multi-platform index: this machine's platform.
  while (INDEX_TYPES.includes(manifest.mediaType ?? '')) {
    const inner = readJson<{ manifests?: Descriptor[] }>(blob(manifest.digest), `image ${dir}: index ${manifest.digest}`).manifests ?? [];
    const arch = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', s390x: 's390x', ppc64: 'ppc64le' }[process.arch as string] ?? process.arch;
    manifest = inner.find((d) => d.platform?.os === 'linux' && d.platform.architecture === arch) ?? fail(notFound, `image ${dir}: no manifest for linux/${arch}`);
  }
  const m = readJson<{ config: Descriptor; layers: Descriptor[] }>(blob(manifest.digest), `image ${dir}: manifest ${manifest.digest}`);
  if (typeof m?.config?.digest !== 'string' || !Array.isArray(m.layers) || !m.layers.every((l) => typeof l?.digest === 'string')) throw invalidArgument(`image ${dir}: manifest ${manifest.digest} is not an image manifest`);
  const config = readJson<{ rootfs?: { diff_ids?: string[] } }>(blob(m.config.digest), `image ${dir}: config ${m.config.digest}`);
  return pairLayers(dir, m.layers.map((l) => blob(l.digest)), config.rootfs?.diff_ids);
}

function dockerLayers(archive: Archive, name: string | undefined, source: string): ImageLayers {
  const file = path.join(archive.dir, 'manifest.json');
  if (!fs.existsSync(file)) throw invalidArgument(`image ${source}: neither an OCI image layout (index.json) nor a docker save archive (manifest.json)`);
  const all = readJson<{ Config: string; RepoTags?: string[]; Layers: string[] }[]>(file, `image ${source}: manifest.json`);
  const wellFormed = Array.isArray(all) && all.every((m) => typeof m?.Config === 'string' && Array.isArray(m.Layers) && m.Layers.every((l) => typeof l === 'string'));
  if (!wellFormed) throw invalidArgument(`image ${source}: manifest.json is not a docker save manifest`);
  const candidates = all.filter((m) => name === undefined || (m.RepoTags ?? []).includes(name));
  if (candidates.length === 0) throw notFound(`image ${source}: no image named ${JSON.stringify(name)}`);
  if (candidates.length > 1) throw invalidArgument(`image ${source}: holds several images (${candidates.map((m) => m.RepoTags?.[0] ?? m.Config).join(', ')}); pick one with --name`);
  const m = candidates[0]!;
  const config = readJson<{ rootfs?: { diff_ids?: string[] } }>(inside(archive, m.Config, source), `image ${source}: ${m.Config}`);
  return pairLayers(source, m.Layers.map((l) => inside(archive, l, source)), config.rootfs?.diff_ids);
}

function pairLayers(source: string, files: string[], diffIds: string[] | undefined): ImageLayers {
  if (!Array.isArray(diffIds) || diffIds.length !== files.length || !diffIds.every((d) => typeof d === 'string')) throw invalidArgument(`image ${source}: the config's diff_ids do not match the layers`);
  return files.map((file, i) => ({ file, diffId: diffIds[i]! }));
}

/** A path's names, with the empty ones and `.` left out (`..` kept). */
function pathComponents(p: string): string[] {
  return p.split('/').filter((c) => c !== '' && c !== '.');
}

function fail(kind: (m: string) => Error, message: string): never {
  throw kind(message);
}
