/**
 * Load-generator worker process (forked by the coordinator). Opens many lean `ws` sockets
 * (no permessage-deflate, no UTF-8 validation), logs them in with HS256 JWTs, then runs the
 * phases the coordinator asks for and sends back counters and encoded HDR histograms.
 *
 * Latency is measured from the *intended* send time of an open-loop schedule (no coordinated
 * omission): send→`sent` at the sender and send→`msg` at the recipient (body.ts is the
 * intended wall-clock send time, so this also works across worker processes).
 *
 * Codec `xmpp` (ejabberd, pairs only): XMPP over WebSocket with XEP-0198 acks instead of the
 * project's frames (connectXmpp / onXmpp below, templates and classifier in xmpp.ts).
 */
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { SignJWT } from 'jose';
import WebSocket from 'ws';
import { codecFor, dmConv, groupConv, type ClientFrame, type Codec, type RequestFrame, type ServerFrame } from './codec.ts';
import { encode, newHistogram, recordUs, type Histogram } from './hist.ts';
import { parseXmpp, xmppA, xmppAuthPlain, xmppBind, xmppMessage, xmppOpen, XMPP_ENABLE, XMPP_PRESENCE, XMPP_R, XMPP_SUBPROTOCOL, type XmppConnState, type XmppIn } from './xmpp.ts';
import type { ConnSpec, FromWorker, GroupMsg, PhaseMsg, PhaseResultMsg, PrepareMsg, SetupMsg, StormMsg, ToWorker } from './types.ts';
import { setTimeout as sleep } from 'node:timers/promises';

const wall = (): number => performance.timeOrigin + performance.now();

function post(msg: FromWorker): void {
  process.send?.(msg);
}

interface Conn {
  spec: ConnSpec;
  ws: WebSocket;
  open: boolean;
  /** conv → highest seq received and not yet acked. */
  toAck: Map<string, number>;
  nextPingAt: number;
  /** reconnect storm hooks, set before the socket opens (pushes follow login_ok in the same chunk). */
  onMsg?: (f: ServerFrame) => void;
  onLoginOk?: () => void;
  /** codec `xmpp`: XEP-0198 counters and the partner's JID. */
  xmpp?: XmppConnState;
}

interface ConnectOpts {
  loginTimeoutMs?: number;
  onMsg?: (f: ServerFrame) => void;
  onLoginOk?: () => void;
}

