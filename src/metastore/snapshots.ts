import type { Tx } from './store';

export type Kind = 'active' | 'view' | 'committed';
export type Labels = Readonly<Record<string, string>>;

export interface Usage {
  readonly size: number;
  readonly inodes: number;
}

export interface SnapshotRecord {
  readonly id: number;
  readonly key: string;
  readonly kind: Kind;
  /** Key of the parent; '' when there is none, as containerd reports it. */
  readonly parent: string;
  readonly labels: Labels;
  readonly created: bigint;
  readonly updated: bigint;
  /** Fixed at commit; undefined for active snapshots and views. */
  readonly usage?: Usage;
}

interface Row {
  id: bigint;
  key: string;
  kind: Kind;
  parent: string | null;
  created: bigint;
  updated: bigint;
  size: bigint | null;
  inodes: bigint | null;
}

export const SELECT_SNAPSHOT = `
  SELECT s.id, s.key, s.kind, p.key AS parent, s.created, s.updated, s.size, s.inodes
  FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id`;

export function toRecord(row: unknown, labels: Labels): SnapshotRecord {
  const r = row as Row;
  const base = {
    id: Number(r.id),
    key: r.key,
    kind: r.kind,
    parent: r.parent ?? '',
    labels,
    created: r.created,
    updated: r.updated,
  };
  if (r.size === null || r.inodes === null) return base;
  return { ...base, usage: { size: Number(r.size), inodes: Number(r.inodes) } };
}

export function getSnapshot(tx: Tx, key: string): SnapshotRecord | undefined {
  const row = tx.stmt(`${SELECT_SNAPSHOT} WHERE s.key = ?`).get(key);
  return row === undefined ? undefined : toRecord(row, getLabels(tx, Number((row as Row).id)));
}

function getLabels(tx: Tx, id: number): Labels {
  const rows = tx.stmt('SELECT name, value FROM labels WHERE snapshot_id = ?').all(id) as { name: string; value: string }[];
  // fromEntries, not assignment: a label may be called __proto__.
  return Object.fromEntries(rows.map((r) => [r.name, r.value]));
}

export interface NewSnapshot {
  readonly key: string;
  readonly kind: 'active' | 'view';
  readonly parentId: number | undefined;
  readonly labels: Labels;
  readonly time: bigint;
}

/** Returns the new snapshot's id; ids are never reused (AUTOINCREMENT). */
export function insertSnapshot(tx: Tx, s: NewSnapshot): number {
  const { lastInsertRowid } = tx
    .stmt('INSERT INTO snapshots (key, kind, parent_id, created, updated) VALUES (?, ?, ?, ?, ?)')
    .run(s.key, s.kind, s.parentId ?? null, s.time, s.time);
  const id = Number(lastInsertRowid);
  writeLabels(tx, id, s.labels);
  return id;
}

/** Turns active snapshot `id` into committed `name`: same id, same directory. */
export function commitSnapshot(tx: Tx, id: number, name: string, labels: Labels, usage: Usage, time: bigint): void {
  tx.stmt(
    "UPDATE snapshots SET key = ?, kind = 'committed', created = ?, updated = ?, size = ?, inodes = ? WHERE id = ?",
  ).run(name, time, time, usage.size, usage.inodes, id);
  tx.stmt('DELETE FROM labels WHERE snapshot_id = ?').run(id);
  writeLabels(tx, id, labels);
}

/** Gives snapshot `id` a parent (a rebase at commit). */
export function setParent(tx: Tx, id: number, parentId: number): void {
  tx.stmt('UPDATE snapshots SET parent_id = ? WHERE id = ?').run(parentId, id);
}

export function deleteSnapshot(tx: Tx, id: number): void {
  tx.stmt('DELETE FROM snapshots WHERE id = ?').run(id);
}

export function hasChildren(tx: Tx, id: number): boolean {
  return tx.stmt('SELECT 1 FROM snapshots WHERE parent_id = ? LIMIT 1').get(id) !== undefined;
}

/** Replaces the labels of `id` wholesale. */
export function replaceLabels(tx: Tx, id: number, labels: Labels, time: bigint): void {
  tx.stmt('DELETE FROM labels WHERE snapshot_id = ?').run(id);
  writeLabels(tx, id, labels);
  tx.stmt('UPDATE snapshots SET updated = ? WHERE id = ?').run(time, id);
}

/** The ids of the parent chain of `id`, nearest parent first. */
export function parentChain(tx: Tx, id: number): number[] {
  const rows = tx
    .stmt(
      `WITH RECURSIVE chain (id, depth) AS (
         SELECT parent_id, 1 FROM snapshots WHERE id = ? AND parent_id IS NOT NULL
         UNION ALL
         SELECT s.parent_id, c.depth + 1 FROM snapshots s JOIN chain c ON s.id = c.id WHERE s.parent_id IS NOT NULL
       )
       SELECT id FROM chain ORDER BY depth`,
    )
    .all(id);
  return rows.map((r) => Number((r as { id: bigint }).id));
}

export function allIds(tx: Tx): Set<number> {
  return new Set(tx.stmt('SELECT id FROM snapshots').all().map((r) => Number((r as { id: bigint }).id)));
}

function writeLabels(tx: Tx, id: number, labels: Labels): void {
  const insert = tx.stmt('INSERT INTO labels (snapshot_id, name, value) VALUES (?, ?, ?)');
  for (const [name, value] of Object.entries(labels)) {
    if (value !== '') insert.run(id, name, value);
  }
}
