/**
 * Gateway fuzzing against one embedded node: malformed JSON, wrong types in every field of every
 * frame type, oversized and deeply nested frames, binary frames, random bytes, invalid UTF-8 and
 * floods, before and after login — while a normal pair of SDK clients keeps chatting. The pair
 * must not notice (every send answered `sent` and delivered, no reconnect, no resend), the node
 * must stay healthy, and the pair's stored conversation must be exactly what they sent.
 * Seeded: the seed is printed; rerun with IM_FUZZ_SEED=<seed>.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ChatClient, type MsgFrame } from '../../client/index.ts';
import { startChatNode, type ChatNodeHandle } from '../harness/chat-node.ts';
import { login, signTestToken, type Frame } from '../harness/ws-client.ts';
import { prng } from './chaos-runner.ts';
import { setTimeout as sleep } from 'node:timers/promises';

const SEED = Number(process.env.IM_FUZZ_SEED ?? Date.now() % 1_000_000);
const MAX_FRAME = 16 * 1024; // small limit: oversized frames stay cheap to build and send
const WORKERS = 3;
const ITERATIONS = 1500; // per worker
const ERROR_CODES = new Set(['bad_request', 'unauthorized', 'forbidden', 'not_found', 'conflict', 'rate_limited', 'too_large', 'unavailable', 'internal']);


let node: ChatNodeHandle;

beforeAll(async () => {
  console.log(`fuzz seed ${SEED} (rerun with IM_FUZZ_SEED=${SEED})`);
  node = await startChatNode({ env: { IM_MAX_FRAME_BYTES: String(MAX_FRAME), IM_BAD_FRAME_LIMIT: '20', IM_RATE_MSGS: '50' } });
});

afterAll(async () => {
  await node?.stop();
});

/** Values of every JSON type plus edge cases; none names a real user of this test. */
const WEIRD: readonly unknown[] = [
  null, true, false, 0, -1, 1.5, 1e308, -1e308, 2 ** 53 + 2, -(2 ** 53), '', ' ', 'x'.repeat(300), '\u0000', '💥\u202e',
  '../../etc/passwd', "'; DROP TABLE message; --", [], [1, [2, [3]]], {}, { $gt: '' }, { t: 'send' }, ['fzother', 'fzvictim'], '1', 'NaN',
];

/** One valid-looking frame of every type; targets only fuzzer-owned names or a conversation fuzzers are not in. */
function templates(r: () => number): Array<Record<string, unknown>> {
  const rid = `f${Math.floor(r() * 1e6)}`;
  return [
    { t: 'login', rid, token: 'not.a.jwt', device: 'fz' },
    { t: 'ping', rid },
    { t: 'send', rid, to: 'fzvictim', cmid: rid, body: { x: 1 }, kind: 'text' },
    { t: 'send', rid, conv: 'dm:alice:bob', cmid: rid, body: 'intrude' },
    { t: 'ack', conv: 'dm:alice:bob', seq: 1 },
    { t: 'read', conv: 'dm:alice:bob', seq: 1 },
    { t: 'sync', rid, conv: 'dm:alice:bob', after: 0, limit: 10 },
    { t: 'convs', rid },
    { t: 'recall', rid, conv: 'dm:alice:bob', seq: 1 },
    { t: 'group_create', rid, group: `fz${Math.floor(r() * 50)}`, members: ['fzvictim'] },
    { t: 'group_add', rid, conv: 'g:fz1', members: ['fzother'] },
    { t: 'group_remove', rid, conv: 'g:fz1', members: ['fzother'] },
    { t: 'group_members', rid, conv: 'dm:alice:bob' },
    { t: 'typing', conv: 'dm:alice:bob' },
  ];
}

type Payload = { data: string | Buffer; binary: boolean; what: string };

