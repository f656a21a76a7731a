import type { Filter, Selector } from '../filters/parse';
import { matches } from '../filters/match';
import type { Tx } from './store';
import { SELECT_SNAPSHOT, toRecord, type Labels, type SnapshotRecord } from './snapshots';

/**
 * Walk: the snapshots that match `filter`, in key order.
 *
 * The filter is evaluated exactly in JavaScript; SQL only narrows the rows
 * read. Each conjunction contributes the rows of its most selective indexed
 * equality (name, label, parent, kind); a conjunction without one means a
 * full scan.
 */
export function walkSnapshots(tx: Tx, filter: Filter): SnapshotRecord[] {
  const candidates = candidateQuery(filter);
  const where = candidates === undefined ? '' : ` WHERE s.id IN (${candidates.sql})`;
  const params = candidates?.params ?? [];
  const rows = tx.stmt(`${SELECT_SNAPSHOT}${where} ORDER BY s.key`).all(...params);
  const labelWhere = candidates === undefined ? '' : ` WHERE snapshot_id IN (${candidates.sql})`;
  const labels = new Map<number, [string, string][]>();
  for (const l of tx.stmt(`SELECT snapshot_id, name, value FROM labels${labelWhere}`).all(...params)) {
    const { snapshot_id, name, value } = l as { snapshot_id: bigint; name: string; value: string };
    const id = Number(snapshot_id);
    let m = labels.get(id);
    if (m === undefined) labels.set(id, (m = []));
    m.push([name, value]);
  }
  const out: SnapshotRecord[] = [];
  for (const row of rows) {
    const record = toRecord(row, Object.fromEntries(labels.get(Number((row as { id: bigint }).id)) ?? []));
    if (matches(filter, (path) => fieldOf(record, path))) out.push(record);
  }
  return out;
}

/** The field lookup containerd's snapshot filters use. */
export function fieldOf(s: SnapshotRecord, fieldpath: readonly string[]): string | undefined {
  switch (fieldpath[0]) {
    case 'name':
      return s.key;
    case 'parent':
      return s.parent;
    case 'kind':
      return s.kind;
    case 'labels':
      return fieldpath.length > 1 ? labelOf(s.labels, fieldpath.slice(1).join('.')) : undefined;
    default:
      return undefined;
  }
}

function labelOf(labels: Labels, name: string): string | undefined {
  return Object.hasOwn(labels, name) ? labels[name] : undefined;
}

interface Query {
  sql: string;
  params: string[];
}

function candidateQuery(filter: Filter): Query | undefined {
  if (filter.length === 0) return undefined;
  const parts: Query[] = [];
  for (const conjunction of filter) {
    const q = mostSelective(conjunction);
    if (q === undefined) return undefined;
    parts.push(q);
  }
  return { sql: parts.map((p) => p.sql).join(' UNION '), params: parts.flatMap((p) => p.params) };
}

function mostSelective(conjunction: readonly Selector[]): Query | undefined {
  let best: { rank: number; q: Query } | undefined;
  for (const s of conjunction) {
    const c = indexedQuery(s);
    if (c !== undefined && (best === undefined || c.rank < best.rank)) best = c;
  }
  return best?.q;
}

function indexedQuery(s: Selector): { rank: number; q: Query } | undefined {
  const [field, ...rest] = s.fieldpath;
  if (field === 'labels' && rest.length > 0) {
    const name = rest.join('.');
    if (s.operator === '==') {
      return { rank: 1, q: { sql: 'SELECT snapshot_id FROM labels WHERE name = ? AND value = ?', params: [name, s.value] } };
    }
    if (s.operator === 'present') {
      return { rank: 3, q: { sql: 'SELECT snapshot_id FROM labels WHERE name = ?', params: [name] } };
    }
    return undefined;
  }
  if (s.operator !== '==' || rest.length > 0) return undefined;
  switch (field) {
    case 'name':
      return { rank: 0, q: { sql: 'SELECT id FROM snapshots WHERE key = ?', params: [s.value] } };
    case 'parent':
      return s.value === ''
        ? { rank: 2, q: { sql: 'SELECT id FROM snapshots WHERE parent_id IS NULL', params: [] } }
        : {
            rank: 2,
            q: {
              sql: 'SELECT c.id FROM snapshots c JOIN snapshots p ON c.parent_id = p.id WHERE p.key = ?',
              params: [s.value],
            },
          };
    case 'kind':
      return { rank: 4, q: { sql: 'SELECT id FROM snapshots WHERE kind = ?', params: [s.value] } };
    default:
      return undefined;
  }
}