interface Waiter {
  resolve: (f: ServerFrame) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

let setup: SetupMsg | null = null;
let codec: Codec;
const conns: Conn[] = [];
/** rid → waiter, for request/answer frames outside phases (login, group_create). */
const waiters = new Map<string, Waiter>();
let ridCounter = 0;
let heartbeatMs = 30000;

// ---- phase state ----
let phase: PhaseMsg | null = null;
/** rid → intended send time (performance.now() ms). */
const pending = new Map<string, number>();
let sentHist: Histogram = newHistogram();
let deliveryHist: Histogram = newHistogram();
let pongHist: Histogram = newHistogram();
const pingSent = new Map<string, number>();
let attempted = 0;
let sentOk = 0;
let delivered = 0;
let errors: Record<string, number> = {};
let fanoutStats = new Map<string, [number, number]>();
let lastDeliveryAt = 0;

function countError(code: string): void {
  errors[code] = (errors[code] ?? 0) + 1;
}

function nextRid(): string {
  return `w${setup?.workerIndex ?? 0}-${++ridCounter}`;
}

function sendFrame(c: Conn, frame: ClientFrame): boolean {
  if (!c.open) return false;
  c.ws.send(codec.encode(frame));
  return true;
}

function request(c: Conn, frame: RequestFrame, timeoutMs: number): Promise<ServerFrame> {
  const rid = nextRid();
  return new Promise<ServerFrame>((resolve, reject) => {
    const timer = setTimeout(() => {
      waiters.delete(rid);
      reject(new Error('timeout'));
    }, timeoutMs);
    waiters.set(rid, { resolve, reject, timer });
    if (!sendFrame(c, { ...frame, rid })) {
      clearTimeout(timer);
      waiters.delete(rid);
      reject(new Error('closed'));
    }
  });
}

function onFrame(c: Conn, f: ServerFrame): void {
  switch (f.t) {
    case 'sent': {
      const rid = f.rid;
      if (rid === undefined) return;
      const t0 = pending.get(rid);
      if (t0 !== undefined) {
        pending.delete(rid);
        sentOk++;
        recordUs(sentHist, (performance.now() - t0) * 1000);
      } else {
        resolveWaiter(f);
      }
      return;
    }
    case 'msg': {
      if (c.onMsg) {
        c.onMsg(f);
        return;
      }
      if (f.conv !== undefined && typeof f.seq === 'number') {
        const prev = c.toAck.get(f.conv);
        if (prev === undefined || f.seq > prev) c.toAck.set(f.conv, f.seq);
      }
      const ts = f.body?.ts;
      // Messages of an earlier phase (late deliveries after its grace period) are ignored.
      if (phase && typeof ts === 'number' && ts >= phase.startAt - 1) {
        const now = wall();
        const latUs = (now - ts) * 1000;
        delivered++;
        lastDeliveryAt = now;
        recordUs(deliveryHist, latUs);
        if (phase.kind === 'fanout' && f.cmid !== undefined) {
          const s = fanoutStats.get(f.cmid);
          if (s) {
            s[0]++;
            if (latUs > s[1]) s[1] = latUs;
          } else {
            fanoutStats.set(f.cmid, [1, latUs]);
          }
        }
      }
      return;
    }
    case 'pong': {
      if (f.rid !== undefined) {
        const t0 = pingSent.get(f.rid);
        if (t0 !== undefined) {
          pingSent.delete(f.rid);
          recordUs(pongHist, (performance.now() - t0) * 1000);
        }
      }
      return;
    }
    case 'error': {
      const rid = f.rid;
      if (rid !== undefined && pending.delete(rid)) {
        countError(f.code ?? 'unknown');
        return;
      }
      if (rid !== undefined && waiters.has(rid)) {
        resolveWaiter(f);
        return;
      }
      countError(f.code ?? 'unknown');
      return;
    }
    case 'kicked':
      countError(`kicked_${String((f as { reason?: unknown }).reason)}`);
      return;
    default:
      if (f.t === 'login_ok') c.onLoginOk?.();
      resolveWaiter(f);
  }
}

function resolveWaiter(f: ServerFrame): void {
  if (f.rid === undefined) return;
  const w = waiters.get(f.rid);
  if (!w) return;
  waiters.delete(f.rid);
  clearTimeout(w.timer);
  w.resolve(f);
}

async function token(user: string, secret: Uint8Array): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(user)
    .setIssuedAt()
    .setExpirationTime('2h')
    .sign(secret);
}

function sourceAddr(s: SetupMsg, index: number): string | undefined {
  // One address: let connect() pick the port. An explicit bind() allocates ports without
  // knowing the destination, so thousands of TIME_WAIT ports from an earlier scenario make it
  // fail (and starve the next server's port), while connect() may share them (tcp_tw_reuse).
  if (s.sourceAddrs.length <= 1) return undefined;
  const i = Math.floor(index / Math.max(1, s.connsPerAddr)) % s.sourceAddrs.length;
  return s.sourceAddrs[i];
}

