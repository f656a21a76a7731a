import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SnapfsError } from '../../src/errors';
import { LATENCY_BOUNDS } from '../../src/fuse/session';
import { CallMetrics, metricsText, parseListenAddress } from '../../src/grpc/metrics';
import { parseDaemonStats, sumStats, type DaemonStats } from '../../src/mount/stats';

const BUCKETS = LATENCY_BOUNDS.length + 1;
const buckets = (at: Record<number, number>): number[] => Array.from({ length: BUCKETS }, (_, i) => at[i] ?? 0);

function daemon(mounts: number, lookups: number, writes: number): DaemonStats {
  return {
    mounts,
    copiedUpBytes: 100 * writes,
    internalErrors: 0,
    ops: [
      { op: 'lookup', count: lookups, errors: 1, seconds: lookups * 0.0002, buckets: buckets({ 2: lookups }) },
      { op: 'write', count: writes, errors: 0, seconds: writes * 0.00001, buckets: buckets({ 0: writes }) },
    ],
  };
}

/** The samples of the text, by name and labels as written. */
function samples(text: string): Map<string, number> {
  return new Map(
    text
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#'))
      .map((l) => {
        const at = l.lastIndexOf(' ');
        return [l.slice(0, at), Number(l.slice(at + 1))];
      }),
  );
}

describe('metrics in Prometheus text format', () => {
  it('shows each daemon apart, with cumulative buckets, and says which daemon did not answer', () => {
    const calls = new CallMetrics();
    calls.observe('Prepare', 'OK', 0.002);
    calls.observe('Prepare', 'OK', 0.5);
    calls.observe('Stat', 'NOT_FOUND', 0.0001);
    const text = metricsText(calls, [{ socket: '/run/a.sock', stats: daemon(2, 10, 3) }, { socket: '/run/b.sock', stats: daemon(1, 5, 0) }, { socket: '/run/"c".sock' }], 4);
    const s = samples(text);
    assert.equal(s.get('snapfs_grpc_requests_total{method="Prepare",code="OK"}'), 2);
    assert.equal(s.get('snapfs_grpc_requests_total{method="Stat",code="NOT_FOUND"}'), 1);
    assert.equal(s.get('snapfs_grpc_request_duration_seconds_bucket{method="Prepare",le="0.001"}'), 0);
    assert.equal(s.get('snapfs_grpc_request_duration_seconds_bucket{method="Prepare",le="0.005"}'), 1);
    assert.equal(s.get('snapfs_grpc_request_duration_seconds_bucket{method="Prepare",le="+Inf"}'), 2);
    assert.equal(s.get('snapfs_grpc_request_duration_seconds_count{method="Prepare"}'), 2);
    assert.equal(s.get('snapfs_mount_daemon_up{daemon="/run/a.sock"}'), 1);
    assert.equal(s.get('snapfs_mount_daemon_up{daemon="/run/\\"c\\".sock"}'), 0, 'label values are escaped');
    assert.equal(s.get('snapfs_mounts{daemon="/run/b.sock"}'), 1);
    assert.equal(s.get('snapfs_fuse_mounts'), 4);
    assert.equal(s.get('snapfs_fuse_requests_total{daemon="/run/a.sock",op="lookup"}'), 10);
    assert.equal(s.get('snapfs_fuse_requests_total{daemon="/run/b.sock",op="lookup"}'), 5);
    assert.equal(s.get('snapfs_fuse_request_errors_total{daemon="/run/a.sock",op="lookup"}'), 1);
    assert.equal(s.get('snapfs_fuse_request_duration_seconds_bucket{daemon="/run/a.sock",op="lookup",le="0.0001"}'), 0);
    assert.equal(s.get(`snapfs_fuse_request_duration_seconds_bucket{daemon="/run/a.sock",op="lookup",le="${LATENCY_BOUNDS[2]}"}`), 10);
    assert.equal(s.get('snapfs_fuse_request_duration_seconds_bucket{daemon="/run/a.sock",op="lookup",le="+Inf"}'), 10);
    assert.equal(s.get('snapfs_fuse_request_duration_seconds_count{daemon="/run/a.sock",op="write"}'), 3);
    assert.equal(s.get('snapfs_copied_up_bytes_total{daemon="/run/a.sock"}'), 300);
    assert.equal([...s.keys()].filter((k) => k.includes('c\\".sock')).length, 1, 'a daemon that did not answer has no other series');
    // Every sample's family is declared once, before it.
    const declared = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => m[1]!);
    assert.equal(new Set(declared).size, declared.length);
    for (const name of s.keys()) assert.ok(declared.some((d) => name.replace(/\{.*$/, '').replace(/_(bucket|sum|count)$/, '') === d || name.replace(/\{.*$/, '') === d), name);
    assert.ok(text.endsWith('\n'));
  });

  it('sums stats operation by operation', () => {
    const sum = sumStats([daemon(1, 2, 1), daemon(1, 3, 0)]);
    assert.deepEqual(
      sum.ops.map((o) => [o.op, o.count, o.errors, o.buckets[2]]),
      [
        ['lookup', 5, 2, 5],
        ['write', 1, 0, 0],
      ],
    );
    assert.equal(sum.copiedUpBytes, 100);
  });

  it("takes a daemon's answer only as a daemon makes it: no names that would break the text, no negative or missing counts", () => {
    const good = daemon(1, 1, 1);
    assert.deepEqual(parseDaemonStats(JSON.parse(JSON.stringify(good)), BUCKETS), good);
    const bad: unknown[] = [
      null,
      { ...good, ops: 'x' },
      { ...good, ops: [{ ...good.ops[0], op: 'lookup"} 1\nsnapfs_evil 1' }] },
      { ...good, ops: [{ ...good.ops[0], op: '' }] },
      { ...good, ops: [{ ...good.ops[0], op: 'made_up' }] },
      { ...good, ops: [good.ops[0], good.ops[0]] },
      { ...good, ops: [{ ...good.ops[0], count: -1 }] },
      { ...good, ops: [{ ...good.ops[0], seconds: 'NaN' }] },
      { ...good, ops: [{ ...good.ops[0], buckets: [1] }] },
      { ...good, mounts: undefined },
      { ...good, internalErrors: Infinity },
    ];
    for (const value of bad) assert.throws(() => parseDaemonStats(value, BUCKETS), /^Error: stats: /, JSON.stringify(value));
  });

  it('listens on HOST:PORT, [IPv6]:PORT or :PORT, and refuses anything else in one line', () => {
    assert.deepEqual(parseListenAddress('127.0.0.1:9420'), { host: '127.0.0.1', port: 9420 });
    assert.deepEqual(parseListenAddress('[::1]:9420'), { host: '::1', port: 9420 });
    assert.deepEqual(parseListenAddress(':9420'), { host: '::', port: 9420 });
    assert.deepEqual(parseListenAddress('node1:80'), { host: 'node1', port: 80 });
    for (const bad of ['9420', '127.0.0.1', '127.0.0.1:0', 'h:65536', '::1:9420', 'h:port', '']) {
      assert.throws(
        () => parseListenAddress(bad),
        (err: unknown) => err instanceof SnapfsError && err.kind === 'InvalidArgument' && !err.message.includes('\n') && err.message.includes(JSON.stringify(bad)),
        bad,
      );
    }
  });
});
