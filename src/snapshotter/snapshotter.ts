import * as fs from 'node:fs';
import { nowNs } from '../clock';
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from '../errors';
import { faultPoint } from '../faults';
import { parseFilters } from '../filters/parse';
import { appendEvent, eventsAfter, type SnapshotEvent } from '../metastore/events';
import {
  allIds,
  commitSnapshot,
  deleteSnapshot,
  getSnapshot,
  hasChildren,
  insertSnapshot,
  parentChain,
  replaceLabels,
  type Kind,
  type Labels,
  type SnapshotRecord,
  type Usage,
} from '../metastore/snapshots';
import { Store, type Tx } from '../metastore/store';
import { walkSnapshots } from '../metastore/walk';
import { removeTree, renameIfPresent } from './dirs';
import { classifyEntry, Layout } from './layout';
import { mountsOf, type Mount } from './mounts';
import { createRoot, inspectRoot } from './root';
import { diskUsage, type UsageProgress } from './usage';
import { validateKey, validateLabels } from './validate';

export type { Kind, Labels, Usage, UsageProgress, Mount, SnapshotEvent };

/** What Stat and Walk return, as containerd's snapshots.Info. */
export interface Info {
  readonly name: string;
  readonly parent: string;
  readonly kind: Kind;
  readonly labels: Labels;
  readonly created: bigint;
  readonly updated: bigint;
}

/**
 * containerd's Snapshotter over one root directory. Each operation is one
 * SQLite transaction; directories are created inside the transaction (so a
 * failed one leaves only an orphan that Cleanup removes) and deleted after it
 * (so a crash never leaves metadata pointing at a missing directory).
 */
export class Snapshotter {
  readonly layout: Layout;
  private store: Store | undefined;
  private storeIsReal = false;

  constructor(root: string) {
    this.layout = new Layout(root);
  }

  prepare(key: string, parent = '', labels: Labels = {}): Mount[] {
    return this.createSnapshot('active', key, parent, labels);
  }

  view(key: string, parent = '', labels: Labels = {}): Mount[] {
    return this.createSnapshot('view', key, parent, labels);
  }

  mounts(key: string): Mount[] {
    validateKey(key);
    return this.reader().read((tx) => {
      const s = mustGet(tx, key);
      if (s.kind === 'committed') {
        throw failedPrecondition(`snapshot ${JSON.stringify(key)}: is committed; only active snapshots and views have mounts`);
      }
      return mountsOf(this.layout, s.kind, s.id, parentChain(tx, s.id));
    });
  }

  commit(name: string, key: string, labels: Labels = {}, onProgress?: UsageProgress): void {
    validateKey(name);
    validateKey(key);
    validateLabels(labels);
    const store = this.writer();
    // The tree walk happens before taking the write lock; the transaction
    // re-checks that the snapshot is still the one measured.
    const measured = store.read((tx) => checkCommittable(tx, name, key));
    const usage = diskUsage(this.layout.fs(measured.id), onProgress);
    faultPoint('commit:measured');
    store.write((tx) => {
      const s = checkCommittable(tx, name, key);
      const time = nowNs();
      commitSnapshot(tx, s.id, name, labels, s.id === measured.id ? usage : diskUsage(this.layout.fs(s.id)), time);
      appendEvent(tx, { topic: '/snapshot/commit', key, name, time });
      faultPoint('commit:updated');
    });
    faultPoint('commit:done');
  }

  remove(key: string): void {
    validateKey(key);
    const id = this.writer().write((tx) => {
      const s = mustGet(tx, key);
      if (hasChildren(tx, s.id)) throw failedPrecondition(`snapshot ${JSON.stringify(key)}: cannot remove snapshot with child`);
      deleteSnapshot(tx, s.id);
      appendEvent(tx, { topic: '/snapshot/remove', key, time: nowNs() });
      faultPoint('remove:deleted');
      return s.id;
    });
    faultPoint('remove:committed');
    this.discard(String(id));
  }