function connect(s: SetupMsg, spec: ConnSpec, tok: string, opts: ConnectOpts = {}): Promise<Conn> {
  const loginTimeoutMs = opts.loginTimeoutMs ?? 15000;
  if (s.codec === 'xmpp') return connectXmpp(s, spec, loginTimeoutMs);
  const url = (s.urls && s.urls.length > 0 ? s.urls[(spec.node ?? 0) % s.urls.length] : undefined) ?? s.url;
  return new Promise<Conn>((resolve, reject) => {
    const ws = new WebSocket(codec.url(url), {
      perMessageDeflate: false,
      skipUTF8Validation: true,
      handshakeTimeout: 15000,
      localAddress: sourceAddr(s, spec.index),
    });
    const c: Conn = { spec, ws, open: false, toAck: new Map(), nextPingAt: Number.POSITIVE_INFINITY, onMsg: opts.onMsg, onLoginOk: opts.onLoginOk };
    let settled = false;
    const fail = (reason: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ws.terminate();
      reject(new Error(reason));
    };
    const timer = setTimeout(() => fail('login_timeout'), loginTimeoutMs + 5000);
    const login = (): void => {
      c.open = true;
      request(c, { t: 'login', token: tok, device: 'bench' }, loginTimeoutMs).then(
        (f) => {
          if (f.t !== 'login_ok') return fail(f.code ?? f.t);
          if (typeof f.heartbeat_ms === 'number' && f.heartbeat_ms > 0) heartbeatMs = f.heartbeat_ms;
          settled = true;
          clearTimeout(timer);
          resolve(c);
        },
        (e: Error) => fail(`login_${e.message}`),
      );
    };
    const reply = (raw: string): void => {
      ws.send(raw);
    };
    ws.on('open', () => {
      if (codec.readyOnOpen) login();
    });
    ws.on('message', (data: WebSocket.RawData) => {
      const d = codec.decode(data.toString(), reply);
      if (d.kind === 'frame') onFrame(c, d.frame);
      else if (d.kind === 'ready') login();
      else if (d.kind === 'fail') {
        if (!settled) fail(d.reason);
        else countError(d.reason);
      }
    });
    ws.on('error', (e: Error) => {
      // Errno code when there is one; a refused upgrade says which HTTP status it got.
      const http = /Unexpected server response: (\d+)/.exec(e.message)?.[1];
      if (!settled) fail(`connect_${(e as NodeJS.ErrnoException).code ?? (http ? `http_${http}` : e.message.slice(0, 60) || 'error')}`);
    });
    ws.on('close', () => {
      if (c.open && settled) countError('closed');
      c.open = false;
      if (!settled) fail('closed_before_login');
    });
  });
}

/**
 * XMPP over WebSocket (RFC 7395): open, SASL PLAIN, stream restart, bind, XEP-0198 enable
 * (no resumption), then initial presence (so messages to the bare JID reach this resource).
 * Resolves once stream management is enabled; from then on frames go to onXmpp.
 */
function connectXmpp(s: SetupMsg, spec: ConnSpec, loginTimeoutMs: number): Promise<Conn> {
  const xs = s.xmpp;
  if (!xs) return Promise.reject(new Error('xmpp_settings_missing'));
  const url = (s.urls && s.urls.length > 0 ? s.urls[(spec.node ?? 0) % s.urls.length] : undefined) ?? s.url;
  return new Promise<Conn>((resolve, reject) => {
    const ws = new WebSocket(url, XMPP_SUBPROTOCOL, {
      perMessageDeflate: false,
      skipUTF8Validation: true,
      handshakeTimeout: 15000,
      localAddress: sourceAddr(s, spec.index),
    });
    const x: XmppConnState = { to: `${spec.peer ?? spec.user}@${xs.domain}`, out: 0, in: 0, unacked: [], head: 0 };
    const c: Conn = { spec, ws, open: false, toAck: new Map(), nextPingAt: Number.POSITIVE_INFINITY, xmpp: x };
    let settled = false;
    let stage: 'auth' | 'bind' | 'enable' = 'auth';
    const fail = (reason: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ws.terminate();
      reject(new Error(reason));
    };
    const timer = setTimeout(() => fail('login_timeout'), loginTimeoutMs);
    ws.on('open', () => ws.send(xmppOpen(xs.domain)));
    ws.on('message', (data: WebSocket.RawData) => {
      const st = parseXmpp(data.toString());
      if (settled) {
        if (c.open) onXmpp(c, st);
        return;
      }
      switch (st.kind) {
        case 'features':
          if (stage === 'auth') {
            if (!st.mechanisms) return fail('xmpp_no_plain');
            ws.send(xmppAuthPlain(spec.user, xs.password));
          } else if (stage === 'bind') {
            if (!st.bind || !st.sm) return fail(st.bind ? 'xmpp_no_sm' : 'xmpp_no_bind');
            ws.send(xmppBind('bind', 'bench'));
          }
          return;
        case 'success':
          stage = 'bind';
          ws.send(xmppOpen(xs.domain));
          return;
        case 'failure':
          return fail(`login_${st.reason}`);
        case 'iq':
          if (st.id !== 'bind') return;
          if (st.type !== 'result') return fail(`xmpp_bind_${st.type}`);
          stage = 'enable';
          ws.send(XMPP_ENABLE);
          return;
        case 'enabled':
          // Both sides count stanzas from here (XEP-0198 §4): the presence is our stanza 1.
          settled = true;
          clearTimeout(timer);
          c.open = true;
          x.out++;
          ws.send(XMPP_PRESENCE);
          resolve(c);
          return;
        case 'stream_error':
          return fail(`xmpp_${st.reason}`);
        default:
          return;
      }
    });
    ws.on('error', (e: Error) => {
      const http = /Unexpected server response: (\d+)/.exec(e.message)?.[1];
      if (!settled) fail(`connect_${(e as NodeJS.ErrnoException).code ?? (http ? `http_${http}` : e.message.slice(0, 60) || 'error')}`);
    });
    ws.on('close', () => {
      if (c.open && settled) countError('closed');
      c.open = false;
      if (!settled) fail('closed_before_login');
    });
  });
}

