/**
 * The server API in a cluster of two real nodes (MariaDB, NATS, Redis): every call lands on the
 * node that neither owns the conversation nor holds the socket, and still reaches both — group
 * creation and member changes, messages (pushed to the socket on the other node, idempotent
 * from either node), history, recall, presence from the replica, and disconnect over NATS.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatNodeHandle } from '../harness/chat-node.ts';
import { startAll } from '../harness/servers.ts';
import { login, type TestClient } from '../harness/ws-client.ts';
import { ownerOf } from '../../cluster/placement.ts';
import * as s from '../../api/schemas.ts';
import { sleep, startNodes, until, type Servers } from './helpers.ts';

const KEY = 'cluster-api-key-0123456789';
let servers: Servers;
let nodes: ChatNodeHandle[] = [];
const clients: TestClient[] = [];
const tag = `c${process.pid}`;

beforeAll(async () => {
  servers = await startAll();
  nodes = await startNodes(servers, ['na', 'nb'], { IM_API_KEYS: KEY });
  await sleep(1_000);
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  await Promise.all(nodes.map((n) => n.stop().catch((e: unknown) => console.error(String(e)))));
  await servers?.stop();
});

async function api(n: ChatNodeHandle, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const r = await fetch(`${n.httpUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${KEY}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: r.status, body: await r.json() };
}

function ok<T>(a: { status: number; body: unknown }, schema: { safeParse(v: unknown): { success: boolean; data?: T } }): T {
  expect(a.status, JSON.stringify(a.body)).toBe(200);
  const r = schema.safeParse(a.body);
  expect(r.success, JSON.stringify(a.body)).toBe(true);
  return r.data as T;
}

describe('server API in a 2-node cluster', () => {
  it('calls on the node that neither owns the conversation nor holds the socket', async () => {
    const [na, nb] = nodes;
    // A group and a 1:1 conversation both owned by na; every API call below goes to nb.
    let i = 0;
    while (ownerOf(`g:team_${tag}_${i}`, ['na', 'nb']) !== 'na') i++;
    const group = `team_${tag}_${i}`;
    const conv = `g:${group}`;
    let j = 0;
    while (ownerOf(`dm:alice_${tag}:bob_${tag}_${j}`, ['na', 'nb']) !== 'na') j++;
    const alice = `alice_${tag}`;
    const bob = `bob_${tag}_${j}`;

    const { client: aliceWs } = await login(na.wsUrl, alice, { device: 'phone' });
    clients.push(aliceWs);

    expect(ok(await api(nb, 'POST', '/api/v1/groups', { group, owner: alice, members: [bob] }), s.groupCreatedAnswer)).toEqual({ conv });
    expect((await api(na, 'POST', '/api/v1/groups', { group, owner: bob, members: [] })).body.error.code).toBe('conflict');
    const members = ok(await api(nb, 'POST', `/api/v1/groups/${encodeURIComponent(conv)}/members`, { add: [`carol_${tag}`] }), s.membersAnswer);
    expect(members.members).toEqual([alice, bob, `carol_${tag}`].sort());
    expect(ok(await api(nb, 'GET', `/api/v1/groups/${encodeURIComponent(conv)}/members`), s.groupAnswer)).toMatchObject({ owner: alice });

    // Messages through nb, committed by na, pushed to alice's socket on na; idempotent from either node.
    const sent = ok(await api(nb, 'POST', '/api/v1/messages', { from: bob, conv, cmid: 'k1', body: { text: 'hello' } }), s.sentAnswer);
    expect(sent.seq).toBe(1);
    expect(await aliceWs.next((f) => f.t === 'msg' && f.conv === conv)).toMatchObject({ seq: 1, from: bob, body: { text: 'hello' } });
    expect(ok(await api(na, 'POST', '/api/v1/messages', { from: bob, conv, cmid: 'k1', body: 'x' }), s.sentAnswer)).toEqual(sent);
    expect(ok(await api(nb, 'POST', '/api/v1/messages', { from: bob, conv, cmid: 'k1', body: 'x' }), s.sentAnswer)).toEqual(sent);
    const dm = ok(await api(nb, 'POST', '/api/v1/messages', { from: bob, to: alice, cmid: 'd1', body: 'psst' }), s.sentAnswer);
    expect(await aliceWs.next((f) => f.t === 'msg' && f.conv === dm.conv)).toMatchObject({ seq: 1, body: 'psst' });
    // A client send and an API send get consecutive seqs from the same owner.
    const viaClient = await aliceWs.request({ t: 'send', conv, cmid: 'w1', body: 'reply' });
    expect(viaClient).toMatchObject({ t: 'sent', seq: 2 });
    expect(ok(await api(nb, 'POST', '/api/v1/messages', { from: bob, conv, cmid: 'k2', body: 'third' }), s.sentAnswer).seq).toBe(3);

    const h = ok(await api(nb, 'GET', `/api/v1/conversations/${encodeURIComponent(conv)}/messages?before=4&limit=2`), s.historyAnswer);
    expect(h.msgs.map((m) => m.seq)).toEqual([2, 3]);
    expect(h.more).toBe(true);

    ok(await api(nb, 'POST', `/api/v1/conversations/${encodeURIComponent(conv)}/recall`, { seq: 1 }), s.okAnswer);
    expect(await aliceWs.next((f) => f.t === 'recalled')).toEqual({ t: 'recalled', conv, seq: 1, by: '@api' });

    const convs = ok(await api(nb, 'GET', `/api/v1/users/${alice}/conversations`), s.convsAnswer);
    expect(convs.convs.map((c) => c.conv).sort()).toEqual([dm.conv, conv].sort());

    // Presence from nb's replica: the device is on na.
    const p = ok(await api(nb, 'GET', `/api/v1/users/${alice}/presence`), s.presenceAnswer);
    expect(p.online).toBe(true);
    expect(p.devices).toHaveLength(1);
    expect(p.devices[0]).toMatchObject({ device: 'phone', node: 'na' });
    expect(p.devices[0].since).toBeGreaterThan(Date.now() - 120_000);

    // Disconnect through nb closes the socket on na.
    const closed = ok(await api(nb, 'POST', `/api/v1/users/${alice}/disconnect`, { reason: 'banned' }), s.closedAnswer);
    expect(closed.closed).toBe(1);
    expect(await aliceWs.next((f) => f.t === 'kicked')).toEqual({ t: 'kicked', reason: 'banned' });
    expect((await aliceWs.closed).code).toBe(4000);
    await until(async () => ok(await api(nb, 'GET', `/api/v1/users/${alice}/presence`), s.presenceAnswer).online === false, 'alice offline on nb');
    expect(ok(await api(na, 'GET', `/api/v1/users/${alice}/presence`), s.presenceAnswer).online).toBe(false);
    expect(ok(await api(nb, 'POST', `/api/v1/users/${alice}/disconnect`, {}), s.closedAnswer).closed).toBe(0);
  });
});
