/**
 * The wire protocol (docs/protocol.md, v1), clause by clause, against real node processes over real
 * WebSockets — exactly what a client sees. `defineProtocolSuite` is run once per storage mode
 * (protocol.embedded.test.ts: SQLite in a temp dir; protocol.mariadb.test.ts: a real MariaDB),
 * so both modes must pass the very same assertions.
 *
 * Nodes (all spawned with startChatNode, so they can be SIGTERMed and kill -9ed):
 *   - main:    production-like timings (ack timeout 10 s, so "once" assertions are meaningful)
 *   - tuned:   small knobs (heartbeat, ack timeout, recall window, rate, frame size, login push
 *              cap, bad-frame limit, login timeout) for the tests that need them
 *   - durable: killed with -9 and SIGTERMed, then restarted on the same data
 * Every test uses its own user ids, so tests sharing a node do not see each other.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT } from 'jose';
import { startChatNode, type ChatNodeHandle } from '../harness/chat-node.ts';
import { TestClient, login, signTestToken, type Frame } from '../harness/ws-client.ts';
import { dmConv as dm } from '../../protocol/ids.ts';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ModeSetup {
  /** Extra IM_* environment for a node of this mode; `name` is unique per node in the suite. */
  nodeEnv(name: string): Promise<Record<string, string>>;
  /** Stops whatever setup started (called after every node has stopped). */
  teardown(): Promise<void>;
}

/** Three nodes start at once; on a loaded 2-core machine that can take longer than the harness's default 30 s. */
const READY_MS = 100_000;

/** Tuned-node knobs (kept here so tests can compute their bounds from them). */
const TUNED = {
  IM_HEARTBEAT_MS: 400,
  IM_ACK_TIMEOUT_MS: 300,
  IM_PUSH_RETRIES: 3,
  IM_RECALL_WINDOW_MS: 800,
  IM_LOGIN_TIMEOUT_MS: 700,
  IM_RATE_MSGS: 5,
  IM_MAX_FRAME_BYTES: 2048,
  IM_LOGIN_PUSH_MAX: 5,
  IM_BAD_FRAME_LIMIT: 3,
} as const;

type Sent = { t: 'sent'; rid: string; conv: string; cmid: string; seq: number; mid: string; ts: number };

const isMsg = (conv?: string) => (f: Frame) => f.t === 'msg' && (conv === undefined || f.conv === conv);

