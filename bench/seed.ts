/**
 * `--seed-messages N`: fills the record with N messages before a project node starts, so the
 * pairs scenario measures a store that already holds history. The messages go into the pairs'
 * own 1:1 conversations (N / pairs each, the worst case for per-conversation queries), with the
 * conversation and member rows, and both members' ack/read cursors at the last seeded seq, so a
 * login pushes no backlog and the load generator sees only its own traffic.
 *
 * The schema comes from the project's migrations (openDatabase), then rows are written directly
 * with the raw driver in big multi-row INSERTs: about 1M rows in a few seconds on SQLite, tens
 * of seconds on MariaDB. Columns of `conversation`/`conversation_member` are read from the
 * database, so the seeder fills whatever schema version the node under test has.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createConnection, type RowDataPacket } from 'mysql2/promise';
import { openDatabase } from '../persistence/database.ts';
import { pairUsers } from './loadgen/coordinator.ts';

export interface SeedOptions {
  /** MariaDB/MySQL record; without it the SQLite file `im.sqlite3` in `dataDir`. */
  mysqlUrl?: string;
  dataDir?: string;
  pairs: number;
  messages: number;
  log(line: string): void;
}

export interface SeedResult {
  messages: number;
  conversations: number;
  seconds: number;
}

type Cell = string | number | null;

