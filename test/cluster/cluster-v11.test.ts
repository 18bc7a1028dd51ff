/**
 * Protocol v1.1 across real node processes (NATS, MariaDB, Redis): `presence` pushes reach a
 * subscriber on another node than the watched user's devices (first device online, last device
 * offline, a device replacing itself on a third node is no change), and `group` pushes and
 * group_leave's owner hand-over reach members on every node.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatNodeHandle } from '../harness/chat-node.ts';
import { startAll } from '../harness/servers.ts';
import { login, type Frame, type TestClient } from '../harness/ws-client.ts';
import { sleep, startNodes, type Servers } from './helpers.ts';

let servers: Servers;
let nodes: ChatNodeHandle[] = [];
const clients: TestClient[] = [];
const tag = `v${process.pid}`;
const u = (name: string) => `${name}_${tag}`;

beforeAll(async () => {
  servers = await startAll();
  nodes = await startNodes(servers, ['va', 'vb', 'vc']);
  // Heartbeats every 250 ms: give every node time to hear the others.
  await sleep(1_000);
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  await Promise.all(nodes.map((n) => n.stop().catch((e: unknown) => console.error(String(e)))));
  await servers?.stop();
});

async function on(node: number, user: string, device = 'd1'): Promise<TestClient> {
  const { client } = await login(nodes[node].wsUrl, user, { device });
  clients.push(client);
  return client;
}

const presencePush = (user: string) => (f: Frame) => f.t === 'presence' && f.rid === undefined && f.user === user;

describe('protocol v1.1 in a cluster of 3 nodes', () => {
  it('presence: pushes from other nodes on first device and last device only; none on a replace elsewhere', async () => {
    const [watcher, bob, mallory] = [u('watcher'), u('bob'), u('mallory')];
    const w = await on(0, watcher);
    const group = `pres_${tag}`;
    expect(await w.request({ t: 'group_create', group, members: [bob] })).toMatchObject({ t: 'ok' });
    const m = await on(2, mallory);
    const r = await w.request({ t: 'presence_sub', users: [bob, mallory] });
    expect(r.users).toEqual([{ user: bob, online: false }, { user: mallory, online: null }]);

    const b1 = await on(1, bob, 'phone');
    expect(await w.next(presencePush(bob), 5_000)).toEqual({ t: 'presence', user: bob, online: true });
    // A second device (node 2) and the first device replacing itself on node 2: no change.
    const b2 = await on(2, bob, 'laptop');
    const b1again = await on(2, bob, 'phone');
    expect(await b1.next((f) => f.t === 'kicked', 5_000)).toMatchObject({ reason: 'replaced' });
    await b2.close();
    await m.close();
    await sleep(700);
    expect(w.received.filter((f) => f.t === 'presence' && f.rid === undefined)).toHaveLength(1);
    // The subscriber also learns of it on another node than its own: state is cluster-wide.
    const again = await w.request({ t: 'presence_sub', users: [bob] });
    expect(again.users).toEqual([{ user: bob, online: true }]);
    // Last device gone: offline, pushed across the cluster.
    await b1again.close();
    expect(await w.next(presencePush(bob), 5_000)).toEqual({ t: 'presence', user: bob, online: false });
    expect(w.received.filter(presencePush(mallory))).toEqual([]);
  });

  it('group pushes and group_leave across nodes: created, added, left and owner reach members on every node', async () => {
    const [alice, bob, carol, dave] = [u('alice'), u('bob'), u('carol'), u('dave')];
    const a = await on(0, alice);
    const b = await on(1, bob);
    const c = await on(2, carol);
    const group = `team_${tag}`;
    const conv = `g:${group}`;
    const isGroup = (op: string) => (f: Frame) => f.t === 'group' && f.conv === conv && f.op === op;
    expect(await a.request({ t: 'group_create', group, members: [carol, bob] })).toMatchObject({ t: 'ok' });
    for (const x of [a, b, c]) {
      const g = await x.next(isGroup('created'), 5_000);
      expect([...(g.members as string[])].sort()).toEqual([alice, bob, carol].sort());
      expect(g.by).toBe(alice);
    }
    await sleep(20);
    expect(await a.request({ t: 'group_add', conv, members: [dave] })).toMatchObject({ t: 'ok' });
    const d = await on(1, dave);
    for (const x of [a, b, c]) expect(await x.next(isGroup('added'), 5_000)).toEqual({ t: 'group', conv, op: 'added', members: [dave], by: alice });

    expect(await a.request({ t: 'group_leave', conv })).toMatchObject({ t: 'ok' });
    // bob and carol joined at creation (tie: the smaller id), dave later.
    const heir = [bob, carol].sort()[0];
    for (const x of [a, b, c, d]) {
      expect(await x.next(isGroup('left'), 5_000)).toEqual({ t: 'group', conv, op: 'left', members: [alice], by: alice });
      expect(await x.next(isGroup('owner'), 5_000)).toEqual({ t: 'group', conv, op: 'owner', members: [heir], by: alice });
    }
    const r = await d.request({ t: 'group_members', conv });
    expect(r.owner).toBe(heir);
    expect([...(r.members as string[])].sort()).toEqual([bob, carol, dave].sort());
  });
});
