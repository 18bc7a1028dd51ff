/**
 * UserSession.catchUp on a real SQLite record: after pushes were lost (the node was cut off from
 * the cluster bus), a logged-in device gets exactly the messages it misses, in order, once.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { pino } from 'pino';
import { SendAdmission } from '../../core/admission.ts';
import { UserSession, type Connection, type SessionDeps } from '../../actors/user-session.ts';
import { loadConfig } from '../../cluster.config.ts';
import { Metrics } from '../../core/metrics.ts';
import { openDatabase, type Database } from '../../persistence/database.ts';
import { MessageStore, type NewMessage } from '../../persistence/message-store.ts';

let dir: string;
let db: Database;
let store: MessageStore;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'im-catchup-'));
  db = await openDatabase({ dataDir: dir });
  store = new MessageStore(db);
});
afterAll(async () => {
  await db.close();
  rmSync(dir, { recursive: true, force: true });
});

const row = (conv: string, seq: number): NewMessage => ({ conv, seq, mid: `${conv}#${seq}`, from: 'ann', cmid: `c${seq}`, kind: 'text', bodyJson: `"m${seq}"`, ts: seq });

it('pushes only what the device misses, once', async () => {
  await store.ensureDm('dm:ann:bea', 'ann', 'bea');
  await store.ensureDm('dm:bea:cy', 'bea', 'cy');
  await store.insertMessages([1, 2].map((s) => row('dm:ann:bea', s)));
  await store.insertMessages([1].map((s) => row('dm:bea:cy', s)));
  await store.applyCursors([{ conv: 'dm:bea:cy', user: 'bea', ack: 1 }]);

  const frames: Array<{ t: string; conv?: string; seq?: number }> = [];
  const conn: Connection = { send: (json) => { frames.push(JSON.parse(json)); return true; }, close: () => undefined, buffered: () => 0 };
  const deps: SessionDeps = {
    config: loadConfig({}), log: pino({ level: 'silent' }), metrics: new Metrics(), store,
    conversations: { request: () => Promise.reject(new Error('not used')) },
    pending: { pendingAck: () => 0 }, limits: { groupCreate: () => true, typing: () => true }, nodeId: 'n',
    admission: new SendAdmission({ maxInflight: 100, targetMs: 50 }),
  };
  const bea = new UserSession('bea', 'phone', conn, deps);
  await bea.start('r1'); // login: pushes dm:ann:bea 1..2 (above ack 0)
  await bea.backlogDone;
  expect(frames.filter((f) => f.t === 'msg').map((f) => `${f.conv}/${f.seq}`)).toEqual(['dm:ann:bea/1', 'dm:ann:bea/2']);

  // Committed elsewhere while this node was cut off: the live pushes never arrived.
  await store.insertMessages([3, 4].map((s) => row('dm:ann:bea', s)));
  await store.insertMessages([2].map((s) => row('dm:bea:cy', s)));
  frames.length = 0;
  expect(await bea.catchUp()).toBe(3);
  expect(frames.map((f) => `${f.conv}/${f.seq}`)).toEqual(['dm:ann:bea/3', 'dm:ann:bea/4', 'dm:bea:cy/2']);

  frames.length = 0;
  expect(await bea.catchUp()).toBe(0);
  expect(frames).toEqual([]);
  bea.dispose();
});
