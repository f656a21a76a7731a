import * as http from 'node:http';
import { invalidArgument, messageOf, unavailable } from '../errors';
import { LATENCY_BOUNDS } from '../fuse/session';
import { daemonStats, reachableDaemons } from '../mount/daemon-stats';
import { devicesOfType } from '../mount/mountinfo';
import type { DaemonStats } from '../mount/stats';

/** Upper bounds of the gRPC calls' latency buckets, in seconds. */
const CALL_BOUNDS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30];

interface CallSeries {
  count: number;
  seconds: number;
  buckets: number[];
}

/** The Snapshots API calls served: by method and gRPC code, with their latency by method. */
export class CallMetrics {
  private readonly calls = new Map<string, number>();
  private readonly latency = new Map<string, CallSeries>();

  observe(method: string, code: string, seconds: number): void {
    const key = `${method}\0${code}`;
    this.calls.set(key, (this.calls.get(key) ?? 0) + 1);
    let series = this.latency.get(method);
    if (series === undefined) {
      series = { count: 0, seconds: 0, buckets: new Array<number>(CALL_BOUNDS.length + 1).fill(0) };
      this.latency.set(method, series);
    }
    series.count++;
    series.seconds += seconds;
    const b = CALL_BOUNDS.findIndex((bound) => seconds <= bound);
    series.buckets[b === -1 ? CALL_BOUNDS.length : b]!++;
  }

  lines(): string[] {
    const out = family('snapfs_grpc_requests_total', 'counter', 'Snapshots API calls served, by method and gRPC code.');
    for (const [key, n] of [...this.calls].sort()) {
      const [method, code] = key.split('\0') as [string, string];
      out.push(sample('snapfs_grpc_requests_total', { method, code }, n));
    }
    out.push(...family('snapfs_grpc_request_duration_seconds', 'histogram', 'Time from a Snapshots API call to its answer, by method.'));
    for (const [method, s] of [...this.latency].sort()) out.push(...histogram('snapfs_grpc_request_duration_seconds', { method }, CALL_BOUNDS, s.buckets, s.seconds));
    return out;
  }
}

/** One mount daemon's answer: its costs, or why it gave none. */
export interface DaemonReport {
  readonly socket: string;
  readonly stats?: DaemonStats;
}

/**
 * The metrics text (Prometheus' text format 0.0.4): the calls served; for
 * every mount daemon reached, by its socket, whether it answered, its live
 * mounts and what its mounts have cost since it started (a daemon started
 * on demand exits when idle: its series end, rather than a sum going
 * down); and every fuse.snapfs mount in this mount namespace, whoever
 * serves it.
 */
export function metricsText(calls: CallMetrics, daemons: readonly DaemonReport[], fuseMounts: number): string {
  const answered = daemons.flatMap((d) => (d.stats === undefined ? [] : [{ daemon: d.socket, stats: d.stats }]));
  const out = calls.lines();
  out.push(...family('snapfs_mount_daemon_up', 'gauge', 'Whether a mount daemon answered (1) or not (0), by its socket.'));
  for (const d of daemons) out.push(sample('snapfs_mount_daemon_up', { daemon: d.socket }, d.stats === undefined ? 0 : 1));
  out.push(...family('snapfs_mounts', 'gauge', 'Live mounts a mount daemon serves, by its socket.'));
  for (const { daemon, stats } of answered) out.push(sample('snapfs_mounts', { daemon }, stats.mounts));
  out.push(...family('snapfs_fuse_mounts', 'gauge', "fuse.snapfs mounts in the mount namespace of snapfs serve, whoever serves them (dedicated ones and other users' included)."));
  out.push(sample('snapfs_fuse_mounts', {}, fuseMounts));
  out.push(...family('snapfs_fuse_requests_total', 'counter', "FUSE requests a mount daemon's mounts were sent, by its socket and operation."));
  for (const { daemon, stats } of answered) for (const o of stats.ops) out.push(sample('snapfs_fuse_requests_total', { daemon, op: o.op }, o.count));
  out.push(...family('snapfs_fuse_request_errors_total', 'counter', 'Of those, the ones answered with an error (ENOENT of a lookup included).'));
  for (const { daemon, stats } of answered) for (const o of stats.ops) out.push(sample('snapfs_fuse_request_errors_total', { daemon, op: o.op }, o.errors));
  out.push(...family('snapfs_fuse_request_duration_seconds', 'histogram', 'Time from a FUSE request read off the device to its answer, for those answered (not forget or interrupt), by daemon and operation.'));
  for (const { daemon, stats } of answered) for (const o of stats.ops) out.push(...histogram('snapfs_fuse_request_duration_seconds', { daemon, op: o.op }, LATENCY_BOUNDS, o.buckets, o.seconds));
  out.push(...family('snapfs_copied_up_bytes_total', 'counter', "Bytes of lower files copied up into writable layers by a mount daemon's mounts."));
  for (const { daemon, stats } of answered) out.push(sample('snapfs_copied_up_bytes_total', { daemon }, stats.copiedUpBytes));
  out.push(...family('snapfs_internal_errors_total', 'counter', "FUSE operations that failed with an error no system call gave (answered EIO): bugs, each in its daemon's log."));
  for (const { daemon, stats } of answered) out.push(sample('snapfs_internal_errors_total', { daemon }, stats.internalErrors));
  return `${out.join('\n')}\n`;
}

