/**
 * State-machine tests of ChatClient against FakeChatServer: a scripted protocol fake (NOT the real
 * server) built on `ws`'s WebSocketServer, so each test controls exactly which frames the client
 * sees. Tests against a real node live in test/integration/.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { ChatClient } from './index.ts';
import type { ChatClientOptions, ConnectionState, MsgFrame } from './index.ts';
import { setTimeout as sleep } from 'node:timers/promises';

type Frame = Record<string, unknown> & { t: string; rid?: string };

class FakeSocket {
  readonly frames: Frame[] = [];
  constructor(readonly ws: WebSocket) {}
  push(frame: object): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }
  of(t: string): Frame[] {
    return this.frames.filter((f) => f.t === t);
  }
}

/** A protocol fake. `script` runs on every client frame; return true to suppress the default answer. */
class FakeChatServer {
  readonly sockets: FakeSocket[] = [];
  heartbeatMs = 10_000;
  nextSeq = new Map<string, number>();
  script: (s: FakeSocket, f: Frame) => boolean | void = () => false;

  private constructor(private readonly wss: WebSocketServer, readonly url: string, readonly name: string) {
    wss.on('connection', (ws) => {
      const s = new FakeSocket(ws);
      this.sockets.push(s);
      ws.on('message', (data) => {
        const f = JSON.parse(String(data)) as Frame;
        s.frames.push(f);
        if (this.script(s, f) !== true) this.answer(s, f);
      });
    });
  }

  static async start(name: string): Promise<FakeChatServer> {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise<void>((r) => wss.once('listening', () => r()));
    const { port } = wss.address() as AddressInfo;
    return new FakeChatServer(wss, `ws://127.0.0.1:${port}/ws`, name);
  }

  /** Default behaviour of a healthy node with no stored history. */
  answer(s: FakeSocket, f: Frame): void {
    switch (f.t) {
      case 'login':
        s.push({ t: 'login_ok', rid: f.rid, user: 'alice', device: f.device, node: this.name, heartbeat_ms: this.heartbeatMs });
        break;
      case 'ping':
        s.push({ t: 'pong', ts: Date.now() });
        break;
      case 'convs':
        s.push({ t: 'convs', rid: f.rid, convs: [] });
        break;
      case 'sync':
        s.push({ t: 'batch', rid: f.rid, conv: f.conv, msgs: [], more: false });
        break;
      case 'send': {
        const conv = (f.conv as string | undefined) ?? `dm:alice:${String(f.to)}`;
        const seq = (this.nextSeq.get(conv) ?? 0) + 1;
        this.nextSeq.set(conv, seq);
        s.push({ t: 'sent', rid: f.rid, conv, cmid: f.cmid, seq, mid: `m${seq}`, ts: Date.now() });
        break;
      }
      default:
        if (f.rid !== undefined) s.push({ t: 'ok', rid: f.rid });
    }
  }

  all(t: string): Frame[] {
    return this.sockets.flatMap((s) => s.of(t));
  }

  /** Kills every socket and stops listening: the node is gone. */
  async stop(): Promise<void> {
    for (const s of this.sockets) s.ws.terminate();
    await new Promise<void>((r) => this.wss.close(() => r()));
  }
}

const msg = (conv: string, seq: number): MsgFrame =>
  ({ t: 'msg', conv, seq, mid: `m${seq}`, from: 'bob', cmid: `c${seq}`, ts: seq, kind: 'text', body: `hello ${seq}` });

async function until(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A ws:// URL on a loopback port that was free a moment ago and has nothing listening now. */
async function deadUrl(): Promise<string> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return `ws://127.0.0.1:${port}/ws`;
}

const servers: FakeChatServer[] = [];
const clients: ChatClient[] = [];

async function fake(name = 'n1'): Promise<FakeChatServer> {
  const s = await FakeChatServer.start(name);
  servers.push(s);
  return s;
}