  stat(key: string): Info {
    validateKey(key);
    return toInfo(this.reader().read((tx) => mustGet(tx, key)));
  }

  /**
   * Update changes labels only. No field paths replaces all labels;
   * `labels` does the same; `labels.NAME` sets or (with an empty or missing
   * value) deletes one label.
   */
  update(key: string, labels: Labels, fieldpaths: readonly string[] = []): Info {
    validateKey(key);
    validateLabels(labels);
    for (const p of fieldpaths) {
      if (p !== 'labels' && !(p.startsWith('labels.') && p.length > 'labels.'.length)) {
        throw invalidArgument(`snapshot ${JSON.stringify(key)}: cannot update field ${JSON.stringify(p)}; only labels can change`);
      }
    }
    return toInfo(
      this.writer().write((tx) => {
        const s = mustGet(tx, key);
        const next: Record<string, string> = fieldpaths.length === 0 ? { ...labels } : { ...s.labels };
        for (const p of fieldpaths) {
          if (p === 'labels') {
            for (const name of Object.keys(next)) delete next[name];
            Object.assign(next, labels);
            continue;
          }
          const name = p.slice('labels.'.length);
          const value = Object.prototype.hasOwnProperty.call(labels, name) ? labels[name]! : '';
          if (value === '') delete next[name];
          else next[name] = value;
        }
        const time = nowNs();
        replaceLabels(tx, s.id, next, time);
        appendEvent(tx, { topic: '/snapshot/update', key, time });
        return mustGet(tx, key);
      }),
    );
  }

  /** Walk: snapshots matching any of `filters` (containerd's syntax), in key order. */
  walk(filters: readonly string[] = []): Info[] {
    const filter = parseFilters(filters);
    return this.reader().read((tx) => walkSnapshots(tx, filter)).map(toInfo);
  }

  /** Fixed at commit for committed snapshots; measured now for the others. */
  usage(key: string, onProgress?: UsageProgress): Usage {
    validateKey(key);
    const s = this.reader().read((tx) => mustGet(tx, key));
    if (s.usage !== undefined) return s.usage;
    try {
      return diskUsage(this.layout.fs(s.id), onProgress);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw notFound(`snapshot ${JSON.stringify(key)}: removed meanwhile`);
      throw err;
    }
  }

  /**
   * Removes every directory under ROOT/snapshots that no snapshot owns:
   * leftovers of processes killed mid-operation. Returns their names.
   */
  cleanup(): string[] {
    const store = this.writer();
    const doomed = store.write((tx) => {
      const ids = allIds(tx);
      const names: string[] = [];
      for (const name of fs.readdirSync(this.layout.snapshots)) {
        const entry = classifyEntry(name);
        if (entry !== undefined && 'id' in entry && ids.has(entry.id)) continue;
        if (entry !== undefined && 'ownerPid' in entry && processIsAlive(entry.ownerPid)) continue;
        names.push(name);
      }
      return names;
    });
    for (const name of doomed) this.discard(name);
    return doomed;
  }

  /** The event journal after sequence number `after`. */
  events(after = 0, limit = 1000): SnapshotEvent[] {
    return this.reader().read((tx) => eventsAfter(tx, after, limit));
  }

  close(): void {
    this.store?.close();
    this.store = undefined;
  }

