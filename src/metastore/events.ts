import type { Tx } from './store';

/** containerd's topics, plus view and update, which containerd does not publish. */
export type Topic = '/snapshot/prepare' | '/snapshot/view' | '/snapshot/commit' | '/snapshot/remove' | '/snapshot/update';

export interface SnapshotEvent {
  readonly seq: number;
  readonly time: bigint;
  readonly topic: Topic;
  readonly key: string;
  /** prepare and view: the parent's key ('' for none). */
  readonly parent?: string;
  /** commit: the committed name. */
  readonly name?: string;
}

export function appendEvent(tx: Tx, e: Omit<SnapshotEvent, 'seq'>): void {
  tx.stmt('INSERT INTO events (time, topic, key, parent, name) VALUES (?, ?, ?, ?, ?)').run(
    e.time,
    e.topic,
    e.key,
    e.parent ?? null,
    e.name ?? null,
  );
}

/** Events after sequence number `after`, oldest first. */
export function eventsAfter(tx: Tx, after: number, limit: number): SnapshotEvent[] {
  return tx
    .stmt('SELECT seq, time, topic, key, parent, name FROM events WHERE seq > ? ORDER BY seq LIMIT ?')
    .all(after, limit)
    .map((row) => {
      const r = row as { seq: bigint; time: bigint; topic: Topic; key: string; parent: string | null; name: string | null };
      return {
        seq: Number(r.seq),
        time: r.time,
        topic: r.topic,
        key: r.key,
        ...(r.parent === null ? {} : { parent: r.parent }),
        ...(r.name === null ? {} : { name: r.name }),
      };
    });
}
