import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import * as path from 'node:path';
import { secondsAndNanos } from '../clock';
import { kindOf, messageOf, systemFailure, type ErrorKind } from '../errors';
import type { Info, Kind, Labels, Mount, Snapshotter } from '../snapshotter/snapshotter';
import { requestChecks, type WireCheck } from './wire';

const PROTO_DIR = path.resolve(__dirname, '..', '..', '..', 'src', 'grpc');
const SERVICE = 'containerd.services.snapshots.v1.Snapshots';
/** containerd's proxy sends List results in batches of this many. */
export const LIST_BATCH = 100;

// The messages as @grpc/proto-loader presents them (keepCase, defaults, enums as strings).
interface Timestamp {
  seconds: string | number;
  nanos: number;
}
interface InfoMessage {
  name: string;
  parent: string;
  kind: 'UNKNOWN' | 'VIEW' | 'ACTIVE' | 'COMMITTED';
  created_at: Timestamp | null;
  updated_at: Timestamp | null;
  labels: Labels;
}
interface KeyRequest {
  key: string;
}
interface CreateRequest extends KeyRequest {
  parent: string;
  labels: Labels;
}
interface CommitRequest extends KeyRequest {
  name: string;
  labels: Labels;
  parent: string;
}
interface UpdateRequest {
  info: InfoMessage | null;
  update_mask: { paths: string[] } | null;
}
interface ListRequest {
  filters: string[];
}
interface MountMessage {
  type: string;
  source: string;
  target: string;
  options: string[];
}

/** The gRPC codes of containerd's errdefs, so containerd shows what its own snapshotters would. */
const GRPC_CODES: Readonly<Record<ErrorKind, grpc.status>> = {
  InvalidArgument: grpc.status.INVALID_ARGUMENT,
  NotFound: grpc.status.NOT_FOUND,
  AlreadyExists: grpc.status.ALREADY_EXISTS,
  FailedPrecondition: grpc.status.FAILED_PRECONDITION,
  NotImplemented: grpc.status.UNIMPLEMENTED,
  Unavailable: grpc.status.UNAVAILABLE,
  ResourceExhausted: grpc.status.RESOURCE_EXHAUSTED,
  Unknown: grpc.status.UNKNOWN,
};

/** A request whose bytes did not decode: answered InvalidArgument, where grpc-js would say INTERNAL. */
class Malformed {
  constructor(readonly reason: string) {}
}

export function statusOf(err: unknown): grpc.StatusObject {
  const known = systemFailure(err) ?? err;
  return { code: GRPC_CODES[kindOf(known)], details: messageOf(known).split('\n')[0] ?? '', metadata: new grpc.Metadata() };
}

const KINDS: Readonly<Record<Kind, InfoMessage['kind']>> = { view: 'VIEW', active: 'ACTIVE', committed: 'COMMITTED' };

function timestamp(ns: bigint): Timestamp {
  const [seconds, nanos] = secondsAndNanos(ns);
  return { seconds: seconds.toString(), nanos };
}

function infoMessage(info: Info): InfoMessage {
  return {
    name: info.name,
    parent: info.parent,
    kind: KINDS[info.kind],
    created_at: timestamp(info.created),
    updated_at: timestamp(info.updated),
    labels: { ...info.labels },
  };
}

function mountMessages(mounts: readonly Mount[]): { mounts: MountMessage[] } {
  return { mounts: mounts.map((m) => ({ type: m.type, source: m.source, target: '', options: [...m.options] })) };
}

/** Hears of every call: its method, its request in short, its gRPC code's name (OK, NOT_FOUND, …) and what came of it. */
export type CallLog = (method: string, request: string, code: string, outcome: string, ms: number) => void;

function describe(req: unknown): string {
  if (req === null || typeof req !== 'object') return '';
  const r = req as Partial<KeyRequest & CommitRequest & CreateRequest & ListRequest & UpdateRequest>;
  const parts: string[] = [];
  if (r.name) parts.push(`name=${JSON.stringify(r.name)}`);
  if (r.key) parts.push(`key=${JSON.stringify(r.key)}`);
  if (r.parent) parts.push(`parent=${JSON.stringify(r.parent)}`);
  if (r.info?.name) parts.push(`key=${JSON.stringify(r.info.name)}`);
  if (r.filters?.length) parts.push(`filters=${JSON.stringify(r.filters)}`);
  return parts.join(' ');
}

type Unary<Req, Res> = (req: Req) => Res | Promise<Res>;

/**
 * What containerd's own snapshotters say before an error of their storage
 * (`failed to create snapshot: parent "p" is not committed snapshot`).
 */
const CREATE = 'failed to create snapshot';

/**
 * The Snapshots service over one snapshotter: each call is one operation
 * of it (one transaction). `log` hears of every call.
 */