  private createSnapshot(kind: 'active' | 'view', key: string, parent: string, labels: Labels): Mount[] {
    validateKey(key);
    if (parent !== '') validateKey(parent, 'parent');
    validateLabels(labels);
    let made: string | undefined;
    try {
      return this.writer().write((tx) => {
        if (getSnapshot(tx, key) !== undefined) throw alreadyExists(`snapshot ${JSON.stringify(key)}: already exists`);
        let parentId: number | undefined;
        if (parent !== '') {
          const p = getSnapshot(tx, parent);
          if (p === undefined) throw notFound(`snapshot ${JSON.stringify(key)}: parent ${JSON.stringify(parent)} does not exist`);
          if (p.kind !== 'committed') {
            throw invalidArgument(`snapshot ${JSON.stringify(key)}: parent ${JSON.stringify(parent)} is ${p.kind}, not committed`);
          }
          parentId = p.id;
        }
        const time = nowNs();
        const id = insertSnapshot(tx, { key, kind, parentId, labels, time });
        appendEvent(tx, { topic: kind === 'active' ? '/snapshot/prepare' : '/snapshot/view', key, parent, time });
        faultPoint(`${kind === 'active' ? 'prepare' : 'view'}:inserted`);
        made = this.makeDirectories(id, parentId);
        faultPoint(`${kind === 'active' ? 'prepare' : 'view'}:dirs`);
        return mountsOf(this.layout, kind, id, parentId === undefined ? [] : parentChain(tx, id));
      });
    } catch (err) {
      if (made !== undefined) removeTree(made);
      throw err;
    }
  }

  /** Called inside the write transaction that allocated `id`. */
  private makeDirectories(id: number, parentId: number | undefined): string {
    const tmp = this.layout.creating(id);
    try {
      fs.mkdirSync(tmp, { mode: 0o700 });
      fs.mkdirSync(`${tmp}/fs`, { mode: 0o755 });
      fs.mkdirSync(`${tmp}/work`, { mode: 0o700 });
      // The upper directory is the merged root: give it the parent's owner
      // and mode, or a chown'd base image root would turn root-owned again.
      if (parentId !== undefined) {
        const st = fs.statSync(this.layout.fs(parentId));
        if (st.uid !== process.getuid?.() || st.gid !== process.getgid?.()) fs.chownSync(`${tmp}/fs`, st.uid, st.gid);
        fs.chmodSync(`${tmp}/fs`, st.mode & 0o7777);
      }
      // An id from a transaction that was killed before committing is handed
      // out again; its directory, if the killed process got that far, is an orphan.
      this.discard(String(id));
      fs.renameSync(tmp, this.layout.dir(id));
      return this.layout.dir(id);
    } catch (err) {
      removeTree(tmp);
      throw err;
    }
  }

  /** Moves ROOT/snapshots/NAME out of the way atomically, then deletes it. */
  private discard(name: string): void {
    const doomed = this.layout.removing(name.replace(/^\.(?:new|rm)-/, ''));
    if (renameIfPresent(`${this.layout.snapshots}/${name}`, doomed)) removeTree(doomed);
  }

  /** For reads: a root that does not exist yet reads as empty and is not created. */
  private reader(): Store {
    if (this.store === undefined) {
      if (inspectRoot(this.layout) === 'missing') {
        this.store = Store.empty();
        this.storeIsReal = false;
      } else {
        this.store = Store.open(this.layout.db);
        this.storeIsReal = true;
      }
    }
    return this.store;
  }

  private writer(): Store {
    if (this.store !== undefined && this.storeIsReal) return this.store;
    this.close();
    if (inspectRoot(this.layout) === 'missing') createRoot(this.layout);
    this.store = Store.open(this.layout.db);
    this.storeIsReal = true;
    fs.mkdirSync(this.layout.snapshots, { recursive: true, mode: 0o700 });
    return this.store;
  }
}

function mustGet(tx: Tx, key: string): SnapshotRecord {
  const s = getSnapshot(tx, key);
  if (s === undefined) throw notFound(`snapshot ${JSON.stringify(key)}: not found`);
  return s;
}

function checkCommittable(tx: Tx, name: string, key: string): SnapshotRecord {
  if (getSnapshot(tx, name) !== undefined) throw alreadyExists(`snapshot ${JSON.stringify(name)}: already exists`);
  const s = mustGet(tx, key);
  if (s.kind !== 'active') {
    throw failedPrecondition(`snapshot ${JSON.stringify(key)}: is ${s.kind === 'view' ? 'a view' : 'committed'}; only active snapshots can be committed`);
  }
  return s;
}

function toInfo(s: SnapshotRecord): Info {
  return { name: s.key, parent: s.parent, kind: s.kind, labels: s.labels, created: s.created, updated: s.updated };
}

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