/** One XMPP frame after login: deliveries, the server's acks of our sends, its ack requests. */
function onXmpp(c: Conn, st: XmppIn): void {
  const x = c.xmpp;
  if (!x) return;
  switch (st.kind) {
    case 'message': {
      x.in++;
      if (st.error) {
        countError('xmpp_message_error');
        return;
      }
      const ts = st.ts;
      if (phase && ts !== null && ts >= phase.startAt - 1) {
        const now = wall();
        delivered++;
        lastDeliveryAt = now;
        recordUs(deliveryHist, (now - ts) * 1000);
      }
      return;
    }
    case 'presence':
    case 'iq':
      x.in++;
      return;
    case 'r':
      // The recipient's ack (XEP-0198): everything received so far, answered at once.
      c.ws.send(xmppA(x.in));
      return;
    case 'a': {
      // The server has handled our stanzas 1..h: each message among them is `sent`.
      while (x.head < x.unacked.length) {
        const e = x.unacked[x.head];
        if (!e || e[0] > st.h) break;
        x.head++;
        const t0 = pending.get(e[1]);
        if (t0 !== undefined) {
          pending.delete(e[1]);
          sentOk++;
          recordUs(sentHist, (performance.now() - t0) * 1000);
        }
      }
      if (x.head > 4096 && x.head * 2 > x.unacked.length) {
        x.unacked = x.unacked.slice(x.head);
        x.head = 0;
      }
      return;
    }
    case 'stream_error':
      countError(`xmpp_${st.reason}`);
      return;
    case 'failure':
      countError(`xmpp_failure_${st.reason}`);
      return;
    default:
      return;
  }
}

async function doSetup(s: SetupMsg): Promise<void> {
  setup = s;
  codec = codecFor(s.codec);
  const secret = new TextEncoder().encode(s.jwtSecret);
  // Tokens are signed before the clock starts: the connect time measures the server.
  // XMPP logs in with SASL PLAIN (the users' password in s.xmpp), no token.
  const tokens = s.codec === 'xmpp' ? [] : await Promise.all(s.conns.map((c) => token(c.user, secret)));
  const t0 = performance.now();
  const setupErrors: Record<string, number> = {};
  let failed = 0;
  let next = 0;
  const runOne = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      const spec = s.conns[i];
      if (!spec) return;
      try {
        conns.push(await connect(s, spec, tokens[i] ?? ''));
      } catch (e) {
        failed++;
        const code = e instanceof Error ? e.message : 'error';
        setupErrors[code] = (setupErrors[code] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, s.connectConcurrency) }, runOne));
  // Only errors from the connect phase are reported here; phases count their own.
  errors = {};
  startBackground();
  post({
    type: 'setupDone',
    workerIndex: s.workerIndex,
    connected: conns.length,
    failed,
    errors: setupErrors,
    elapsedMs: Math.round(performance.now() - t0),
    heartbeatMs,
  });
}

