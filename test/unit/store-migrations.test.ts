/**
 * Migrations forward, on both databases: a record left by the first schema (0001, with the
 * columns that were written but never read) opens with the current code, keeps its data, loses
 * those columns, keeps every `message` column outside tools read, and the store works on it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../persistence/database.ts';
import { DuplicateKeyError, MessageStore } from '../../persistence/message-store.ts';
import { startMariaDB, type ServerHandle } from '../harness/servers.ts';

const modes = [['sqlite'], ['mariadb']] as const;

describe.each(modes)('migrations forward on %s', (mode) => {
  let dir: string;
  let maria: ServerHandle | null = null;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'im-migr-'));
    if (mode === 'mariadb') maria = await startMariaDB();
  });
  afterAll(async () => {
    await maria?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('opens a 0001 record, keeps its rows and drops only the never-read columns', async () => {
    const opts = { dataDir: dir, mysqlUrl: maria?.url };
    const old = await openDatabase({ ...opts, migrateTo: '0001_initial_schema' });
    const x = (sql: string, p: unknown[] = []) => old.sql.run(sql, p);
    await x(`INSERT INTO conversation (id, kind, owner_id, last_seq, created_at) VALUES ('dm:a:b', 'dm', NULL, 2, 100)`);
    await x(`INSERT INTO conversation_member (conversation_id, user_id, role, ack_seq, read_seq, joined_at) VALUES ('dm:a:b', 'a', 'member', 1, 1, 100), ('dm:a:b', 'b', 'member', 0, 0, 100)`);
    await x(`INSERT INTO message (conversation_id, seq, mid, sender_id, cmid, kind, body, created_at) VALUES ('dm:a:b', 1, '11', 'a', 'c1', 'text', '"x"', 5), ('dm:a:b', 2, '12', 'b', 'c2', 'text', '"y"', 6)`);
    await old.close();

    const db = await openDatabase(opts);
    try {
      const cols = async (t: string) => (mode === 'mariadb'
        ? (await db.sql.all('SELECT column_name AS c FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position', [t])).map((r) => String(r.c))
        : (await db.sql.all(`PRAGMA table_info(${t})`, [])).map((r) => String(r.name)));
      // 0002 dropped what nothing read (a later migration may bring a column back once something reads it).
      expect(await cols('conversation')).not.toContain('last_seq');
      expect(await cols('conversation')).not.toContain('created_at');
      expect(await cols('conversation')).toEqual(expect.arrayContaining(['id', 'kind', 'owner_id']));
      expect(await cols('conversation_member')).toEqual(expect.arrayContaining(['conversation_id', 'user_id', 'role', 'ack_seq', 'read_seq']));
      // The names outside tools read stay.
      expect(await cols('message')).toEqual(['conversation_id', 'seq', 'mid', 'sender_id', 'cmid', 'kind', 'body', 'created_at', 'recalled_at']);
      const store = new MessageStore(db);
      expect(await store.userConversations('a')).toEqual([{ conv: 'dm:a:b', lastSeq: 2, ackSeq: 1, readSeq: 1 }]);
      expect((await store.history('dm:a:b', 0, 10)).map((m) => [m.seq, m.bodyJson, m.ts])).toEqual([[1, '"x"', 5], [2, '"y"', 6]]);
      await store.ensureDm('dm:a:c', 'a', 'c');
      await store.createGroup('g:n', 'a', ['b']);
      expect((await store.userConversations('a')).map((c) => c.conv)).toEqual(['dm:a:b', 'dm:a:c', 'g:n']);
    } finally {
      await db.close();
    }
    // Opening again runs nothing new.
    const again = await openDatabase(opts);
    await again.close();
  });

  it('a 0002 record (no join order) gains joined_at: old members tie and hand over by user id, later ones by join time; the last one out ends the group', async () => {
    const opts = { dataDir: join(dir, 'v2'), mysqlUrl: maria ? maria.url.replace(/\/[^/]*$/, '/im_migr_v2') : undefined };
    if (maria) {
      const { createConnection } = await import('mysql2/promise');
      const c = await createConnection({ host: maria.host, port: maria.port, user: 'root' });
      await c.query('CREATE DATABASE IF NOT EXISTS im_migr_v2');
      await c.end();
    }
    const old = await openDatabase({ ...opts, migrateTo: '0002_drop_unread_columns' });
    const x = (sql: string) => old.sql.run(sql, []);
    await x(`INSERT INTO conversation (id, kind, owner_id) VALUES ('g:old', 'group', 'o')`);
    await x(`INSERT INTO conversation_member (conversation_id, user_id, role, ack_seq, read_seq) VALUES ('g:old', 'o', 'owner', 0, 0), ('g:old', 'zed', 'member', 0, 0), ('g:old', 'bea', 'member', 0, 0)`);
    await x(`INSERT INTO message (conversation_id, seq, mid, sender_id, cmid, kind, body, created_at) VALUES ('g:old', 1, '21', 'o', 'c1', 'text', '"x"', 5)`);
    await old.close();

    const db = await openDatabase(opts);
    try {
      const store = new MessageStore(db);
      const joined = (await db.sql.all(`SELECT joined_at AS j FROM conversation_member WHERE conversation_id = 'g:old'`, [])) as Array<{ j: number }>;
      expect(joined.map((r) => Number(r.j))).toEqual([0, 0, 0]);
      await store.addMembers('g:old', ['aaron']); // joins now: after the old members despite the smaller id
      expect(await store.leaveGroup('g:old', 'o')).toEqual({ left: true, newOwner: 'bea', ended: false });
      expect((await store.loadConversation('g:old'))?.ownerId).toBe('bea');
      expect(await store.leaveGroup('g:old', 'zed')).toEqual({ left: true, newOwner: null, ended: false });
      expect(await store.leaveGroup('g:old', 'bea')).toEqual({ left: true, newOwner: 'aaron', ended: false });
      expect(await store.leaveGroup('g:old', 'bea')).toEqual({ left: false, newOwner: null, ended: false });
      expect(await store.leaveGroup('g:old', 'aaron')).toEqual({ left: true, newOwner: null, ended: true });
      // Ended: the row and the history stay, nobody is a member, the name is taken.
      const rec = await store.loadConversation('g:old');
      expect(rec).toMatchObject({ id: 'g:old', kind: 'group', ownerId: null, members: [], maxSeq: 1 });
      expect((await store.history('g:old', 0, 10)).map((m) => m.bodyJson)).toEqual(['"x"']);
      await expect(store.createGroup('g:old', 'o', [])).rejects.toThrow(DuplicateKeyError);
    } finally {
      await db.close();
    }
  });
});
