/**
 * Storage ceiling: how many rows/s one writer can durably insert into the project's `message`
 * table (created by the project's own migrations, persistence/migrations/), with
 * batched multi-row INSERTs (one statement = one transaction), into
 *   - MariaDB via mysql2 (server from test/harness/servers.ts, innodb_flush_log_at_trx_commit=1)
 *   - SQLite via better-sqlite3 (WAL, synchronous=FULL), file on the local disk.
 * Single-row transactions are measured too, for contrast.
 *
 * Usage: node --import tsx bench/baselines/storage-ceiling.ts [--engines sqlite,mariadb]
 *          [--mysql-url mysql://root@127.0.0.1:PORT/db] [--batches 1,100,250,500] [--seconds 3]
 * Without --mysql-url a temporary MariaDB is started with the test harness. Prints a table and
 * a last line `RESULT <json>` (a StorageCeilingResult) for bench/run.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createConnection, type Connection, type RowDataPacket } from 'mysql2/promise';
import { newHistogram, recordUs, summarize, type LatencySummary } from '../loadgen/hist.ts';
import { migrateRecord } from '../../persistence/database.ts';

export interface StorageRun {
  batch: number;
  rows: number;
  seconds: number;
  rowsPerSec: number;
  commitsPerSec: number;
  /** Latency of one batch (INSERT + commit), ms. */
  commitLatency: LatencySummary;
}

export interface StorageEngineResult {
  engine: 'sqlite' | 'mariadb';
  status: 'ok' | 'failed';
  error?: string;
  settings: Record<string, string>;
  runs: StorageRun[];
  /** Best rows/s among multi-row batches (batch ≥ 100). */
  bestRowsPerSec: number;
  singleRowPerSec: number;
}

export interface StorageCeilingResult {
  engines: StorageEngineResult[];
}

// The schema comes from the project's own migrations, so the ceiling writes exactly the table the server writes.

const COLS = 8;
type Row = [string, number, string, string, string, string, string, number];

/** Deterministic message rows spread over `convs` conversations, like a busy node's traffic. */
class RowSource {
  private n = 0;
  private readonly seqs: number[];
  private mid = 1_000_000_000_000n;
  constructor(private readonly convs: number) {
    this.seqs = new Array<number>(convs).fill(0);
  }
  next(): Row {
    const i = this.n++;
    const c = i % this.convs;
    const seq = ++this.seqs[c]!;
    const a = `u${c * 2}`;
    const b = `u${c * 2 + 1}`;
    const sender = seq % 2 === 0 ? a : b;
    const now = Date.now();
    const body = JSON.stringify({ text: `message ${i} from ${sender}, about eighty bytes of chat text here`, ts: now });
    return [`dm:${a}:${b}`, seq, String(this.mid++), sender, `c${i}`, 'text', body, now];
  }
}

interface Writer {
  insert(rows: Row[]): Promise<void> | void;
}

async function measure(writer: Writer, batch: number, seconds: number, maxRows: number, convs: number): Promise<StorageRun> {
  const src = new RowSource(convs);
  const hist = newHistogram();
  let rows = 0;
  let commits = 0;
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  while (rows < maxRows && performance.now() < deadline) {
    const list: Row[] = [];
    for (let i = 0; i < batch; i++) list.push(src.next());
    const b0 = performance.now();
    await writer.insert(list);
    recordUs(hist, (performance.now() - b0) * 1000);
    rows += batch;
    commits++;
  }
  const secs = (performance.now() - t0) / 1000;
  const out: StorageRun = {
    batch,
    rows,
    seconds: Math.round(secs * 100) / 100,
    rowsPerSec: Math.round(rows / secs),
    commitsPerSec: Math.round(commits / secs),
    commitLatency: summarize(hist),
  };
  hist.destroy();
  return out;
}