/** Pings (heartbeat) and coalesced acks for every socket, spread over time. */
function startBackground(): void {
  const s = setup;
  // XMPP: acks answer the server's <r/> at once (onXmpp); ejabberd pings the WebSocket itself.
  if (!s || s.codec === 'xmpp') return;
  const every = s.pingEveryMs > 0 ? s.pingEveryMs : heartbeatMs;
  const now = performance.now();
  conns.forEach((c, i) => {
    c.nextPingAt = now + (every * (i + 1)) / conns.length;
  });
  const tickMs = Math.max(10, Math.min(s.ackEveryMs, 250));
  let lastAck = now;
  setInterval(() => {
    const t = performance.now();
    const doAck = t - lastAck >= s.ackEveryMs;
    if (doAck) lastAck = t;
    for (const c of conns) {
      if (!c.open) continue;
      if (t >= c.nextPingAt) {
        c.nextPingAt = t + every;
        const rid = nextRid();
        pingSent.set(rid, t);
        sendFrame(c, { t: 'ping', rid });
      }
      if (doAck && c.toAck.size > 0) {
        for (const [conv, seq] of c.toAck) sendFrame(c, { t: 'ack', conv, seq });
        c.toAck.clear();
      }
    }
  }, tickMs).unref();
}

async function doGroup(g: GroupMsg): Promise<void> {
  const owner = conns[0];
  const conv = groupConv(g.group);
  if (!owner) {
    post({ type: 'groupDone', ok: false, conv, error: 'no connection' });
    return;
  }
  try {
    const others = g.members.filter((m) => m !== owner.spec.user);
    const chunk = 200;
    const created = await request(owner, { t: 'group_create', group: g.group, members: others.slice(0, chunk) }, 30000);
    if (created.t !== 'ok') throw new Error(`group_create: ${created.code ?? created.t}`);
    for (let i = chunk; i < others.length; i += chunk) {
      const added = await request(owner, { t: 'group_add', conv, members: others.slice(i, i + chunk) }, 30000);
      if (added.t !== 'ok') throw new Error(`group_add: ${added.code ?? added.t}`);
    }
    post({ type: 'groupDone', ok: true, conv });
  } catch (e) {
    post({ type: 'groupDone', ok: false, conv, error: e instanceof Error ? e.message : String(e) });
  }
}

/** Wait before a send refused as `unavailable`/`rate_limited` is written again. */
const RETRY_MS = 50;

/** reconnect, step 1: senders write `perPeer` messages to each offline recipient (closed loop, bounded). */
async function doPrepare(p: PrepareMsg): Promise<void> {
  const s = setup;
  if (!s) return;
  const t0 = performance.now();
  const deadline = t0 + p.timeoutMs;
  const stored = new Map<string, number>();
  const errs: Record<string, number> = {};
  let attemptedN = 0;
  let okN = 0;
  let retriedN = 0;
  const pad = 'x'.repeat(Math.max(0, p.bodyBytes - 20));
  await Promise.all(
    conns
      .filter((c) => (c.spec.peers?.length ?? 0) > 0)
      .map(async (c) => {
        const jobs: [string, number][] = [];
        for (const peer of c.spec.peers ?? []) {
          stored.set(peer, 0);
          for (let k = 0; k < p.perPeer; k++) jobs.push([peer, k]);
        }
        let next = 0;
        const lane = async (): Promise<void> => {
          for (;;) {
            const job = jobs[next++];
            if (!job || performance.now() > deadline) return;
            const [peer, k] = job;
            attemptedN++;
            try {
              for (;;) {
                const f = await request(c, { t: 'send', to: peer, cmid: `off-${peer}-${k}`, body: { ts: wall(), pad } }, Math.max(1000, deadline - performance.now()));
                if (f.t === 'sent') {
                  okN++;
                  stored.set(peer, (stored.get(peer) ?? 0) + 1);
                } else if ((f.code === 'unavailable' || f.code === 'rate_limited') && performance.now() + RETRY_MS < deadline) {
                  // Shed by a node past its capacity: retryable, as a client's outbox would.
                  retriedN++;
                  await sleep(RETRY_MS);
                  continue;
                } else errs[f.code ?? f.t] = (errs[f.code ?? f.t] ?? 0) + 1;
                break;
              }
            } catch (e) {
              const code = e instanceof Error ? e.message : 'error';
              errs[code] = (errs[code] ?? 0) + 1;
            }
          }
        };
        await Promise.all(Array.from({ length: Math.max(1, p.window) }, lane));
      }),
  );
  post({
    type: 'prepared',
    workerIndex: s.workerIndex,
    attempted: attemptedN,
    sentOk: okN,
    retried: retriedN,
    errors: errs,
    elapsedMs: Math.round(performance.now() - t0),
    short: [...stored].filter(([, n]) => n < p.perPeer),
  });
}

