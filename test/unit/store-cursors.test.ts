/** Cursor bulk updates on both databases: forward-only, members only, clamped to the last stored message. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../persistence/database.ts';
import { MessageStore } from '../../persistence/message-store.ts';
import { startMariaDB, type ServerHandle } from '../harness/servers.ts';

const modes = [['sqlite'], ['mariadb']] as const;

describe.each(modes)('MessageStore cursors on %s', (mode) => {
  let db: Database;
  let store: MessageStore;
  let dir: string;
  let maria: ServerHandle | null = null;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'im-store-'));
    if (mode === 'mariadb') maria = await startMariaDB();
    db = await openDatabase({ dataDir: dir, mysqlUrl: maria?.url });
    store = new MessageStore(db);
  });
  afterAll(async () => {
    await db?.close();
    await maria?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('moves cursors forward only, for members only, in bulk', async () => {
    await store.createGroup('g:c', 'own', ['m1', 'm2']);
    await store.insertMessages(Array.from({ length: 8 }, (_, i) => ({ conv: 'g:c', seq: i + 1, mid: `${mode}${i}`, from: 'own', cmid: `c${i}`, kind: 'text', bodyJson: '1', ts: 1 })));
    const moves = [{ conv: 'g:c', user: 'm1', ack: 5, read: 3 }, { conv: 'g:c', user: 'own', ack: 2 }, { conv: 'g:c', user: 'stranger', ack: 9 }];
    // Many more moves than one chunk, all for other (absent) rows.
    for (let i = 0; i < 600; i++) moves.push({ conv: `g:none${i}`, user: 'x', ack: i });
    await store.applyCursors(moves);
    await store.applyCursors([{ conv: 'g:c', user: 'm1', ack: 4, read: 7 }]);
    const byUser = Object.fromEntries((await Promise.all(['own', 'm1', 'm2'].map(async (u) => [u, (await store.userConversations(u))[0]]))));
    expect(byUser.m1).toMatchObject({ conv: 'g:c', ackSeq: 5, readSeq: 7 });
    expect(byUser.own).toMatchObject({ ackSeq: 2, readSeq: 0 });
    expect(byUser.m2).toMatchObject({ ackSeq: 0, readSeq: 0 });
    expect(await store.userConversations('stranger')).toEqual([]);
  });

  it('never moves a cursor past the last stored message', async () => {
    await store.applyCursors([{ conv: 'g:c', user: 'm2', ack: 1000, read: 999 }]);
    expect((await store.userConversations('m2'))[0]).toMatchObject({ ackSeq: 8, readSeq: 8, lastSeq: 8 });
  });

  it('clamps each conversation to its own last message, and a conversation without messages to 0', async () => {
    await store.ensureDm('dm:p:q', 'p', 'q');
    await store.createGroup('g:d', 'own', ['p']);
    await store.insertMessages(Array.from({ length: 3 }, (_, i) => ({ conv: 'g:d', seq: i + 1, mid: `${mode}d${i}`, from: 'own', cmid: `d${i}`, kind: 'text', bodyJson: '1', ts: 1 })));
    await store.applyCursors([{ conv: 'dm:p:q', user: 'p', ack: 5, read: 5 }, { conv: 'g:d', user: 'p', ack: 7, read: 2 }]);
    const p = Object.fromEntries((await store.userConversations('p')).map((c) => [c.conv, c]));
    expect(p['dm:p:q']).toMatchObject({ lastSeq: 0, ackSeq: 0, readSeq: 0 });
    expect(p['g:d']).toMatchObject({ lastSeq: 3, ackSeq: 3, readSeq: 2 });
  });
});
