/**
 * The pending-cursor overlay (persistence/cursor-overlay.ts) on both databases, through the
 * stores a node really runs on (openStore: the SQLite worker thread, or MariaDB in-thread):
 * cursor moves not yet written show in every cursor read, forward only, never past the last
 * stored message, and identically on SQLite and MariaDB.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { overlayCursors } from '../../persistence/cursor-overlay.ts';
import { openStore, type OpenStore } from '../../persistence/store.ts';
import { startMariaDB, type ServerHandle } from '../harness/servers.ts';

describe('overlayCursors', () => {
  it('takes the larger cursor, clamping only the pending one to the last stored seq', () => {
    expect(overlayCursors({ ack: 2, read: 1 }, { ack: 4, read: 0 }, 5)).toEqual({ ack: 4, read: 1 });
    expect(overlayCursors({ ack: 2, read: 1 }, { ack: 9, read: 8 }, 5)).toEqual({ ack: 5, read: 5 });
    expect(overlayCursors({ ack: 3, read: 3 }, { ack: 1, read: 2 }, 5)).toEqual({ ack: 3, read: 3 });
    expect(overlayCursors({ ack: 0, read: 0 }, { ack: 4, read: 4 }, 0)).toEqual({ ack: 0, read: 0 });
  });
});

const modes = [['sqlite'], ['mariadb']] as const;

/** What each dialect's run observed, compared across dialects at the end. */
const seen: Record<string, unknown> = {};

describe.each(modes)('pending cursors over the record on %s', (mode) => {
  let open: OpenStore;
  let dir: string;
  let maria: ServerHandle | null = null;
  const pending = new Map<string, { ack: number; read: number }>();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'im-overlay-'));
    if (mode === 'mariadb') maria = await startMariaDB();
    open = await openStore({ dataDir: dir, mysqlUrl: maria?.url });
    open.store.setPendingCursors((conv, user) => pending.get(`${conv}/${user}`) ?? { ack: 0, read: 0 });
    const s = open.store;
    await s.createGroup('g:o', 'own', ['m1', 'm2', 'm3']);
    await s.ensureDm('dm:m1:own', 'm1', 'own');
    await s.insertMessages(Array.from({ length: 5 }, (_, i) => ({ conv: 'g:o', seq: i + 1, mid: `${mode}o${i}`, from: 'own', cmid: `o${i}`, kind: 'text', bodyJson: '1', ts: 1 })));
    await s.insertMessages([{ conv: 'dm:m1:own', seq: 1, mid: `${mode}dm`, from: 'own', cmid: 'd', kind: 'text', bodyJson: '1', ts: 1 }]);
    // In the record: m2 at 4/4, m3 at 2/1.
    await s.applyCursors([{ conv: 'g:o', user: 'm2', ack: 4, read: 4 }, { conv: 'g:o', user: 'm3', ack: 2, read: 1 }]);
  });
  afterAll(async () => {
    await open?.close();
    await maria?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('overlays moves not yet written on userConversations and on loadConversation members', async () => {
    pending.set('g:o/m1', { ack: 3, read: 2 }); // ahead of the record (0/0)
    pending.set('g:o/m2', { ack: 1, read: 0 }); // behind the record (4/4): the record wins
    pending.set('g:o/m3', { ack: 99, read: 7 }); // past the last message: clamped to 5
    pending.set('dm:m1:own/m1', { ack: 1, read: 1 });
    const byUser = async (u: string) => Object.fromEntries((await open.store.userConversations(u)).map((c) => [c.conv, { last: c.lastSeq, ack: c.ackSeq, read: c.readSeq }]));
    const convs = { m1: await byUser('m1'), m2: await byUser('m2'), m3: await byUser('m3') };
    expect(convs).toEqual({
      m1: { 'dm:m1:own': { last: 1, ack: 1, read: 1 }, 'g:o': { last: 5, ack: 3, read: 2 } },
      m2: { 'g:o': { last: 5, ack: 4, read: 4 } },
      m3: { 'g:o': { last: 5, ack: 5, read: 5 } },
    });
    const rec = await open.store.loadConversation('g:o');
    const members = Object.fromEntries((rec?.members ?? []).map((m) => [m.user, { ack: m.ackSeq, read: m.readSeq }]));
    expect(members).toEqual({ own: { ack: 0, read: 0 }, m1: { ack: 3, read: 2 }, m2: { ack: 4, read: 4 }, m3: { ack: 5, read: 5 } });
    seen[mode] = { convs, members };
  });

  it('reads the record alone once the moves are written and no longer pending', async () => {
    await open.store.applyCursors([...pending].map(([k, v]) => {
      const [conv = '', user = ''] = k.split('/');
      return { conv, user, ...v };
    }));
    pending.clear();
    expect((await open.store.userConversations('m3'))[0]).toMatchObject({ ackSeq: 5, readSeq: 5 });
    expect((await open.store.userConversations('m1')).map((c) => [c.conv, c.ackSeq, c.readSeq])).toEqual([['dm:m1:own', 1, 1], ['g:o', 3, 2]]);
  });

  it('logins that read together (one batched read) each get their own conversations, in order', async () => {
    pending.set('g:o/m3', { ack: 5, read: 5 });
    const users = ['m1', 'nobody', 'own', 'm3', 'm1', 'm2', ...Array.from({ length: 150 }, (_, i) => `idle${i}`)];
    // All asked in the same turn, more than one batch (100) of them.
    const lists = await Promise.all(users.map((u) => open.store.userConversations(u)));
    const got = Object.fromEntries(lists.slice(0, 6).map((l, i) => [`${i}:${users[i]}`, l.map((c) => `${c.conv} ${c.lastSeq}/${c.ackSeq}/${c.readSeq}`)]));
    expect(got).toEqual({
      '0:m1': ['dm:m1:own 1/1/1', 'g:o 5/3/2'],
      '1:nobody': [],
      '2:own': ['dm:m1:own 1/0/0', 'g:o 5/0/0'],
      '3:m3': ['g:o 5/5/5'],
      '4:m1': ['dm:m1:own 1/1/1', 'g:o 5/3/2'],
      '5:m2': ['g:o 5/4/4'],
    });
    expect(lists[4]).not.toBe(lists[0]);
    expect(lists.slice(6).every((l) => l.length === 0)).toBe(true);
    pending.clear();
  });
});

describe('both dialects', () => {
  it('saw the same overlaid cursors', () => {
    expect(seen.sqlite).toBeDefined();
    expect(seen.mariadb).toEqual(seen.sqlite);
  });
});