/** Resolves when the socket closed; fails the test if it is still open after `ms`. */
async function closedWithin(c: TestClient, ms: number): Promise<{ code: number; reason: string }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new Error(`socket still open after ${ms} ms; received: ${JSON.stringify(c.received.slice(-5))}`)), ms);
  });
  try {
    return await Promise.race([c.closed, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function expectPong(c: TestClient): Promise<void> {
  const pong = await c.request({ t: 'ping' });
  expect(pong).toMatchObject({ t: 'pong' });
  expect(c.isOpen()).toBe(true);
}

async function httpGet(url: string): Promise<{ status: number; text: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  return { status: res.status, text: await res.text() };
}

export function defineProtocolSuite(modeName: string, setup: () => Promise<ModeSetup>): void {
  describe(`protocol v1 — ${modeName}`, () => {
    let mode: ModeSetup | null = null;
    let main: ChatNodeHandle;
    let tuned: ChatNodeHandle;
    let durable: ChatNodeHandle;
    const nodes: ChatNodeHandle[] = [];
    let openClients: TestClient[] = [];
    let timers: NodeJS.Timeout[] = [];
    let counter = 0;
    const runTag = `${modeName.slice(0, 3)}${Date.now().toString(36)}`;

    /** A user id unique to this test. */
    const uid = (name: string) => `${name}_${runTag}_${++counter}`;

    beforeAll(async () => {
      mode = await setup();
      const [mainEnv, tunedEnv, durableEnv] = await Promise.all([mode.nodeEnv('main'), mode.nodeEnv('tuned'), mode.nodeEnv('durable')]);
      const tunedKnobs = Object.fromEntries(Object.entries(TUNED).map(([k, v]) => [k, String(v)]));
      const started = await Promise.allSettled([
        startChatNode({ env: mainEnv, nodeId: `main-${runTag}`, readyTimeoutMs: READY_MS }),
        startChatNode({ env: { ...tunedEnv, ...tunedKnobs }, nodeId: `tuned-${runTag}`, readyTimeoutMs: READY_MS }),
        startChatNode({ env: durableEnv, nodeId: `durable-${runTag}`, readyTimeoutMs: READY_MS }),
      ]);
      for (const s of started) if (s.status === 'fulfilled') nodes.push(s.value);
      const failed = started.find((s) => s.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
      [main, tuned, durable] = nodes;
    });

    afterEach(async () => {
      for (const t of timers) clearInterval(t);
      timers = [];
      const cs = openClients;
      openClients = [];
      await Promise.all(cs.map((c) => c.close().catch(() => {})));
    });

    afterAll(async () => {
      const errors: unknown[] = [];
      await Promise.all(nodes.map((n) => n.stop().catch((e: unknown) => errors.push(e))));
      await mode?.teardown().catch((e: unknown) => errors.push(e));
      if (errors.length) throw errors[0];
    });

    /** Logs in and registers the client for cleanup. */
    async function connect(node: ChatNodeHandle, user: string, device?: string): Promise<{ client: TestClient; loginOk: Frame }> {
      const r = await login(node.wsUrl, user, { device });
      openClients.push(r.client);
      if (node === tuned) keepAlive(r.client);
      return r;
    }
    const on = async (node: ChatNodeHandle, user: string, device?: string) => (await connect(node, user, device)).client;

    async function raw(node: ChatNodeHandle): Promise<TestClient> {
      const c = await TestClient.connect(node.wsUrl);
      openClients.push(c);
      return c;
    }

    /** Pings every 150 ms so the tuned node's short heartbeat deadline does not close the socket. */
    function keepAlive(c: TestClient): void {
      const t = setInterval(() => {
        if (c.isOpen()) c.send({ t: 'ping' });
      }, 150);
      timers.push(t);
    }

    async function send(c: TestClient, target: { to: string } | { conv: string }, body: unknown, cmid: string, kind?: string): Promise<Sent> {
      const f = await c.request({ t: 'send', ...target, cmid, body, ...(kind ? { kind } : {}) });
      if (f.t !== 'sent') throw new Error(`send ${cmid} answered ${JSON.stringify(f)}`);
      return f as unknown as Sent;
    }

    /** Every stored message of `conv` after `after`, following `more` (bounded). */
    async function syncAll(c: TestClient, conv: string, after = 0, limit = 200): Promise<Frame[]> {
      const out: Frame[] = [];
      let cursor = after;
      for (let page = 0; page < 100; page++) {
        const b = await c.request({ t: 'sync', conv, after: cursor, limit });
        expect(b.t, JSON.stringify(b)).toBe('batch');
        const msgs = b.msgs as Frame[];
        out.push(...msgs);
        if (!b.more) return out;
        expect(msgs.length).toBeGreaterThan(0);
        cursor = msgs[msgs.length - 1].seq as number;
      }
      throw new Error('syncAll: more than 100 pages');
    }

    async function createGroup(owner: TestClient, group: string, members: string[]): Promise<string> {
      const r = await owner.request({ t: 'group_create', group, members });
      expect(r).toEqual({ t: 'ok', rid: r.rid, conv: `g:${group}` });
      return `g:${group}`;
    }

    async function expectError(c: TestClient, frame: { t: string; [k: string]: unknown }, code: string): Promise<Frame> {
      const r = await c.request(frame);
      expect(r, JSON.stringify(r)).toMatchObject({ t: 'error', code });
      expect(typeof r.message).toBe('string');
      return r;
    }

    /** Waits `ms` and returns what arrived that matches (from everything received so far). */
    async function quiet(c: TestClient, ms: number, pred: (f: Frame) => boolean): Promise<Frame[]> {
      await sleep(ms);
      return c.received.filter(pred);
    }

    // ------------------------------------------------------------------------------------------
    describe('login and identity', () => {
      it('login_ok carries rid, user, device, node and heartbeat_ms', async () => {
        const alice = uid('alice');
        const { loginOk } = await connect(main, alice, 'phone');
        expect(loginOk).toEqual({ t: 'login_ok', rid: loginOk.rid, user: alice, device: 'phone', node: main.nodeId, heartbeat_ms: expect.any(Number) });
        expect(loginOk.heartbeat_ms).toBeGreaterThan(0);
        const t = await connect(tuned, uid('bob'));
        expect(t.loginOk.heartbeat_ms).toBe(TUNED.IM_HEARTBEAT_MS);
      });

      it('login without device gets a device name', async () => {
        const { loginOk } = await connect(main, uid('nodev'));
        expect(typeof loginOk.device).toBe('string');
        expect((loginOk.device as string).length).toBeGreaterThan(0);
      });

      const refused = async (token: string) => {
        const c = await raw(main);
        const r = await c.request({ t: 'login', rid: 'L1', token, device: 'd' });
        expect(r).toMatchObject({ t: 'error', rid: 'L1', code: 'unauthorized' });
        await closedWithin(c, 3_000);
        expect(c.received.filter((f) => f.t === 'login_ok')).toEqual([]);
      };

      it('a token with a bad signature gets unauthorized and the socket closes', async () => {
        await refused(await signTestToken(uid('mallory'), 'some-other-secret'));
      });

      it('an expired token gets unauthorized and the socket closes', async () => {
        await refused(await signTestToken(uid('late'), 'test-secret', -120));
      });

      it('a token whose sub is not a valid user id gets unauthorized and the socket closes', async () => {
        const key = new TextEncoder().encode('test-secret');
        const exp = Math.floor(Date.now() / 1000) + 600;
        const sign = (sub?: string) => {
          const j = new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(exp);
          return (sub === undefined ? j : j.setSubject(sub)).sign(key);
        };
        await refused(await sign('bad user!'));
        await refused(await sign('x'.repeat(65)));
        await refused(await sign(''));
        await refused(await sign(undefined));
        await refused('not-a-jwt');
      });

      it('a first frame that is not login gets unauthorized and the socket closes', async () => {
        const c = await raw(main);
        const r = await c.request({ t: 'ping', rid: 'P1' });
        expect(r).toMatchObject({ t: 'error', code: 'unauthorized' });
        await closedWithin(c, 3_000);

        const c2 = await raw(main);
        c2.send('this is not json');
        expect(await c2.next()).toMatchObject({ t: 'error', code: 'unauthorized' });
        await closedWithin(c2, 3_000);

        const c3 = await raw(main);
        const r3 = await c3.request({ t: 'send', to: uid('x'), cmid: 'c', body: 'hi' });
        expect(r3).toMatchObject({ t: 'error', code: 'unauthorized' });
        await closedWithin(c3, 3_000);
      });

      it('a socket that never logs in is closed after the login timeout', async () => {
        const c = await raw(tuned);
        const t0 = Date.now();
        await closedWithin(c, TUNED.IM_LOGIN_TIMEOUT_MS + 2_000);
        expect(Date.now() - t0).toBeGreaterThanOrEqual(TUNED.IM_LOGIN_TIMEOUT_MS - 100);
      });

      it('frames sent right behind login (before login_ok) are answered after login_ok', async () => {
        const c = await raw(main);
        const alice = uid('alice');
        c.send({ t: 'login', rid: 'L', token: await signTestToken(alice), device: 'd' });
        c.send({ t: 'ping', rid: 'P' });
        c.send({ t: 'send', rid: 'S', to: uid('bob'), cmid: 'early', body: 'pipelined' });
        expect(await c.next((f) => f.rid === 'S')).toMatchObject({ t: 'sent', seq: 1 });
        expect(c.received.map((f) => f.rid).filter(Boolean)).toEqual(['L', 'P', 'S']);
        expect(c.received[0]).toMatchObject({ t: 'login_ok', user: alice });
      });

      it('a session whose token expires is kicked "auth_expired" and closed', async () => {
        const c = await raw(main);
        const user = uid('short');
        const ok = await c.request({ t: 'login', token: await signTestToken(user, 'test-secret', 2) });
        expect(ok).toMatchObject({ t: 'login_ok', user });
        expect(await c.next((f) => f.t === 'kicked', 6_000)).toEqual({ t: 'kicked', reason: 'auth_expired' });
        await closedWithin(c, 3_000);
      });

      it('a second login with the same user and device replaces the first, which is kicked "replaced" and closed', async () => {
        const alice = uid('alice');
        const first = await on(main, alice, 'phone');
        const laptop = await on(main, alice, 'laptop');
        const second = await on(main, alice, 'phone');
        expect(await first.next((f) => f.t === 'kicked')).toEqual({ t: 'kicked', reason: 'replaced' });
        await closedWithin(first, 3_000);
        // The new socket and the user's other device are untouched.
        await expectPong(second);
        await expectPong(laptop);
        expect(laptop.received.filter((f) => f.t === 'kicked')).toEqual([]);
        // Messages now reach the new socket only.
        const bob = await on(main, uid('bob'));
        const s = await send(bob, { to: alice }, 'after replace', 'c1');
        expect(await second.next(isMsg(s.conv))).toMatchObject({ seq: s.seq, body: 'after replace' });
      });
    });

    // ------------------------------------------------------------------------------------------
    describe('ping and heartbeat', () => {
      it('ping with rid gets pong with the same rid and ts; without rid a pong without rid', async () => {
        const c = await on(main, uid('pinger'));
        const before = Date.now();
        const p = await c.request({ t: 'ping', rid: 'abc' });
        expect(p).toEqual({ t: 'pong', rid: 'abc', ts: expect.any(Number) });
        expect(p.ts as number).toBeGreaterThanOrEqual(before - 5_000);
        expect(p.ts as number).toBeLessThanOrEqual(Date.now() + 5_000);
        c.send({ t: 'ping' });
        const p2 = await c.next((f) => f.t === 'pong');
        expect(p2).toEqual({ t: 'pong', ts: expect.any(Number) });
      });

      it('a silent socket is closed after heartbeat_ms * 2.5; a pinging one stays open', async () => {
        const silentUser = uid('silent');
        const silent = (await login(tuned.wsUrl, silentUser)).client; // no keepAlive
        openClients.push(silent);
        const alive = await on(tuned, uid('alive'));
        const t0 = Date.now();
        const limit = TUNED.IM_HEARTBEAT_MS * 2.5;
        await closedWithin(silent, limit + 2_000);
        const took = Date.now() - t0;
        expect(took).toBeGreaterThanOrEqual(limit - 150);
        expect(alive.isOpen()).toBe(true);
        await sleep(300);
        await expectPong(alive);
      });
    });

    // ------------------------------------------------------------------------------------------
    describe('1:1 messages', () => {
      it('send answers sent (dm:min:max conv, seq, decimal mid, ts) and pushes msg to the recipient', async () => {
        const [alice, bob] = [uid('zed'), uid('amy')]; // alice > bob lexically: conv must be ordered
        const a = await on(main, alice);
        const b = await on(main, bob);
        const t0 = Date.now();
        const s = await a.request({ t: 'send', rid: 'R1', to: bob, cmid: 'm1', body: { text: 'hello' } });
        expect(s).toEqual({ t: 'sent', rid: 'R1', conv: `dm:${bob}:${alice}`, cmid: 'm1', seq: 1, mid: expect.stringMatching(/^[0-9]+$/), ts: expect.any(Number) });
        expect(Math.abs((s.ts as number) - t0)).toBeLessThan(10_000);
        const m = await b.next(isMsg());
        expect(m).toEqual({ t: 'msg', conv: `dm:${bob}:${alice}`, seq: 1, mid: s.mid, from: alice, cmid: 'm1', ts: s.ts, kind: 'text', body: { text: 'hello' } });
        const s2 = await send(b, { to: alice }, 'reply', 'm2', 'note');
        expect(s2).toMatchObject({ conv: `dm:${bob}:${alice}`, seq: 2 });
        expect(s2.mid).not.toBe(s.mid);
        expect(await a.next(isMsg())).toMatchObject({ seq: 2, from: bob, kind: 'note', body: 'reply', mid: s2.mid });
      });

      it('send by conv id works for a 1:1 conversation too', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const a = await on(main, alice);
        const s1 = await send(a, { to: bob }, 'one', 'c1');
        const s2 = await send(a, { conv: dm(alice, bob) }, 'two', 'c2');
        expect([s1.conv, s1.seq, s2.conv, s2.seq]).toEqual([dm(alice, bob), 1, dm(alice, bob), 2]);
      });

      it('the sender\'s other devices get the msg, the sending device does not', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const phone = await on(main, alice, 'phone');
        const laptop = await on(main, alice, 'laptop');
        const b1 = await on(main, bob, 'b1');
        const b2 = await on(main, bob, 'b2');
        const s = await send(phone, { to: bob }, 'multi', 'c1');
        for (const c of [laptop, b1, b2]) {
          expect(await c.next(isMsg(s.conv))).toMatchObject({ conv: s.conv, seq: s.seq, mid: s.mid, from: alice, body: 'multi' });
        }
        expect(await quiet(phone, 300, isMsg())).toEqual([]);
        // Each device got it exactly once.
        for (const c of [laptop, b1, b2]) expect(c.received.filter(isMsg()).length).toBe(1);
      });

      it('sending to yourself is refused with bad_request', async () => {
        const alice = uid('alice');
        const a = await on(main, alice);
        await expectError(a, { t: 'send', to: alice, cmid: 'x', body: 1 }, 'bad_request');
        await expectPong(a);
      });

      it('kind defaults to "text" and any JSON body round-trips, pushed and synced', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const a = await on(main, alice);
        const b = await on(main, bob);
        const bodies: unknown[] = [
          { text: 'hi', n: [1, 2, { deep: true }] },
          'a plain string with "quotes" and ünïcødé 🚀',
          42,
          -1.5e-7,
          [1, 'two', null, { three: 3 }],
          null,
          true,
          false,
          {},
          [],
          '',
        ];
        const sent: Sent[] = [];
        for (let i = 0; i < bodies.length; i++) sent.push(await send(a, { to: bob }, bodies[i], `b${i}`));
        const pushed = await b.collect(isMsg(), bodies.length);
        const synced = await syncAll(b, dm(alice, bob));
        expect(synced.length).toBe(bodies.length);
        for (let i = 0; i < bodies.length; i++) {
          expect(pushed[i]).toMatchObject({ seq: i + 1, kind: 'text' });
          expect(pushed[i].body).toEqual(bodies[i]);
          expect('body' in synced[i]).toBe(true);
          expect(synced[i].body).toEqual(bodies[i]);
          expect(synced[i].recalled).toBeUndefined();
          expect(synced[i]).toMatchObject({ seq: sent[i].seq, mid: sent[i].mid, cmid: `b${i}`, from: alice, ts: sent[i].ts });
        }
      });

      it('a body just under the frame limit (64 KiB default) round-trips', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const a = await on(main, alice);
        const envelope = JSON.stringify({ t: 'send', rid: 'r1', to: bob, cmid: 'big', body: '' }).length;
        const big = 'x'.repeat(65_536 - envelope - 16);
        const s = await a.request({ t: 'send', rid: 'r1', to: bob, cmid: 'big', body: big });
        expect(s).toMatchObject({ t: 'sent', seq: 1 });
        const [m] = await syncAll(a, dm(alice, bob));
        expect(m.body).toBe(big);
      });
    });

    // ------------------------------------------------------------------------------------------
    describe('ordering and idempotency', () => {
      it('concurrent senders in one group get gapless seq 1..N; sync returns them once, in order', async () => {
        const users = Array.from({ length: 5 }, (_, i) => uid(`w${i}`));
        const cs = await Promise.all(users.map((u) => on(main, u)));
        const conv = await createGroup(cs[0], uid('grp'), users.slice(1));
        const per = 20;
        const results = await Promise.all(
          cs.flatMap((c, i) => Array.from({ length: per }, (_, k) => send(c, { conv }, { i, k }, `u${i}-${k}`))),
        );
        const n = users.length * per;
        expect(results.map((r) => r.seq).sort((x, y) => x - y)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
        expect(new Set(results.map((r) => r.mid)).size).toBe(n);
        // Each sender's own messages got increasing seqs in the order it sent them.
        for (let i = 0; i < users.length; i++) {
          const mine = results.slice(i * per, (i + 1) * per).map((r) => r.seq);
          expect(mine).toEqual([...mine].sort((x, y) => x - y));
        }
        const stored = await syncAll(cs[1], conv);
        expect(stored.map((m) => m.seq)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
        const byCmid = new Map(results.map((r) => [r.cmid, r]));
        expect(new Set(stored.map((m) => m.cmid)).size).toBe(n);
        for (const m of stored) {
          const r = byCmid.get(m.cmid as string)!;
          expect(m).toMatchObject({ seq: r.seq, mid: r.mid });
        }
        // Every member saw the same message at each seq, live, in seq order, once.
        for (const c of cs) {
          const ownCount = per;
          const got = await c.collect(isMsg(conv), n - ownCount, 10_000);
          const seqs = got.map((m) => m.seq as number);
          expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
          expect(new Set(seqs).size).toBe(seqs.length);
          for (const m of got) expect(stored[(m.seq as number) - 1]).toMatchObject({ mid: m.mid, cmid: m.cmid });
        }
      });

      it('a resend with the same cmid answers the original seq and mid and stores nothing new', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const a = await on(main, alice, 'phone');
        const b = await on(main, bob);
        const first = await send(a, { to: bob }, 'once', 'same');
        const again = await send(a, { to: bob }, 'once', 'same');
        expect(again).toMatchObject({ conv: first.conv, cmid: 'same', seq: first.seq, mid: first.mid });
        // From another device of the same user too (a client that switched sockets).
        const other = await on(main, alice, 'laptop');
        const third = await send(other, { to: bob }, 'once', 'same');
        expect(third).toMatchObject({ seq: first.seq, mid: first.mid });
        // Concurrent duplicates of a fresh cmid: one message.
        const dup = await Promise.all(Array.from({ length: 8 }, () => send(a, { to: bob }, 'dup', 'burst')));
        expect(new Set(dup.map((d) => `${d.seq}/${d.mid}`)).size).toBe(1);
        expect(dup[0].seq).toBe(2);
        const next = await send(a, { to: bob }, 'next', 'fresh');
        expect(next.seq).toBe(3);
        const stored = await syncAll(b, first.conv);
        expect(stored.map((m) => [m.seq, m.cmid])).toEqual([[1, 'same'], [2, 'burst'], [3, 'fresh']]);
        // The recipient got each message once.
        await sleep(200);
        expect(b.received.filter(isMsg()).map((m) => m.seq)).toEqual([1, 2, 3]);
      });

      it('cmid is per sender and conversation: the same cmid from another sender or conversation is a new message', async () => {
        const [alice, bob, carol] = [uid('alice'), uid('bob'), uid('carol')];
        const a = await on(main, alice);
        const b = await on(main, bob);
        const s1 = await send(a, { to: bob }, 'from alice', 'k');
        const s2 = await send(b, { to: alice }, 'from bob', 'k');
        const s3 = await send(a, { to: carol }, 'to carol', 'k');
        expect([s1.seq, s2.seq, s3.seq]).toEqual([1, 2, 1]);
        expect(s3.conv).toBe(dm(alice, carol));
        expect(new Set([s1.mid, s2.mid, s3.mid]).size).toBe(3);
      });
    });

    // ------------------------------------------------------------------------------------------
    describe('groups and membership', () => {
      it('group_create makes the caller owner and member; members lists everyone; messages reach all online members', async () => {
        const [owner, m1, m2] = [uid('own'), uid('mem'), uid('mem')];
        const o = await on(main, owner);
        const a = await on(main, m1, 'd1');
        const a2 = await on(main, m1, 'd2');
        const b = await on(main, m2);
        const group = uid('team');
        const conv = await createGroup(o, group, [m1, m2, m1]);
        const r = await b.request({ t: 'group_members', conv });
        expect(r).toMatchObject({ t: 'members', rid: r.rid, conv });
        expect([...(r.members as string[])].sort()).toEqual([owner, m1, m2].sort());
        const s = await send(a, { conv }, 'hi team', 'c1');
        expect(s).toMatchObject({ conv, seq: 1 });
        for (const c of [o, a2, b]) expect(await c.next(isMsg(conv))).toMatchObject({ seq: 1, from: m1, body: 'hi team' });
        expect(await quiet(a, 200, isMsg())).toEqual([]);
      });

      it('creating an existing group is refused (conflict) and does not change it', async () => {
        const [owner, intruder] = [uid('own'), uid('intr')];
        const o = await on(main, owner);
        const i = await on(main, intruder);
        const group = uid('g');
        const conv = await createGroup(o, group, []);
        await expectError(i, { t: 'group_create', group, members: [] }, 'conflict');
        await expectError(i, { t: 'group_members', conv }, 'forbidden');
        const r = await o.request({ t: 'group_members', conv });
        expect(r.members).toEqual([owner]);
      });

      it('only the owner adds or removes members; a removed member loses access', async () => {
        const [owner, m1, m2, late] = [uid('own'), uid('m'), uid('m'), uid('late')];
        const o = await on(main, owner);
        const a = await on(main, m1);
        const b = await on(main, m2);
        const conv = await createGroup(o, uid('g'), [m1, m2]);
        await expectError(a, { t: 'group_add', conv, members: [late] }, 'forbidden');
        await expectError(a, { t: 'group_remove', conv, members: [m2] }, 'forbidden');
        let r = await o.request({ t: 'group_members', conv });
        expect([...(r.members as string[])].sort()).toEqual([owner, m1, m2].sort());

        expect(await o.request({ t: 'group_add', conv, members: [late] })).toMatchObject({ t: 'ok' });
        const l = await on(main, late);
        const s = await send(l, { conv }, 'I am in', 'c1');
        expect(s.seq).toBe(1);
        expect(await o.next(isMsg(conv))).toMatchObject({ seq: 1, from: late });

        expect(await o.request({ t: 'group_remove', conv, members: [m2] })).toMatchObject({ t: 'ok' });
        r = await o.request({ t: 'group_members', conv });
        expect([...(r.members as string[])].sort()).toEqual([owner, m1, late].sort());
        await expectError(b, { t: 'send', conv, cmid: 'x', body: 'still here?' }, 'forbidden');
        await expectError(b, { t: 'sync', conv, after: 0 }, 'forbidden');
        await expectError(b, { t: 'group_members', conv }, 'forbidden');
        b.send({ t: 'read', conv, seq: 1 });
        expect(await b.next((f) => f.t === 'error')).toMatchObject({ code: 'forbidden' });
        // The removed member no longer receives the conversation's messages.
        const s2 = await send(o, { conv }, 'after removal', 'c2');
        expect(await a.next((f) => isMsg(conv)(f) && f.seq === s2.seq)).toMatchObject({ body: 'after removal' });
        expect(await quiet(b, 200, (f) => isMsg(conv)(f) && f.seq === s2.seq)).toEqual([]);
        // Nothing from the forbidden attempts was stored.
        expect((await syncAll(o, conv)).map((m) => m.cmid)).toEqual(['c1', 'c2']);
      });

      it('non-members get forbidden for send, sync, read and group_members (group and 1:1)', async () => {
        const [owner, alice, bob, eve] = [uid('own'), uid('alice'), uid('bob'), uid('eve')];
        const o = await on(main, owner);
        const a = await on(main, alice);
        const e = await on(main, eve);
        const conv = await createGroup(o, uid('g'), [alice]);
        await send(o, { conv }, 'secret', 'c1');
        const d = (await send(a, { to: bob }, 'private', 'c1')).conv;
        for (const c of [conv, d]) {
          await expectError(e, { t: 'send', conv: c, cmid: 'e1', body: 'let me in' }, 'forbidden');
          await expectError(e, { t: 'sync', conv: c, after: 0 }, 'forbidden');
          await expectError(e, { t: 'group_members', conv: c }, 'forbidden');
          e.send({ t: 'read', conv: c, seq: 1 });
          expect(await e.next((f) => f.t === 'error')).toMatchObject({ code: 'forbidden' });
        }
        await expectError(e, { t: 'group_add', conv, members: [eve] }, 'forbidden');
        e.send({ t: 'typing', conv });
        // Members see no trace of the intruder, nothing was stored, and the intruder got no message.
        expect(await quiet(o, 300, (f) => (f.t === 'receipt' || f.t === 'typing') && f.user === eve)).toEqual([]);
        expect((await syncAll(o, conv)).map((m) => m.from)).toEqual([owner]);
        expect((await syncAll(a, d)).map((m) => m.from)).toEqual([alice]);
        expect(e.received.filter(isMsg())).toEqual([]);
        await expectPong(e);
      });

      it('an unknown group answers not_found', async () => {
        const u = await on(main, uid('u'));
        const conv = `g:${uid('nosuch')}`;
        await expectError(u, { t: 'send', conv, cmid: 'c', body: 'x' }, 'not_found');
        await expectError(u, { t: 'sync', conv, after: 0 }, 'not_found');
        await expectError(u, { t: 'group_members', conv }, 'not_found');
        await expectError(u, { t: 'group_add', conv, members: [uid('x')] }, 'not_found');
        // ... and did not come into existence.
        const c = await u.request({ t: 'convs' });
        expect(c.convs).toEqual([]);
      });
    });

    // ------------------------------------------------------------------------------------------
    describe('offline delivery, ack and redelivery', () => {
      it('on login every message above ack_seq is pushed, in seq order, once; ack moves the cursor', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const a = await on(main, alice);
        const conv = dm(alice, bob);
        for (let i = 1; i <= 6; i++) await send(a, { to: bob }, `m${i}`, `c${i}`);
        // Bob has never logged in.
        let b = await on(main, bob);
        let got = await b.collect(isMsg(conv), 6);
        expect(got.map((m) => [m.seq, m.body])).toEqual([1, 2, 3, 4, 5, 6].map((i) => [i, `m${i}`]));
        expect(await quiet(b, 300, isMsg(conv))).toHaveLength(6);
        b.send({ t: 'ack', conv, seq: 4 });
        await expectPong(b); // the ack was processed before the pong
        await b.close();

        b = await on(main, bob);
        got = await b.collect(isMsg(conv), 2);
        expect(got.map((m) => m.seq)).toEqual([5, 6]);
        expect(await quiet(b, 300, isMsg(conv))).toHaveLength(2);
        b.send({ t: 'ack', conv, seq: 6 });
        // An ack never moves the cursor back.
        b.send({ t: 'ack', conv, seq: 2 });
        await expectPong(b);
        await b.close();

        b = await on(main, bob);
        expect(await quiet(b, 400, isMsg(conv))).toEqual([]);
        const c = await b.request({ t: 'convs' });
        expect(c.convs).toEqual([{ conv, last_seq: 6, ack_seq: 6, read_seq: 0 }]);
      });

      it('the acked cursor survives a node-side flush: re-login after a pause still does not redeliver', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const a = await on(main, alice);
        const conv = dm(alice, bob);
        for (let i = 1; i <= 3; i++) await send(a, { to: bob }, i, `c${i}`);
        let b = await on(main, bob);
        await b.collect(isMsg(conv), 3);
        b.send({ t: 'ack', conv, seq: 3 });
        await expectPong(b);
        await b.close();
        await sleep(600); // past the cursor flush interval: now it comes from the record
        b = await on(main, bob);
        expect(await quiet(b, 300, isMsg(conv))).toEqual([]);
      });

      it('the ack of a 1:1 message gives the sender a delivered receipt', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const a = await on(main, alice);
        const b = await on(main, bob);
        const s = await send(a, { to: bob }, 'x', 'c1');
        await b.next(isMsg(s.conv));
        b.send({ t: 'ack', conv: s.conv, seq: s.seq });
        expect(await a.next((f) => f.t === 'receipt')).toEqual({ t: 'receipt', conv: s.conv, user: bob, delivered: 1 });
      });

      it('a sender\'s own cursors move to its message: nothing is redelivered to it', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const a = await on(main, alice, 'phone');
        const s = await send(a, { to: bob }, 'x', 'c1');
        await send(a, { to: bob }, 'y', 'c2');
        const c = await a.request({ t: 'convs' });
        expect(c.convs).toEqual([{ conv: s.conv, last_seq: 2, ack_seq: 2, read_seq: 2 }]);
        const again = await on(main, alice, 'tablet');
        expect(await quiet(again, 300, isMsg())).toEqual([]);
      });

      it('login push is capped at IM_LOGIN_PUSH_MAX per conversation; the rest comes by sync', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const a = await on(tuned, alice);
        const conv = dm(alice, bob);
        const n = 9; // within the tuned node's send burst (2 x IM_RATE_MSGS)
        for (let i = 1; i <= n; i++) await send(a, { to: bob }, i, `c${i}`);
        const b = await on(tuned, bob);
        const first = await b.collect(isMsg(conv), TUNED.IM_LOGIN_PUSH_MAX);
        expect(first.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
        for (const m of first) b.send({ t: 'ack', conv, seq: m.seq });
        const extra = await quiet(b, 400, isMsg(conv));
        expect(new Set(extra.map((m) => m.seq))).toEqual(new Set([1, 2, 3, 4, 5]));
        const batch = await b.request({ t: 'sync', conv, after: 5 });
        expect(batch).toMatchObject({ t: 'batch', conv, more: false });
        expect((batch.msgs as Frame[]).map((m) => [m.seq, m.body])).toEqual([6, 7, 8, 9].map((i) => [i, i]));
      });

      it('an unacked push is pushed again after IM_ACK_TIMEOUT_MS, up to 3 times, then waits for the next login', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const a = await on(tuned, alice);
        const b = await on(tuned, bob);
        const s = await send(a, { to: bob }, 'retry me', 'c1');
        const t0 = Date.now();
        const pushes = await b.collect(isMsg(s.conv), 1 + TUNED.IM_PUSH_RETRIES, TUNED.IM_ACK_TIMEOUT_MS * 8 + 2_000);
        const took = Date.now() - t0;
        for (const p of pushes) expect(p).toMatchObject({ conv: s.conv, seq: s.seq, mid: s.mid, body: 'retry me' });
        expect(took).toBeGreaterThanOrEqual(TUNED.IM_ACK_TIMEOUT_MS * TUNED.IM_PUSH_RETRIES - 150);
        // No more than 3 retries.
        expect(await quiet(b, TUNED.IM_ACK_TIMEOUT_MS * 3, isMsg(s.conv))).toHaveLength(4);
        // Still unacked: the next login delivers it again.
        const b2 = await on(tuned, bob, 'other');
        expect(await b2.next(isMsg(s.conv))).toMatchObject({ seq: s.seq, mid: s.mid });
        b2.send({ t: 'ack', conv: s.conv, seq: s.seq });
      });

      it('an acked push is not pushed again', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const a = await on(tuned, alice);
        const b = await on(tuned, bob);
        const s = await send(a, { to: bob }, 'ack me', 'c1');
        await b.next(isMsg(s.conv));
        b.send({ t: 'ack', conv: s.conv, seq: s.seq });
        expect(await quiet(b, TUNED.IM_ACK_TIMEOUT_MS * 3, isMsg(s.conv))).toHaveLength(1);
      });

      it('logging in while the peer keeps sending: login_ok first, then every message once, gapless, in seq order', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const a = await on(main, alice);
        const conv = dm(alice, bob);
        const total = 90;
        let sentCount = 0;
        const sender = (async () => {
          // Two sends in flight at a time, in cmid order: a steady stream of commits.
          for (let i = 1; i <= total; i += 2) {
            await Promise.all([send(a, { to: bob }, i, `c${i}`), send(a, { to: bob }, i + 1, `c${i + 1}`)]);
            sentCount = i + 1;
          }
        })();
        // Log in (waves of devices) while the sends are streaming.
        const devices: TestClient[] = [];
        for (let wave = 0; wave < 3; wave++) {
          const deadline = Date.now() + 5_000;
          while (sentCount < 10 + wave * 25 && Date.now() < deadline) await sleep(1);
          devices.push(...(await Promise.all([0, 1, 2].map((d) => on(main, bob, `dev${wave}-${d}`)))));
        }
        await sender;
        for (const [d, b] of devices.entries()) {
          const got = await b.collect(isMsg(conv), total, 10_000).catch((e) => { throw new Error(`device ${d}: ${b.received.map((f) => (f.t === "msg" ? f.seq : f.t)).join(",")}: ${(e as Error).message.slice(0, 100)}`); });
          expect(b.received[0], `device ${d}`).toMatchObject({ t: 'login_ok' });
          expect(got.map((m) => m.seq), `device ${d}`).toEqual(Array.from({ length: total }, (_, i) => i + 1));
        }
        await sleep(200);
        for (const b of devices) expect(b.received.filter(isMsg(conv))).toHaveLength(total);
      });

      it('done-when scenario: two people chat 1:1 and in a group; one goes offline; on login gets everything in seq order, once', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const a = await on(main, alice);
        let b = await on(main, bob);
        const d = dm(alice, bob);
        const g = await createGroup(a, uid('pair'), [bob]);
        // Both online: chat back and forth, acking what arrives.
        for (let i = 0; i < 3; i++) {
          const s1 = await send(a, { to: bob }, `a${i}`, `a-dm-${i}`);
          const m1 = await b.next(isMsg(d));
          expect(m1).toMatchObject({ seq: s1.seq, body: `a${i}` });
          b.send({ t: 'ack', conv: d, seq: m1.seq });
          const s2 = await send(b, { conv: g }, `b${i}`, `b-g-${i}`);
          const m2 = await a.next(isMsg(g));
          expect(m2).toMatchObject({ seq: s2.seq, body: `b${i}` });
        }
        await expectPong(b);
        await b.close();
        // Bob is offline; alice keeps writing in both conversations.
        const offline: Sent[] = [];
        for (let i = 0; i < 8; i++) offline.push(await send(a, i % 2 ? { conv: g } : { to: bob }, `later${i}`, `late-${i}`));
        b = await on(main, bob);
        const dmExpect = offline.filter((s) => s.conv === d);
        const gExpect = offline.filter((s) => s.conv === g);
        const got = await b.collect(isMsg(), dmExpect.length + gExpect.length);
        expect(await quiet(b, 300, isMsg())).toHaveLength(dmExpect.length + gExpect.length);
        const dmGot = got.filter((m) => m.conv === d);
        const gGot = got.filter((m) => m.conv === g);
        expect(dmGot.map((m) => [m.seq, m.mid, m.cmid])).toEqual(dmExpect.map((s) => [s.seq, s.mid, s.cmid]));
        expect(dmGot.map((m) => m.seq)).toEqual([4, 5, 6, 7]);
        expect(gGot.map((m) => [m.seq, m.mid, m.cmid])).toEqual(gExpect.map((s) => [s.seq, s.mid, s.cmid]));
        expect(gGot.map((m) => m.seq)).toEqual([4, 5, 6, 7]);
        // History is complete and gapless for both.
        expect((await syncAll(b, d)).map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
        expect((await syncAll(b, g)).map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
      });
    });

    // ------------------------------------------------------------------------------------------
    describe('read receipts, convs, sync', () => {
      it('read moves the read cursor; other members get a receipt; convs lists last/ack/read', async () => {
        const [alice, bob, carol] = [uid('alice'), uid('bob'), uid('carol')];
        const a = await on(main, alice);
        const b = await on(main, bob);
        const c = await on(main, carol);
        const g = await createGroup(a, uid('g'), [bob, carol]);
        for (let i = 1; i <= 3; i++) await send(a, { conv: g }, i, `c${i}`);
        await b.collect(isMsg(g), 3);
        b.send({ t: 'ack', conv: g, seq: 3 });
        b.send({ t: 'read', conv: g, seq: 2 });
        for (const x of [a, c]) expect(await x.next((f) => f.t === 'receipt' && f.read !== undefined)).toEqual({ t: 'receipt', conv: g, user: bob, read: 2 });
        const mine = await b.request({ t: 'convs' });
        expect(mine).toMatchObject({ t: 'convs', rid: mine.rid });
        expect(mine.convs).toEqual([{ conv: g, last_seq: 3, ack_seq: 3, read_seq: 2 }]);
        const cs = await c.request({ t: 'convs' });
        expect(cs.convs).toEqual([{ conv: g, last_seq: 3, ack_seq: 0, read_seq: 0 }]);
        // The reader itself gets no receipt of its own read.
        expect(await quiet(b, 200, (f) => f.t === 'receipt' && f.read !== undefined)).toEqual([]);
      });

      it('read only moves forward: a lower read neither lowers the cursor nor announces a lower value', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const a = await on(main, alice);
        const b = await on(main, bob);
        const conv = dm(alice, bob);
        for (let i = 1; i <= 3; i++) await send(a, { to: bob }, i, `c${i}`);
        b.send({ t: 'read', conv, seq: 3 });
        expect(await a.next((f) => f.t === 'receipt' && f.read !== undefined)).toMatchObject({ user: bob, read: 3 });
        b.send({ t: 'read', conv, seq: 1 });
        await expectPong(b);
        const lower = await quiet(a, 300, (f) => f.t === 'receipt' && typeof f.read === 'number' && f.read < 3);
        expect(lower).toEqual([]);
        await sleep(300); // let cursor moves reach the record
        const cs = await b.request({ t: 'convs' });
        expect(cs.convs).toEqual([{ conv, last_seq: 3, ack_seq: 0, read_seq: 3 }]);
      });

      it('convs lists every conversation of the user, including groups without messages', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const a = await on(main, alice);
        const b = await on(main, bob);
        expect((await b.request({ t: 'convs' })).convs).toEqual([]);
        const g = await createGroup(a, uid('empty'), [bob]);
        await send(a, { to: bob }, 'x', 'c1');
        const list = (await b.request({ t: 'convs' })).convs as Frame[];
        const sorted = [...list].sort((x, y) => String(x.conv).localeCompare(String(y.conv)));
        expect(sorted).toEqual(
          [
            { conv: dm(alice, bob), last_seq: 1, ack_seq: 0, read_seq: 0 },
            { conv: g, last_seq: 0, ack_seq: 0, read_seq: 0 },
          ].sort((x, y) => x.conv.localeCompare(y.conv)),
        );
      });

      it('sync pages with limit/more; default limit 50; limit 200 is allowed, 201 or 0 is bad_request', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const a = await on(main, alice);
        const conv = dm(alice, bob);
        const n = 55;
        await Promise.all(Array.from({ length: n }, (_, i) => send(a, { to: bob }, i, `c${i}`)));
        const b = await on(main, bob);
        let r = await b.request({ t: 'sync', conv, after: 0, limit: 3 });
        expect(r).toMatchObject({ t: 'batch', rid: r.rid, conv, more: true });
        expect((r.msgs as Frame[]).map((m) => m.seq)).toEqual([1, 2, 3]);
        expect((r.msgs as Frame[])[0]).toMatchObject({ t: 'msg', conv, seq: 1, from: alice, kind: 'text', mid: expect.stringMatching(/^[0-9]+$/) });
        r = await b.request({ t: 'sync', conv, after: 50, limit: 5 });
        expect([(r.msgs as Frame[]).map((m) => m.seq), r.more]).toEqual([[51, 52, 53, 54, 55], false]);
        r = await b.request({ t: 'sync', conv, after: 52, limit: 5 });
        expect([(r.msgs as Frame[]).map((m) => m.seq), r.more]).toEqual([[53, 54, 55], false]);
        r = await b.request({ t: 'sync', conv, after: 0 });
        expect([(r.msgs as Frame[]).length, (r.msgs as Frame[])[49].seq, r.more]).toEqual([50, 50, true]);
        r = await b.request({ t: 'sync', conv, after: 0, limit: 200 });
        expect([(r.msgs as Frame[]).map((m) => m.seq), r.more]).toEqual([Array.from({ length: n }, (_, i) => i + 1), false]);
        r = await b.request({ t: 'sync', conv, after: 55 });
        expect([r.msgs, r.more]).toEqual([[], false]);
        await expectError(b, { t: 'sync', conv, after: 0, limit: 201 }, 'bad_request');
        await expectError(b, { t: 'sync', conv, after: 0, limit: 0 }, 'bad_request');
        await expectPong(b);
      });
    });

    // ------------------------------------------------------------------------------------------
    describe('recall', () => {
      it('the sender recalls within the window: ok, every member gets recalled, sync shows recalled without body', async () => {
        const [alice, bob, carol] = [uid('alice'), uid('bob'), uid('carol')];
        const a = await on(main, alice, 'phone');
        const a2 = await on(main, alice, 'laptop');
        const b = await on(main, bob);
        const c = await on(main, carol);
        const g = await createGroup(a, uid('g'), [bob, carol]);
        await send(a, { conv: g }, 'keep', 'c1');
        const s = await send(a, { conv: g }, { secret: 'oops' }, 'c2');
        const r = await a.request({ t: 'recall', rid: 'RC', conv: g, seq: s.seq });
        expect(r).toEqual({ t: 'ok', rid: 'RC' });
        for (const x of [a, a2, b, c]) expect(await x.next((f) => f.t === 'recalled')).toEqual({ t: 'recalled', conv: g, seq: s.seq, by: alice });
        const stored = await syncAll(b, g);
        expect(stored[0]).toMatchObject({ seq: 1, body: 'keep' });
        expect(stored[0].recalled).toBeUndefined();
        expect(stored[1]).toMatchObject({ seq: 2, mid: s.mid, from: alice, cmid: 'c2', recalled: true });
        expect('body' in stored[1]).toBe(false);
        expect(stored).toHaveLength(2);
      });

      it('recall by someone other than the sender is forbidden', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const a = await on(main, alice);
        const b = await on(main, bob);
        const s = await send(a, { to: bob }, 'mine', 'c1');
        await expectError(b, { t: 'recall', conv: s.conv, seq: s.seq }, 'forbidden');
        const [m] = await syncAll(a, s.conv);
        expect(m).toMatchObject({ body: 'mine' });
        expect(m.recalled).toBeUndefined();
        expect(await quiet(a, 100, (f) => f.t === 'recalled')).toEqual([]);
      });

      it('recall after IM_RECALL_WINDOW_MS is forbidden', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const a = await on(tuned, alice);
        const s = await send(a, { to: bob }, 'too late', 'c1');
        await sleep(TUNED.IM_RECALL_WINDOW_MS + 300);
        await expectError(a, { t: 'recall', conv: s.conv, seq: s.seq }, 'forbidden');
        const [m] = await syncAll(a, s.conv);
        expect(m).toMatchObject({ body: 'too late' });
      });
    });

    // ------------------------------------------------------------------------------------------
    describe('typing', () => {
      it('typing is relayed to other online members only and never stored', async () => {
        const [alice, bob, carol, dave] = [uid('alice'), uid('bob'), uid('carol'), uid('dave')];
        const a = await on(main, alice);
        const b = await on(main, bob);
        const c = await on(main, carol);
        const g = await createGroup(a, uid('g'), [bob, carol, dave]); // dave is offline
        a.send({ t: 'typing', conv: g });
        for (const x of [b, c]) expect(await x.next((f) => f.t === 'typing')).toEqual({ t: 'typing', conv: g, user: alice });
        expect(await quiet(a, 200, (f) => f.t === 'typing')).toEqual([]);
        const d = await on(main, dave);
        expect(await quiet(d, 300, (f) => f.t === 'typing' || f.t === 'msg')).toEqual([]);
        expect(await syncAll(d, g)).toEqual([]);
        expect((await d.request({ t: 'convs' })).convs).toEqual([{ conv: g, last_seq: 0, ack_seq: 0, read_seq: 0 }]);
      });
    });

    // ------------------------------------------------------------------------------------------
    describe('bad frames and limits', () => {
      it('malformed frames get bad_request (rid echoed when present) and the socket stays open', async () => {
        const alice = uid('alice');
        const a = await on(main, alice);
        const cases: Array<{ frame: string | object; rid?: string }> = [
          { frame: 'not json at all' },
          { frame: '{"t":"send",' },
          { frame: '[1,2,3]' },
          { frame: '"just a string"' },
          { frame: { rid: 'no-t' }, rid: 'no-t' },
          { frame: { t: 'frobnicate', rid: 'unknown-t' }, rid: 'unknown-t' },
          { frame: { t: 'send', rid: 'no-body', to: uid('bob'), cmid: 'x' }, rid: 'no-body' },
          { frame: { t: 'send', rid: 'no-cmid', to: uid('bob'), body: 1 }, rid: 'no-cmid' },
          { frame: { t: 'sync', rid: 'str-after', conv: dm(alice, 'zzz'), after: '0' }, rid: 'str-after' },
          { frame: { t: 'group_create', rid: 'members-str', group: 'g', members: 'bob' }, rid: 'members-str' },
          { frame: { t: 'ack', conv: dm(alice, 'zzz'), seq: 'three' } },
          { frame: { t: 7, rid: 'num-t' }, rid: 'num-t' },
        ];
        for (const k of cases) {
          a.send(typeof k.frame === 'string' ? k.frame : JSON.stringify(k.frame));
          const e = await a.next((f) => f.t === 'error');
          expect(e, JSON.stringify(k.frame)).toMatchObject({ t: 'error', code: 'bad_request' });
          if (k.rid) expect(e.rid).toBe(k.rid);
        }
        a.send(Buffer.from(JSON.stringify({ t: 'ping', rid: 'bin' })));
        expect(await a.next((f) => f.t === 'error')).toMatchObject({ code: 'bad_request' });
        await expectPong(a);
        // Nothing of that was stored.
        expect((await a.request({ t: 'convs' })).convs).toEqual([]);
      });

      it('repeated bad frames close the socket (IM_BAD_FRAME_LIMIT)', async () => {
        const a = await on(tuned, uid('alice'));
        for (let i = 0; i < TUNED.IM_BAD_FRAME_LIMIT; i++) {
          a.send('garbage');
          expect(await a.next((f) => f.t === 'error')).toMatchObject({ code: 'bad_request' });
        }
        await expectPong(a);
        for (let i = 0; i < 5 && a.isOpen(); i++) a.send('garbage');
        await closedWithin(a, 3_000);
      });

      it('a frame over IM_MAX_FRAME_BYTES gets too_large and the socket closes; nothing is stored', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const a = await on(tuned, alice);
        const ok = await send(a, { to: bob }, 'y'.repeat(TUNED.IM_MAX_FRAME_BYTES - 200), 'fits');
        expect(ok.seq).toBe(1);
        a.send(JSON.stringify({ t: 'send', rid: 'big', to: bob, cmid: 'big', body: 'z'.repeat(TUNED.IM_MAX_FRAME_BYTES) }));
        expect(await a.next((f) => f.t === 'error')).toMatchObject({ code: 'too_large' });
        await closedWithin(a, 3_000);
        const b = await on(tuned, bob);
        expect((await syncAll(b, dm(alice, bob))).map((m) => m.cmid)).toEqual(['fits']);
      });

      it('a frame far over the limit also gets too_large before the socket closes', async () => {
        const a = await on(tuned, uid('alice'));
        a.send(JSON.stringify({ t: 'send', rid: 'huge', to: uid('bob'), cmid: 'huge', body: 'z'.repeat(TUNED.IM_MAX_FRAME_BYTES * 20) }));
        await closedWithin(a, 3_000);
        expect(a.received.filter((f) => f.t === 'error')).toMatchObject([{ code: 'too_large' }]);
      });

      it('a 512 KiB frame (a pasted file) against the default 64 KiB limit gets too_large, not a silent close', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const a = await on(main, alice);
        a.send(JSON.stringify({ t: 'send', rid: 'file', to: bob, cmid: 'file', body: 'f'.repeat(512 * 1024) }));
        await closedWithin(a, 5_000);
        expect(a.received.filter((f) => f.t === 'error')).toMatchObject([{ code: 'too_large' }]);
        const b = await on(main, bob);
        expect((await b.request({ t: 'convs' })).convs).toEqual([]);
      });

      it('sends over IM_RATE_MSGS get rate_limited each, store nothing, and do not count as bad frames', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const a = await on(tuned, alice);
        const n = 24; // burst is 2 x 5 = 10: at least IM_BAD_FRAME_LIMIT + 1 excess sends even with some refill
        const answers = await Promise.all(Array.from({ length: n }, (_, i) => a.request({ t: 'send', to: bob, cmid: `c${i}`, body: i })));
        const sent = answers.filter((f) => f.t === 'sent');
        const limited = answers.filter((f) => f.t === 'error' && f.code === 'rate_limited');
        expect(sent.length + limited.length).toBe(n);
        expect(sent.length).toBeGreaterThanOrEqual(TUNED.IM_RATE_MSGS * 2);
        expect(sent.length).toBeLessThanOrEqual(TUNED.IM_RATE_MSGS * 2 + 5); // refill while the burst is handled
        expect(limited.length).toBeGreaterThan(TUNED.IM_BAD_FRAME_LIMIT);
        expect(a.isOpen()).toBe(true);
        await expectPong(a);
        const stored = await syncAll(a, dm(alice, bob));
        expect(stored.map((m) => m.seq)).toEqual(sent.map((_, i) => i + 1));
        expect(new Set(stored.map((m) => m.cmid))).toEqual(new Set(sent.map((s) => s.cmid)));
      });
    });

    // ------------------------------------------------------------------------------------------
    describe('v1.1: sync before, group_leave, group pushes, owner, presence_sub', () => {
      const isGroup = (conv: string, op?: string) => (f: Frame) => f.t === 'group' && f.conv === conv && (op === undefined || f.op === op);
      const sorted = (l: unknown) => [...(l as string[])].sort();

      it('sync before: the page just below seq N, ascending; more while older ones exist; N past the end gives the newest', async () => {
        const [alice, bob, eve] = [uid('alice'), uid('bob'), uid('eve')];
        const a = await on(main, alice);
        const e = await on(main, eve);
        for (let i = 1; i <= 7; i++) await send(a, { to: bob }, i, `c${i}`);
        const conv = dm(alice, bob);
        const page = async (before: number, limit?: number) => {
          const b = await a.request({ t: 'sync', conv, before, ...(limit ? { limit } : {}) });
          expect(b.t, JSON.stringify(b)).toBe('batch');
          expect(b.conv).toBe(conv);
          return { seqs: (b.msgs as Frame[]).map((m) => m.seq), more: b.more, msgs: b.msgs as Frame[] };
        };
        expect(await page(1_000_000, 3)).toMatchObject({ seqs: [5, 6, 7], more: true });
        expect(await page(5, 3)).toMatchObject({ seqs: [2, 3, 4], more: true });
        expect(await page(2, 3)).toMatchObject({ seqs: [1], more: false });
        expect(await page(1, 3)).toMatchObject({ seqs: [], more: false });
        expect(await page(4)).toMatchObject({ seqs: [1, 2, 3], more: false });
        expect(await page(8, 7)).toMatchObject({ seqs: [1, 2, 3, 4, 5, 6, 7], more: false });
        expect((await page(8, 1)).msgs[0]).toMatchObject({ t: 'msg', conv, seq: 7, from: alice, cmid: 'c7', body: 7 });
        // Exactly one of after and before; before ≥ 1; numbers only.
        await expectError(a, { t: 'sync', conv, after: 0, before: 5 }, 'bad_request');
        await expectError(a, { t: 'sync', conv }, 'bad_request');
        await expectError(a, { t: 'sync', conv, before: 0 }, 'bad_request');
        await expectError(a, { t: 'sync', conv, before: '5' }, 'bad_request');
        await expectError(a, { t: 'sync', conv, before: 1.5 }, 'bad_request');
        await expectError(a, { t: 'sync', conv, before: 5, limit: 201 }, 'bad_request');
        await expectError(e, { t: 'sync', conv, before: 5 }, 'forbidden');
        await expectPong(a);
      });

      it('group pushes: created, added, removed reach every member, the acting one and the removed included; members carries owner', async () => {
        const [owner, m1, m2, late] = [uid('own'), uid('m'), uid('m'), uid('late')];
        const o = await on(main, owner);
        const a = await on(main, m1);
        const b = await on(main, m2);
        const l = await on(main, late);
        const conv = await createGroup(o, uid('g'), [m1, m2]);
        for (const c of [o, a, b]) {
          const g = await c.next(isGroup(conv, 'created'));
          expect(Object.keys(g).sort()).toEqual(['by', 'conv', 'members', 'op', 't']);
          expect(g.by).toBe(owner);
          expect(sorted(g.members)).toEqual([owner, m1, m2].sort());
        }
        const r = await a.request({ t: 'group_members', conv });
        expect(r).toMatchObject({ t: 'members', conv, owner });
        expect(sorted(r.members)).toEqual([owner, m1, m2].sort());

        expect(await o.request({ t: 'group_add', conv, members: [late, m1] })).toMatchObject({ t: 'ok' });
        for (const c of [o, a, b, l]) expect(await c.next(isGroup(conv, 'added'))).toEqual({ t: 'group', conv, op: 'added', members: [late], by: owner });
        // Adding only existing members changes nothing and announces nothing.
        expect(await o.request({ t: 'group_add', conv, members: [m1] })).toMatchObject({ t: 'ok' });

        expect(await o.request({ t: 'group_remove', conv, members: [m2] })).toMatchObject({ t: 'ok' });
        for (const c of [o, a, b, l]) expect(await c.next(isGroup(conv, 'removed'))).toEqual({ t: 'group', conv, op: 'removed', members: [m2], by: owner });
        expect(await quiet(o, 200, isGroup(conv))).toHaveLength(3);
        expect(b.received.filter(isGroup(conv)).map((f) => f.op)).toEqual(['created', 'added', 'removed']);
        // A 1:1 conversation has no owner.
        await send(a, { to: m2 }, 'hi', 'c1');
        const d = await a.request({ t: 'group_members', conv: dm(m1, m2) });
        expect(d).not.toHaveProperty('owner');
      });

      it('group_leave: the owner role goes to the earliest joined (then smallest id); the last one out ends the group and keeps its name taken', async () => {
        const owner = uid('zowner');
        // Ids ordered ua < ub < uc; ub and uc join at creation, ua later.
        const [ua, ub, uc] = [uid('ua'), uid('ub'), uid('uc')];
        const o = await on(main, owner);
        const A = await on(main, ua);
        const B = await on(main, ub);
        const C = await on(main, uc);
        const group = uid('leave');
        const conv = await createGroup(o, group, [uc, ub]);
        await sleep(20);
        expect(await o.request({ t: 'group_add', conv, members: [ua] })).toMatchObject({ t: 'ok' });
        await send(o, { conv }, 'before leaving', 'c1');

        expect(await o.request({ t: 'group_leave', conv })).toMatchObject({ t: 'ok' });
        for (const c of [o, A, B, C]) {
          expect(await c.next(isGroup(conv, 'left'))).toEqual({ t: 'group', conv, op: 'left', members: [owner], by: owner });
          expect(await c.next(isGroup(conv, 'owner'))).toEqual({ t: 'group', conv, op: 'owner', members: [ub], by: owner });
        }
        let r = await C.request({ t: 'group_members', conv });
        expect(r.owner).toBe(ub);
        expect(sorted(r.members)).toEqual([ua, ub, uc].sort());
        // The one who left is out: no send, no sync, no leave again, no messages.
        await expectError(o, { t: 'send', conv, cmid: 'c2', body: 'x' }, 'forbidden');
        await expectError(o, { t: 'sync', conv, after: 0 }, 'forbidden');
        await expectError(o, { t: 'group_leave', conv }, 'forbidden');
        // The new owner may change members; the others still may not.
        await expectError(A, { t: 'group_remove', conv, members: [uc] }, 'forbidden');

        // ub leaves: uc joined at creation, before ua (whose id is smaller).
        expect(await B.request({ t: 'group_leave', conv })).toMatchObject({ t: 'ok' });
        expect(await A.next(isGroup(conv, 'owner'))).toMatchObject({ members: [uc], by: ub });
        r = await A.request({ t: 'group_members', conv });
        expect(r).toMatchObject({ owner: uc });
        expect(sorted(r.members)).toEqual([ua, uc].sort());

        // A member who is not the owner leaves: no owner change.
        expect(await A.request({ t: 'group_leave', conv })).toMatchObject({ t: 'ok' });
        const leftBy = (who: string) => (f: Frame) => isGroup(conv, 'left')(f) && f.by === who;
        expect(await C.next(leftBy(ua))).toMatchObject({ members: [ua], by: ua });
        // C saw two owner changes (to ub, then to uc), none for ua's leaving.
        expect((await quiet(C, 200, isGroup(conv, 'owner'))).map((f) => (f.members as string[])[0])).toEqual([ub, uc]);
        const s = await send(C, { conv }, 'alone', 'c9');
        expect(s.seq).toBe(2);
        expect((await syncAll(C, conv)).map((m) => m.cmid)).toEqual(['c1', 'c9']);

        // The last one out ends the group: nobody is a member, the name stays taken.
        expect(await C.request({ t: 'group_leave', conv })).toMatchObject({ t: 'ok' });
        expect(await C.next(leftBy(uc))).toMatchObject({ members: [uc], by: uc });
        await expectError(C, { t: 'group_members', conv }, 'forbidden');
        await expectError(C, { t: 'send', conv, cmid: 'c10', body: 'x' }, 'forbidden');
        await expectError(C, { t: 'group_add', conv, members: [uc] }, 'forbidden');
        await expectError(C, { t: 'group_create', group, members: [] }, 'conflict');
        await expectError(o, { t: 'group_create', group, members: [ua] }, 'conflict');
        for (const c of [o, A, B, C]) expect(((await c.request({ t: 'convs' })).convs as Frame[]).map((x) => x.conv)).not.toContain(conv);
      });

      it('group_leave: 1:1 is bad_request, a non-member forbidden, an unknown group not_found, bad fields bad_request', async () => {
        const [alice, bob, eve] = [uid('alice'), uid('bob'), uid('eve')];
        const a = await on(main, alice);
        const e = await on(main, eve);
        await send(a, { to: bob }, 'x', 'c1');
        await expectError(a, { t: 'group_leave', conv: dm(alice, bob) }, 'bad_request');
        const conv = await createGroup(a, uid('g'), [bob]);
        await expectError(e, { t: 'group_leave', conv }, 'forbidden');
        await expectError(e, { t: 'group_leave', conv: `g:${uid('nosuch')}` }, 'not_found');
        await expectError(e, { t: 'group_leave', conv: 42 }, 'bad_request');
        await expectError(e, { t: 'group_leave' }, 'bad_request');
        const r = await a.request({ t: 'group_members', conv });
        expect(sorted(r.members)).toEqual([alice, bob].sort());
        expect(r.owner).toBe(alice);
        await expectPong(e);
      });

      it('presence_sub: states of users sharing a conversation, null for others; pushes on first and last device only; replaced list', async () => {
        const [w, g1, d1, stranger, nomsg] = [uid('watch'), uid('g1'), uid('d1'), uid('str'), uid('nomsg')];
        const W = await on(main, w);
        await createGroup(W, uid('g'), [g1]);
        const D = await on(main, d1);
        await send(D, { to: w }, 'hello', 'c1');
        const S = await on(main, stranger);
        // A group the watcher is not in does not count.
        await createGroup(S, uid('g'), [g1, nomsg]);
        const pres = (f: Frame) => f.t === 'presence' && f.rid === undefined;

        const r = await W.request({ t: 'presence_sub', users: [g1, d1, stranger, nomsg, g1] });
        expect(r).toEqual({
          t: 'presence', rid: r.rid,
          users: [{ user: g1, online: false }, { user: d1, online: true }, { user: stranger, online: null }, { user: nomsg, online: null }, { user: g1, online: false }],
        });
        // First device online: one push; a second device, and a device replacing itself: none.
        const g1a = await on(main, g1, 'a');
        expect(await W.next(pres)).toEqual({ t: 'presence', user: g1, online: true });
        const g1b = await on(main, g1, 'b');
        const g1a2 = await on(main, g1, 'a');
        await g1a.closed;
        // The stranger coming and going is never pushed.
        await (await on(main, stranger, 'other')).close();
        await S.close();
        expect(await quiet(W, 300, pres)).toHaveLength(1);
        await g1b.close();
        expect(await quiet(W, 200, pres)).toHaveLength(1);
        // Last device gone: offline.
        await g1a2.close();
        expect(await W.next(pres)).toEqual({ t: 'presence', user: g1, online: false });

        // A new presence_sub replaces the list: d1 is no longer watched.
        const r2 = await W.request({ t: 'presence_sub', users: [g1] });
        expect(r2.users).toEqual([{ user: g1, online: false }]);
        await D.close();
        await on(main, g1, 'c');
        expect(await W.next(pres)).toEqual({ t: 'presence', user: g1, online: true });
        expect(await quiet(W, 300, (f) => pres(f) && f.user === d1)).toEqual([]);
        // An empty list watches nobody.
        expect((await W.request({ t: 'presence_sub', users: [] })).users).toEqual([]);
      });

      it('presence_sub: more than 500 users, wrong types and bad ids are bad_request; the socket stays open', async () => {
        const u = uid('u');
        const c = await on(main, u);
        const many = Array.from({ length: 501 }, (_, i) => `p${i}`);
        await expectError(c, { t: 'presence_sub', users: many }, 'bad_request');
        const ok = await c.request({ t: 'presence_sub', users: many.slice(0, 500) });
        expect(ok).toMatchObject({ t: 'presence' });
        expect((ok.users as Frame[]).every((x) => x.online === null)).toBe(true);
        await expectError(c, { t: 'presence_sub', users: 'bob' }, 'bad_request');
        await expectError(c, { t: 'presence_sub', users: [1] }, 'bad_request');
        await expectError(c, { t: 'presence_sub', users: ['not a valid id'] }, 'bad_request');
        await expectError(c, { t: 'presence_sub' }, 'bad_request');
        await expectPong(c);
      });
    });

    // ------------------------------------------------------------------------------------------
    describe('HTTP endpoints', () => {
      it('GET /healthz answers 200 {status:"ok", node}', async () => {
        const r = await httpGet(`${main.httpUrl}/healthz`);
        expect(r.status).toBe(200);
        expect(JSON.parse(r.text)).toEqual({ status: 'ok', node: main.nodeId });
      });

      it('GET /metrics exposes im_ metrics: connections, frames, committed messages, commit batch histogram', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const a = await on(main, alice);
        await send(a, { to: bob }, 'count me', 'c1');
        const r = await httpGet(`${main.httpUrl}/metrics`);
        expect(r.status).toBe(200);
        const value = (name: string): number => {
          const line = r.text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
          if (!line) throw new Error(`metric ${name} missing from /metrics:\n${r.text.slice(0, 2000)}`);
          return Number(line.split(' ').pop());
        };
        expect(value('im_connections')).toBeGreaterThanOrEqual(1);
        expect(value('im_messages_committed_total')).toBeGreaterThanOrEqual(1);
        expect(value('im_commit_batch_size_count')).toBeGreaterThanOrEqual(1);
        expect(value('im_commit_batch_size_sum')).toBeGreaterThanOrEqual(value('im_commit_batch_size_count'));
        expect(r.text).toMatch(/^im_commit_batch_size_bucket\{le="1"\} \d+$/m);
        expect(r.text).toMatch(/^im_frames_in_total\{t="send"\} [1-9]\d*$/m);
        expect(value('im_frames_out_total')).toBeGreaterThanOrEqual(1);
      });
    });

    // ------------------------------------------------------------------------------------------
    describe('durability and lifecycle', () => {
      it('kill -9 right after `sent` loses nothing: after restart every sent message is stored once, in seq order, gapless', async () => {
        const senders = Array.from({ length: 3 }, (_, i) => uid(`s${i}`));
        const reader = uid('reader');
        const cs = await Promise.all(senders.map((s) => on(durable, s)));
        const g = await createGroup(cs[0], uid('g'), [...senders.slice(1), reader]);
        const perSender = 60;
        const sent: Sent[] = [];
        const attempted: Array<{ user: string; i: number; target: { to: string } | { conv: string }; cmid: string }> = [];
        let resolveEnough!: () => void;
        const enough = new Promise<void>((r) => { resolveEnough = r; });
        const threshold = Math.floor((senders.length * perSender) / 2);
        const all = cs.flatMap((c, i) =>
          Array.from({ length: perSender }, (_, k) => {
            const target = k % 2 ? { conv: g } : { to: reader };
            const cmid = `k${i}-${k}`;
            attempted.push({ user: senders[i], i, target, cmid });
            return c.request({ t: 'send', ...target, cmid, body: { i, k } }, 15_000).then(
              (f) => {
                if (f.t === 'sent') {
                  sent.push(f as unknown as Sent);
                  if (sent.length >= threshold) resolveEnough();
                }
              },
              () => undefined, // the node died before answering
            );
          }),
        );
        await Promise.race([enough, Promise.all(all)]);
        await durable.kill();
        await Promise.all(all);
        expect(sent.length).toBeGreaterThanOrEqual(threshold);
        await durable.restart();

        // The reader (never logged in) gets every stored message on login, per conversation in seq order, once.
        const r = await on(durable, reader);
        const convs = [g, ...senders.map((s) => dm(s, reader))];
        const stored = new Map<string, Frame[]>();
        for (const conv of convs) {
          const msgs = await syncAll(r, conv);
          expect(msgs.map((m) => m.seq), conv).toEqual(msgs.map((_, i) => i + 1));
          expect(new Set(msgs.map((m) => `${m.from}/${m.cmid}`)).size).toBe(msgs.length);
          stored.set(conv, msgs);
        }
        for (const s of sent) {
          const m = stored.get(s.conv)!.find((x) => x.seq === s.seq);
          expect(m, `sent ${JSON.stringify(s)} is missing after kill -9`).toBeDefined();
          expect(m).toMatchObject({ mid: s.mid, cmid: s.cmid });
        }
        const total = [...stored.values()].reduce((n, l) => n + l.length, 0);
        const pushed = await r.collect(isMsg(), total, 10_000);
        for (const conv of convs) {
          expect(pushed.filter((m) => m.conv === conv).map((m) => m.seq)).toEqual(stored.get(conv)!.map((m) => m.seq));
        }

        // Clients resend what got no `sent` with the same cmid: every attempted message ends up stored exactly once.
        const cs2 = await Promise.all(senders.map((s) => on(durable, s, 'again')));
        const sentKeys = new Set(sent.map((s) => `${s.conv}/${s.cmid}`));
        for (const at of attempted) {
          const conv = 'conv' in at.target ? at.target.conv : dm(at.user, reader);
          const again = await send(cs2[at.i], at.target, { resent: true }, at.cmid);
          if (sentKeys.has(`${conv}/${at.cmid}`)) {
            const orig = sent.find((s) => s.conv === conv && s.cmid === at.cmid)!;
            expect(again).toMatchObject({ seq: orig.seq, mid: orig.mid });
          }
        }
        let grand = 0;
        for (const conv of convs) {
          const msgs = await syncAll(r, conv);
          expect(msgs.map((m) => m.seq)).toEqual(msgs.map((_, i) => i + 1));
          expect(new Set(msgs.map((m) => `${m.from}/${m.cmid}`)).size).toBe(msgs.length);
          grand += msgs.length;
        }
        expect(grand).toBe(senders.length * perSender);
      });

      it('SIGTERM: in-flight commits get `sent`, every socket is kicked "shutdown" and closed, exit 0, and every sent message is stored', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const a = await on(durable, alice);
        const b = await on(durable, bob);
        const idle = await raw(durable); // not logged in: closed too
        const n = 60;
        const sent: Sent[] = [];
        let resolveSome!: () => void;
        const some = new Promise<void>((r) => { resolveSome = r; });
        const all = Array.from({ length: n }, (_, i) =>
          a.request({ t: 'send', to: bob, cmid: `t${i}`, body: i }, 15_000).then(
            (f) => {
              if (f.t === 'sent') sent.push(f as unknown as Sent);
              if (sent.length >= 5) resolveSome();
            },
            () => undefined,
          ),
        );
        await Promise.race([some, Promise.all(all)]);
        const code = await durable.stop();
        expect(code).toBe(0);
        await Promise.all(all);
        for (const c of [a, b]) {
          await closedWithin(c, 3_000);
          const kicked = c.received.filter((f) => f.t === 'kicked');
          expect(kicked).toEqual([{ t: 'kicked', reason: 'shutdown' }]);
          // Nothing after the kick.
          expect(c.received[c.received.length - 1]).toEqual({ t: 'kicked', reason: 'shutdown' });
        }
        await closedWithin(idle, 3_000);
        expect(sent.length).toBeGreaterThanOrEqual(5);

        await durable.restart();
        const r = await on(durable, bob, 'later');
        const stored = await syncAll(r, dm(alice, bob));
        expect(stored.map((m) => m.seq)).toEqual(stored.map((_, i) => i + 1));
        for (const s of sent) expect(stored[s.seq - 1], JSON.stringify(s)).toMatchObject({ mid: s.mid, cmid: s.cmid });
        // Messages that were live-pushed to bob before the kick are stored as well.
        for (const m of b.received.filter(isMsg())) expect(stored[(m.seq as number) - 1]).toMatchObject({ mid: m.mid });
      });
    });
  });
}
