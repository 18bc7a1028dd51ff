/**
 * No query of the store slows down as the record grows: on a record of 200k messages (4
 * conversations of 50k), every statement the store issues for its reads and cursor writes is
 * checked through the database's own plan — `EXPLAIN QUERY PLAN` on SQLite, `ANALYZE FORMAT=JSON`
 * (EXPLAIN with the rows each table access really read) on MariaDB. Assertions are on plans and
 * row counts, never on timings:
 *  - every access to `message` is a search on the primary key or uq_message_cmid with
 *    conversation_id fixed, never a scan;
 *  - SQLite: a search that fixes only a prefix of the key (the whole conversation could match)
 *    sits in a (sub)query with a LIMIT — `MAX(seq) … GROUP BY` over a conversation would not;
 *  - MariaDB: no access to `message` reads more rows than the query returns (≤ 300 of 50k);
 *  - conversation / conversation_member are reached by key, not scanned.
 * The statements are captured from the real store methods, so the test follows the code.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../persistence/database.ts';
import type { SqlRunner } from '../../persistence/sql.ts';
import { MessageStore, type NewMessage } from '../../persistence/message-store.ts';
import { startMariaDB, type ServerHandle } from '../harness/servers.ts';

const CONVS = ['g:big0', 'g:big1', 'g:big2', 'g:big3'];
const FILE_ID = 'AAAAAAAAAAAAAAAAAAAAAA';
const PER_CONV = 50_000;
const BATCH = 2000;

type Captured = { sql: string; params: unknown[] };

/** The store's SELECT/UPDATE statements issued while `fn` runs (they still execute). */
async function capture(db: Database, fn: () => Promise<unknown>): Promise<Captured[]> {
  const out: Captured[] = [];
  const note = (sql: string, params: readonly unknown[]) => { if (/^\s*(SELECT|UPDATE)\b/i.test(sql)) out.push({ sql, params: [...params] }); };
  const watch = (r: SqlRunner): SqlRunner => ({
    all: (sql, params = []) => { note(sql, params); return r.all(sql, params); },
    run: (sql, params = []) => { note(sql, params); return r.run(sql, params); },
  });
  // The store holds this very object: its methods are shadowed meanwhile, transactions' runners included.
  const conn = db.sql;
  const plain = { all: conn.all.bind(conn), run: conn.run.bind(conn), transaction: conn.transaction.bind(conn) };
  const shadow = conn as unknown as Record<string, unknown>;
  const watched = watch(plain);
  shadow.all = watched.all;
  shadow.run = watched.run;
  shadow.transaction = <T>(body: (tx: SqlRunner) => Promise<T>) => plain.transaction((tx) => body(watch(tx)));
  try {
    await fn();
  } finally {
    delete shadow.all;
    delete shadow.run;
    delete shadow.transaction;
  }
  return out;
}

const MSG_ALIAS = /\b(message|ls)\b/;

interface MariaTable { table_name?: string; access_type?: string; key?: string; r_rows?: number; [k: string]: unknown }

function tablesOf(node: unknown, out: MariaTable[] = []): MariaTable[] {
  if (Array.isArray(node)) for (const n of node) tablesOf(n, out);
  else if (node && typeof node === 'object') {
    const o = node as MariaTable;
    if (typeof o.table_name === 'string') out.push(o);
    for (const v of Object.values(o)) tablesOf(v, out);
  }
  return out;
}

const modes = [['sqlite'], ['mariadb']] as const;