function finish(engine: StorageEngineResult['engine'], settings: Record<string, string>, runs: StorageRun[]): StorageEngineResult {
  const multi = runs.filter((r) => r.batch >= 100);
  return {
    engine,
    status: 'ok',
    settings,
    runs,
    bestRowsPerSec: multi.reduce((m, r) => Math.max(m, r.rowsPerSec), 0),
    singleRowPerSec: runs.find((r) => r.batch === 1)?.rowsPerSec ?? 0,
  };
}

// ---------------------------------------------------------------- SQLite (better-sqlite3)

interface SqliteStatement {
  run(...params: unknown[]): unknown;
}
interface SqliteDb {
  pragma(source: string, options?: { simple?: boolean }): unknown;
  exec(source: string): void;
  prepare(source: string): SqliteStatement;
  close(): void;
}
type SqliteCtor = new (filename: string) => SqliteDb;

export async function sqliteCeiling(batches: number[], seconds: number, maxRows: number, convs: number): Promise<StorageEngineResult> {
  const require = createRequire(import.meta.url);
  const Database = require('better-sqlite3') as SqliteCtor;
  // A real disk directory (not tmpfs) so fsync costs what it costs.
  const dir = mkdtempSync(join(process.env.IM_BENCH_TMP ?? tmpdir(), 'im-bench-sqlite-'));
  const runs: StorageRun[] = [];
  const settings: Record<string, string> = { dir };
  try {
    for (const batch of batches) {
      const sub = join(dir, `ceiling-${batch}`);
      await migrateRecord({ dataDir: sub });
      const db = new Database(join(sub, 'im.sqlite3'));
      try {
        settings.journal_mode = String(db.pragma('journal_mode = WAL', { simple: true }));
        db.pragma('synchronous = FULL');
        settings.synchronous = String(db.pragma('synchronous', { simple: true }));
        const stmt = db.prepare(
          `INSERT INTO message (conversation_id, seq, mid, sender_id, cmid, kind, body, created_at) VALUES ${Array.from({ length: batch }, () => '(?,?,?,?,?,?,?,?)').join(',')}`,
        );
        const flat = new Array<unknown>(batch * COLS);
        const writer: Writer = {
          insert(rows) {
            for (let i = 0; i < rows.length; i++) {
              const r = rows[i]!;
              for (let j = 0; j < COLS; j++) flat[i * COLS + j] = r[j];
            }
            stmt.run(...flat); // autocommit: one statement = one durable transaction
          },
        };
        runs.push(await measure(writer, batch, batch === 1 ? Math.min(seconds, 2) : seconds, maxRows, convs));
      } finally {
        db.close();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  settings.synchronous = settings.synchronous === '2' ? 'FULL' : (settings.synchronous ?? '?');
  return finish('sqlite', settings, runs);
}

// ---------------------------------------------------------------- MariaDB (mysql2)

export async function mariadbCeiling(url: string, batches: number[], seconds: number, maxRows: number, convs: number): Promise<StorageEngineResult> {
  const u = new URL(url);
  const dbName = 'bench_ceiling';
  const conn: Connection = await createConnection({
    host: u.hostname,
    port: Number(u.port || 3306),
    user: decodeURIComponent(u.username || 'root'),
    password: decodeURIComponent(u.password),
  });
  const runs: StorageRun[] = [];
  const settings: Record<string, string> = {};
  try {
    const [vars] = await conn.query<RowDataPacket[]>(
      `SELECT @@version AS version, @@innodb_flush_log_at_trx_commit AS flush_log_at_trx_commit, @@log_bin AS log_bin, @@sync_binlog AS sync_binlog, @@innodb_buffer_pool_size AS buffer_pool, @@innodb_log_file_size AS log_file_size`,
    );
    for (const [k, v] of Object.entries(vars[0] ?? {})) settings[k] = String(v);
    await conn.query(`DROP DATABASE IF EXISTS ${dbName}`);
    await conn.query(`CREATE DATABASE ${dbName} CHARACTER SET utf8mb4`);
    await conn.query(`USE ${dbName}`);
    const dbUrl = new URL(url);
    dbUrl.pathname = `/${dbName}`;
    for (const batch of batches) {
      await conn.query(`DROP DATABASE IF EXISTS ${dbName}`);
      await conn.query(`CREATE DATABASE ${dbName} CHARACTER SET utf8mb4`);
      await migrateRecord({ mysqlUrl: dbUrl.href, dataDir: '.' });
      await conn.query(`USE ${dbName}`);
      const writer: Writer = {
        async insert(rows) {
          // autocommit: one multi-row statement = one durable transaction (client-side formatting, like the ORM)
          await conn.query('INSERT INTO message (conversation_id, seq, mid, sender_id, cmid, kind, body, created_at) VALUES ?', [rows]);
        },
      };
      runs.push(await measure(writer, batch, batch === 1 ? Math.min(seconds, 2) : seconds, maxRows, convs));
    }
    await conn.query(`DROP DATABASE IF EXISTS ${dbName}`);
  } finally {
    await conn.end().catch(() => conn.destroy());
  }
  return finish('mariadb', settings, runs);
}

// ---------------------------------------------------------------- harness + CLI

interface MariaHandle {
  url: string;
  stop(): Promise<void>;
}
interface HarnessModule {
  startMariaDB(opts?: { database?: string }): Promise<MariaHandle>;
}

/** Starts a temporary MariaDB through the test harness (test/harness/servers.ts). */
export async function startHarnessMariaDB(): Promise<MariaHandle> {
  const path = new URL('../../test/harness/servers.ts', import.meta.url).href;
  const mod = (await import(path)) as HarnessModule;
  return mod.startMariaDB();
}

export interface StorageOptions {
  engines: ('sqlite' | 'mariadb')[];
  mysqlUrl?: string;
  batches: number[];
  seconds: number;
  maxRows: number;
  convs: number;
}

export async function runStorageCeiling(o: StorageOptions): Promise<StorageCeilingResult> {
  const out: StorageEngineResult[] = [];
  for (const engine of o.engines) {
    try {
      if (engine === 'sqlite') {
        out.push(await sqliteCeiling(o.batches, o.seconds, o.maxRows, o.convs));
      } else {
        let handle: MariaHandle | null = null;
        try {
          const url = o.mysqlUrl ?? (handle = await startHarnessMariaDB()).url;
          out.push(await mariadbCeiling(url, o.batches, o.seconds, o.maxRows, o.convs));
        } finally {
          await handle?.stop();
        }
      }
    } catch (e) {
      out.push({ engine, status: 'failed', error: e instanceof Error ? e.message : String(e), settings: {}, runs: [], bestRowsPerSec: 0, singleRowPerSec: 0 });
    }
  }
  return { engines: out };
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const engines = (flag(args, '--engines') ?? 'sqlite,mariadb').split(',').filter((e): e is 'sqlite' | 'mariadb' => e === 'sqlite' || e === 'mariadb');
  const res = await runStorageCeiling({
    engines,
    mysqlUrl: flag(args, '--mysql-url'),
    batches: (flag(args, '--batches') ?? '1,100,250,500').split(',').map(Number).filter((n) => n > 0 && n <= 2000),
    seconds: Number(flag(args, '--seconds') ?? 3),
    maxRows: Number(flag(args, '--max-rows') ?? 500_000),
    convs: Number(flag(args, '--convs') ?? 1000),
  });
  for (const e of res.engines) {
    if (e.status !== 'ok') {
      process.stderr.write(`${e.engine}: FAILED ${e.error ?? ''}\n`);
      continue;
    }
    for (const r of e.runs) {
      process.stderr.write(
        `${e.engine.padEnd(8)} batch ${String(r.batch).padStart(4)}: ${String(r.rowsPerSec).padStart(7)} rows/s, ${String(r.commitsPerSec).padStart(5)} commits/s, commit p50 ${r.commitLatency.p50} ms p99 ${r.commitLatency.p99} ms\n`,
      );
    }
  }
  process.stdout.write(`RESULT ${JSON.stringify(res)}\n`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
}