interface StormClient {
  spec: ConnSpec;
  conv: string;
  seqs: Set<number>;
  maxSeq: number;
  conn: Conn | null;
  loggedInAt: number;
  lastProgress: number;
  done: boolean;
  syncing: boolean;
  usedSync: boolean;
}

/**
 * reconnect, step 2: every client connects at `startAt` (all at once unless `concurrency`),
 * logs in and waits until it holds `expected` distinct seqs of its conversation with `peer`:
 * from the login redelivery, or from `sync` when the redelivery stalls for `syncAfterMs`.
 */
async function doStorm(m: StormMsg): Promise<void> {
  const s = setup;
  if (!s) return;
  const secret = new TextEncoder().encode(s.jwtSecret);
  const tokens = await Promise.all(m.conns.map((c) => token(c.user, secret)));
  const loginH = newHistogram();
  const syncedH = newHistogram();
  const errs: Record<string, number> = {};
  const count = (code: string): void => {
    errs[code] = (errs[code] ?? 0) + 1;
  };
  let loggedIn = 0;
  let synced = 0;
  let usedSync = 0;
  let pushed = 0;
  let duplicates = 0;
  let fromSync = 0;
  let lastLoginMs = 0;
  let lastSyncedMs = 0;
  const clients: StormClient[] = m.conns.map((spec) => {
    const a = spec.user;
    const b = spec.peer ?? '';
    return { spec, conv: dmConv(a, b), seqs: new Set(), maxSeq: 0, conn: null, loggedInAt: 0, lastProgress: 0, done: false, syncing: false, usedSync: false };
  });
  const startPerf = performance.now() + (m.startAt - wall());
  const deadline = startPerf + m.timeoutMs;
  let unresolved = clients.length;
  let allDone: () => void = () => undefined;
  const finished = new Promise<void>((r) => {
    allDone = r;
  });
  const settle = (cl: StormClient): void => {
    if (cl.done) return;
    cl.done = true;
    if (--unresolved === 0) allDone();
  };
  const take = (cl: StormClient, seq: number, viaSync: boolean): void => {
    if (cl.seqs.has(seq)) {
      duplicates++;
      return;
    }
    cl.seqs.add(seq);
    if (seq > cl.maxSeq) cl.maxSeq = seq;
    cl.lastProgress = performance.now();
    if (viaSync) fromSync++;
    if (!cl.done && cl.seqs.size >= m.expected) {
      const ms = performance.now() - startPerf;
      recordUs(syncedH, ms * 1000);
      if (ms > lastSyncedMs) lastSyncedMs = ms;
      synced++;
      if (cl.usedSync) usedSync++;
      // A real client acks what it holds; unacked pushes would be re-pushed after IM_ACK_TIMEOUT_MS.
      if (cl.conn) sendFrame(cl.conn, { t: 'ack', conv: cl.conv, seq: cl.maxSeq });
      settle(cl);
    }
  };
  const doSync = async (cl: StormClient): Promise<void> => {
    const c = cl.conn;
    if (!c) return;
    cl.syncing = true;
    cl.usedSync = true;
    try {
      for (let i = 0; i < 50 && !cl.done && performance.now() < deadline; i++) {
        let after = 0;
        while (cl.seqs.has(after + 1)) after++;
        const f = await request(c, { t: 'sync', conv: cl.conv, after, limit: 200 }, Math.max(1000, deadline - performance.now()));
        if (f.t !== 'batch') {
          count(`sync_${f.code ?? f.t}`);
          return;
        }
        for (const msg of f.msgs ?? []) if (typeof msg.seq === 'number') take(cl, msg.seq, true);
        if (!f.more) break;
      }
    } catch (e) {
      count(`sync_${e instanceof Error ? e.message : 'error'}`);
    } finally {
      cl.syncing = false;
      cl.lastProgress = performance.now();
    }
  };
  const cpu0 = process.cpuUsage();
  await sleep(Math.max(0, startPerf - performance.now()));
  const w0 = performance.now();
  const runOne = async (cl: StormClient, i: number): Promise<void> => {
    if (performance.now() > deadline) {
      count('not_started');
      settle(cl);
      return;
    }
    try {
      cl.conn = await connect(s, cl.spec, tokens[i] ?? '', {
        loginTimeoutMs: Math.max(1000, deadline - performance.now()),
        onMsg: (f) => {
          if (f.t === 'msg' && f.conv === cl.conv && typeof f.seq === 'number') {
            pushed++;
            take(cl, f.seq, false);
          }
        },
        onLoginOk: () => {
          const ms = performance.now() - startPerf;
          cl.loggedInAt = performance.now();
          cl.lastProgress = cl.loggedInAt;
          loggedIn++;
          recordUs(loginH, ms * 1000);
          if (ms > lastLoginMs) lastLoginMs = ms;
        },
      });
      // Pushes before the promise settled already went through onMsg; `cl.conn` is set now for acks.
      if (cl.done) sendFrame(cl.conn, { t: 'ack', conv: cl.conv, seq: cl.maxSeq });
    } catch (e) {
      count(e instanceof Error ? e.message : 'error');
      settle(cl);
    }
  };
  if (m.concurrency > 0) {
    let next = 0;
    const lane = async (): Promise<void> => {
      for (;;) {
        const i = next++;
        const cl = clients[i];
        if (!cl) return;
        await runOne(cl, i);
      }
    };
    void Promise.all(Array.from({ length: m.concurrency }, lane));
  } else {
    clients.forEach((cl, i) => void runOne(cl, i));
  }
  // One watchdog for all clients: stalled redelivery → sync; the deadline ends the storm.
  const watchdog = setInterval(() => {
    const now = performance.now();
    if (now > deadline) {
      for (const cl of clients) {
        if (!cl.done) {
          count(cl.conn ? 'incomplete' : 'not_logged_in');
          settle(cl);
        }
      }
      return;
    }
    for (const cl of clients) {
      if (!cl.done && cl.conn && !cl.syncing && cl.loggedInAt > 0 && now - cl.lastProgress > m.syncAfterMs) void doSync(cl);
    }
  }, 100);
  if (clients.length === 0) allDone();
  await finished;
  clearInterval(watchdog);
  const cpu = process.cpuUsage(cpu0);
  post({
    type: 'stormResult',
    workerIndex: s.workerIndex,
    clients: clients.length,
    loggedIn,
    synced,
    usedSync,
    pushed,
    duplicates,
    fromSync,
    errors: errs,
    loginHist: encode(loginH),
    syncedHist: encode(syncedH),
    lastLoginMs: Math.round(lastLoginMs * 10) / 10,
    lastSyncedMs: Math.round(lastSyncedMs * 10) / 10,
    cpuMs: Math.round((cpu.user + cpu.system) / 1000),
    wallMs: Math.round(performance.now() - w0),
  });
  // The storm's sockets are done: close them so they do not weigh on what runs next.
  for (const cl of clients) {
    if (cl.conn) {
      cl.conn.open = false;
      hardClose(cl.conn.ws);
    }
  }
}