function generate(r: () => number): Payload {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const text = (data: string, what: string): Payload => ({ data, binary: false, what });
  const kind = Math.floor(r() * 12);
  switch (kind) {
    case 0: { // wrong type (or missing / extra field) in one field of a frame
      const f = { ...pick(templates(r)) };
      const keys = Object.keys(f);
      const key = pick(keys);
      const mode = r();
      if (mode < 0.15) delete f[key];
      else if (mode < 0.25) f[`extra${Math.floor(r() * 3)}`] = pick(WEIRD);
      else f[key] = pick(WEIRD);
      return text(JSON.stringify(f), `wrong type ${String(f.t)}.${key}`);
    }
    case 1: { // malformed JSON: a valid frame cut short or with bytes flipped
      const s = JSON.stringify(pick(templates(r)));
      const cut = s.slice(0, Math.floor(r() * s.length));
      const flipped = s.split('').map((c) => (r() < 0.05 ? pick(['{', '}', '"', ',', ':', '\\', ']']) : c)).join('');
      return text(r() < 0.5 ? cut : flipped, 'malformed JSON');
    }
    case 2: { // non-object JSON
      return text(pick(['null', '1', '"login"', '[]', '[{"t":"ping"}]', 'true', '{}', '{"t":null}', '{"t":1}', '{"t":"nope"}', '{"__proto__":{"t":"ping"}}', '{"t":"ping","t":"send"}']), 'non-frame JSON');
    }
    case 3: { // over the frame limit
      const n = MAX_FRAME + 1 + Math.floor(r() * MAX_FRAME * 3);
      return text(JSON.stringify({ t: 'send', rid: 'big', to: 'fzvictim', cmid: 'big', body: 'y'.repeat(n) }), `huge frame ${n} B`);
    }
    case 4: { // deeply nested JSON inside the limit, as a frame and as a message body
      const depth = 100 + Math.floor(r() * (MAX_FRAME / 2 - 200));
      const open = r() < 0.5 ? '['.repeat(depth) : '{"a":'.repeat(Math.floor(depth / 5));
      const close = open.startsWith('[') ? ']'.repeat(depth) : '}'.repeat(Math.floor(depth / 5));
      const nested = open + close;
      return r() < 0.5
        ? text(nested, `nested ${depth}`)
        : text(`{"t":"send","rid":"deep","to":"fzvictim","cmid":"deep${Math.floor(r() * 1e6)}","body":${nested}}`, `nested body ${depth}`);
    }
    case 5: { // binary frame (random bytes, or a valid frame sent as binary)
      const buf = r() < 0.5 ? randomBytes(r, 1 + Math.floor(r() * 512)) : Buffer.from(JSON.stringify({ t: 'ping', rid: 'bin' }));
      return { data: buf, binary: true, what: 'binary frame' };
    }
    case 6: // random bytes in a text frame (mostly invalid UTF-8)
      return { data: randomBytes(r, 1 + Math.floor(r() * 256)), binary: false, what: 'random bytes as text' };
    case 7: { // invalid UTF-8 inside an otherwise valid frame
      const head = Buffer.from('{"t":"send","rid":"u8","to":"fzvictim","cmid":"u8","body":"');
      const bad = Buffer.from(pick([[0xc3, 0x28], [0xff], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xe2, 0x82]]));
      return { data: Buffer.concat([head, bad, Buffer.from('"}')]), binary: false, what: 'invalid UTF-8' };
    }
    case 8: // empty frame
      return text('', 'empty frame');
    default: { // a plausible frame with random field values
      const f = { ...pick(templates(r)) };
      for (const k of Object.keys(f)) if (k !== 't' && r() < 0.3) f[k] = pick(WEIRD);
      return text(JSON.stringify(f), `random fields ${String(f.t)}`);
    }
  }
}

function randomBytes(r: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}

interface FuzzStats { frames: number; sockets: number; closes: number; codes: Map<string, number>; problems: string[] }

