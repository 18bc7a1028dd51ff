/**
 * Node-wide overload (core/admission.ts), against a real node process: past IM_MAX_INFLIGHT_SENDS
 * sends are answered `unavailable` instead of queued; what was answered `sent` is stored once,
 * what was refused is not stored, and resending it with the same cmid stores it once. The SDK's
 * outbox does that by itself: every message arrives exactly once.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { ChatClient, type MsgFrame } from '../../client/index.ts';
import { readMetric, startChatNode, type ChatNodeHandle } from '../harness/chat-node.ts';
import { login, signTestToken, type Frame } from '../harness/ws-client.ts';

let node: ChatNodeHandle;
const sdkClients: ChatClient[] = [];

beforeAll(async () => {
  // A tiny bound so that a few pipelining sockets are past it at once.
  node = await startChatNode({ env: { IM_MAX_INFLIGHT_SENDS: '4', IM_RATE_MSGS: '5000' } });
});

afterAll(async () => {
  await Promise.all(sdkClients.map((c) => c.close()));
  await node?.stop();
});

const metric = (name: string) => readMetric(node.httpUrl, name);
const shedCount = () => metric('im_sends_shed_total');

/** Every stored message of `conv` as `user` reads it with sync. */
async function stored(user: string, conv: string): Promise<Frame[]> {
  const { client } = await login(node.wsUrl, user);
  const out: Frame[] = [];
  let after = 0;
  for (let page = 0; page < 100; page++) {
    const b = await client.request({ t: 'sync', conv, after, limit: 200 });
    const msgs = (b.msgs as Frame[]) ?? [];
    out.push(...msgs);
    if (!b.more || msgs.length === 0) break;
    after = Number(msgs[msgs.length - 1].seq);
  }
  await client.close();
  return out;
}

describe('overload', () => {
  it('past IM_MAX_INFLIGHT_SENDS a send is answered unavailable and not stored; the same cmid later is stored once', async () => {
    const senders = await Promise.all(['ova', 'ovb', 'ovc'].map((u) => login(node.wsUrl, u)));
    const shedBefore = await shedCount();
    // Each sender pipelines 60 sends to ovz without waiting: 180 at once against a bound of 4.
    const answers = await Promise.all(senders.map(({ client }, i) =>
      Promise.all(Array.from({ length: 60 }, (_, j) => client.request({ t: 'send', to: 'ovz', cmid: `p${i}-${j}`, body: { text: `${i}/${j}` } }, 20_000)))));
    const all = answers.flat();
    const sent = all.filter((a) => a.t === 'sent');
    const refused = all.filter((a) => a.t === 'error');
    expect(refused.length, 'some sends were refused').toBeGreaterThan(0);
    expect(sent.length, 'some sends went through').toBeGreaterThan(0);
    for (const e of refused) {
      expect(e.code).toBe('unavailable');
      expect(String(e.message)).toMatch(/capacity/);
    }
    expect(await shedCount()).toBeGreaterThanOrEqual(shedBefore + refused.length);

    // What got `sent` is stored once; nothing refused is.
    for (let i = 0; i < 3; i++) {
      const conv = ['dm:ova:ovz', 'dm:ovb:ovz', 'dm:ovc:ovz'][i];
      const rows = await stored('ovz', conv);
      const seqs = rows.map((m) => Number(m.seq));
      expect(seqs).toEqual(seqs.map((_, k) => k + 1)); // gapless
      const sentHere = answers[i].filter((a) => a.t === 'sent').map((a) => a.cmid);
      expect(rows.map((m) => m.cmid).sort()).toEqual([...sentHere].sort());
    }

    // The refused ones, sent again one at a time with the same cmid, are stored once each.
    for (let i = 0; i < 3; i++) {
      const { client } = senders[i];
      for (let j = 0; j < 60; j++) {
        if (answers[i][j].t === 'sent') continue;
        const a = await client.request({ t: 'send', to: 'ovz', cmid: `p${i}-${j}`, body: { text: `${i}/${j}` } }, 20_000);
        expect(a.t, JSON.stringify(a)).toBe('sent');
      }
      const rows = await stored('ovz', ['dm:ova:ovz', 'dm:ovb:ovz', 'dm:ovc:ovz'][i]);
      expect(rows.map((m) => m.cmid).sort()).toEqual(Array.from({ length: 60 }, (_, j) => `p${i}-${j}`).sort());
    }
    await Promise.all(senders.map(({ client }) => client.close()));
  });

  it('the SDK outbox resends what the node sheds: 150 pipelined messages arrive once each, in seq order', async () => {
    const mk = (user: string) => {
      const c = new ChatClient({ urls: [node.wsUrl], token: () => signTestToken(user), WebSocket, backoff: { baseMs: 50, maxMs: 500 }, unavailableRetryMaxMs: 100 });
      sdkClients.push(c);
      return c;
    };
    const a = mk('sdk-ova');
    const b = mk('sdk-ovb');
    const c = mk('sdk-ovc');
    const got: MsgFrame[] = [];
    b.on('message', (m) => got.push(m));
    await Promise.all([a.connect(), b.connect(), c.connect()]);
    const shedBefore = await shedCount();
    // Two senders at once, so the node-wide bound (4) is what refuses, not one socket's pace.
    const sends = [
      ...Array.from({ length: 75 }, (_, i) => a.send({ to: 'sdk-ovb' }, { text: `a${i}` })),
      ...Array.from({ length: 75 }, (_, i) => c.send({ to: 'sdk-ovb' }, { text: `c${i}` })),
    ];
    const results = await Promise.all(sends);
    expect(results).toHaveLength(150);
    const end = Date.now() + 20_000;
    while (got.length < 150 && Date.now() < end) await sleep(20);
    // A refused send is written again after the ones behind it went through: it arrives later
    // than it was made (the SDK pipelines), but once, and every device sees the same seq order.
    for (const [conv, tag] of [['dm:sdk-ova:sdk-ovb', 'a'], ['dm:sdk-ovb:sdk-ovc', 'c']] as const) {
      const here = got.filter((m) => m.conv === conv);
      expect(here.map((m) => (m.body as { text: string }).text).sort()).toEqual(Array.from({ length: 75 }, (_, i) => `${tag}${i}`).sort());
      expect(here.map((m) => m.seq)).toEqual(Array.from({ length: 75 }, (_, i) => i + 1));
    }
    expect(await shedCount(), 'the node did shed some of them').toBeGreaterThan(shedBefore);
  });

  it('/metrics shows the admission state: nothing in progress once all is answered, the limit back at its floor when the node is idle', async () => {
    const { client } = await login(node.wsUrl, 'ovm');
    for (let i = 0; i < 5; i++) expect((await client.request({ t: 'send', to: 'ovz', cmid: `m${i}`, body: { text: 'x' } })).t).toBe('sent');
    await client.close();
    // The limit follows the best answer rate of the last half second: idle for longer, it is the floor.
    await sleep(800);
    expect(await metric('im_sends_in_progress')).toBe(0);
    expect(await metric('im_send_admission_limit')).toBe(128);
    const smoothed = await metric('im_send_smoothed_seconds');
    expect(smoothed).toBeGreaterThan(0);
    expect(smoothed).toBeLessThan(30);
  });
});
