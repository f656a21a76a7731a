import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { invalidArgument, notFound, SnapfsError } from '../errors';
import { pathComponents } from './paths';
import { quoted } from '../names';
import type { Snapshotter, UsageProgress } from '../snapshotter/snapshotter';
import { READ_CHUNK, type ImportNaming } from './apply';
import { systemFailureAt } from './failures';
import { ImageFiles } from './image-files';
import { exists, importLayer } from './import';
import { readTar, type TarNaming } from './tar-entries';

/** An image's layers, bottom first: where each layer tar is in the image, what it is called, and its diff ID. */
type ImageLayers = readonly { readonly path: string; readonly what: string; readonly diffId: string }[];

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
 * An archive is unpacked into a temporary directory, removed however the
 * import ends.
 */
export async function importImage(
  s: Snapshotter,
  source: string,
  opts: { name?: string; onLayer?: (i: number, n: number, chain: string, skipped: boolean) => void; onProgress?: UsageProgress } = {},
): Promise<string> {
  const st = fs.statSync(source, { throwIfNoEntry: false }) ?? fail(notFound, `image ${source}: no such file or directory`);
  let temp: string | undefined;
  try {
    let files: ImageFiles;
    if (st.isDirectory()) files = ImageFiles.directory(source);
    else {
      temp = madeTemp(source);
      files = await unpackArchive(source, temp);
    }
    const image = files.has('index.json') ? ociLayers(files, opts.name) : dockerLayers(files, opts.name);
    // Every layer there before any is imported: no chain cut short by a missing one.
    for (const layer of image) fs.closeSync(files.open(layer.path, layer.what));
    const chains = chainIds(image.map((l) => l.diffId));
    for (const [i, layer] of image.entries()) {
      const chain = chains[i]!;
      const skipped = exists(s, chain);
      opts.onLayer?.(i, image.length, chain, skipped);
      if (skipped) continue;
      const where = `layer ${i + 1} of ${source}`;
      const naming: ImportNaming = { tar: where, entries: `${where}: `, failures: where };
      await importLayer(s, fs.createReadStream('', { fd: files.open(layer.path, layer.what), highWaterMark: READ_CHUNK }), chain, {
        diffId: layer.diffId,
        naming,
        ...(i > 0 ? { parent: chains[i - 1]! } : {}),
        ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      });
    }
    return chains[chains.length - 1] ?? fail(invalidArgument, `image ${source}: no layers`);
  } finally {
    if (temp !== undefined) fs.rmSync(temp, { recursive: true, force: true });
  }
}

/** A temporary directory to unpack archive `source` into. */
function madeTemp(source: string): string {
  try {
    return fs.mkdtempSync(path.join(os.tmpdir(), 'snapfs-image-'));
  } catch (err) {
    throw systemFailureAt(err, `image ${source}`) ?? err;
  }
}

/**
 * A tarball's (plain or gzip) regular files, unpacked under `dir` by their
 * names, which must stay inside it. Symlinks are not made: older
 * `docker save` links a repeated layer to its first copy, so they are
 * recorded, and ImageFiles follows them within the archive. Names that
 * are not UTF-8 are left out: no JSON document can name them.
 */
async function unpackArchive(file: string, dir: string): Promise<ImageFiles> {
  const links = new Map<string, string>();
  const naming: TarNaming = { tar: `image ${file}`, kind: 'an image archive', entries: `image ${file}: ` };
  try {
    await readTar(fs.createReadStream(file, { highWaterMark: READ_CHUNK }), naming, async ({ name, linkname, header, body }) => {
      if (!isUtf8(name)) return;
      const parts = pathComponents(name.toString());
      if (parts.length === 0 || parts.includes('..')) return;
      if (header.type === 'symlink' && linkname !== undefined && isUtf8(linkname)) links.set(parts.join('/'), linkname.toString());
      if (header.type !== 'file') return;
      try {
        await unpackFile(path.join(dir, ...parts), body);
      } catch (err) {
        // The archive's own shape: a name twice, a file where a directory is.
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST' || code === 'ENOTDIR' || code === 'EISDIR' || code === 'ENAMETOOLONG') throw invalidArgument(`${naming.entries}entry ${quoted(name)}: cannot be unpacked (${code})`);
        throw err;
      }
    });
  } catch (err) {
    if (err instanceof SnapfsError) throw err;
    throw systemFailureAt(err, `image ${file}`) ?? err;
  }
  return ImageFiles.unpacked(dir, links, file);
}

async function unpackFile(target: string, body: Readable): Promise<void> {
  fs.mkdirSync(path.dirname(target), { recursive: true });
  await pipeline(body, fs.createWriteStream(target, { flags: 'wx' }));
}

interface Descriptor {
  mediaType?: string;
  digest: string;
  annotations?: Record<string, string>;
  platform?: { os?: string; architecture?: string };
}

