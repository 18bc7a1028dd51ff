/**
 * Regression tests for the defects a hostile or unlucky client found (issue "Hardening"), each
 * against a real node process: a request that killed the node, the login-backlog lockout, fake
 * receipts, unbounded conversation actors, missing per-frame limits, tokens without `exp`,
 * invalid UTF-8, /metrics open to anyone, and a second node sharing a running node's port (uWS
 * binds with SO_REUSEPORT unless told not to). Each test failed on the code before the fix.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { SignJWT } from 'jose';
import { readFileSync } from 'node:fs';
import { DEFAULT_JWT_SECRET } from '../../cluster.config.ts';
import { readMetric, startChatNode, type ChatNodeHandle } from '../harness/chat-node.ts';
import { freePort } from '../harness/servers.ts';
import { TestClient, login, signTestToken, type Frame } from '../harness/ws-client.ts';
import { setTimeout as sleep } from 'node:timers/promises';

const SECRET = DEFAULT_JWT_SECRET; // the development secret: /dev/token exists
const METRICS_TOKEN = 'metrics-token-0123456789';

let node: ChatNodeHandle;

beforeAll(async () => {
  node = await startChatNode({ env: { IM_JWT_SECRET: SECRET, IM_METRICS_TOKEN: METRICS_TOKEN, IM_RATE_MSGS: '2000', IM_MAX_INFLIGHT_SENDS: '100000' } });
});

afterAll(async () => {
  await node?.stop();
});

const as = (user: string, opts: { device?: string } = {}) => login(node.wsUrl, user, { secret: SECRET, ...opts });

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

const metric = (name: string) => readMetric(node.httpUrl, name, { authorization: `Bearer ${METRICS_TOKEN}` });

async function healthy(): Promise<boolean> {
  const r = await fetch(`${node.httpUrl}/healthz`).catch(() => null);
  return r?.status === 200;
}

/** Sends `n` messages from `from` to `to`, pipelined in windows, and waits for every `sent`. */
async function sendMany(client: TestClient, to: string, n: number, tag: string): Promise<void> {
  for (let i = 0; i < n; i += 50) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + 50); j++) batch.push(client.request({ t: 'send', to, cmid: `${tag}-${j}`, body: { text: `${tag} ${j}` } }, 15_000));
    for (const a of await Promise.all(batch)) expect(a.t, JSON.stringify(a)).toBe('sent');
  }
}

/** Logs `user` in and acks every msg as it arrives, as the protocol asks; resolves with what came. */
async function loginAndAckBacklog(user: string, expected: number): Promise<{ client: TestClient; msgs: Frame[] }> {
  const { client } = await as(user);
  const msgs: Frame[] = [];
  while (msgs.length < expected) {
    const f = await client.next((x) => x.t === 'msg' || x.t === 'error' || x.t === 'kicked', 15_000);
    expect(f.t, `frame ${msgs.length}: ${JSON.stringify(f)}`).toBe('msg');
    msgs.push(f);
    client.send({ t: 'ack', conv: f.conv, seq: f.seq });
  }
  return { client, msgs };
}