export function snapshotsService(
  snapshotter: Snapshotter,
  log: CallLog,
): { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation; idle(): Promise<void> } {
  const pkg = loadPackage();
  const definition = strict(pkg[SERVICE] as grpc.ServiceDefinition, requestChecks(pkg, SERVICE));
  // Calls still working, so that the database is closed only after the last.
  const working = new Set<Promise<unknown>>();

  const unary =
    <Req, Res>(method: string, fn: Unary<Req, Res>, context?: string): grpc.handleUnaryCall<Req | Malformed, Res> =>
    (call, callback) => {
      const started = performance.now();
      const finish = (err: grpc.StatusObject | null, res?: Res): void => {
        log(method, describe(call.request), grpc.status[err === null ? grpc.status.OK : err.code], err === null ? 'ok' : `${grpc.status[err.code]}: ${err.details}`, performance.now() - started);
        if (err === null) callback(null, res);
        else callback(err);
      };
      const req = call.request;
      if (req instanceof Malformed) return finish({ code: grpc.status.INVALID_ARGUMENT, details: `malformed ${method} request: ${req.reason}`, metadata: new grpc.Metadata() });
      const work = Promise.resolve().then(() => fn(req));
      working.add(work);
      work
        .finally(() => working.delete(work))
        .catch(() => undefined);
      work.then(
        (res) => finish(null, res),
        (err: unknown) => {
          const status = statusOf(err);
          finish(context === undefined ? status : { ...status, details: `${context}: ${status.details}` });
        },
      );
    };

  // A stream fails by emitting its status as an error (grpc-js then ends it with that status).
  const list: grpc.handleServerStreamingCall<ListRequest | Malformed, { info: InfoMessage[] }> = (call) => {
    const started = performance.now();
    const req = call.request;
    let logged = false;
    const done = (code: grpc.status, outcome: string): void => {
      if (!logged) log('List', describe(req), grpc.status[code], outcome, performance.now() - started);
      logged = true;
    };
    call.once('cancelled', () => done(grpc.status.CANCELLED, 'CANCELLED'));
    if (req instanceof Malformed) {
      done(grpc.status.INVALID_ARGUMENT, `INVALID_ARGUMENT: ${req.reason}`);
      return void call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: `malformed List request: ${req.reason}` });
    }
    let infos: Info[];
    try {
      infos = snapshotter.walk(req.filters);
    } catch (err) {
      const status = statusOf(err);
      done(status.code, `${grpc.status[status.code]}: ${status.details}`);
      return void call.emit('error', status);
    }
    let sent = 0;
    // Batches are written as the client takes them; a client gone mid-stream just stops it.
    const writeMore = (): void => {
      while (sent < infos.length && !call.cancelled) {
        const batch = infos.slice(sent, sent + LIST_BATCH).map(infoMessage);
        sent += batch.length;
        if (!call.write({ info: batch })) return void call.once('drain', writeMore);
      }
      if (call.cancelled) return;
      done(grpc.status.OK, `ok (${infos.length})`);
      call.end();
    };
    writeMore();
  };

  const implementation: grpc.UntypedServiceImplementation = {
    Prepare: unary('Prepare', (r: CreateRequest) => mountMessages(snapshotter.prepare(r.key, r.parent, r.labels)), CREATE),
    View: unary('View', (r: CreateRequest) => mountMessages(snapshotter.view(r.key, r.parent, r.labels)), CREATE),
    Mounts: unary('Mounts', (r: KeyRequest) => mountMessages(snapshotter.mounts(r.key)), 'failed to get snapshot mount'),
    Commit: unary(
      'Commit',
      async (r: CommitRequest) => {
        await snapshotter.commit(r.name, r.key, r.labels, { parent: r.parent });
        return {};
      },
      'failed to commit snapshot',
    ),
    Remove: unary(
      'Remove',
      (r: KeyRequest) => {
        snapshotter.remove(r.key);
        return {};
      },
      'failed to remove',
    ),
    Stat: unary('Stat', (r: KeyRequest) => ({ info: infoMessage(snapshotter.stat(r.key)) })),
    Update: unary('Update', (r: UpdateRequest) => {
      const info = r.info ?? { name: '', labels: {} };
      return { info: infoMessage(snapshotter.update(info.name, info.labels, r.update_mask?.paths ?? [])) };
    }),
    List: list,
    Usage: unary('Usage', (r: KeyRequest) => snapshotter.usage(r.key)),
    Cleanup: unary('Cleanup', () => {
      snapshotter.cleanup();
      return {};
    }),
  };
  return {
    definition,
    implementation,
    idle: async () => {
      while (working.size > 0) await Promise.allSettled([...working]);
    },
  };
}

function loadPackage(): protoLoader.PackageDefinition {
  return protoLoader.loadSync('snapshots.proto', { includeDirs: [PROTO_DIR], keepCase: true, longs: Number, enums: String, defaults: true });
}

/**
 * The same service, with each request checked against the wire format
 * before protobufjs decodes it, and one that does not decode passed on as
 * Malformed instead of failing inside grpc-js.
 *
 * protobufjs alone lets malformed requests through. For a Node Buffer it
 * reads strings with BufferReader.string(), which ends a string at the
 * smaller of its declared end and the end of the bytes, where every other
 * read fails: a string field cut short decodes as the part that came (the
 * Prepare `12 0a "trunc1"`, whose key declares 10 bytes, prepares "trunc1").
 * Its generated decoders also read a known field the way its type says,
 * whatever wire type it came with (a string sent as a varint is read as a
 * string); skip field number 0, groups and over-long varints as unknown
 * fields; and turn invalid UTF-8 into U+FFFD.
 */
function strict(definition: grpc.ServiceDefinition, checks: Readonly<Record<string, WireCheck>>): grpc.ServiceDefinition {
  return Object.fromEntries(
    Object.entries(definition).map(([name, method]) => {
      const check = checks[name];
      const requestDeserialize = (bytes: Buffer): unknown => {
        const problem = check(bytes);
        if (problem !== null) return new Malformed(problem);
        // Should protobufjs still refuse what the check let through, the client hears why all the same.
        try {
          return method.requestDeserialize(bytes);
        } catch (err) {
          return new Malformed(messageOf(err));
        }
      };
      return [name, { ...method, requestDeserialize }];
    }),
  );
}

/** A client of the service (tests, benchmarks). */
export function snapshotsClientConstructor(): grpc.ServiceClientConstructor {
  return grpc.makeGenericClientConstructor(loadPackage()[SERVICE] as grpc.ServiceDefinition, 'Snapshots');
}