/** The id a 1:1 conversation has in the record (protocol: dm:<min(a,b)>:<max(a,b)>). */
const dmConv = (a: string, b: string): string => (a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`);

const BODY = JSON.stringify({ ts: 0, pad: 'x'.repeat(80) });
const ROWS_PER_INSERT = 1000;

/** Seed rows of one conversation, `per` messages, in chunks of ROWS_PER_INSERT. */
function* messageChunks(pairs: number, per: number, mid0: number): Generator<Cell[][]> {
  let mid = mid0;
  for (let i = 0; i < pairs; i++) {
    const [a, b] = pairUsers(i);
    const conv = dmConv(a, b);
    for (let s = 1; s <= per; s += ROWS_PER_INSERT) {
      const rows: Cell[][] = [];
      for (let seq = s; seq < s + ROWS_PER_INSERT && seq <= per; seq++) {
        rows.push([conv, seq, String(mid++), seq % 2 ? a : b, `seed-${seq}`, 'text', BODY, 1]);
      }
      yield rows;
    }
  }
}

/** conversation / conversation_member rows, with only the columns this schema has. */
function metaRows(pairs: number, per: number, convCols: string[], memberCols: string[]): { conv: Cell[][]; member: Cell[][] } {
  const conv: Cell[][] = [];
  const member: Cell[][] = [];
  const convVal: Record<string, (id: string) => Cell> = { id: (id) => id, kind: () => 'dm', owner_id: () => null, last_seq: () => per, created_at: () => 1 };
  const memVal: Record<string, (id: string, u: string) => Cell> = {
    conversation_id: (id) => id, user_id: (_id, u) => u, role: () => 'member', ack_seq: () => per, read_seq: () => per, joined_at: () => 1,
  };
  for (let i = 0; i < pairs; i++) {
    const [a, b] = pairUsers(i);
    const id = dmConv(a, b);
    conv.push(convCols.map((c) => convVal[c]?.(id) ?? null));
    for (const u of [a, b]) member.push(memberCols.map((c) => memVal[c]?.(id, u) ?? null));
  }
  return { conv, member };
}

export async function seedPairsRecord(o: SeedOptions): Promise<SeedResult> {
  const t0 = performance.now();
  const per = Math.ceil(o.messages / Math.max(1, o.pairs));
  // The node's own migrations create (or bring up to date) the schema first.
  const db = await openDatabase({ mysqlUrl: o.mysqlUrl, dataDir: o.dataDir ?? '.' });
  await db.close();
  const mid0 = 1_000_000_000_000; // far below the node's snowflake ids (timestamp << 22)
  if (o.mysqlUrl) await seedMysql(o.mysqlUrl, o.pairs, per, mid0, o.log);
  else await seedSqlite(join(o.dataDir ?? '.', 'im.sqlite3'), o.pairs, per, mid0);
  const seconds = (performance.now() - t0) / 1000;
  o.log(`  seeded ${per * o.pairs} messages in ${o.pairs} conversations in ${seconds.toFixed(1)} s`);
  return { messages: per * o.pairs, conversations: o.pairs, seconds: Math.round(seconds * 10) / 10 };
}

interface SqliteStmt { run(...p: unknown[]): unknown; all(...p: unknown[]): Array<Record<string, unknown>> }
interface SqliteDb { pragma(s: string): unknown; prepare(s: string): SqliteStmt; transaction(fn: () => void): () => void; close(): void }

async function seedSqlite(file: string, pairs: number, per: number, mid0: number): Promise<void> {
  const require = createRequire(import.meta.url);
  const Database = require('better-sqlite3') as new (f: string) => SqliteDb;
  const db = new Database(file);
  try {
    // Seeding only: the node reopens the file with its own durable settings.
    db.pragma('synchronous = OFF');
    const cols = (t: string) => db.prepare(`PRAGMA table_info(${t})`).all().map((r) => String(r.name));
    const convCols = cols('conversation');
    const memberCols = cols('conversation_member');
    const meta = metaRows(pairs, per, convCols, memberCols);
    const insert = (table: string, columns: string[], n: number) =>
      db.prepare(`INSERT INTO ${table} (${columns.join(', ')}) VALUES ${Array.from({ length: n }, () => `(${columns.map(() => '?').join(', ')})`).join(', ')}`);
    const msgCols = ['conversation_id', 'seq', 'mid', 'sender_id', 'cmid', 'kind', 'body', 'created_at'];
    const full = insert('message', msgCols, ROWS_PER_INSERT);
    db.transaction(() => {
      for (const r of meta.conv) insert('conversation', convCols, 1).run(...r);
      for (const r of meta.member) insert('conversation_member', memberCols, 1).run(...r);
      for (const rows of messageChunks(pairs, per, mid0)) {
        (rows.length === ROWS_PER_INSERT ? full : insert('message', msgCols, rows.length)).run(...rows.flat());
      }
    })();
  } finally {
    db.close();
  }
}

async function seedMysql(url: string, pairs: number, per: number, mid0: number, log: (l: string) => void): Promise<void> {
  const u = new URL(url);
  const conn = await createConnection({
    host: u.hostname, port: Number(u.port || 3306), user: decodeURIComponent(u.username), password: decodeURIComponent(u.password),
    database: u.pathname.slice(1), multipleStatements: false,
  });
  try {
    const cols = async (t: string) => {
      const [rows] = await conn.query<RowDataPacket[]>('SELECT column_name AS c FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position', [t]);
      return rows.map((r) => String(r.c));
    };
    const convCols = await cols('conversation');
    const memberCols = await cols('conversation_member');
    const meta = metaRows(pairs, per, convCols, memberCols);
    await conn.query(`INSERT INTO conversation (${convCols.join(', ')}) VALUES ?`, [meta.conv]);
    await conn.query(`INSERT INTO conversation_member (${memberCols.join(', ')}) VALUES ?`, [meta.member]);
    let n = 0;
    let last = performance.now();
    await conn.query('START TRANSACTION');
    for (const rows of messageChunks(pairs, per, mid0)) {
      await conn.query('INSERT INTO message (conversation_id, seq, mid, sender_id, cmid, kind, body, created_at) VALUES ?', [rows]);
      n += rows.length;
      if (n % 50_000 < ROWS_PER_INSERT) {
        await conn.query('COMMIT');
        await conn.query('START TRANSACTION');
        if (performance.now() - last > 5000) { log(`  seeding: ${n} messages…`); last = performance.now(); }
      }
    }
    await conn.query('COMMIT');
  } finally {
    await conn.end().catch(() => conn.destroy());
  }
}