/** One raw socket per round: optionally logged in as a fuzzer, then random frames and floods. */
async function fuzzWorker(id: number, r: () => number, stats: FuzzStats): Promise<void> {
  let i = 0;
  while (i < ITERATIONS) {
    stats.sockets++;
    const ws = new WebSocket(node.wsUrl);
    const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
    ws.on('error', () => undefined);
    ws.on('message', (data, isBinary) => {
      const s = Buffer.isBuffer(data) ? data.toString('utf8') : String(data);
      let f: Frame;
      try {
        f = JSON.parse(s) as Frame;
      } catch {
        stats.problems.push(`server sent non-JSON: ${s.slice(0, 100)}`);
        return;
      }
      if (isBinary || typeof f !== 'object' || f === null || typeof f.t !== 'string') stats.problems.push(`server sent a bad frame: ${s.slice(0, 100)}`);
      if (f.t === 'error') {
        const code = String(f.code);
        stats.codes.set(code, (stats.codes.get(code) ?? 0) + 1);
        if (!ERROR_CODES.has(code)) stats.problems.push(`unknown error code ${code}`);
        if (code === 'internal') stats.problems.push(`internal error: ${s.slice(0, 200)}`);
      }
      if (f.t === 'msg' && String(f.conv).includes('alice')) stats.problems.push(`fuzzer received ${s.slice(0, 200)}`);
      if (f.t === 'batch' && String(f.conv).includes('alice')) stats.problems.push(`fuzzer synced ${s.slice(0, 200)}`);
      if (f.t === 'members' && String(f.conv).includes('alice')) stats.problems.push(`fuzzer listed ${s.slice(0, 200)}`);
    });
    const opened = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), 5000);
      ws.once('open', () => { clearTimeout(t); resolve(true); });
      ws.once('close', () => { clearTimeout(t); resolve(false); });
    });
    if (!opened) { ws.terminate(); i++; continue; }
    const isOpen = (): boolean => ws.readyState === WebSocket.OPEN;
    const send = (p: Payload): void => {
      if (!isOpen()) return;
      ws.send(p.data, { binary: p.binary });
      stats.frames++;
    };
    if (r() < 0.75) {
      // Logged in: most of the protocol surface is behind the login.
      send({ data: JSON.stringify({ t: 'login', rid: 'L', token: await signTestToken(`fz${id}x${Math.floor(r() * 3)}`), device: `d${Math.floor(r() * 3)}` }), binary: false, what: 'login' });
      if (r() < 0.1) {
        // Flood while the login is still being verified.
        for (let k = 0; k < 300; k++) send({ data: '{"t":"ping"}', binary: false, what: 'pre-login flood' });
      }
      await sleep(20);
    }
    const roundLen = 5 + Math.floor(r() * 40);
    for (let k = 0; k < roundLen && i < ITERATIONS && isOpen(); k++, i++) {
      const roll = r();
      if (roll < 0.03) {
        for (let n = 0; n < 200; n++) send({ data: JSON.stringify({ t: 'send', rid: `fl${n}`, to: 'fzvictim', cmid: `fl${id}-${i}-${n}`, body: n }), binary: false, what: 'send flood' });
      } else if (roll < 0.05) {
        for (let n = 0; n < 300; n++) send({ data: JSON.stringify({ t: 'ping', rid: `p${n}` }), binary: false, what: 'ping flood' });
      } else {
        send(generate(r));
      }
      // Pace: let the server answer now and then so the fuzzers do not just fill socket buffers.
      if (k % 10 === 9) await sleep(5);
    }
    await sleep(20);
    if (isOpen()) ws.close(1000, 'fuzz round done');
    else stats.closes++;
    await Promise.race([closed, sleep(3000)]);
    ws.terminate();
  }
}