function client(urls: string[], extra: Partial<ChatClientOptions> = {}): ChatClient {
  const c = new ChatClient({
    urls, token: 'tok', device: 'laptop', WebSocket, startIndex: 0,
    backoff: { baseMs: 10, maxMs: 50 }, gapGraceMs: 30, ackFlushMs: 10, ...extra,
  });
  clients.push(c);
  return c;
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

describe('ChatClient against a fake server', () => {
  it('logs in with token and device, reports states, answers convs on login', async () => {
    const a = await fake();
    const c = client([a.url]);
    const states: ConnectionState[] = [];
    c.on('state', (s) => states.push(s.state));
    const ok = await c.connect();
    expect(ok).toMatchObject({ user: 'alice', node: 'n1' });
    expect(a.all('login')[0]).toMatchObject({ token: 'tok', device: 'laptop' });
    expect(states).toEqual(['connecting', 'open']);
    await until(() => a.all('convs').length === 1, 'convs after login');
    await c.close();
    expect(c.state).toBe('closed');
  });

  it('calls a token function on every (re)connect', async () => {
    const a = await fake();
    let n = 0;
    const c = client([a.url], { token: async () => `tok${++n}` });
    await c.connect();
    a.sockets[0].ws.terminate();
    await until(() => a.all('login').length === 2, 'second login');
    expect(a.all('login').map((f) => f.token)).toEqual(['tok1', 'tok2']);
  });

  it('reconnects to the second URL when the first node dies, and measures it', async () => {
    const a = await fake('A');
    const b = await fake('B');
    const c = client([a.url, b.url]);
    await c.connect();
    expect(c.node).toBe('A');
    await a.stop();
    await until(() => c.state === 'open' && c.node === 'B', 'logged in to B');
    expect(b.all('login')).toHaveLength(1);
    expect(c.metrics.reconnects).toBe(1);
    expect(c.metrics.reconnectDurations).toHaveLength(1);
    expect(c.metrics.reconnectDurations[0]).toBeLessThan(2000);
  });

  it('keeps rotating through the list while nodes are down', async () => {
    const a = await fake('A');
    const c = client(['ws://127.0.0.1:1/ws', a.url], { startIndex: 0 });
    await c.connect();
    expect(c.node).toBe('A');
    expect(c.metrics.connectAttempts).toBe(2);
  });

  it('resends an unanswered send after reconnect with the same cmid; resolves once', async () => {
    const a = await fake('A');
    const b = await fake('B');
    a.script = (_s, f) => f.t === 'send'; // A swallows sends: they stay unanswered
    const c = client([a.url, b.url]);
    await c.connect();
    const own: MsgFrame[] = [];
    c.on('message', (m) => own.push(m));
    const p = c.send({ conv: 'g:team' }, { text: 'hi' });
    await until(() => a.all('send').length === 1, 'send reached A');
    // B answers the resend twice (e.g. a duplicate answer after a retry): still one resolution.
    b.script = (s, f) => {
      if (f.t === 'send') s.push({ t: 'sent', rid: f.rid, conv: 'g:team', cmid: f.cmid, seq: 1, mid: 'm1', ts: 5 });
    };
    await a.stop();
    const sent = await p;
    expect(sent).toMatchObject({ conv: 'g:team', seq: 1 });
    const [first] = a.all('send');
    const [again] = b.all('send');
    expect(again.cmid).toBe(first.cmid);
    expect(again.body).toEqual({ text: 'hi' });
    expect(c.metrics.resends).toBe(1);
    await sleep(50);
    // Own message delivered once, from the `sent` answer.
    expect(own.map((m) => [m.conv, m.seq, m.from, m.cmid])).toEqual([['g:team', 1, 'alice', first.cmid]]);
    expect(c.pendingSends).toBe(0);
  });

  it('queues sends made while offline and writes them in order after login', async () => {
    const a = await fake();
    const c = client([a.url]);
    const ps = [1, 2, 3].map((i) => c.send({ to: 'bob' }, `m${i}`, { cmid: `cm-${i}` }));
    await c.connect();
    const res = await Promise.all(ps);
    expect(a.all('send').map((f) => f.cmid)).toEqual(['cm-1', 'cm-2', 'cm-3']);
    expect(res.map((r) => r.seq)).toEqual([1, 2, 3]);
  });

  it('resends on the same socket after sendTimeoutMs', async () => {
    const a = await fake();
    let swallowed = false;
    a.script = (_s, f) => {
      if (f.t === 'send' && !swallowed) return (swallowed = true);
      return false;
    };
    const c = client([a.url], { sendTimeoutMs: 100 });
    await c.connect();
    const r = await c.send({ conv: 'g:x' }, 'x', { cmid: 'same' });
    expect(r.seq).toBe(1);
    expect(a.all('send').map((f) => f.cmid)).toEqual(['same', 'same']);
    expect(c.metrics.resends).toBe(1);
  });

  it('rejects a send on a final error, retries it on rate_limited', async () => {
    const a = await fake();
    let limited = 0;
    a.script = (s, f) => {
      if (f.t !== 'send') return false;
      if (f.conv === 'g:secret') return s.push({ t: 'error', rid: f.rid, code: 'forbidden', message: 'not a member' }), true;
      if (limited++ === 0) return s.push({ t: 'error', rid: f.rid, code: 'rate_limited', message: 'slow down' }), true;
      return false;
    };
    const c = client([a.url], { rateLimitRetryMs: 20 });
    await c.connect();
    await expect(c.send({ conv: 'g:secret' }, 'x')).rejects.toMatchObject({ code: 'forbidden' });
    const ok = await c.send({ conv: 'g:ok' }, 'y', { cmid: 'k' });
    expect(ok.seq).toBe(1);
    expect(a.all('send').filter((f) => f.cmid === 'k')).toHaveLength(2);
  });

  it('drops duplicate msgs and acks the highest received seq', async () => {
    const a = await fake();
    const c = client([a.url]);
    const got: number[] = [];
    c.on('message', (m) => got.push(m.seq));
    await c.connect();
    const s = a.sockets[0];
    for (const seq of [1, 1, 2, 2, 1]) s.push(msg('g:a', seq));
    await until(() => s.of('ack').some((f) => f.seq === 2), 'ack 2');
    expect(got).toEqual([1, 2]);
    expect(c.metrics.duplicatesDropped).toBe(3);
    expect(s.of('ack').at(-1)).toEqual({ t: 'ack', conv: 'g:a', seq: 2 });
    expect(s.of('ack').length).toBeLessThanOrEqual(2); // batched
  });

  it('fills a gap with sync after the highest contiguous seq and delivers in order', async () => {
    const a = await fake();
    a.script = (s, f) => {
      if (f.t !== 'sync') return false;
      s.push({ t: 'batch', rid: f.rid, conv: f.conv, msgs: [msg('g:a', 2), msg('g:a', 3)], more: false });
      return true;
    };
    const c = client([a.url]);
    const got: number[] = [];
    c.on('message', (m) => got.push(m.seq));
    await c.connect();
    const s = a.sockets[0];
    s.push(msg('g:a', 1));
    s.push(msg('g:a', 4));
    await until(() => got.length === 4, 'four messages');
    expect(got).toEqual([1, 2, 3, 4]);
    expect(s.of('sync')).toEqual([expect.objectContaining({ conv: 'g:a', after: 1 })]);
    expect(c.held('g:a')).toBe(4);
  });

  it('does not sync a gap that closes within the grace period', async () => {
    const a = await fake();
    const c = client([a.url], { gapGraceMs: 200 });
    const got: number[] = [];
    c.on('message', (m) => got.push(m.seq));
    await c.connect();
    const s = a.sockets[0];
    s.push(msg('g:a', 2));
    await sleep(20);
    s.push(msg('g:a', 1));
    await until(() => got.length === 2, 'two messages');
    await sleep(250);
    expect(got).toEqual([1, 2]);
    expect(s.of('sync')).toEqual([]);
  });

  it('after login, syncs every conversation the server has more of (looping while more)', async () => {
    const a = await fake();
    a.script = (s, f) => {
      if (f.t === 'convs') return s.push({ t: 'convs', rid: f.rid, convs: [{ conv: 'g:a', last_seq: 3, ack_seq: 0, read_seq: 0 }, { conv: 'g:b', last_seq: 5, ack_seq: 5, read_seq: 5 }] }), true;
      if (f.t === 'sync' && f.conv === 'g:a') {
        const after = f.after as number;
        const msgs = after < 2 ? [msg('g:a', after + 1), msg('g:a', after + 2)] : [msg('g:a', 3)];
        return s.push({ t: 'batch', rid: f.rid, conv: 'g:a', msgs, more: after < 2 }), true;
      }
      return false;
    };
    const c = client([a.url], { known: { 'g:b': 5 } });
    const got: string[] = [];
    c.on('message', (m) => got.push(`${m.conv}#${m.seq}`));
    await c.connect();
    await until(() => got.length === 3, 'three messages');
    expect(got).toEqual(['g:a#1', 'g:a#2', 'g:a#3']);
    expect(a.all('sync').map((f) => [f.conv, f.after])).toEqual([['g:a', 0], ['g:a', 2]]);
  });

  it('kicked as replaced: state kicked, no reconnect, pending sends rejected', async () => {
    const a = await fake();
    a.script = (_s, f) => f.t === 'send';
    const c = client([a.url]);
    await c.connect();
    const p = c.send({ conv: 'g:a' }, 'x');
    await until(() => a.all('send').length === 1, 'send arrived');
    a.sockets[0].push({ t: 'kicked', reason: 'replaced' });
    a.sockets[0].ws.close();
    await expect(p).rejects.toMatchObject({ code: 'kicked' });
    expect(c.state).toBe('kicked');
    await sleep(150);
    expect(a.sockets).toHaveLength(1);
    await expect(c.connect()).rejects.toMatchObject({ code: 'kicked' });
  });

  it('kicked by an app backend (server API disconnect, e.g. "banned"): stays disconnected', async () => {
    const a = await fake();
    const c = client([a.url]);
    await c.connect();
    a.sockets[0].push({ t: 'kicked', reason: 'banned' });
    a.sockets[0].ws.close();
    await until(() => c.state === 'kicked', 'state kicked');
    await sleep(150);
    expect(a.sockets).toHaveLength(1);
    expect(c.metrics.reconnects).toBe(0);
  });

  it('kicked for shutdown: reconnects to another node', async () => {
    const a = await fake('A');
    const b = await fake('B');
    const c = client([a.url, b.url]);
    await c.connect();
    a.sockets[0].push({ t: 'kicked', reason: 'shutdown' });
    await until(() => c.node === 'B', 'on B');
    expect(c.metrics.reconnects).toBe(1);
  });

  it('sends ping every heartbeat_ms', async () => {
    const a = await fake();
    a.heartbeatMs = 40;
    const c = client([a.url]);
    await c.connect();
    await until(() => a.all('ping').length >= 2, 'two pings', 1000);
  });

  it('detects a dead socket (no frames for 2 heartbeats) and reconnects', async () => {
    const a = await fake();
    a.heartbeatMs = 40;
    let mute = true;
    a.script = (_s, f) => f.t === 'ping' && mute; // first socket: pongs never come back
    const c = client([a.url], { syncOnLogin: false });
    await c.connect();
    await until(() => a.sockets.length === 2 && c.state === 'open', 'second socket', 2000);
    mute = false;
    expect(c.metrics.reconnects).toBe(1);
  });

  it('rejects requests with clear errors: server error, timeout', async () => {
    const a = await fake();
    a.script = (s, f) => {
      if (f.t === 'group_members') return s.push({ t: 'error', rid: f.rid, code: 'forbidden', message: 'not a member' }), true;
      if (f.t === 'recall') return true; // never answered
      return false;
    };
    const c = client([a.url], { requestTimeoutMs: 100 });
    await c.connect();
    await expect(c.groupMembers('g:x')).rejects.toMatchObject({ code: 'forbidden', message: 'not a member' });
    await expect(c.recall('g:x', 1)).rejects.toMatchObject({ code: 'timeout' });
    expect(await c.groupCreate('team', ['bob'])).toBe('g:team');
  });

  it('emits receipts, recalls and typing; read and typing frames go out', async () => {
    const a = await fake();
    const c = client([a.url]);
    const seen: string[] = [];
    c.on('receipt', (r) => seen.push(`receipt ${r.user} ${r.read}`));
    c.on('recalled', (r) => seen.push(`recalled ${r.seq}`));
    c.on('typing', (t) => seen.push(`typing ${t.user}`));
    await c.connect();
    const s = a.sockets[0];
    s.push({ t: 'receipt', conv: 'g:a', user: 'bob', read: 3 });
    s.push({ t: 'recalled', conv: 'g:a', seq: 2, by: 'bob' });
    s.push({ t: 'typing', conv: 'g:a', user: 'bob' });
    c.read('g:a', 3);
    expect(c.typing('g:a')).toBe(true);
    await until(() => seen.length === 3 && s.of('typing').length === 1, 'events');
    expect(seen).toEqual(['receipt bob 3', 'recalled 2', 'typing bob']);
    expect(s.of('read')).toEqual([{ t: 'read', conv: 'g:a', seq: 3 }]);
  });

  it('close() stops reconnecting and rejects what is pending', async () => {
    const a = await fake();
    const c = client([a.url]);
    await c.connect();
    await a.stop();
    await until(() => c.state === 'reconnecting', 'reconnecting');
    const p = c.send({ conv: 'g:a' }, 'x');
    await c.close();
    await expect(p).rejects.toMatchObject({ code: 'closed' });
    const attempts = c.metrics.connectAttempts;
    await sleep(150);
    expect(c.metrics.connectAttempts).toBe(attempts);
  });

  it('a refused static token closes the client', async () => {
    const a = await fake();
    a.script = (s, f) => {
      if (f.t !== 'login') return false;
      s.push({ t: 'error', rid: f.rid, code: 'unauthorized', message: 'bad token' });
      s.ws.close();
      return true;
    };
    const c = client([a.url]);
    await expect(c.connect()).rejects.toMatchObject({ code: 'unauthorized' });
    expect(c.state).toBe('closed');
  });

  it('connect() to a URL where nothing listens rejects with unreachable within connectWaitMs, then stops trying', async () => {
    const url = await deadUrl();
    const c = client([url], { connectWaitMs: 400 });
    const t0 = Date.now();
    const err = await c.connect().then(() => null, (e: unknown) => e);
    const took = Date.now() - t0;
    expect(err).toMatchObject({ name: 'ChatError', code: 'unreachable' });
    expect((err as Error).message).toContain(url);
    expect((err as Error).message).toMatch(/ECONNREFUSED/);
    expect(took).toBeGreaterThanOrEqual(350);
    expect(took).toBeLessThan(1500);
    expect(c.state).toBe('idle');
    const attempts = c.metrics.connectAttempts;
    expect(attempts).toBeGreaterThanOrEqual(1);
    await sleep(200);
    expect(c.metrics.connectAttempts).toBe(attempts);
  });

  it('after giving up, a later connect() starts over; sends queued meanwhile go out after login', async () => {
    const a = await fake();
    let up = false;
    a.script = (_s, f) => f.t === 'login' && !up; // a node that never answers login (yet)
    const c = client([a.url], { connectWaitMs: 250, connectTimeoutMs: 80 });
    await expect(c.connect()).rejects.toMatchObject({ code: 'unreachable', message: expect.stringContaining('connect timeout') });
    expect(c.state).toBe('idle');
    // A login written just before the client gave up may still be on its way: the server has seen
    // every login once it has seen every socket close (frames arrive before the close).
    await until(() => a.sockets.every((s) => s.ws.readyState === WebSocket.CLOSED), 'the server saw every socket close');
    const logins = a.all('login').length;
    const sent = c.send({ conv: 'g:a' }, 'queued');
    await sleep(200);
    expect(a.all('login')).toHaveLength(logins);
    up = true;
    await c.connect();
    await expect(sent).resolves.toMatchObject({ conv: 'g:a', seq: 1 });
  });

  it('retryForever: connect() still rejects in time, but the client keeps trying and logs in later', async () => {
    const a = await fake();
    let up = false;
    a.script = (_s, f) => f.t === 'login' && !up;
    const c = client([a.url], { connectWaitMs: 250, connectTimeoutMs: 80, retryForever: true });
    const logins: string[] = [];
    c.on('login', (l) => logins.push(l.node));
    await expect(c.connect()).rejects.toMatchObject({ code: 'unreachable' });
    expect(c.state).toBe('connecting');
    up = true;
    await until(() => c.state === 'open', 'logged in in the background');
    expect(logins).toEqual(['n1']);
  });

  it('connectWaitMs does not end reconnects of an established session', async () => {
    const a = await fake();
    const c = client([a.url], { connectWaitMs: 100, connectTimeoutMs: 80 });
    await c.connect();
    let up = false;
    a.script = (_s, f) => f.t === 'login' && !up;
    a.sockets[0].ws.terminate();
    await until(() => c.state === 'reconnecting', 'reconnecting');
    await expect(c.connect()).rejects.toMatchObject({ code: 'unreachable' });
    await sleep(150);
    expect(c.state).toBe('reconnecting');
    up = true;
    await until(() => c.state === 'open', 'reconnected');
  });
});

describe('ChatClient v1.1 helpers', () => {
  it('history() sends sync with before/limit and returns full msg frames without emitting them', async () => {
    const a = await fake();
    a.script = (s, f) => {
      if (f.t !== 'sync' || f.before === undefined) return false;
      const before = Math.min(Number(f.before), 121);
      const limit = Number(f.limit ?? 50);
      const msgs = [];
      for (let q = Math.max(1, before - limit); q < before; q++) msgs.push({ seq: q, mid: `m${q}`, from: 'bob', cmid: `c${q}`, ts: q, body: q });
      s.push({ t: 'batch', rid: f.rid, conv: f.conv, msgs, more: before - limit > 1 });
      return true;
    };
    const c = client([a.url]);
    const got: MsgFrame[] = [];
    c.on('message', (m) => got.push(m));
    await c.connect();
    const newest = await c.history('g:team', { limit: 20 });
    expect(newest.msgs.map((m) => m.seq)).toEqual(Array.from({ length: 20 }, (_, i) => 101 + i));
    expect(newest.msgs[0]).toMatchObject({ t: 'msg', conv: 'g:team', kind: 'text' });
    expect(newest.more).toBe(true);
    const older = await c.history('g:team', { before: 101, limit: 100 });
    expect(older.msgs[0].seq).toBe(1);
    expect(older.more).toBe(false);
    const frames = a.all('sync');
    expect(frames[0]).toMatchObject({ conv: 'g:team', before: Number.MAX_SAFE_INTEGER, limit: 20 });
    expect(frames[0].after).toBeUndefined();
    expect(frames[1]).toMatchObject({ before: 101, limit: 100 });
    expect(got).toEqual([]);
  });

  it('initialHistory: a conversation held from nothing starts at its newest N, live ones follow', async () => {
    const a = await fake();
    a.script = (s, f) => {
      if (f.t === 'convs') {
        s.push({ t: 'convs', rid: f.rid, convs: [{ conv: 'g:big', last_seq: 120, ack_seq: 0, read_seq: 0 }, { conv: 'g:small', last_seq: 3, ack_seq: 0, read_seq: 0 }] });
        return true;
      }
      if (f.t === 'sync') {
        const top = f.conv === 'g:big' ? 120 : 3;
        const msgs = [];
        for (let q = Number(f.after) + 1; q <= top; q++) msgs.push(msg(String(f.conv), q));
        s.push({ t: 'batch', rid: f.rid, conv: f.conv, msgs, more: false });
        return true;
      }
      return false;
    };
    const c = client([a.url], { initialHistory: 10 });
    const got: string[] = [];
    c.on('message', (m) => got.push(`${m.conv}#${m.seq}`));
    await c.connect();
    await until(() => got.length === 13, 'newest 10 of g:big and all 3 of g:small');
    expect(a.all('sync').find((f) => f.conv === 'g:big')).toMatchObject({ after: 110 });
    expect(got.filter((g) => g.startsWith('g:big'))[0]).toBe('g:big#111');
    a.sockets[0].push(msg('g:big', 121));
    await until(() => got.includes('g:big#121'), 'live message after the tail');
    expect(c.held('g:big')).toBe(121);
  });

  it('presenceSub answers the states, emits pushes, renews after a re-login; group pushes are emitted', async () => {
    const a = await fake();
    a.script = (s, f) => {
      if (f.t !== 'presence_sub') return false;
      s.push({ t: 'presence', rid: f.rid, users: (f.users as string[]).map((user) => ({ user, online: user === 'bob' ? true : null })) });
      return true;
    };
    const c = client([a.url]);
    const events: string[] = [];
    c.on('presence', (p) => events.push(`${p.user}:${String(p.online)}`));
    c.on('group', (g) => events.push(`group:${g.op}:${g.members.join(',')}`));
    await c.connect();
    expect(await c.presenceSub(['bob', 'mallory'])).toEqual([{ user: 'bob', online: true }, { user: 'mallory', online: null }]);
    a.sockets[0].push({ t: 'presence', user: 'bob', online: false });
    a.sockets[0].push({ t: 'group', conv: 'g:team', op: 'added', members: ['dave'], by: 'alice' });
    await until(() => events.length === 2, 'pushes');
    expect(events).toEqual(['bob:false', 'group:added:dave']);
    a.sockets[0].ws.terminate();
    await until(() => a.all('presence_sub').length === 2, 'subscribed again after re-login');
    expect(a.all('presence_sub')[1].users).toEqual(['bob', 'mallory']);
    await until(() => events.length === 4, 'states after re-login');
    expect(events.slice(2)).toEqual(['bob:true', 'mallory:null']);
  });

  it('groupLeave and groupInfo send their frames', async () => {
    const a = await fake();
    a.script = (s, f) => {
      if (f.t !== 'group_members') return false;
      s.push({ t: 'members', rid: f.rid, conv: f.conv, owner: 'alice', members: ['alice', 'bob'] });
      return true;
    };
    const c = client([a.url]);
    await c.connect();
    expect(await c.groupInfo('g:team')).toEqual({ conv: 'g:team', owner: 'alice', members: ['alice', 'bob'] });
    await c.groupLeave('g:team');
    expect(a.all('group_leave')[0]).toMatchObject({ conv: 'g:team' });
  });
});
