/**
 * Opens the record (MySQL/MariaDB, or an embedded SQLite file) and brings its schema up to date
 * through MikroORM migrations (migrations/index.ts, the only definition of the schema: no
 * entities are registered). MikroORM is then closed: every query runs on the driver itself
 * (sql.ts). On MySQL, several nodes may start at once: migrations run under a named server lock
 * so exactly one node applies them.
 */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { MikroORM, type Options } from '@mikro-orm/core';
import { Migrator } from '@mikro-orm/migrations';
import type { AbstractSqlConnection } from '@mikro-orm/knex';
import type { Dialect } from './dialect.ts';
import { migrationsFor } from './migrations/index.ts';
import { MysqlDb, SqliteDb, type SqlDb } from './sql.ts';

export interface Database {
  dialect: Dialect;
  sql: SqlDb;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  mysqlUrl?: string;
  dataDir: string;
  /** Connections in the MySQL pool. */
  poolSize?: number;
  /** Stop after this migration (by name): for tests that open a database as an older version left it. */
  migrateTo?: string;
}

const MIGRATION_LOCK = 'actor_im_migrations';

export async function openDatabase(opts: DatabaseOptions): Promise<Database> {
  const dialect: Dialect = opts.mysqlUrl ? 'mysql' : 'sqlite';
  const file = resolve(join(opts.dataDir, 'im.sqlite3'));
  const orm = await openOrm(opts, dialect, file);
  try {
    await migrate(orm, orm.em.getConnection() as AbstractSqlConnection, dialect, opts.migrateTo);
  } finally {
    await orm.close(true);
  }
  const sql = opts.mysqlUrl ? await MysqlDb.open(opts.mysqlUrl, opts.poolSize ?? 8) : SqliteDb.open(file);
  return { dialect, sql, close: () => sql.close() };
}

/** MikroORM on the record, for its migrations only. */
async function openOrm(opts: DatabaseOptions, dialect: Dialect, file: string): Promise<MikroORM> {
  const common: Partial<Options> = {
    entities: [],
    discovery: { warnWhenNoEntities: false },
    extensions: [Migrator],
    migrations: {
      migrationsList: migrationsFor(dialect),
      tableName: 'mikro_orm_migrations',
      silent: true,
      // MySQL commits DDL implicitly, so a transaction around it only earns a console warning.
      transactional: dialect === 'sqlite',
    },
    debug: false,
    allowGlobalContext: true,
  };
  let orm: MikroORM;
  if (dialect === 'mysql') {
    const { MySqlDriver } = await import('@mikro-orm/mysql');
    orm = await MikroORM.init({
      ...common,
      driver: MySqlDriver,
      clientUrl: opts.mysqlUrl,
      pool: { min: 1, max: 2 },
      // Fail fast while the server is down instead of queueing behind a dead pool.
      driverOptions: { connection: { connectTimeout: 5000 } },
    } as Options);
  } else {
    const { BetterSqliteDriver } = await import('@mikro-orm/better-sqlite');
    mkdirSync(opts.dataDir, { recursive: true });
    orm = await MikroORM.init({ ...common, driver: BetterSqliteDriver, dbName: file } as Options);
    const connection = orm.em.getConnection() as AbstractSqlConnection;
    // Durable and concurrent-reader friendly: WAL with a full fsync at every commit (sql.ts sets the same).
    await connection.execute('PRAGMA journal_mode = WAL');
    await connection.execute('PRAGMA synchronous = FULL');
    await connection.execute('PRAGMA busy_timeout = 5000');
  }
  return orm;
}

async function migrate(orm: MikroORM, connection: AbstractSqlConnection, dialect: Dialect, to?: string): Promise<void> {
  const migrator = orm.getMigrator();
  const up = () => migrator.up(to ? { to } : undefined);
  if (dialect === 'sqlite') {
    await up();
    return;
  }
  // GET_LOCK belongs to one session: hold a dedicated connection for the lock's lifetime.
  const knex = connection.getKnex();
  const client = knex.client as { acquireConnection(): Promise<unknown>; releaseConnection(c: unknown): Promise<void> };
  const conn = await client.acquireConnection();
  const raw = (sql: string) => knex.raw(sql).connection(conn as never);
  try {
    const got = (await raw(`SELECT GET_LOCK('${MIGRATION_LOCK}', 60) AS got`)) as unknown as [Array<{ got: number }>];
    if (got[0]?.[0]?.got !== 1) throw new Error('could not take the schema migration lock within 60 s');
    await up();
  } finally {
    await raw(`SELECT RELEASE_LOCK('${MIGRATION_LOCK}')`).catch(() => undefined);
    await client.releaseConnection(conn);
  }
}

/** Creates or migrates the schema of a record and closes it (benchmarks that then write with raw drivers). */
export async function migrateRecord(opts: DatabaseOptions): Promise<void> {
  const db = await openDatabase(opts);
  await db.close();
}
