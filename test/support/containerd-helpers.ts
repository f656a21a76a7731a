import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { command, type CliResult } from './helpers';

/** What a ctr command gave. */
export type CtrResult = CliResult;

export interface Containerd {
  readonly address: string;
  /** Runs ctr against this containerd, in namespace `test`; never throws. */
  ctr(args: readonly string[], timeoutMs?: number): Promise<CtrResult>;
  /**
   * `ctr run ARGS`, started once more if containerd's shim gave up on the
   * mount helper after ten ECHILDs: it reaps its children on SIGCHLD while
   * waiting for the helper itself, a race that every FUSE snapshotter's
   * helper meets (fuse-overlayfs's as often), most on a busy machine. Any
   * other failure is returned as it is.
   */
  run(args: readonly string[], timeoutMs?: number): Promise<CtrResult>;
  log(): string;
  stop(): Promise<void>;
}

/** The `run` of a Containerd (see there) whose `ctr` is `ctr`: a containerd of ours, or one run otherwise (rootless). */
export function runOnceMoreOnEchild(ctr: Containerd['ctr']): Containerd['run'] {
  return async (args, timeoutMs) => {
    const first = await ctr(['run', ...args], timeoutMs);
    return first.code !== 0 && first.stderr.includes('failed with ECHILD') ? ctr(['run', ...args], timeoutMs) : first;
  };
}

/** The socket of the private containerd of directory `dir`. */
export function containerdSocket(dir: string): string {
  return path.join(dir, 'containerd.sock');
}

/**
 * Writes the configuration of a private containerd (own root, state and
 * sockets under `dir`, never the system's; no CRI plugin) with a snapshot
 * proxy plugin per entry of `proxies` (its name, and its server's socket);
 * returns its path.
 */
export function writeContainerdConfig(dir: string, proxies: Readonly<Record<string, string>>): string {
  const address = containerdSocket(dir);
  const config = path.join(dir, 'containerd.toml');
  fs.writeFileSync(
    config,
    `version = 2
root = ${JSON.stringify(path.join(dir, 'containerd-root'))}
state = ${JSON.stringify(path.join(dir, 'containerd-state'))}
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = ${JSON.stringify(address)}
[ttrpc]
  address = ${JSON.stringify(`${address}.ttrpc`)}
# Garbage collection only when asked for (ctr images rm --sync): a view
# without a gc.root label would otherwise vanish whenever it happens to run,
# and no container's snapshot is removed from its backend on the path of
# ctr run, for every snapshotter alike.
[plugins."io.containerd.gc.v1.scheduler"]
  startup_delay = "1h"
  mutation_threshold = 1000000
[proxy_plugins]
${Object.entries(proxies)
  .map(([name, socket]) => `  [proxy_plugins.${JSON.stringify(name)}]\n    type = "snapshot"\n    address = ${JSON.stringify(socket)}\n`)
  .join('')}`,
  );
  return config;
}

/**
 * A private containerd (own root, state and sockets under `dir`, never the
 * system's) with snapfs as the proxy snapshotter `snapfs` at `snapfsSocket`.
 */
export async function startContainerd(dir: string, snapfsSocket: string): Promise<Containerd> {
  const address = containerdSocket(dir);
  const config = writeContainerdConfig(dir, { snapfs: snapfsSocket });
  const logFile = path.join(dir, 'containerd.log');
  const out = fs.openSync(logFile, 'w');
  const proc = spawn('containerd', ['--config', config], { stdio: ['ignore', out, out] });
  fs.closeSync(out);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const ctr: Containerd['ctr'] = (args, timeoutMs = 120_000) => command(['ctr', '--address', address, '--namespace', 'test', ...args], { timeout: timeoutMs });
  const run = runOnceMoreOnEchild(ctr);
  const log = (): string => fs.readFileSync(logFile, 'utf8');
  const deadline = Date.now() + 30_000;
  for (;;) {
    if ((await ctr(['version'], 5_000)).code === 0) break;
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`containerd did not start: ${log()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    address,
    ctr,
    run,
    log,
    stop: async () => {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * An OCI image layout tarball, built here from Debian's busybox-static: a
 * layer with /bin/busybox and a few applets, and a layer adding /etc/motd
 * and deleting /bin/ls (a whiteout). Named `name` for `ctr images import`.
 */
export function buildBusyboxImage(dir: string, name: string): { tarball: string; diffIds: string[] } {
  const work = fs.mkdtempSync(path.join(dir, 'image-'));
  const blobs = path.join(work, 'layout', 'blobs', 'sha256');
  fs.mkdirSync(blobs, { recursive: true });
  const blob = (data: Buffer): { digest: string; size: number } => {
    const hex = createHash('sha256').update(data).digest('hex');
    fs.writeFileSync(path.join(blobs, hex), data);
    return { digest: `sha256:${hex}`, size: data.length };
  };
  const layerTar = (files: (root: string) => void): Buffer => {
    const root = fs.mkdtempSync(path.join(work, 'layer-'));
    files(root);
    return execFileSync('tar', ['-C', root, '--numeric-owner', '--owner=0', '--group=0', '-cf', '-', '.'], { maxBuffer: 64 << 20 });
  };
  const layers = [
    layerTar((root) => {
      fs.mkdirSync(path.join(root, 'bin'));
      fs.copyFileSync('/bin/busybox', path.join(root, 'bin', 'busybox'));
      fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
      for (const applet of ['sh', 'echo', 'cat', 'ls']) fs.symlinkSync('busybox', path.join(root, 'bin', applet));
    }),
    layerTar((root) => {
      fs.mkdirSync(path.join(root, 'etc'));
      fs.writeFileSync(path.join(root, 'etc', 'motd'), 'hello from the second layer\n');
      fs.mkdirSync(path.join(root, 'bin'));
      fs.writeFileSync(path.join(root, 'bin', '.wh.ls'), '');
    }),
  ].map((tar) => ({ ...blob(tar), diffId: `sha256:${createHash('sha256').update(tar).digest('hex')}` }));
  const config = blob(
    Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['/bin/sh'] }, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) } })),
  );
  const manifest = blob(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: l.digest, size: l.size })),
      }),
    ),
  );
  fs.writeFileSync(path.join(work, 'layout', 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  fs.writeFileSync(
    path.join(work, 'layout', 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': name.split(':').pop() } }],
    }),
  );
  const tarball = path.join(dir, 'image.tar');
  execFileSync('tar', ['-C', path.join(work, 'layout'), '-cf', tarball, 'oci-layout', 'index.json', 'blobs']);
  fs.rmSync(work, { recursive: true, force: true });
  return { tarball, diffIds: layers.map((l) => l.diffId) };
}
