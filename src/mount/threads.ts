import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { BrowseHandOver, HandOver } from './handover';
import { sumStats, type DaemonStats } from './stats';
import type { FromWorker, ToWorker } from './serving-worker';

/** How long a thread has to say what its mounts have cost: well within what serve waits for a daemon (daemon-stats.ts). */
const ASK_MS = 1_000;

interface Thread {
  readonly worker: Worker;
  /** Mounts it serves, or is starting. */
  load: number;
}

interface Pending {
  readonly thread: Thread;
  readonly mounted: (err: Error | undefined) => void;
  readonly ended: (message: string | undefined) => void;
}

/**
 * The daemon's serving threads, up to one per core (SNAPFS_DAEMON_THREADS
 * sets how many), started as mounts come; each new mount goes to the
 * thread serving the fewest.
 */
export class Threads {
  private readonly threads: Thread[] = [];
  private readonly mounts = new Map<number, Pending>();
  private readonly asking = new Map<number, { readonly left: Set<Thread>; readonly take: (msg: FromWorker) => void; readonly done: () => void }>();
  private next = 1;
  private readonly size = threadCount();

  /**
   * Serves `request` (with its descriptors, now the thread's to close) on a
   * thread; resolves with the mount's id once it is live. `onEnded` is
   * called once its session is over and its layers let go of.
   */
  serve(request: HandOver | BrowseHandOver, fds: readonly number[], onEnded: (message: string | undefined) => void): Promise<number> {
    const thread = this.leastLoaded();
    const id = this.next++;
    thread.load++;
    return new Promise((resolve, reject) => {
      this.mounts.set(id, {
        thread,
        mounted: (err) => (err === undefined ? resolve(id) : reject(err)),
        ended: (message) => {
          thread.load--;
          onEnded(message);
        },
      });
      this.post(thread, { type: 'serve', id, request, fds });
    });
  }

  /** Ends the session of mount `id` without unmounting it. */
  close(id: number): void {
    const m = this.mounts.get(id);
    if (m !== undefined) this.post(m.thread, { type: 'close', id });
  }

  /** Requests answered by each live mount, by id. */
  counts(): Promise<Map<number, number>> {
    const counts = new Map<number, number>();
    return this.askEvery(
      'count',
      (msg) => {
        if (msg.type === 'counts') for (const [id, n] of msg.counts) counts.set(id, n);
      },
      () => counts,
    );
  }

  /** What the threads' mounts have cost since they started. */
  stats(): Promise<DaemonStats> {
    const each: DaemonStats[] = [];
    return this.askEvery(
      'stats',
      (msg) => {
        if (msg.type === 'stats') each.push(msg.stats);
      },
      () => ({ ...sumStats(each), mounts: each.reduce((n, s) => n + s.mounts, 0), internalErrors: each.reduce((n, s) => n + s.internalErrors, 0) }),
    );
  }

  /** Asks every thread, and resolves with what `result` makes of their answers once all answered (or ASK_MS passed). */
  private askEvery<T>(type: 'count' | 'stats', take: (msg: FromWorker) => void, result: () => T): Promise<T> {
    const ask = this.next++;
    const left = new Set(this.threads);
    if (left.size === 0) return Promise.resolve(result());
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.asking.delete(ask);
        resolve(result());
      };
      const timer = setTimeout(done, ASK_MS);
      this.asking.set(ask, { left, take, done });
      for (const t of left) this.post(t, { type, ask });
    });
  }

  /** An idle thread, else a new one while there are fewer than cores, else the least loaded: a lone mount costs one thread. */
  private leastLoaded(): Thread {
    const least = this.threads.reduce<Thread | undefined>((best, t) => (best === undefined || t.load < best.load ? t : best), undefined);
    if (least !== undefined && (least.load === 0 || this.threads.length >= this.size)) return least;
    return this.start();
  }

  private start(): Thread {
    // Descriptors pass between threads (received here, served and closed there): none is a thread's own.
    const worker = new Worker(path.join(__dirname, 'serving-worker.js'), { trackUnmanagedFds: false });
    const thread: Thread = { worker, load: 0 };
    worker.on('message', (msg: FromWorker) => this.received(thread, msg));
    // A thread that fails takes its mounts with it: the daemon cannot go on serving them, nor know their state.
    worker.on('error', (err) => {
      console.error(`snapfs: a serving thread failed: ${err.stack ?? err.message}`);
      process.exit(70);
    });
    worker.unref();
    this.threads.push(thread);
    return thread;
  }

  private received(thread: Thread, msg: FromWorker): void {
    switch (msg.type) {
      case 'mounted':
        this.mounts.get(msg.id)?.mounted(undefined);
        return;
      case 'failed': {
        const m = this.mounts.get(msg.id);
        this.mounts.delete(msg.id);
        thread.load--;
        m?.mounted(new Error(msg.message));
        return;
      }
      case 'ended': {
        const m = this.mounts.get(msg.id);
        this.mounts.delete(msg.id);
        m?.ended(msg.message);
        return;
      }
      case 'counts':
      case 'stats': {
        const a = this.asking.get(msg.ask);
        if (a === undefined) return;
        a.take(msg);
        a.left.delete(thread);
        if (a.left.size === 0) a.done();
        return;
      }
    }
  }

  private post(thread: Thread, msg: ToWorker): void {
    thread.worker.postMessage(msg);
  }
}

function threadCount(): number {
  const given = Number(process.env.SNAPFS_DAEMON_THREADS);
  return Number.isSafeInteger(given) && given > 0 ? given : os.availableParallelism();
}