async function doPhase(p: PhaseMsg): Promise<void> {
  const s = setup;
  if (!s) return;
  // Reset per-phase state; late answers of the previous phase are ignored.
  phase = p;
  pending.clear();
  sentHist = newHistogram();
  deliveryHist = newHistogram();
  pongHist = newHistogram();
  pingSent.clear();
  attempted = 0;
  sentOk = 0;
  delivered = 0;
  errors = {};
  fanoutStats = new Map();
  lastDeliveryAt = 0;

  const senders = p.kind === 'pairs' ? conns.filter((c) => c.spec.peer !== undefined) : p.kind === 'fanout' ? conns.slice(0, 1) : [];
  const cpu0 = process.cpuUsage();
  const startPerf = performance.now() + (p.startAt - wall());
  await sleep(Math.max(0, startPerf - performance.now()));
  const w0 = performance.now();
  let maxLag = 0;
  const pad = 'x'.repeat(Math.max(0, p.bodyBytes - 20));

  if (p.rate > 0 && senders.length > 0) {
    const total = Math.floor((p.rate * p.durationMs) / 1000);
    const intervalMs = 1000 / p.rate;
    let k = 0;
    let rr = 0;
    await new Promise<void>((resolve) => {
      const tick = (): void => {
        const now = performance.now();
        const due = Math.min(total, Math.floor((now - startPerf) / intervalMs) + 1);
        if (k < due) {
          const lag = now - (startPerf + k * intervalMs);
          if (lag > maxLag) maxLag = lag;
        }
        while (k < due) {
          const intended = startPerf + k * intervalMs;
          k++;
          const c = senders[rr];
          rr = (rr + 1) % senders.length;
          if (!c) continue;
          attempted++;
          if (!c.open) {
            countError('closed');
            continue;
          }
          const rid = nextRid();
          pending.set(rid, intended);
          const x = c.xmpp;
          if (x) {
            // The message, then <r/>: the server's <a h/> for it stands for `sent`.
            x.out++;
            x.unacked.push([x.out, rid]);
            c.ws.send(xmppMessage(x.to, rid, performance.timeOrigin + intended, pad));
            c.ws.send(XMPP_R);
            continue;
          }
          const body = { ts: performance.timeOrigin + intended, pad };
          const frame: ClientFrame = p.kind === 'fanout' ? { t: 'send', rid, conv: p.conv, cmid: rid, body } : { t: 'send', rid, to: c.spec.peer, cmid: rid, body };
          c.ws.send(codec.encode(frame));
        }
        if (k >= total) {
          clearInterval(timer);
          resolve();
        }
      };
      const timer = setInterval(tick, 1);
      tick();
    });
  } else {
    await sleep(Math.max(0, startPerf + p.durationMs - performance.now()));
  }

  // Grace: wait for outstanding answers and deliveries, bounded.
  const graceEnd = performance.now() + p.graceMs;
  while (performance.now() < graceEnd) {
    const answered = pending.size === 0;
    const quiet = lastDeliveryAt === 0 ? performance.now() - w0 > p.durationMs + 300 : wall() - lastDeliveryAt > 300;
    if (p.kind === 'pairs' && answered && delivered >= sentOk) break;
    if (p.kind === 'fanout' && answered && quiet) break;
    if (p.kind === 'idle') break;
    await sleep(20);
  }
  const timeouts = pending.size;
  pending.clear();
  const cpu = process.cpuUsage(cpu0);
  const msg: PhaseResultMsg = {
    type: 'phaseResult',
    workerIndex: s.workerIndex,
    phaseId: p.phaseId,
    attempted,
    sentOk,
    timeouts,
    errors,
    delivered,
    sentHist: encode(sentHist),
    deliveryHist: encode(deliveryHist),
    pongHist: encode(pongHist),
    fanout: [...fanoutStats].map(([cmid, [n, lat]]) => [cmid, n, Math.round(lat)]),
    maxScheduleLagMs: Math.round(maxLag * 10) / 10,
    cpuMs: Math.round((cpu.user + cpu.system) / 1000),
    wallMs: Math.round(performance.now() - w0),
    openSockets: conns.filter((c) => c.open).length,
  };
  phase = null;
  post(msg);
}

