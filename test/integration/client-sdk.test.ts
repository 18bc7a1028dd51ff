/**
 * The client SDK against a real chat node (main.ts spawned by the test harness): delivery,
 * idempotent resend, catch-up after being offline, reconnect across a node restart.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { ChatClient } from '../../client/index.ts';
import type { ChatClientOptions, MsgFrame } from '../../client/index.ts';
import { startChatNode } from '../harness/chat-node.ts';
import type { ChatNodeHandle } from '../harness/chat-node.ts';
import { signTestToken } from '../harness/ws-client.ts';

let node: ChatNodeHandle;
const clients: ChatClient[] = [];
let run = 0;

beforeAll(async () => {
  node = await startChatNode({});
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await node?.stop();
});

/** A user id unique to this test run, so tests do not see each other's conversations. */
const uid = (name: string) => `${name}${process.pid}x${++run}`;

function sdk(user: string, extra: Partial<ChatClientOptions> = {}): ChatClient {
  const c = new ChatClient({ urls: [node.wsUrl], token: () => signTestToken(user), WebSocket, backoff: { baseMs: 50, maxMs: 500 }, ...extra });
  clients.push(c);
  return c;
}

function collect(c: ChatClient): MsgFrame[] {
  const got: MsgFrame[] = [];
  c.on('message', (m) => got.push(m));
  return got;
}

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('client SDK against a real node', () => {
  it('delivers a 1:1 message to the peer and its own sender, once', async () => {
    const [alice, bob] = [uid('alice'), uid('bob')];
    const a = sdk(alice);
    const b = sdk(bob);
    const gotA = collect(a);
    const gotB = collect(b);
    await Promise.all([a.connect(), b.connect()]);
    const sent = await a.send({ to: bob }, { text: 'hi' });
    expect(sent.seq).toBe(1);
    await until(() => gotB.length === 1, 'bob got the message');
    expect(gotB[0]).toMatchObject({ conv: sent.conv, seq: 1, from: alice, body: { text: 'hi' }, kind: 'text' });
    expect(gotA.map((m) => m.seq)).toEqual([1]);
  });

  it('a send repeated with the same cmid is stored once', async () => {
    const [alice, bob] = [uid('alice'), uid('bob')];
    const a = sdk(alice);
    await a.connect();
    const one = await a.send({ to: bob }, 'x', { cmid: 'same-cmid' });
    const two = await a.send({ to: bob }, 'x', { cmid: 'same-cmid' });
    expect(two).toMatchObject({ seq: one.seq, mid: one.mid });
  });

  it('a client that was offline catches up on everything, in order, exactly once', async () => {
    const [alice, bob] = [uid('alice'), uid('bob')];
    const a = sdk(alice);
    await a.connect();
    const n = 30;
    let conv = '';
    for (let i = 1; i <= n; i++) conv = (await a.send({ to: bob }, `m${i}`)).conv;
    const b = sdk(bob, { syncLimit: 7 }); // small pages: exercises the `more` loop
    const got = collect(b);
    await b.connect();
    await until(() => b.held(conv) === n, `bob holds ${n}`);
    await new Promise((r) => setTimeout(r, 200));
    expect(got.map((m) => m.seq)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(got.map((m) => m.body)).toEqual(Array.from({ length: n }, (_, i) => `m${i + 1}`));
  });

  it('groups: create, members, fan-out', async () => {
    const [alice, bob, carol] = [uid('alice'), uid('bob'), uid('carol')];
    const a = sdk(alice);
    const c = sdk(carol);
    const gotC = collect(c);
    await Promise.all([a.connect(), c.connect()]);
    const conv = await a.groupCreate(`team${process.pid}x${run}`, [bob, carol]);
    expect((await a.groupMembers(conv)).sort()).toEqual([alice, bob, carol].sort());
    await a.send({ conv }, 'hello team');
    await until(() => gotC.length === 1, 'carol got the group message');
    expect(gotC[0]).toMatchObject({ conv, seq: 1, from: alice, body: 'hello team' });
  });

  it('reconnects after the node restarts and sends again', async () => {
    const [alice, bob] = [uid('alice'), uid('bob')];
    const a = sdk(alice);
    const b = sdk(bob);
    const gotB = collect(b);
    await Promise.all([a.connect(), b.connect()]);
    const first = await a.send({ to: bob }, 'before');
    await node.restart();
    const second = await a.send({ to: bob }, 'after');
    expect(second.seq).toBe(first.seq + 1);
    await until(() => gotB.length === 2, 'bob got both');
    expect(gotB.map((m) => m.body)).toEqual(['before', 'after']);
    expect(a.metrics.reconnects).toBeGreaterThanOrEqual(1);
    expect(a.metrics.reconnectDurations.length).toBe(a.metrics.reconnects);
  });

  it('a send made while the node is dead (kill -9) resolves once the node is back', async () => {
    const [alice, bob] = [uid('alice'), uid('bob')];
    const a = sdk(alice);
    await a.connect();
    const first = await a.send({ to: bob }, 'one');
    await node.kill();
    await until(() => a.state === 'reconnecting', 'client noticed the dead node');
    const pending = a.send({ to: bob }, 'two');
    await node.restart();
    const second = await pending;
    expect(second.seq).toBe(first.seq + 1);
    const batch = await a.sync(first.conv, 0);
    expect(batch.msgs.map((m) => m.body)).toEqual(['one', 'two']);
  });
});
