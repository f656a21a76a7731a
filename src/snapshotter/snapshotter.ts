import * as fs from 'node:fs';
import * as path from 'node:path';
import { nowNs } from '../clock';
import { alreadyExists, failedPrecondition, invalidArgument, kindOf, notFound } from '../errors';
import { faultPoint } from '../faults';
import { inInitialUserNamespace } from '../namespaces';
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
  setParent,
  type Kind,
  type Labels,
  type SnapshotRecord,
  type Usage,
} from '../metastore/snapshots';
import { Store, type Tx } from '../metastore/store';
import { walkSnapshots } from '../metastore/walk';
import { WORK_INDEX, WORK_WHITEOUT } from '../overlay/format';
import type { SnapshotStack } from '../overlay/stack';
import { removeTree, renameIfPresent } from './dirs';
import { dropLock, settleAbandoned, takeLock } from './held';
import { Layout, snapshotIdOf } from './layout';
import { fuseOnlyOptions, mountsOf, type Mount } from './mounts';
import { createRoot, inspectRoot } from './root';
import { diskUsage, type UsageProgress } from '../overlay/usage';
import { validateKey, validateLabels } from './validate';

export type { Kind, Labels, Usage, UsageProgress, Mount, SnapshotEvent };

const EVENTS_PER_READ = 1000;

/** An active snapshot that is one process's work while that process lives (see prepareHeld). */
export interface HeldSnapshot {
  readonly key: string;
  /** The snapshot was committed or removed: the lock goes with it. */
  release(): void;
  /** Lets go of a snapshot that could not be removed: cleanup will remove it. */
  abandon(): void;
}

/** What Stat and Walk return, as containerd's snapshots.Info. */
export interface Info {
  readonly name: string;
  readonly parent: string;
  readonly kind: Kind;
  readonly labels: Labels;
  readonly created: bigint;
  readonly updated: bigint;
}

export interface CommitOptions {
  /** Rebase: the committed snapshot's parent, for an active snapshot prepared without one. */
  readonly parent?: string;
  readonly onProgress?: UsageProgress;
}

export interface SnapshotterOptions {
  /**
   * Called by commit with the snapshot's work directory before its layer is
   * measured: resolves once whatever serves a mount of it (if anything
   * does) has frozen its writers, so that the committed layer never changes
   * again. Passed in by whoever knows the mounts (the CLI, `snapfs serve`):
   * the snapshotter knows nothing of FUSE. Default: nothing to freeze.
   */
  readonly freeze?: (workDir: string) => Promise<void>;
}

/**
 * containerd's Snapshotter over one root directory. Each operation is one
 * SQLite transaction; directories are created inside the transaction (so a
 * failed one leaves only an orphan that Cleanup removes) and deleted after it
 * (so a crash never leaves metadata pointing at a missing directory).
 */
export class Snapshotter {
  private readonly layout: Layout;
  private readonly freeze: (workDir: string) => Promise<void>;
  /** Whether containerd, beside this process, can write whiteouts as the kernel does (device nodes, trusted.*). */
  private readonly kernelWhiteouts = process.getuid?.() === 0 && inInitialUserNamespace();
  private store: Store | undefined;
  private storeOnDisk = false;

  constructor(root: string, opts: SnapshotterOptions = {}) {
    this.layout = new Layout(root);
    this.freeze = opts.freeze ?? (() => Promise.resolve());
  }

  prepare(key: string, parent = '', labels: Labels = {}): Mount[] {
    return this.createSnapshot('active', key, parent, labels);
  }