describe('gateway fuzzing', () => {
  it('answers deeply nested bodies with bad_request, not internal', async () => {
    const { client } = await login(node.wsUrl, 'fzdeep');
    try {
      const frame = (depth: number, cmid: string): string =>
        `{"t":"send","rid":"${cmid}","to":"fzvictim","cmid":"${cmid}","body":${'['.repeat(depth)}${']'.repeat(depth)}}`;
      client.send(frame(500, 'ok500'));
      expect(await client.next((f) => f.rid === 'ok500')).toMatchObject({ t: 'sent' });
      for (const depth of [600, 5000, Math.floor(MAX_FRAME / 2) - 100]) {
        client.send(frame(depth, `deep${depth}`));
        expect(await client.next((f) => f.rid === `deep${depth}`)).toMatchObject({ t: 'error', code: 'bad_request' });
      }
      const obj = `{"t":"send","rid":"obj","to":"fzvictim","cmid":"obj","body":${'{"a":'.repeat(2000)}1${'}'.repeat(2000)}}`;
      client.send(obj);
      expect(await client.next((f) => f.rid === 'obj')).toMatchObject({ t: 'error', code: 'bad_request' });
    } finally {
      await client.close();
    }
  });

  it('answers every wrong-typed field of every frame type without an internal error', async () => {
    const r = prng(SEED ^ 0x5eed);
    let session = await login(node.wsUrl, 'fzfields');
    const internal: string[] = [];
    let frames = 0;
    let reconnects = 0;
    for (const tpl of templates(r)) {
      for (const key of Object.keys(tpl)) {
        for (const value of [...WEIRD, undefined]) {
          if (!session.client.isOpen()) {
            // Closed after too many bad frames, as the protocol allows: log in again.
            for (const f of session.client.received) if (f.t === 'error' && f.code === 'internal') internal.push(JSON.stringify(f));
            await session.client.close();
            session = await login(node.wsUrl, 'fzfields');
            reconnects++;
          }
          const f: Record<string, unknown> = { ...tpl, rid: `x${frames}` };
          if (value === undefined) delete f[key];
          else f[key] = value;
          session.client.send(JSON.stringify(f));
          frames++;
          // A ping after each frame: its pong proves the frame was handled (or the socket closed).
          const pong = await session.client.request({ t: 'ping', rid: `p${frames}` }).catch(() => null);
          if (pong !== null && pong.t !== 'pong') internal.push(`ping answered ${JSON.stringify(pong)}`);
        }
      }
    }
    for (const f of session.client.received) if (f.t === 'error' && f.code === 'internal') internal.push(JSON.stringify(f));
    await session.client.close();
    console.log(`field fuzz: ${frames} frames, ${reconnects} re-logins`);
    expect(internal).toEqual([]);
    expect((await fetch(`${node.httpUrl}/healthz`)).status).toBe(200);
  });

  it('survives random frames while a normal pair keeps chatting', { timeout: 150_000 }, async () => {
    const r = prng(SEED);
    const mk = (user: string): ChatClient =>
      new ChatClient({ urls: [node.wsUrl], token: () => signTestToken(user), WebSocket, device: 'main', sendTimeoutMs: 15_000 });
    const alice = mk('alice');
    const bob = mk('bob');
    const got = { alice: [] as MsgFrame[], bob: [] as MsgFrame[] };
    alice.on('message', (m) => got.alice.push(m));
    bob.on('message', (m) => got.bob.push(m));
    const errors: string[] = [];
    alice.on('error', (e) => errors.push(`alice: ${e.code} ${e.message}`));
    bob.on('error', (e) => errors.push(`bob: ${e.code} ${e.message}`));
    await Promise.all([alice.connect(), bob.connect()]);

    // The normal conversation, alternating senders, until the fuzzers are done.
    const sent: Array<{ from: string; cmid: string; body: unknown; seq?: number }> = [];
    let chatting = true;
    const chat = (async () => {
      for (let n = 0; chatting && n < 2000; n++) {
        const [from, c, to] = n % 2 === 0 ? ['alice', alice, 'bob'] : ['bob', bob, 'alice'];
        const rec: { from: string; cmid: string; body: unknown; seq?: number } = { from, cmid: `m${n}`, body: { n, text: `hello ${n}` } };
        sent.push(rec);
        const s = await c.send({ to }, rec.body, { cmid: rec.cmid });
        rec.seq = s.seq;
        await sleep(40);
      }
    })();

    const stats: FuzzStats = { frames: 0, sockets: 0, closes: 0, codes: new Map(), problems: [] };
    const t0 = Date.now();
    await Promise.all(Array.from({ length: WORKERS }, (_, id) => fuzzWorker(id, prng(SEED + id + 1), stats)));
    // Bare garbage on the HTTP side too.
    for (const path of ['/', '/ws', '/healthz?x=' + 'a'.repeat(4000), '/metrics/../..', '/%ff%fe']) {
      await fetch(`${node.httpUrl}${path}`, { method: r() < 0.5 ? 'GET' : 'POST', signal: AbortSignal.timeout(5000) }).then((res) => res.text()).catch(() => '');
    }
    chatting = false;
    await chat;
    const codes = Object.fromEntries(stats.codes);
    console.log(`fuzz seed ${SEED}: ${stats.frames} frames over ${stats.sockets} sockets (${stats.closes} closed by the server) in ${Date.now() - t0} ms; error answers ${JSON.stringify(codes)}; pair exchanged ${sent.length}`);

    // The node is still up and healthy.
    const health = await fetch(`${node.httpUrl}/healthz`, { signal: AbortSignal.timeout(5000) });
    expect(health.status, node.logs()).toBe(200);
    expect(stats.problems.slice(0, 10), `seed ${SEED}`).toEqual([]);

    // The pair noticed nothing: every send answered, delivered to the other once, no reconnects.
    const n = sent.length;
    expect(n).toBeGreaterThan(20);
    const deadline = Date.now() + 10_000;
    while ((got.alice.length < n || got.bob.length < n) && Date.now() < deadline) await sleep(50);
    expect(got.alice.map((m) => m.seq)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(got.bob.map((m) => m.seq)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(alice.metrics.reconnects + bob.metrics.reconnects).toBe(0);
    expect(alice.metrics.resends + bob.metrics.resends).toBe(0);
    expect(errors).toEqual([]);
    await Promise.all([alice.close(), bob.close()]);

    // What is stored for them is exactly what they sent, and nothing else is theirs.
    const { client: check } = await login(node.wsUrl, 'alice', { device: 'verify' });
    try {
      const convs = await check.request({ t: 'convs' });
      expect(convs.convs).toEqual([expect.objectContaining({ conv: 'dm:alice:bob', last_seq: n })]);
      const stored: Frame[] = [];
      for (let after = 0, k = 0; k < 100; k++) {
        const b = await check.request({ t: 'sync', conv: 'dm:alice:bob', after, limit: 200 });
        expect(b.t).toBe('batch');
        const msgs = b.msgs as Frame[];
        stored.push(...msgs);
        if (!b.more || msgs.length === 0) break;
        after = Number(msgs[msgs.length - 1].seq);
      }
      const bySeq = [...sent].sort((x, y) => (x.seq ?? 0) - (y.seq ?? 0));
      expect(stored.map((m) => ({ seq: m.seq, from: m.from, cmid: m.cmid, body: m.body }))).toEqual(
        bySeq.map((s, i) => ({ seq: i + 1, from: s.from, cmid: s.cmid, body: s.body })),
      );
    } finally {
      await check.close();
    }
  });
});
