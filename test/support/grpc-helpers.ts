import * as grpc from '@grpc/grpc-js';
import { spawn, type ChildProcess } from 'node:child_process';
import { snapshotsClientConstructor } from '../../src/grpc/service';
import { CLI } from './helpers';

export interface Server {
  readonly proc: ChildProcess;
  /** Everything the server wrote to stderr so far. */
  log(): string;
  /** Resolves with the exit code (or signal name). */
  readonly exited: Promise<number | string>;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | string>;
}

/** Starts `snapfs serve` in a child process; resolves once it listens, rejects if it exits first. */
export function startServer(root: string, address: string, args: readonly string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Server> {
  const proc = spawn(process.execPath, [CLI, '--root', root, 'serve', '--address', address, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stderr = '';
  const exited = new Promise<number | string>((resolve) => proc.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const server: Server = {
    proc,
    log: () => stderr,
    exited,
    stop: () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
  return new Promise((resolve, reject) => {
    proc.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (stderr.includes('level=info serving')) resolve(server);
    });
    void exited.then((code) => reject(new Error(`snapfs serve exited (${code}): ${stderr}`)));
  });
}

export type Reply = Record<string, unknown>;
export interface CallError {
  code: grpc.status;
  details: string;
}

/** A promise-shaped client of the Snapshots service. */
export class SnapshotsClient {
  readonly raw: grpc.Client & Record<string, (...args: unknown[]) => unknown>;

  constructor(address: string) {
    const Client = snapshotsClientConstructor();
    this.raw = new Client(`unix:${address}`, grpc.credentials.createInsecure()) as SnapshotsClient['raw'];
  }

  call(method: string, request: Reply): Promise<Reply> {
    return new Promise((resolve, reject) => {
      this.raw[method]!(request, (err: grpc.ServiceError | null, reply: Reply) => (err === null ? resolve(reply) : reject(err)));
    });
  }

  /** The error a call fails with (throws if it succeeds). */
  async failure(method: string, request: Reply): Promise<CallError> {
    try {
      await this.call(method, request);
    } catch (err) {
      const { code, details } = err as grpc.ServiceError;
      return { code, details };
    }
    throw new Error(`${method} succeeded`);
  }

  /** List's stream: each message's batch of infos. */
  list(filters: readonly string[] = []): Promise<Reply[][]> {
    return new Promise((resolve, reject) => {
      const batches: Reply[][] = [];
      const stream = this.raw.List!({ filters }) as grpc.ClientReadableStream<{ info: Reply[] }>;
      stream.on('data', (m: { info: Reply[] }) => batches.push(m.info));
      stream.on('error', reject);
      stream.on('end', () => resolve(batches));
    });
  }

  /** The status of a call whose request is `bytes` as they are, not encoded from a message (List's messages are dropped). */
  statusOfBytes(method: string, bytes: Buffer): Promise<CallError> {
    const path = `/containerd.services.snapshots.v1.Snapshots/${method}`;
    const asIs = (b: Buffer): Buffer => b;
    return new Promise((resolve) => {
      const status = ({ code, details }: grpc.StatusObject): void => resolve({ code, details });
      if (method === 'List') {
        const stream = this.raw.makeServerStreamRequest(path, asIs, asIs, bytes);
        stream.on('data', () => undefined);
        stream.on('error', () => undefined); // its status says the same
        stream.on('status', status);
      } else {
        this.raw.makeUnaryRequest(path, asIs, asIs, bytes, () => undefined).on('status', status);
      }
    });
  }

  close(): void {
    this.raw.close();
  }
}