describe.each(modes)('store query plans on a 200k-message record, %s', (mode) => {
  let db: Database;
  let store: MessageStore;
  let dir: string;
  let maria: ServerHandle | null = null;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'im-plans-'));
    if (mode === 'mariadb') maria = await startMariaDB();
    db = await openDatabase({ dataDir: dir, mysqlUrl: maria?.url });
    store = new MessageStore(db);
    for (const c of CONVS) await store.createGroup(c, 'u1', ['u2', 'u3']);
    let mid = 1;
    for (const c of CONVS) {
      for (let s = 1; s <= PER_CONV; s += BATCH) {
        const rows: NewMessage[] = [];
        for (let seq = s; seq < s + BATCH; seq++) rows.push({ conv: c, seq, mid: String(mid++), from: seq % 2 ? 'u1' : 'u2', cmid: `k${seq}`, kind: 'text', bodyJson: '{"text":"hello"}', ts: seq });
        await store.insertMessages(rows);
      }
    }
    await store.applyCursors(CONVS.map((conv) => ({ conv, user: 'u2', ack: 10, read: 5 })));
    // Members of other conversations: with a handful of member rows, reading them all is cheaper than any index.
    await store.createGroup('g:crowd', 'u6', Array.from({ length: 2000 }, (_, i) => `crowd${i}`));
    // Files: one file referred to by a message of a small group of others.
    await store.createGroup('g:files', 'u4', ['u5']);
    await store.insertFile({ id: FILE_ID, uploader: 'u4', name: 'f', size: 1, mime: 'text/plain', sha256: '0'.repeat(64), created: 1 });
    await store.insertMessages([{ conv: 'g:files', seq: 1, mid: String(mid++), from: 'u4', cmid: 'f1', kind: 'file', bodyJson: JSON.stringify({ file: FILE_ID }), ts: 1 }]);
  }, 240_000);
  afterAll(async () => {
    await db?.close();
    await maria?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Every statement the hot store methods issue, by method. */
  async function hotStatements(): Promise<Record<string, Captured[]>> {
    const c = CONVS[1]!;
    const run: Record<string, () => Promise<unknown>> = {
      maxSeq: () => store.maxSeq(c),
      loadConversation: () => store.loadConversation(c),
      userConversations: () => store.userConversations('u2'),
      usersConversations: () => store.usersConversations(['u2', 'u3', 'nobody']),
      history: () => store.history(c, 25_000, 51),
      recentSent: () => store.recentSent(c, 256),
      getMessage: () => store.getMessage(c, 31_000),
      findSent: () => store.findSent(c, [{ from: 'u1', cmid: 'k49999' }, { from: 'u2', cmid: 'k2' }, { from: 'u3', cmid: 'none' }]),
      applyCursors: () => store.applyCursors(CONVS.flatMap((conv) => [{ conv, user: 'u2', ack: 40_000, read: 30_000 }, { conv, user: 'u3', ack: 7 }])),
      recall: () => store.recall(c, 20_000, 1),
      // v1.1
      historyBefore: () => store.historyBefore(c, 25_000, 51),
      sharingUsers: () => store.sharingUsers('u2', ['u1', 'u3', 'nobody']),
      leaveGroup: () => store.leaveGroup(CONVS[3]!, 'u1'),
      // files
      readableFile: () => store.readableFile(FILE_ID, 'u5'),
    };
    const out: Record<string, Captured[]> = {};
    for (const [name, fn] of Object.entries(run)) out[name] = await capture(db, fn);
    return out;
  }

  it('the store answers correctly on the big record', async () => {
    expect(await store.maxSeq(CONVS[2]!)).toBe(PER_CONV);
    expect((await store.userConversations('u3')).map((u) => u.lastSeq)).toEqual(CONVS.map(() => PER_CONV));
    expect((await store.findSent(CONVS[0]!, [{ from: 'u1', cmid: 'k49999' }, { from: 'u1', cmid: 'k2' }])).map((f) => f.seq)).toEqual([49_999]);
    expect((await store.history(CONVS[0]!, 49_990, 5)).map((m) => m.seq)).toEqual([49_991, 49_992, 49_993, 49_994, 49_995]);
    // v1.1: sync before reads backwards from the seek; presence's shared-conversation check.
    expect((await store.historyBefore(CONVS[0]!, 49_995, 3)).map((m) => m.seq)).toEqual([49_994, 49_993, 49_992]);
    expect((await store.historyBefore(CONVS[0]!, 10_000_000, 2)).map((m) => m.seq)).toEqual([PER_CONV, PER_CONV - 1]);
    expect((await store.historyBefore(CONVS[0]!, 1, 2))).toEqual([]);
    expect((await store.sharingUsers('u3', ['u1', 'u2', 'u9', 'u1'])).sort()).toEqual(['u1', 'u2']);
    expect(await store.sharingUsers('u9', ['u1'])).toEqual([]);
    // Files: the uploader and the members of a conversation with a file message that is not recalled.
    expect((await store.readableFile(FILE_ID, 'u4'))?.uploader).toBe('u4');
    expect((await store.readableFile(FILE_ID, 'u5'))?.id).toBe(FILE_ID);
    expect(await store.readableFile(FILE_ID, 'u1')).toBeNull();
    expect(await store.readableFile('BBBBBBBBBBBBBBBBBBBBBB', 'u4')).toBeNull();
  });

  it('reads message by key only, never a whole conversation', async () => {
    const statements = await hotStatements();
    for (const [name, list] of Object.entries(statements)) expect(list.length, `${name} issued no statement`).toBeGreaterThan(0);
    const problems: string[] = [];
    for (const [name, list] of Object.entries(statements)) {
      for (const { sql, params } of list) {
        const flat = sql.replace(/\s+/g, ' ').trim();
        if (mode === 'sqlite') {
          const plan = (await db.sql.all(`EXPLAIN QUERY PLAN ${sql}`, params)).map((r) => String(r.detail));
          const bad = (why: string) => problems.push(`${name}: ${why}\n  sql: ${flat.slice(0, 300)}\n  plan: ${plan.join(' | ')}`);
          for (const line of plan) {
            if (/^SCAN (message|ls|conversation|conversation_member|cm|o|me|file|file_ref|f|r)\b/.test(line)) bad(`scans: ${line}`);
            // Sorting the users' few member rows is fine; sorting or grouping messages is not.
            const memberSort = /^users?Conversations$/.test(name) && /^USE TEMP B-TREE FOR (LAST TERM OF )?ORDER BY$/.test(line);
            if (/TEMP B-TREE/.test(line) && !memberSort) bad(`temp b-tree: ${line}`);
            if (!MSG_ALIAS.test(line)) continue;
            const m = /^SEARCH (message|ls) USING (?:COVERING )?INDEX (sqlite_autoindex_message_1|uq_message_cmid) \((.*)\)$/.exec(line);
            if (!m) { bad(`message not searched by key: ${line}`); continue; }
            const cons = m[3] ?? '';
            if (!cons.startsWith('conversation_id=?')) bad(`message search without the conversation: ${line}`);
            const point = cons === 'conversation_id=? AND seq=?' || cons === 'conversation_id=? AND sender_id=? AND cmid=?';
            if (!point && !/\bLIMIT\b/i.test(sql)) bad(`a search that can match a whole conversation has no LIMIT: ${line}`);
          }
        } else {
          const res = await db.sql.all(`ANALYZE FORMAT=JSON ${sql}`, params);
          const json = JSON.parse(String(Object.values(res[0] ?? {})[0])) as unknown;
          const tables = tablesOf(json);
          const bad = (why: string) => problems.push(`${name}: ${why}\n  sql: ${flat.slice(0, 300)}\n  tables: ${JSON.stringify(tables.map((t) => [t.table_name, t.access_type, t.key, t.r_rows]))}`);
          for (const t of tables) {
            const tn = t.table_name ?? '';
            if (tn.startsWith('<')) continue; // the derived table of parameters
            if (!['const', 'eq_ref', 'ref', 'range'].includes(t.access_type ?? '')) bad(`${tn}: access ${t.access_type}`);
            if (MSG_ALIAS.test(tn)) {
              if (!['PRIMARY', 'uq_message_cmid'].includes(t.key ?? '')) bad(`${tn}: key ${t.key}`);
              if ((t.r_rows ?? 0) > 300) bad(`${tn}: read ${t.r_rows} rows`);
            }
          }
        }
      }
    }
    expect(problems, problems.join('\n')).toEqual([]);
  });

  it('the old cursor-cap query (MAX(seq) GROUP BY) is caught by the same checks', async () => {
    // Guards the guard: the statement that made SQLite slow down as the record grew must fail here.
    const sql = `SELECT conversation_id, MAX(seq) AS m FROM message WHERE conversation_id IN (?, ?) GROUP BY conversation_id`;
    if (mode === 'sqlite') {
      const plan = (await db.sql.all(`EXPLAIN QUERY PLAN ${sql}`, CONVS.slice(0, 2))).map((r) => String(r.detail));
      expect(plan.some((l) => /^SEARCH message .*\(conversation_id=\?\)$/.test(l))).toBe(true);
      expect(/\bLIMIT\b/.test(sql)).toBe(false);
    } else {
      const res = await db.sql.all(`ANALYZE FORMAT=JSON SELECT (SELECT MAX(m.seq) FROM message m WHERE m.conversation_id = v.c) AS s FROM (SELECT ? AS c UNION ALL SELECT ?) v`, CONVS.slice(0, 2));
      const t = tablesOf(JSON.parse(String(Object.values(res[0] ?? {})[0]))).find((x) => x.table_name === 'm');
      // A correlated MAX(seq) reads every row of the conversation on MariaDB.
      expect(t?.r_rows ?? 0).toBeGreaterThan(300);
    }
  });
});
