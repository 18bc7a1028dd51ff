/**
 * The record's SQL connection: one narrow interface over the two drivers, used by every query
 * of MessageStore. MikroORM opens and migrates the record (database.ts); the queries then run
 * on the driver itself, without a query builder in between (a group commit through MikroORM
 * and knex cost ~550 µs of CPU, through better-sqlite3 directly ~130 µs, mostly the fsync):
 *  - SQLite: better-sqlite3, synchronous, every statement prepared once and cached by its text;
 *  - MySQL/MariaDB: a mysql2 pool (text protocol; parameters escaped by the driver), through its
 *    callback API: mysql2/promise captures a stack trace (`new Error()`) for every query.
 *
 * Contract:
 *  - `all` returns rows as plain objects keyed by column name; `run` returns the rows changed.
 *  - `transaction(fn)` runs `fn` on one connection between BEGIN and COMMIT and rolls back if
 *    it throws. On SQLite nothing else runs on the connection while a transaction is open:
 *    calls made meanwhile outside it wait for it to end (fn may await between statements).
 *  - `errorKind` says what a driver error means: a unique key refused the write (`duplicate`),
 *    the transaction was rolled back by a deadlock or a lock wait timeout and may simply be run
 *    again (`transient`), or anything else.
 */
import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';
import type { Pool, PoolConnection, ResultSetHeader } from 'mysql2';
import type { Dialect } from './dialect.ts';

export type Row = Record<string, unknown>;

export interface SqlRunner {
  all(sql: string, params?: readonly unknown[]): Promise<Row[]>;
  /** Resolves with the number of rows the statement changed. */
  run(sql: string, params?: readonly unknown[]): Promise<number>;
}

export interface SqlDb extends SqlRunner {
  readonly dialect: Dialect;
  transaction<T>(fn: (tx: SqlRunner) => Promise<T>): Promise<T>;
  errorKind(e: unknown): 'duplicate' | 'transient' | 'other';
  close(): Promise<void>;
}

// ------------------------------------------------------------------------------------ SQLite

/** Prepared statements kept per connection (multi-row INSERTs differ by their row count). */
const STATEMENT_CACHE = 256;
/**
 * Longer statements are prepared for each use and not kept: a compiled multi-row INSERT costs
 * ~0.75 KB per row slot, so caching every batch size up to 500 rows would hold ~94 MiB. Up to
 * this length (batches of ~75 rows, the common sizes) they stay cached: ~2 MiB at most.
 */
const CACHED_SQL_MAX = 2048;

export class SqliteDb implements SqlDb {
  readonly dialect = 'sqlite' as const;
  private readonly stmts = new Map<string, BetterSqlite3.Statement>();
  /** Settles when the open transaction ends; null when none is open. */
  private txDone: Promise<void> | null = null;
  private readonly inTx: SqlRunner = {
    all: (sql, params) => this.now(() => this.stmt(sql).all(...(params ?? [])) as Row[]),
    run: (sql, params) => this.now(() => this.stmt(sql).run(...(params ?? [])).changes),
  };

  private constructor(private readonly db: BetterSqlite3.Database) {}

  /** Opens the file durably: WAL, a full fsync at every commit, 5 s of patience for a lock. */
  static open(file: string): SqliteDb {
    const Driver = createRequire(import.meta.url)('better-sqlite3') as typeof BetterSqlite3;
    const db = new Driver(file);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('busy_timeout = 5000');
    return new SqliteDb(db);
  }

  private stmt(sql: string): BetterSqlite3.Statement {
    let s = this.stmts.get(sql);
    if (s) return s;
    s = this.db.prepare(sql);
    if (sql.length > CACHED_SQL_MAX) return s;
    if (this.stmts.size >= STATEMENT_CACHE) this.stmts.delete(this.stmts.keys().next().value as string);
    this.stmts.set(sql, s);
    return s;
  }

  private now<T>(fn: () => T): Promise<T> {
    try {
      return Promise.resolve(fn());
    } catch (e) {
      return Promise.reject(e);
    }
  }

  all(sql: string, params: readonly unknown[] = []): Promise<Row[]> {
    if (this.txDone) return this.txDone.then(() => this.all(sql, params));
    return this.inTx.all(sql, params);
  }

