import Database from 'better-sqlite3';
import { unavailable } from '../errors';

/**
 * The SQLite file behind a root: connection settings, schema migrations and
 * transactions. Every snapshotter operation is one transaction; writers take
 * the write lock up front (BEGIN IMMEDIATE) so that two processes never
 * deadlock upgrading read locks, and wait for each other (busy timeout)
 * instead of failing with "database is locked".
 */
export type Statement = Database.Statement<unknown[], unknown>;

export interface Tx {
  /** A prepared statement, cached per connection. */
  stmt(sql: string): Statement;
}

const APPLICATION_ID = 0x736e6170; // "snap"
const BUSY_TIMEOUT_MS = 60_000;

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE snapshots (
     id        INTEGER PRIMARY KEY AUTOINCREMENT,
     key       TEXT NOT NULL UNIQUE,
     kind      TEXT NOT NULL CHECK (kind IN ('active', 'view', 'committed')),
     parent_id INTEGER REFERENCES snapshots (id),
     created   INTEGER NOT NULL,
     updated   INTEGER NOT NULL,
     size      INTEGER,
     inodes    INTEGER
   );
   CREATE INDEX snapshots_by_parent ON snapshots (parent_id);
   CREATE INDEX snapshots_by_kind ON snapshots (kind);
   CREATE TABLE labels (
     snapshot_id INTEGER NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
     name        TEXT NOT NULL,
     value       TEXT NOT NULL,
     PRIMARY KEY (snapshot_id, name)
   ) WITHOUT ROWID;
   CREATE INDEX labels_by_name_value ON labels (name, value);
   CREATE TABLE events (
     seq    INTEGER PRIMARY KEY AUTOINCREMENT,
     time   INTEGER NOT NULL,
     topic  TEXT NOT NULL,
     key    TEXT NOT NULL,
     parent TEXT,
     name   TEXT
   );`,
];

/**
 * better-sqlite3's addon, named outright: left to find it, better-sqlite3
 * tries several build directories in turn, which costs a short command
 * (`snapfs info`) a noticeable part of its start-up.
 */
const NATIVE_BINDING = require.resolve('better-sqlite3/build/Release/better_sqlite3.node');

export class Store implements Tx {
  private readonly statements = new Map<string, Statement>();

  private constructor(private readonly db: Database.Database) {}

  /** Opens (creating or migrating as needed) the metadata database at `file`. */
  static open(file: string): Store {
    let db: Database.Database | undefined;
    try {
      db = new Database(file, { timeout: BUSY_TIMEOUT_MS, nativeBinding: NATIVE_BINDING });
      const store = new Store(db);
      // Refuse a foreign database before changing anything in it.
      store.schemaVersion(file);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      store.migrate(file);
      return store;
    } catch (err) {
      db?.close();
      throw describeOpenError(file, err);
    }
  }

  /** An empty in-memory store: what a root that does not exist yet holds. */
  static empty(): Store {
    const store = new Store(new Database(':memory:', { nativeBinding: NATIVE_BINDING }));
    store.migrate(':memory:');
    return store;
  }

  stmt(sql: string): Statement {
    let s = this.statements.get(sql);
    if (s === undefined) {
      s = this.db.prepare(sql).safeIntegers(true);
      this.statements.set(sql, s);
    }
    return s;
  }

  /** Runs `fn` holding the write lock; all or nothing. */
  write<T>(fn: (tx: Tx) => T): T {
    return this.db.transaction(() => fn(this)).immediate();
  }

  /** Runs `fn` on one consistent snapshot of the database. */
  read<T>(fn: (tx: Tx) => T): T {
    return this.db.transaction(() => fn(this)).deferred();
  }

  close(): void {
    this.db.close();
  }

  private migrate(file: string): void {
    // Checked without the write lock first: opening an up-to-date root must
    // not serialize every process behind one writer.
    if (this.schemaVersion(file) === MIGRATIONS.length) return;
    this.write(() => {
      const version = this.schemaVersion(file);
      if (version === 0) this.db.pragma(`application_id = ${APPLICATION_ID}`);
      for (let v = version; v < MIGRATIONS.length; v++) this.db.exec(MIGRATIONS[v]!);
      if (version !== MIGRATIONS.length) this.db.pragma(`user_version = ${MIGRATIONS.length}`);
    });
  }

  private schemaVersion(file: string): number {
    // One read transaction: another process may be creating the schema, and
    // separate reads could see its header before and its tables after.
    if (!this.db.inTransaction) return this.db.transaction(() => this.schemaVersion(file)).deferred();
    const appId = this.db.pragma('application_id', { simple: true }) as number;
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (appId !== APPLICATION_ID) {
      const tables = this.db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get() as {
        n: number;
      };
      if (appId !== 0 || tables.n > 0) throw unavailable(`${file}: not a snapfs metadata database`);
      return 0;
    }
    if (version > MIGRATIONS.length) {
      throw unavailable(`${file}: schema version ${version} is newer than this snapfs understands (${MIGRATIONS.length})`);
    }
    return version;
  }
}

function describeOpenError(file: string, err: unknown): Error {
  const code = (err as { code?: unknown }).code;
  switch (code) {
    case 'SQLITE_NOTADB':
    case 'SQLITE_CORRUPT':
      return unavailable(`${file}: not a SQLite database`);
    case 'SQLITE_CANTOPEN':
      return unavailable(`${file}: cannot open`);
    case 'SQLITE_READONLY':
    case 'SQLITE_PERM':
    case 'SQLITE_AUTH':
      return unavailable(`${file}: permission denied`);
    default:
      return err instanceof Error ? err : new Error(String(err));
  }
}
