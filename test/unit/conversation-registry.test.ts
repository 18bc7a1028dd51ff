/** Passivating a conversation while requests are in flight must not fail them (membership changes do this). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { pino } from 'pino';
import { ConversationRegistry } from '../../actors/conversation-registry.ts';
import { createActorSystem, type ActorSystem } from '../../actors/system.ts';
import { Metrics } from '../../core/metrics.ts';
import { Snowflake } from '../../core/snowflake.ts';
import { openDatabase, type Database } from '../../persistence/database.ts';
import { GroupCommitWriter } from '../../persistence/group-commit.ts';
import { MessageStore } from '../../persistence/message-store.ts';

let dir: string;
let db: Database;
let system: ActorSystem;
let registry: ConversationRegistry;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'im-reg-'));
  db = await openDatabase({ dataDir: dir });
  const store = new MessageStore(db);
  system = await createActorSystem();
  const writer = new GroupCommitWriter(store, { maxRows: 500, maxDelayMs: 0 });
  const sf = new Snowflake(3);
  const log = pino({ level: process.env.TEST_LOG ?? 'silent' });
  registry = await ConversationRegistry.start(system.root, {
    store, writer, delivery: { message: () => undefined, event: () => undefined },
    mids: sf, cursors: { move: () => undefined }, recallWindowMs: 1000, maxGroupMembers: 5000, log,
  }, 60_000, new Metrics(), log, 2);
});
afterAll(async () => {
  registry.stop();
  await system.destroy();
  await db.close();
  rmSync(dir, { recursive: true, force: true });
});

it('answers every request in flight when its conversation is passivated, and keeps seqs gapless', async () => {
  const conv = 'dm:pat:quinn';
  const sends = Array.from({ length: 40 }, (_, i) =>
    registry.request({ op: 'send', conv, user: 'pat', device: 'd', cmid: `m${i}`, kind: 'text', bodyJson: String(i) }));
  registry.passivate(conv); // e.g. a membership change moved it away and back
  const more = Array.from({ length: 10 }, (_, i) =>
    registry.request({ op: 'send', conv, user: 'quinn', device: 'd', cmid: `n${i}`, kind: 'text', bodyJson: String(i) }));
  const results = await Promise.all([...sends, ...more]);
  expect(new Set(results.map((r) => r.seq)).size).toBe(50);
  const synced = await registry.request({ op: 'sync', conv, user: 'pat', after: 0, limit: 200 });
  expect(synced.msgs.map((m) => m.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
});