/**
 * Teardown close with RST instead of FIN: tens of thousands of bench sockets would otherwise sit
 * in TIME_WAIT for 60 s on the client side and exhaust the loopback port range for whatever runs
 * next (the next storm, the next server's listen port, other processes on the machine).
 */
function hardClose(ws: WebSocket): void {
  // `_socket` is ws's underlying net.Socket (not typed); resetAndDestroy exists since Node 18.3.
  const sock = (ws as unknown as { _socket?: Socket | null })._socket;
  if (sock && typeof sock.resetAndDestroy === 'function' && !sock.destroyed) sock.resetAndDestroy();
  else ws.terminate();
}

function doClose(): void {
  for (const c of conns) {
    c.open = false;
    hardClose(c.ws);
  }
  post({ type: 'closed', workerIndex: setup?.workerIndex ?? -1 });
  setTimeout(() => process.exit(0), 50);
}

process.on('message', (raw: unknown) => {
  const m = raw as ToWorker;
  const run = async (): Promise<void> => {
    switch (m.type) {
      case 'setup':
        return doSetup(m);
      case 'group':
        return doGroup(m);
      case 'phase':
        return doPhase(m);
      case 'prepare':
        return doPrepare(m);
      case 'storm':
        return doStorm(m);
      case 'close':
        return doClose();
    }
  };
  run().catch((e: unknown) => {
    post({ type: 'fatal', workerIndex: setup?.workerIndex ?? -1, message: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  });
});
process.on('disconnect', () => process.exit(0));