  /**
   * Prepare for work of this process alone (an import), under a fresh key
   * `${prefix}-<16 hex digits>`. The snapshot is held by a lock that the
   * kernel releases when the process ends, however it ends, and that is
   * taken before the snapshot exists: `cleanup` removes a held snapshot
   * whose lock nobody holds, and never one whose process still runs.
   */
  prepareHeld(prefix: string, parent: string, labels: Labels): HeldSnapshot {
    // A snapshot without parent may be the root's first: make the root, then the lock, then the snapshot.
    this.writer(parent === '');
    if (!this.storeOnDisk) throw notFound(`parent ${JSON.stringify(parent)} does not exist`);
    const lock = takeLock(this.layout.held, prefix);
    try {
      this.prepare(lock.key, parent, labels);
    } catch (err) {
      dropLock(this.layout.held, lock);
      throw err;
    }
    return {
      key: lock.key,
      release: () => dropLock(this.layout.held, lock),
      abandon: () => fs.closeSync(lock.fd),
    };
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
      return mountsOf(this.layout, s.kind, s.id, parentChain(tx, s.id), s.labels, this.kernelWhiteouts);
    });
  }

  /**
   * The directories a mount of `key` stacks, topmost first: a committed
   * snapshot's own layer over its parents; a view's parents; an active
   * snapshot's parents, under its upper and work directories.
   */
  layers(key: string): SnapshotStack {
    validateKey(key);
    return this.reader().read((tx) => {
      const s = mustGet(tx, key);
      const parents = parentChain(tx, s.id).map((id) => this.layout.fs(id));
      switch (s.kind) {
        case 'committed':
          return { kind: s.kind, lowers: [this.layout.fs(s.id), ...parents], work: this.layout.work(s.id) };
        case 'view':
          return { kind: s.kind, lowers: parents.length > 0 ? parents : [this.layout.fs(s.id)], work: this.layout.work(s.id) };
        case 'active':
          return { kind: s.kind, lowers: parents, upper: this.layout.fs(s.id), work: this.layout.work(s.id) };
      }
    });
  }

  /**
   * Commit. A mount serving the snapshot is frozen first (read-only from
   * then on, its writes landed), so that the layer never changes again.
   *
   * `parent` rebases (containerd 2's `WithParent` at commit): an active
   * snapshot prepared without parent is committed as a child of committed
   * snapshot `parent`. Its layer is a diff, whiteouts included, so it lands
   * on the new parent as it is. A snapshot that has a parent may only be
   * committed onto that same one.
   */
  async commit(name: string, key: string, labels: Labels = {}, opts: CommitOptions = {}): Promise<void> {
    validateKey(name);
    validateKey(key);
    const parent = opts.parent ?? '';
    if (parent !== '') validateKey(parent, 'parent');
    validateLabels(labels);
    const store = this.writer(false);
    // The tree walk happens before taking the write lock; the transaction
    // re-checks that the snapshot is still the one measured.
    const measured = store.read((tx) => checkCommittable(tx, name, key, parent));
    await this.freeze(this.layout.work(measured.snapshot.id));
    const usage = this.measure(key, measured.snapshot.id, opts.onProgress);
    faultPoint('commit:measured');
    store.write((tx) => {
      const { snapshot: s, newParentId } = checkCommittable(tx, name, key, parent);
      const time = nowNs();
      if (newParentId !== undefined) setParent(tx, s.id, newParentId);
      commitSnapshot(tx, s.id, name, labels, s.id === measured.snapshot.id ? usage : this.measure(key, s.id), time);
      appendEvent(tx, { topic: '/snapshot/commit', key, name, time });
      faultPoint('commit:updated');
    });
    // The layer is committed: the index's second link to each copied-up lower hard link, and the
    // work directory's to the whiteouts, would show in its link counts, to the kernel overlay and
    // to `find -links` alike.
    for (const entry of [WORK_INDEX, WORK_WHITEOUT]) removeTree(path.join(this.layout.work(measured.snapshot.id), entry));
    faultPoint('commit:done');
  }

  /**
   * Removes snapshots in the order given, all in one transaction: either all
   * go or none does (a later key may be the parent of an earlier one).
   */
  remove(...keys: string[]): void {
    keys.forEach((k) => validateKey(k));
    const ids = this.writer(false).write((tx) =>
      keys.map((key) => {
        const s = mustGet(tx, key);
        if (hasChildren(tx, s.id)) throw failedPrecondition(`snapshot ${JSON.stringify(key)}: cannot remove snapshot with child`);
        deleteSnapshot(tx, s.id);
        appendEvent(tx, { topic: '/snapshot/remove', key, time: nowNs() });
        faultPoint('remove:deleted');
        return s.id;
      }),
    );
    faultPoint('remove:committed');
    for (const id of ids) this.discardDir(String(id));
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
    for (const p of fieldpaths) {
      if (p !== 'labels' && !(p.startsWith('labels.') && p.length > 'labels.'.length)) {
        throw invalidArgument(`snapshot ${JSON.stringify(key)}: cannot update field ${JSON.stringify(p)}; only labels can change`);
      }
    }
    const applied = fieldpaths.length === 0 || fieldpaths.includes('labels') ? labels : pick(labels, fieldpaths);
    validateLabels(applied);
    return toInfo(
      this.writer(false).write((tx) => {
        const s = mustGet(tx, key);
        const next = new Map(Object.entries(fieldpaths.length === 0 ? labels : s.labels));
        for (const p of fieldpaths) {
          if (p === 'labels') {
            next.clear();
            for (const [name, value] of Object.entries(labels)) next.set(name, value);
            continue;
          }
          const name = p.slice('labels.'.length);
          const value = Object.hasOwn(labels, name) ? labels[name]! : '';
          if (value === '') next.delete(name);
          else next.set(name, value);
        }
        const time = nowNs();
        const updated = Object.fromEntries(next);
        // The labels mounts are made of (id mappings, max-size) must stay ones they can be made of: refused now, not at the next Mounts.
        if (s.kind !== 'committed') fuseOnlyOptions(s.kind, updated);
        replaceLabels(tx, s.id, updated, time);
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
    return s.usage ?? this.measure(key, s.id, onProgress);
  }

  /**
   * Removes what processes killed mid-operation left: held snapshots whose
   * process is gone (see prepareHeld), then every directory under
   * ROOT/snapshots that no snapshot owns. Returns the snapshots' keys and
   * the directories' names. Directories are moved aside under the write
   * lock, so that an id handed out again right after cannot lose its new
   * directory, and deleted after.
   */
  cleanup(): string[] {
    const store = this.writer(false);
    if (!this.storeOnDisk) return [];
    const abandoned: string[] = [];
    settleAbandoned(this.layout.held, (key) => {
      // Killed before its snapshot was made, or after it was committed: only the lock is left.
      if (store.read((tx) => getSnapshot(tx, key)?.kind) !== 'active') return;
      try {
        this.remove(key);
        abandoned.push(key);
      } catch (err) {
        if (kindOf(err) !== 'NotFound') throw err;
      }
    });
    const doomed = store.write((tx) => {
      const ids = allIds(tx);
      const moved: { name: string; to: string }[] = [];
      for (const name of fs.readdirSync(this.layout.snapshots)) {
        const id = snapshotIdOf(name);
        if (id !== undefined && ids.has(id)) continue;
        const to = this.layout.removing();
        if (renameIfPresent(path.join(this.layout.snapshots, name), to)) moved.push({ name, to });
      }
      return moved;
    });
    for (const { to } of doomed) removeTree(to);
    return [...abandoned, ...doomed.map((d) => d.name)];
  }

  /** The event journal after sequence number `after`. */
  events(after = 0): SnapshotEvent[] {
    return this.reader().read((tx) => eventsAfter(tx, after, EVENTS_PER_READ));
  }

  close(): void {
    this.store?.close();
    this.store = undefined;
  }

  private createSnapshot(kind: 'active' | 'view', key: string, parent: string, labels: Labels): Mount[] {
    validateKey(key);
    if (parent !== '') validateKey(parent, 'parent');
    validateLabels(labels);
    const op = kind === 'active' ? 'prepare' : 'view';
    return this.writer(parent === '').write((tx) => {
      if (getSnapshot(tx, key) !== undefined) throw alreadyExists(`snapshot ${JSON.stringify(key)}: already exists`);
      let parentId: number | undefined;
      if (parent !== '') {
        const p = getSnapshot(tx, parent);
        if (p === undefined) throw notFound(`snapshot ${JSON.stringify(key)}: parent ${JSON.stringify(parent)} does not exist`);
        if (p.kind !== 'committed') {
          throw invalidArgument(`parent ${JSON.stringify(parent)} is not committed snapshot`);
        }
        parentId = p.id;
      }
      const time = nowNs();
      const id = insertSnapshot(tx, { key, kind, parentId, labels, time });
      appendEvent(tx, { topic: kind === 'active' ? '/snapshot/prepare' : '/snapshot/view', key, parent, time });
      const mounts = mountsOf(this.layout, kind, id, parentId === undefined ? [] : parentChain(tx, id), labels, this.kernelWhiteouts);
      faultPoint(`${op}:inserted`);
      // Last, so that nothing but COMMIT can fail after it. Should COMMIT
      // fail, the directory is an orphan of an id that will be handed out
      // again; whoever gets it moves the orphan aside first.
      this.makeDirectories(id, parentId);
      faultPoint(`${op}:dirs`);
      return mounts;
    });
  }

  /**
   * Called inside the write transaction that allocated `id`: until it
   * commits, the directory is an orphan that cleanup (which needs the same
   * lock) cannot see half-made.
   */
  private makeDirectories(id: number, parentId: number | undefined): void {
    const dir = this.layout.dir(id);
    // An id from a transaction that was killed before committing is handed
    // out again; its directory, if the killed process got that far, is an orphan.
    this.discardDir(String(id));
    try {
      fs.mkdirSync(dir, { mode: 0o700 });
      fs.mkdirSync(this.layout.fs(id), { mode: 0o755 });
      fs.mkdirSync(this.layout.work(id), { mode: 0o700 });
      // The lower layer of mounts of snapshots without parents (mountsOf): made once, never written.
      fs.mkdirSync(this.layout.empty, { recursive: true, mode: 0o755 });
      // The upper directory is the merged root: give it the parent's owner
      // and mode, or a chown'd base image root would turn root-owned again.
      if (parentId !== undefined) {
        const st = fs.statSync(this.layout.fs(parentId));
        if (st.uid !== process.getuid?.() || st.gid !== process.getgid?.()) fs.chownSync(this.layout.fs(id), st.uid, st.gid);
        fs.chmodSync(this.layout.fs(id), st.mode & 0o7777);
      }
    } catch (err) {
      removeTree(dir);
      throw err;
    }
  }

  /** Moves ROOT/snapshots/NAME out of the way atomically, then deletes it. */
  private discardDir(name: string): void {
    const doomed = this.layout.removing();
    if (renameIfPresent(path.join(this.layout.snapshots, name), doomed)) removeTree(doomed);
  }

  /** Usage of snapshot `id`'s layer; NotFound if it vanished meanwhile. */
  private measure(key: string, id: number, onProgress?: UsageProgress): Usage {
    try {
      return diskUsage(this.layout.fs(id), onProgress);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw notFound(`snapshot ${JSON.stringify(key)}: removed meanwhile`);
      throw err;
    }
  }

  /**
   * For reads. A root that does not exist yet reads as empty and is not
   * created; it is looked for again on every read, so that a reader started
   * first (events --follow) sees it once it is made.
   */
  private reader(): Store {
    if (this.store !== undefined && this.storeOnDisk) return this.store;
    if (inspectRoot(this.layout) === 'missing') {
      this.store ??= Store.empty();
      return this.store;
    }
    this.close();
    this.store = Store.open(this.layout.db);
    this.storeOnDisk = true;
    return this.store;
  }

  /**
   * For writes. Only an operation that can succeed on an empty root
   * (`create`) makes a missing one; the others run against an empty store
   * and fail as they would on an empty root, leaving the disk untouched.
   */
  private writer(create: boolean): Store {
    if (this.store !== undefined && this.storeOnDisk) return this.store;
    if (!create) return this.reader();
    if (inspectRoot(this.layout) === 'missing') createRoot(this.layout);
    this.close();
    this.store = Store.open(this.layout.db);
    this.storeOnDisk = true;
    fs.mkdirSync(this.layout.snapshots, { recursive: true, mode: 0o700 });
    fs.mkdirSync(this.layout.held, { recursive: true, mode: 0o700 });
    return this.store;
  }
}

function mustGet(tx: Tx, key: string): SnapshotRecord {
  const s = getSnapshot(tx, key);
  if (s === undefined) throw notFound(`snapshot ${JSON.stringify(key)}: not found`);
  return s;
}

/** The active snapshot `key`, and the id of the parent a rebase gives it (undefined: it keeps its own). */
function checkCommittable(tx: Tx, name: string, key: string, parent: string): { snapshot: SnapshotRecord; newParentId: number | undefined } {
  if (getSnapshot(tx, name) !== undefined) throw alreadyExists(`snapshot ${JSON.stringify(name)}: already exists`);
  const s = mustGet(tx, key);
  if (s.kind !== 'active') {
    throw failedPrecondition(`snapshot ${JSON.stringify(key)} is not active`);
  }
  if (parent === '' || parent === s.parent) return { snapshot: s, newParentId: undefined };
  if (s.parent !== '') {
    throw failedPrecondition(`snapshot ${JSON.stringify(key)}: cannot rebase onto ${JSON.stringify(parent)}, it already has parent ${JSON.stringify(s.parent)}`);
  }
  const p = getSnapshot(tx, parent);
  if (p === undefined) throw notFound(`snapshot ${JSON.stringify(key)}: parent ${JSON.stringify(parent)} does not exist`);
  if (p.kind !== 'committed') throw invalidArgument(`parent ${JSON.stringify(parent)} is not committed snapshot`);
  return { snapshot: s, newParentId: p.id };
}

function pick(labels: Labels, fieldpaths: readonly string[]): Labels {
  const names = new Set(fieldpaths.map((p) => p.slice('labels.'.length)));
  return Object.fromEntries(Object.entries(labels).filter(([name]) => names.has(name)));
}

function toInfo(s: SnapshotRecord): Info {
  return { name: s.key, parent: s.parent, kind: s.kind, labels: s.labels, created: s.created, updated: s.updated };
}