describe('hardening', () => {
  it('GET /dev/token?user=%25 is a 400, not a crash; the node keeps serving', async () => {
    const pid = node.pid;
    for (const q of ['user=%25', 'user=%E0%A4%A', 'user=%', 'user=' + 'x'.repeat(5000), 'user=a%00b', 'user[]=1', '']) {
      const r = await fetch(`${node.httpUrl}/dev/token?${q}`);
      expect(r.status, q).toBe(400);
    }
    const ok = await fetch(`${node.httpUrl}/dev/token?user=alice`);
    expect(ok.status).toBe(200);
    expect(typeof ((await ok.json()) as { token: string }).token).toBe('string');
    expect(await healthy()).toBe(true);
    expect(node.pid).toBe(pid);
    expect(() => process.kill(pid, 0)).not.toThrow();
  });

  it('an offline user with 400 messages in 8 conversations who acks as it goes gets the whole backlog once and stays connected', async () => {
    const senders = await Promise.all(Array.from({ length: 8 }, (_, i) => as(`bl8s${i}`)));
    await Promise.all(senders.map(({ client }, i) => sendMany(client, 'bl8victim', 50, `s${i}`)));
    const { client, msgs } = await loginAndAckBacklog('bl8victim', 400);
    expect(new Set(msgs.map((m) => `${m.conv}/${m.seq}`)).size).toBe(400);
    await sleep(500);
    expect(client.isOpen()).toBe(true);
    expect(client.pending().filter((f) => f.t === 'msg' || f.t === 'error')).toEqual([]);
    await client.close();
    // The acks counted: the next login pushes nothing again.
    const again = await as('bl8victim');
    await sleep(800);
    expect(again.client.pending().filter((f) => f.t === 'msg')).toEqual([]);
    await again.client.close();
    for (const s of senders) await s.client.close();
  });

  it('5,000 messages in 50 conversations: the whole backlog once, acks count, no disconnect', async () => {
    const senders = await Promise.all(Array.from({ length: 50 }, (_, i) => as(`bl50s${i}`)));
    await Promise.all(senders.map(({ client }, i) => sendMany(client, 'bl50victim', 100, `s${i}`)));
    const { client, msgs } = await loginAndAckBacklog('bl50victim', 5000);
    expect(new Set(msgs.map((m) => `${m.conv}/${m.seq}`)).size).toBe(5000);
    await sleep(500);
    expect(client.isOpen()).toBe(true);
    await client.close();
    const again = await as('bl50victim');
    await sleep(800);
    expect(again.client.pending().filter((f) => f.t === 'msg')).toEqual([]);
    await again.client.close();
    for (const s of senders) await s.client.close();
  }, 120_000);

  it('fake receipts: a stranger acking far ahead 5,000 times sends the victim no receipt; a non-member gets forbidden', async () => {
    const victim = await as('rvictim');
    const stranger = await as('rstranger');
    const conv = 'dm:rstranger:rvictim'; // the stranger's own 1:1 with the victim: nothing stored in it
    for (let i = 0; i < 5000; i++) stranger.client.send({ t: 'ack', conv, seq: 9007199254740991 });
    for (let i = 0; i < 100; i++) stranger.client.send({ t: 'read', conv, seq: 9007199254740991 });
    // Not a member at all: forbidden, naming the conversation, and nothing moves.
    stranger.client.send({ t: 'ack', conv: 'dm:rother:rvictim', seq: 5 });
    const err = await stranger.client.next((f) => f.t === 'error');
    expect(err.code).toBe('forbidden');
    expect(err.rid).toBeUndefined();
    expect(String(err.message)).toContain('dm:rother:rvictim');
    const g = await stranger.client.request({ t: 'group_create', group: 'rcl', members: [] });
    expect(g.t).toBe('ok');
    victim.client.send({ t: 'read', conv: 'g:rcl', seq: 1 });
    const gerr = await victim.client.next((f) => f.t === 'error');
    expect(gerr.code).toBe('forbidden');
    expect(String(gerr.message)).toContain('g:rcl');
    await sleep(500);
    expect(victim.client.received.filter((f) => f.t === 'receipt')).toEqual([]);

    // Once there are messages, a cursor moves at most to the last stored seq, and only forward.
    const sent = await victim.client.request({ t: 'send', to: 'rstranger', cmid: 'r1', body: 'hi' });
    expect(sent.t).toBe('sent');
    await stranger.client.next((f) => f.t === 'msg');
    for (let i = 0; i < 200; i++) stranger.client.send({ t: 'ack', conv, seq: 9007199254740991 });
    const receipt = await victim.client.next((f) => f.t === 'receipt');
    expect(receipt).toMatchObject({ conv, user: 'rstranger', delivered: sent.seq });
    await sleep(400);
    expect(victim.client.received.filter((f) => f.t === 'receipt')).toHaveLength(1);
    await victim.client.close();
    await stranger.client.close();
  });

  it('requests about 20,000 groups that do not exist leave no conversation actors behind', async () => {
    const clients = await Promise.all(Array.from({ length: 5 }, (_, i) => as('ghost', { device: `d${i}` })));
    const before = rssKb(node.pid);
    const activeBefore = await metric('im_conversations_active'); // real conversations of earlier tests
    let answered = 0;
    await Promise.all(clients.map(async ({ client }, k) => {
      for (let i = 0; i < 4000; i += 4) {
        const rs = await Promise.all([0, 1, 2, 3].map((j) => client.request({ t: 'sync', conv: `g:none-${k}-${i + j}`, after: 0 }, 10_000)));
        for (const r of rs) {
          expect(['not_found', 'rate_limited']).toContain(r.code);
          answered++;
        }
      }
    }));
    expect(answered).toBe(20_000);
    expect(await metric('im_conversations_active') - activeBefore).toBeLessThan(20);
    expect(rssKb(node.pid) - before).toBeLessThan(60 * 1024);
    for (const { client } of clients) await client.close();
  }, 120_000);

  it('group_create is rate limited per user, across that user\'s sockets', async () => {
    const a = await as('gflood', { device: 'a' });
    const b = await as('gflood', { device: 'b' });
    const answers: Frame[] = [];
    for (let i = 0; i < 30; i++) answers.push(await (i % 2 ? a : b).client.request({ t: 'group_create', group: `gf${i}`, members: [] }));
    const ok = answers.filter((f) => f.t === 'ok').length;
    expect(ok).toBe(20); // IM_GROUP_CREATES_PER_MIN default: a burst of 20, then about one every 3 s
    expect(answers.filter((f) => f.code === 'rate_limited').length).toBe(10);
    await a.client.close();
    await b.client.close();
  });

  it('every frame is rate limited: pings beyond the burst get rate_limited and the socket stays open', async () => {
    const { client } = await as('pinger');
    const answers = await Promise.all(Array.from({ length: 1000 }, () => client.request({ t: 'ping' }, 10_000)));
    const limited = answers.filter((f) => f.t === 'error' && f.code === 'rate_limited').length;
    expect(limited).toBeGreaterThan(400);
    expect(answers.filter((f) => f.t === 'pong').length).toBeGreaterThanOrEqual(400);
    expect(client.isOpen()).toBe(true);
    await client.close();
  });

  it('typing is relayed at most twice a second per user and conversation', async () => {
    const typist = await as('typist');
    const peer = await as('typepeer');
    const conv = 'dm:typepeer:typist';
    const started = Date.now();
    for (let i = 0; i < 2000; i++) typist.client.send({ t: 'typing', conv });
    await sleep(1000);
    const elapsed = (Date.now() - started) / 1000;
    const relayed = peer.client.received.filter((f) => f.t === 'typing').length;
    expect(relayed).toBeGreaterThanOrEqual(1);
    expect(relayed).toBeLessThanOrEqual(Math.ceil(elapsed * 2) + 1);
    await typist.client.close();
    await peer.client.close();
  });

  it('pipelined syncs on a socket that does not read are refused instead of growing the node', async () => {
    const writer = await as('bigwriter');
    const body = 'x'.repeat(8000);
    for (let i = 0; i < 400; i += 50) {
      const rs = await Promise.all(Array.from({ length: 50 }, (_, j) => writer.client.request({ t: 'send', to: 'bigreader', cmid: `b${i + j}`, body })));
      for (const r of rs) expect(r.t).toBe('sent');
    }
    const reader = await as('bigreader');
    await reader.client.collect((f) => f.t === 'msg', 400, 20_000);
    const before = rssKb(node.pid);
    reader.client.pauseReading();
    const answers = Array.from({ length: 40 }, () => reader.client.request({ t: 'sync', conv: 'dm:bigreader:bigwriter', after: 0, limit: 200 }, 20_000));
    await sleep(1500);
    const grown = rssKb(node.pid) - before;
    reader.client.resumeReading();
    const got = await Promise.all(answers);
    expect(got.filter((f) => f.t === 'batch').length).toBeGreaterThanOrEqual(1);
    expect(got.filter((f) => f.t === 'error' && f.code === 'rate_limited').length).toBeGreaterThanOrEqual(30);
    expect(grown).toBeLessThan(80 * 1024); // 40 batches of 1.6 MB would be 64 MB of strings alone, plus copies
    await reader.client.close();
    await writer.client.close();
  }, 60_000);

  it('a token without exp is refused like an expired one', async () => {
    const noExp = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('noexp').setIssuedAt().sign(new TextEncoder().encode(SECRET));
    const c = await TestClient.connect(node.wsUrl);
    const r = await c.request({ t: 'login', token: noExp });
    expect(r).toMatchObject({ t: 'error', code: 'unauthorized' });
    expect(String(r.message)).toMatch(/exp/);
    expect((await c.closed).code).toBe(4001);
  });

  // uWebSockets.js validates text frames itself and drops such a socket at once, without a close
  // frame (the client sees 1006); the `ws` fallback engine closes with 1007. Nothing reaches the session.
  it('a text frame that is not UTF-8 drops that socket (1006 or 1007); the node keeps serving', async () => {
    const token = await signTestToken('utf8user', SECRET);
    const ws = new WebSocket(node.wsUrl);
    await new Promise((r, j) => { ws.once('open', r); ws.once('error', j); });
    const frames: string[] = [];
    ws.on('message', (d) => frames.push(d.toString()));
    ws.send(JSON.stringify({ t: 'login', rid: '1', token }));
    await sleep(300);
    const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
    ws.send(Buffer.from([0x7b, 0x22, 0x74, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]), { binary: false });
    expect([1006, 1007]).toContain(await closed);
    expect(frames.some((f) => f.includes('login_ok'))).toBe(true);
    const { client } = await as('utf8user');
    expect((await client.request({ t: 'ping' })).t).toBe('pong');
    await client.close();
  });

  it('/metrics needs the bearer token when IM_METRICS_TOKEN is set', async () => {
    expect((await fetch(`${node.httpUrl}/metrics`)).status).toBe(401);
    expect((await fetch(`${node.httpUrl}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    const ok = await fetch(`${node.httpUrl}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain('im_handler_errors_total');
  });
});

describe('metrics on their own port', () => {
  it('IM_METRICS_PORT moves /metrics off the client port', async () => {
    const metricsPort = await freePort();
    const n = await startChatNode({ env: { IM_METRICS_PORT: String(metricsPort), IM_METRICS_HOST: '127.0.0.1' } });
    try {
      expect((await fetch(`${n.httpUrl}/metrics`)).status).toBe(404);
      expect((await fetch(`${n.httpUrl}/healthz`)).status).toBe(200);
      const r = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      expect(r.status).toBe(200);
      expect(await r.text()).toContain('im_connections');
    } finally {
      await n.stop();
    }
  });
});

describe('a port in use', () => {
  it('a second node started on the port of a running one fails with a clear error; every login still reaches the first', async () => {
    const second = startChatNode({ port: node.port, readyTimeoutMs: 20_000 });
    const err = await second.then(() => null, (e: unknown) => e);
    expect(err, 'the second node must not start').toBeInstanceOf(Error);
    expect((err as Error).message).toContain('exited during startup');
    expect((err as Error).message).toContain(`cannot listen on 127.0.0.1:${node.port}`);
    for (let i = 0; i < 12; i++) {
      const { client, loginOk } = await as(`porttest${i}`);
      expect(loginOk.node).toBe(node.nodeId);
      client.close();
    }
  });
});
