/**
 * ConversationCore against a real SQLite record (temporary file). Faults are injected by
 * wrapping the real store's write path, never by replacing the store.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { ConversationCore, type ConversationDeps } from '../../actors/conversation.ts';
import type { Delivery, MessagePush } from '../../actors/delivery.ts';
import { Snowflake } from '../../core/snowflake.ts';
import { openDatabase, type Database } from '../../persistence/database.ts';
import { GroupCommitWriter } from '../../persistence/group-commit.ts';
import { MessageStore, type NewMessage } from '../../persistence/message-store.ts';
import { ProtocolError } from '../../protocol/errors.ts';

let dir: string;
let db: Database;
let store: MessageStore;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'im-conv-'));
  db = await openDatabase({ dataDir: dir });
  store = new MessageStore(db);
});
afterAll(async () => {
  await db.close();
  rmSync(dir, { recursive: true, force: true });
});

class Pushes implements Delivery {
  msgs: MessagePush[] = [];
  events: string[] = [];
  message(_u: readonly string[], p: MessagePush): void { this.msgs.push(p); }
  event(_u: readonly string[], json: string): void { this.events.push(json); }
}

function makeCore(conv: string, opts: { failWrites?: () => boolean; worker?: number } = {}) {
  const delivery = new Pushes();
  const sf = new Snowflake(opts.worker ?? 1);
  const writer = new GroupCommitWriter({
    insertMessages: async (rows: NewMessage[]) => {
      if (opts.failWrites?.()) throw new Error('injected store failure');
      await store.insertMessages(rows);
    },
  }, { maxRows: 500, maxDelayMs: 0 });
  const deps: ConversationDeps = {
    store, writer, delivery, mids: sf,
    cursors: { move: () => undefined }, recallWindowMs: 60_000, maxGroupMembers: 5000,
    log: pino({ level: process.env.TEST_LOG ?? 'silent' }),
  };
  return { core: new ConversationCore(conv, deps), delivery };
}

const send = (core: ConversationCore, user: string, cmid: string, body: unknown = cmid) =>
  core.handle({ op: 'send', conv: core.id, user, device: 'd', cmid, kind: 'text', bodyJson: JSON.stringify(body) });

const storedSeqs = async (conv: string) => (await store.history(conv, 0, 10_000)).map((m) => m.seq);

describe('ConversationCore on SQLite', () => {
  it('assigns gapless seqs to concurrent senders and pushes in seq order', async () => {
    const { core, delivery } = makeCore('dm:ann:ben');
    const results = await Promise.all(Array.from({ length: 60 }, (_, i) => send(core, i % 2 ? 'ann' : 'ben', `m${i}`)));
    expect(results.map((r) => r.seq).sort((a, b) => a - b)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    expect(await storedSeqs('dm:ann:ben')).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    expect(delivery.msgs.map((m) => m.seq)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
  });

  it('answers a concurrent and a later resend with the original seq and mid', async () => {
    const { core } = makeCore('dm:cat:dan');
    const [a, b] = await Promise.all([send(core, 'cat', 'same'), send(core, 'cat', 'same')]);
    const c = await send(core, 'cat', 'same');
    expect(b).toEqual(a);
    expect(c).toEqual(a);
    expect(await storedSeqs('dm:cat:dan')).toEqual([1]);
  });

  it('recognises a resend older than the in-memory window through the unique key', async () => {
    const conv = 'dm:eve:fay';
    const first = makeCore(conv).core;
    const original = await send(first, 'eve', 'old-0');
    for (let i = 1; i <= 300; i++) await send(first, 'fay', `x${i}`);
    const restarted = makeCore(conv).core; // like a new owner after failover: only 256 cmids preloaded
    const again = await send(restarted, 'eve', 'old-0');
    expect(again).toEqual(original);
    const next = await send(restarted, 'eve', 'new-1');
    expect(next.seq).toBe(302);
    expect(await storedSeqs(conv)).toEqual(Array.from({ length: 302 }, (_, i) => i + 1));
  });

  it('fences a second owner: both keep writing and the stored seqs stay gapless', async () => {
    const conv = 'g:fence';
    await store.createGroup(conv, 'gus', ['hal']);
    const a = makeCore(conv, { worker: 11 }).core;
    const b = makeCore(conv, { worker: 12 }).core;
    await send(a, 'gus', 'a0');
    await send(b, 'hal', 'b0'); // b loaded before a's write? either way it must not fork
    const all = await Promise.all([
      ...Array.from({ length: 20 }, (_, i) => send(a, 'gus', `a${i + 1}`)),
      ...Array.from({ length: 20 }, (_, i) => send(b, 'hal', `b${i + 1}`)),
    ]);
    const seqs = new Set(all.map((r) => r.seq));
    expect(seqs.size).toBe(40);
    expect(await storedSeqs(conv)).toEqual(Array.from({ length: 42 }, (_, i) => i + 1));
  });

  it('tells the sender to retry when the store fails, and continues gapless after', async () => {
    let failing = true;
    const { core } = makeCore('dm:ida:jon', { failWrites: () => failing });
    await expect(send(core, 'ida', 'f1')).rejects.toMatchObject({ code: 'unavailable' });
    failing = false;
    const r1 = await send(core, 'ida', 'f1'); // the client's retry with the same cmid
    const r2 = await send(core, 'jon', 'f2');
    expect([r1.seq, r2.seq]).toEqual([1, 2]);
    expect(await storedSeqs('dm:ida:jon')).toEqual([1, 2]);
  });

  it('refuses non-members and unknown groups with the protocol codes', async () => {
    const { core } = makeCore('dm:kim:lea');
    await expect(send(core, 'mallory', 'x')).rejects.toBeInstanceOf(ProtocolError);
    await expect(send(core, 'mallory', 'x')).rejects.toMatchObject({ code: 'forbidden' });
    const { core: g } = makeCore('g:nowhere');
    await expect(send(g, 'kim', 'x')).rejects.toMatchObject({ code: 'not_found' });
  });
});
