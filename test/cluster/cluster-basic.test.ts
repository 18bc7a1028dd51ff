/**
 * Three real node processes over real NATS, MariaDB and Redis: 1:1 and group chat with the
 * members spread over all nodes, order and receipts, typing, recall, group changes, and a
 * second login of the same user+device on another node kicking the first socket.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatNodeHandle } from '../harness/chat-node.ts';
import { startAll } from '../harness/servers.ts';
import { login, type Frame } from '../harness/ws-client.ts';
import { ownerOf } from '../../cluster/placement.ts';
import { Peer, checkStored, dbMessages, gapless, sleep, startNodes, until, type Servers } from './helpers.ts';

let servers: Servers;
let nodes: ChatNodeHandle[] = [];
const peers: Peer[] = [];
const tag = `b${process.pid}`;
const u = (name: string) => `${name}_${tag}`;

beforeAll(async () => {
  servers = await startAll();
  nodes = await startNodes(servers, ['na', 'nb', 'nc']);
  // Heartbeats every 250 ms: give every node time to hear the others.
  await sleep(1_000);
});

afterAll(async () => {
  await Promise.all(peers.map((p) => p.close()));
  await Promise.all(nodes.map((n) => n.stop().catch((e: unknown) => console.error(String(e)))));
  await servers?.stop();
});

async function peer(user: string, node: number, device = 'd1'): Promise<Peer> {
  const p = await Peer.connect(user, [nodes[node].wsUrl], { device });
  peers.push(p);
  return p;
}

const frames = (p: Peer, pred: (f: Frame) => boolean): Frame[] => p.client.received.filter(pred);

describe('cluster of 3 nodes', () => {
  it('1:1 chat across nodes: order, own other device, delivered and read receipts', async () => {
    const alice = await peer(u('alice'), 0);
    const alice2 = await peer(u('alice'), 2, 'd2');
    const bob = await peer(u('bob'), 1);
    bob.autoAck = false; // acks sent by hand below, to check the receipt
    const n = 20;
    const sent = [];
    for (let i = 0; i < n; i++) sent.push(await alice.sendReliable({ to: bob.user }, { i }));
    const conv = sent[0].conv;
    expect(sent.map((s) => s.seq)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    await until(() => bob.list(conv).length === n && alice2.list(conv).length === n, 'bob and alice/d2 got every message');
    for (const p of [bob, alice2]) {
      const got = p.list(conv);
      expect(gapless(got).ok, gapless(got).detail).toBe(true);
      expect(got.map((m) => (m.body as { i: number }).i)).toEqual(Array.from({ length: n }, (_, i) => i));
      // Each device got each message once, in seq order (no failures here).
      const raw = frames(p, (f) => f.t === 'msg' && f.conv === conv).map((f) => f.seq);
      expect(raw).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    }
    // The sender's own device on which it sent gets no copy.
    expect(frames(alice, (f) => f.t === 'msg' && f.conv === conv)).toHaveLength(0);

    bob.client.send({ t: 'ack', conv, seq: n });
    const delivered = await alice.client.next((f) => f.t === 'receipt' && f.conv === conv && f.delivered === n);
    expect(delivered.user).toBe(bob.user);
    bob.client.send({ t: 'read', conv, seq: n });
    const read = await alice.client.next((f) => f.t === 'receipt' && f.conv === conv && f.read === n);
    expect(read.user).toBe(bob.user);
    await alice2.client.next((f) => f.t === 'receipt' && f.conv === conv && f.read === n);

    // Bob answers from the other side: the same conversation, next seq.
    const back = await bob.sendReliable({ to: alice.user }, { text: 'hi back' });
    expect(back).toMatchObject({ conv, seq: n + 1 });
    await until(() => alice.list(conv).some((m) => m.seq === n + 1) && alice2.list(conv).some((m) => m.seq === n + 1), 'alice devices got the answer');

    const rows = await dbMessages(servers.mariadb.url, conv);
    expect(checkStored(rows, [...sent.map((s) => ({ user: alice.user, ...s })), { user: bob.user, ...back }])).toEqual([]);
  });

  it('group chat with members on every node: one order for all, typing, recall, member changes', async () => {
    const group = `team_${tag}`;
    const conv = `g:${group}`;
    const owner = ownerOf(conv, ['na', 'nb', 'nc']);
    const alice = await peer(u('galice'), 0);
    const bob = await peer(u('gbob'), 1);
    const carol = await peer(u('gcarol'), 2);
    const created = await alice.client.request({ t: 'group_create', group, members: [bob.user, carol.user] });
    expect(created).toMatchObject({ t: 'ok', conv });
    const members = await carol.client.request({ t: 'group_members', conv });
    expect((members.members as string[]).sort()).toEqual([alice.user, bob.user, carol.user].sort());

    // Everyone sends at once: the owner node (${owner}) orders them.
    const per = 15;
    const results = await Promise.all([alice, bob, carol].map(async (p) => {
      const out = [];
      for (let i = 0; i < per; i++) out.push(await p.sendReliable({ conv }, { from: p.user, i }));
      return out;
    }));
    const total = per * 3;
    const allSeqs = results.flat().map((r) => r.seq).sort((a, b) => a - b);
    expect(allSeqs, `owner ${String(owner)}`).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    // A sending socket gets no copy of its own messages: sync fills those in.
    for (const p of [alice, bob, carol]) await p.syncAll(conv);
    const views = [alice, bob, carol].map((p) => p.list(conv).map((m) => `${String(m.seq)}:${String(m.mid)}:${String(m.from)}`));
    expect(views[0]).toHaveLength(total);
    expect(views[1]).toEqual(views[0]);
    expect(views[2]).toEqual(views[0]);
    // Live pushes arrived in seq order on every socket.
    for (const p of [alice, bob, carol]) {
      const raw = frames(p, (f) => f.t === 'msg' && f.conv === conv).map((f) => f.seq as number);
      expect(raw).toEqual([...raw].sort((a, b) => a - b));
      expect(raw).toHaveLength(total - per);
    }

    // Typing reaches the others on their nodes, not the typist.
    carol.client.send({ t: 'typing', conv });
    await alice.client.next((f) => f.t === 'typing' && f.conv === conv && f.user === carol.user);
    await bob.client.next((f) => f.t === 'typing' && f.conv === conv && f.user === carol.user);

    // Recall by the sender: every member is told; sync shows it recalled.
    const mine = results[1][0];
    expect(await bob.client.request({ t: 'recall', conv, seq: mine.seq })).toMatchObject({ t: 'ok' });
    for (const p of [alice, bob, carol]) await p.client.next((f) => f.t === 'recalled' && f.conv === conv && f.seq === mine.seq && f.by === bob.user);
    const denied = await alice.client.request({ t: 'recall', conv, seq: mine.seq });
    expect(denied).toMatchObject({ t: 'error', code: 'forbidden' });
    const batch = await carol.client.request({ t: 'sync', conv, after: mine.seq - 1, limit: 1 });
    expect((batch.msgs as Frame[])[0]).toMatchObject({ seq: mine.seq, recalled: true });
    expect((batch.msgs as Frame[])[0].body).toBeUndefined();

    // Member changes: carol removed (she can no longer send), dave added on another node.
    expect(await alice.client.request({ t: 'group_remove', conv, members: [carol.user] })).toMatchObject({ t: 'ok' });
    expect(await carol.client.request({ t: 'send', conv, cmid: 'after-removal', body: 'x' })).toMatchObject({ t: 'error', code: 'forbidden' });
    const dave = await peer(u('gdave'), 1, 'tab');
    expect(await dave.client.request({ t: 'send', conv, cmid: 'before-join', body: 'x' })).toMatchObject({ t: 'error', code: 'forbidden' });
    expect(await bob.client.request({ t: 'group_add', conv, members: [dave.user] })).toMatchObject({ t: 'error', code: 'forbidden' });
    expect(await alice.client.request({ t: 'group_add', conv, members: [dave.user] })).toMatchObject({ t: 'ok' });
    const last = await alice.sendReliable({ conv }, { text: 'welcome dave' });
    expect(last.seq).toBe(total + 1);
    await until(() => dave.list(conv).some((m) => m.seq === total + 1) && bob.list(conv).some((m) => m.seq === total + 1), 'dave and bob got the welcome');
    await sleep(300);
    expect(carol.list(conv).some((m) => m.seq === total + 1)).toBe(false);
    const dm = await dave.client.request({ t: 'group_members', conv });
    expect((dm.members as string[]).sort()).toEqual([alice.user, bob.user, dave.user].sort());

    const rows = await dbMessages(servers.mariadb.url, conv);
    const acked = [alice, bob, carol].flatMap((p, i) => results[i].map((r) => ({ user: p.user, ...r })));
    expect(checkStored(rows, [...acked, { user: alice.user, ...last }])).toEqual([]);
  });

  it('a login of the same user and device on another node kicks the old socket', async () => {
    const first = await peer(u('kuser'), 0, 'phone');
    const other = await peer(u('kuser'), 1, 'laptop');
    const { client: second } = await login(nodes[2].wsUrl, first.user, { device: 'phone' });
    try {
      const kicked = await first.client.next((f) => f.t === 'kicked', 5_000);
      expect(kicked.reason).toBe('replaced');
      await first.client.closed;
      // Another device of the same user is untouched; the new socket works.
      expect(other.client.isOpen()).toBe(true);
      const pong = await second.request({ t: 'ping' });
      expect(pong.t).toBe('pong');
      // Messages reach the new socket on its node.
      const friend = await peer(u('kfriend'), 0);
      const s = await friend.sendReliable({ to: first.user }, { text: 'where are you' });
      await second.next((f) => f.t === 'msg' && f.conv === s.conv && f.seq === s.seq);
      await other.client.next((f) => f.t === 'msg' && f.conv === s.conv && f.seq === s.seq);
    } finally {
      await second.close();
    }
  });
});