  run(sql: string, params: readonly unknown[] = []): Promise<number> {
    if (this.txDone) return this.txDone.then(() => this.run(sql, params));
    return this.inTx.run(sql, params);
  }

  async transaction<T>(fn: (tx: SqlRunner) => Promise<T>): Promise<T> {
    while (this.txDone) await this.txDone;
    let end!: () => void;
    this.txDone = new Promise((r) => { end = r; });
    try {
      this.stmt('BEGIN IMMEDIATE').run();
      try {
        const v = await fn(this.inTx);
        this.stmt('COMMIT').run();
        return v;
      } catch (e) {
        if (this.db.inTransaction) this.stmt('ROLLBACK').run();
        throw e;
      }
    } finally {
      this.txDone = null;
      end();
    }
  }

  errorKind(e: unknown): 'duplicate' | 'transient' | 'other' {
    const code = (e as { code?: unknown } | null)?.code;
    if (code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE') return 'duplicate';
    if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') return 'transient';
    return 'other';
  }

  async close(): Promise<void> {
    while (this.txDone) await this.txDone;
    this.stmts.clear();
    this.db.close();
  }
}

// ------------------------------------------------------------------------------------ MySQL

/** ER_DUP_ENTRY */
const MYSQL_DUPLICATE = 1062;
/** ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT */
const MYSQL_TRANSIENT = new Set([1213, 1205]);

export class MysqlDb implements SqlDb {
  readonly dialect = 'mysql' as const;

  private readonly direct: SqlRunner;

  private constructor(private readonly pool: Pool) {
    this.direct = MysqlDb.runner(pool);
  }

  static async open(url: string, poolSize: number): Promise<MysqlDb> {
    const mysql = await import('mysql2');
    const pool = mysql.createPool({
      uri: url,
      connectionLimit: poolSize,
      // Fail fast while the server is down instead of queueing behind a dead pool.
      connectTimeout: 5000,
      charset: 'utf8mb4',
      supportBigNumbers: true,
      enableKeepAlive: true,
      // Queries go through query(), never execute(): no server-side prepared statements. mysql2
      // sizes each connection's statement cache up front (16,000 slots, ~0.5 MB per connection).
      maxPreparedStatements: 8,
    });
    const db = new MysqlDb(pool);
    await db.all('SELECT 1 AS ok');
    return db;
  }

  private static runner(c: Pool | PoolConnection): SqlRunner {
    const query = (sql: string, params: readonly unknown[]): Promise<unknown> =>
      new Promise((resolve, reject) => { c.query(sql, params as unknown[], (err: Error | null, result: unknown) => (err ? reject(err) : resolve(result))); });
    return {
      all: async (sql, params = []) => (await query(sql, params)) as Row[],
      run: async (sql, params = []) => ((await query(sql, params)) as ResultSetHeader).affectedRows,
    };
  }

  all(sql: string, params: readonly unknown[] = []): Promise<Row[]> {
    return this.direct.all(sql, params);
  }

  run(sql: string, params: readonly unknown[] = []): Promise<number> {
    return this.direct.run(sql, params);
  }

  async transaction<T>(fn: (tx: SqlRunner) => Promise<T>): Promise<T> {
    const c = await new Promise<PoolConnection>((resolve, reject) => { this.pool.getConnection((err, conn) => (err ? reject(err) : resolve(conn))); });
    const tx = MysqlDb.runner(c);
    try {
      await tx.run('START TRANSACTION');
      try {
        const v = await fn(tx);
        await tx.run('COMMIT');
        return v;
      } catch (e) {
        await tx.run('ROLLBACK').catch(() => undefined);
        throw e;
      }
    } finally {
      c.release();
    }
  }

  errorKind(e: unknown): 'duplicate' | 'transient' | 'other' {
    const errno = (e as { errno?: unknown } | null)?.errno;
    if (errno === MYSQL_DUPLICATE) return 'duplicate';
    if (typeof errno === 'number' && MYSQL_TRANSIENT.has(errno)) return 'transient';
    return 'other';
  }

  close(): Promise<void> {
    return new Promise((resolve) => { this.pool.end(() => resolve()); });
  }
}