function family(name: string, type: string, help: string): string[] {
  return [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`];
}

function sample(name: string, labels: Readonly<Record<string, string>>, value: number): string {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  return `${name}${pairs.length > 0 ? `{${pairs.join(',')}}` : ''} ${value}`;
}

/** A histogram's samples from per-bucket counts (the last one past every bound): cumulative, as the format wants. */
function histogram(name: string, labels: Readonly<Record<string, string>>, bounds: readonly number[], buckets: readonly number[], seconds: number): string[] {
  const out: string[] = [];
  let cumulative = 0;
  bounds.forEach((bound, i) => {
    cumulative += buckets[i] ?? 0;
    out.push(sample(`${name}_bucket`, { ...labels, le: String(bound) }, cumulative));
  });
  cumulative += buckets[bounds.length] ?? 0;
  out.push(sample(`${name}_bucket`, { ...labels, le: '+Inf' }, cumulative));
  out.push(sample(`${name}_sum`, labels, seconds));
  out.push(sample(`${name}_count`, labels, cumulative));
  return out;
}

/** HOST:PORT (an IPv6 host in brackets; no host: every address), checked. */
export function parseListenAddress(value: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):([0-9]{1,5})$/.exec(value);
  const port = Number(m?.[3]);
  if (m === null || !(port > 0 && port < 65536)) throw invalidArgument(`metrics address ${JSON.stringify(value)}: expected HOST:PORT (127.0.0.1:9420, [::1]:9420, :9420)`);
  return { host: m[1] ?? (m[2] || '::'), port };
}

/**
 * Serves GET /metrics on `address` (HOST:PORT): the calls `calls` counted,
 * the mount daemons this process can reach, asked at each scrape, and the
 * fuse.snapfs mounts of this mount namespace. Resolves once listening.
 */
export async function serveMetrics(address: string, calls: CallMetrics, log: (line: string) => void): Promise<http.Server> {
  const { host, port } = parseListenAddress(address);
  const scrape = async (): Promise<string> => {
    const daemons = await Promise.all(
      reachableDaemons().map((d) =>
        daemonStats(d).then(
          (stats): DaemonReport => ({ socket: d.socket, stats }),
          (err: unknown): DaemonReport => {
            log(`metrics: mount daemon ${d.socket}: ${messageOf(err)}`);
            return { socket: d.socket };
          },
        ),
      ),
    );
    return metricsText(calls, daemons, devicesOfType('fuse.snapfs').size);
  };
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('snapfs serve: only GET /metrics is here\n');
      return;
    }
    scrape().then(
      (text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text),
      (err: unknown) => {
        log(`metrics: ${messageOf(err)}`);
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`snapfs serve: metrics: ${messageOf(err)}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(unavailable(`metrics address ${address}: ${err.code ?? err.message}`)));
    server.listen(port, host, () => resolve());
  });
  return server;
}