function ociLayers(files: ImageFiles, name: string | undefined): ImageLayers {
  const source = files.source;
  const blob = (digest: string): string => {
    const [alg, hex] = digest.split(':');
    if (alg !== 'sha256' || !/^[0-9a-f]{64}$/.test(hex ?? '')) throw invalidArgument(`image ${source}: unsupported digest ${JSON.stringify(digest)}`);
    return `blobs/sha256/${hex!}`;
  };
  const index = files.readJson<{ manifests?: Descriptor[] }>('index.json', 'index.json');
  if (!Array.isArray(index?.manifests ?? []) || !(index.manifests ?? []).every((d) => typeof d?.digest === 'string')) throw invalidArgument(`image ${source}: index.json is not an image index`);
  const named = (d: Descriptor): string | undefined => NAME_ANNOTATIONS.map((a) => d.annotations?.[a]).find((n) => n !== undefined);
  const candidates = (index.manifests ?? []).filter((d) => name === undefined || NAME_ANNOTATIONS.some((a) => d.annotations?.[a] === name));
  if (candidates.length === 0) throw notFound(`image ${source}: ${name === undefined ? 'no manifests' : `no image named ${JSON.stringify(name)}`}`);
  if (candidates.length > 1) throw invalidArgument(`image ${source}: holds several images (${candidates.map((d) => named(d) ?? d.digest).join(', ')}); pick one with --name`);
  let manifest = candidates[0]!;
  // A multi-platform index: this machine's platform.
  while (INDEX_TYPES.includes(manifest.mediaType ?? '')) {
    const inner = files.readJson<{ manifests?: Descriptor[] }>(blob(manifest.digest), `index ${manifest.digest}`).manifests ?? [];
    const arch = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', s390x: 's390x', ppc64: 'ppc64le' }[process.arch as string] ?? process.arch;
    manifest = inner.find((d) => d.platform?.os === 'linux' && d.platform.architecture === arch) ?? fail(notFound, `image ${source}: no manifest for linux/${arch}`);
  }
  const m = files.readJson<{ config: Descriptor; layers: Descriptor[] }>(blob(manifest.digest), `manifest ${manifest.digest}`);
  if (typeof m?.config?.digest !== 'string' || !Array.isArray(m.layers) || !m.layers.every((l) => typeof l?.digest === 'string')) throw invalidArgument(`image ${source}: manifest ${manifest.digest} is not an image manifest`);
  const config = files.readJson<{ rootfs?: { diff_ids?: string[] } }>(blob(m.config.digest), `config ${m.config.digest}`);
  return pairLayers(
    source,
    m.layers.map((l) => ({ path: blob(l.digest), what: `layer ${l.digest}` })),
    config.rootfs?.diff_ids,
  );
}

function dockerLayers(files: ImageFiles, name: string | undefined): ImageLayers {
  const source = files.source;
  if (!files.has('manifest.json')) throw invalidArgument(`image ${source}: neither an OCI image layout (index.json) nor a docker save archive (manifest.json)`);
  const all = files.readJson<{ Config: string; RepoTags?: string[]; Layers: string[] }[]>('manifest.json', 'manifest.json');
  const wellFormed = Array.isArray(all) && all.every((m) => typeof m?.Config === 'string' && Array.isArray(m.Layers) && m.Layers.every((l) => typeof l === 'string'));
  if (!wellFormed) throw invalidArgument(`image ${source}: manifest.json is not a docker save manifest`);
  const candidates = all.filter((m) => name === undefined || (m.RepoTags ?? []).includes(name));
  if (candidates.length === 0) throw notFound(`image ${source}: no image named ${JSON.stringify(name)}`);
  if (candidates.length > 1) throw invalidArgument(`image ${source}: holds several images (${candidates.map((m) => m.RepoTags?.[0] ?? m.Config).join(', ')}); pick one with --name`);
  const m = candidates[0]!;
  const config = files.readJson<{ rootfs?: { diff_ids?: string[] } }>(m.Config, JSON.stringify(m.Config));
  return pairLayers(
    source,
    m.Layers.map((l) => ({ path: l, what: `layer ${JSON.stringify(l)} named by manifest.json` })),
    config.rootfs?.diff_ids,
  );
}

function pairLayers(source: string, layers: { path: string; what: string }[], diffIds: string[] | undefined): ImageLayers {
  if (!Array.isArray(diffIds) || diffIds.length !== layers.length || !diffIds.every((d) => typeof d === 'string')) throw invalidArgument(`image ${source}: the config's diff_ids do not match the layers`);
  return layers.map((layer, i) => ({ ...layer, diffId: diffIds[i]! }));
}

function fail(kind: (m: string) => Error, message: string): never {
  throw kind(message);
}
