/**
 * The examples (examples/, README "Building on it") as their users run them: each a child
 * process, against a real node whose IM_WEBHOOK_URL is the business service and whose
 * IM_HOOK_BEFORE_SEND_URL is the moderation hook. A blocked word is refused with `forbidden` and
 * not stored; the service counts messages per conversation (recalls subtracted) and hands
 * push.needed to the push gateway stub, one notification per offline user; unsigned batches are
 * refused and redelivered events counted once. The JetStream way in is checked against a real
 * nats-server with JetStream, fed by the node's own JetStreamSink.
 */
import { createHmac } from 'node:crypto';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JetStreamSink } from '../../events/jetstream-sink.ts';
import { REPO_ROOT, startChatNode, type ChatNodeHandle } from '../harness/chat-node.ts';
import { LogTail, sleep, spawnTracked, terminate, type Spawned } from '../harness/proc.ts';
import { freePort, startNats, type ServerHandle } from '../harness/servers.ts';
import { login, type Frame } from '../harness/ws-client.ts';

const SECRET = 'examples-secret-0123456789';
const sign = (body: string): string => `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;

interface Example { url: string; proc: Spawned; log: LogTail; stop(): Promise<void> }

/** Starts `examples/<file>` like `npm run example:*` does, on a free port; resolves once /healthz answers (20 s at most). */
async function startExample(file: string, args: string[], port?: number): Promise<Example> {
  port ??= await freePort();
  const log = new LogTail(100);
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('IM_')) env[k] = v;
  env.IM_WEBHOOK_SECRET = SECRET;
  const proc = await spawnTracked(process.execPath, ['--import', 'tsx', `examples/${file}`, '--port', String(port), ...args], { cwd: REPO_ROOT, env, log });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (proc.exitInfo) throw new Error(`${file} exited at start:\n${log.tail(30)}`);
    const ok = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) }).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > deadline) {
      await terminate(proc, 2000);
      throw new Error(`${file} not answering /healthz after 20 s:\n${log.tail(30)}`);
    }
    await sleep(100);
  }
  return { url, proc, log, stop: async () => { await terminate(proc, 5000); } };
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  return (await res.json()) as T;
}

interface Stats { conversations: Record<string, { messages: number; created: number; recalled: number }>; events: { processed: number; duplicates: number }; pushes: number }
interface Sent { sent: Array<{ user: string; conv: string; from: string; preview: string; seq?: number; mid?: string }> }

/** Polls until `pred` holds (bounded); answers the last value. */
async function until<T>(read: () => Promise<T>, pred: (v: T) => boolean, what: string, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  let v = await read();
  while (!pred(v)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(v)}`);
    await sleep(100);
    v = await read();
  }
  return v;
}

describe('examples against a real node (webhook, before-send hook, push gateway)', () => {
  let push: Example;
  let service: Example;
  let hook: Example;
  let masking: Example;
  let node: ChatNodeHandle;

  beforeAll(async () => {
    // Everything starts at once (the node retries undelivered events anyway): ports first.
    const [pushPort, servicePort, hookPort] = await Promise.all([freePort(), freePort(), freePort()]);
    const loc = (port: number): string => `http://127.0.0.1:${port}`;
    const nodeStarting = startChatNode({
      env: { IM_WEBHOOK_URL: `${loc(servicePort)}/events`, IM_WEBHOOK_SECRET: SECRET, IM_HOOK_BEFORE_SEND_URL: `${loc(hookPort)}/`, IM_HOOK_TIMEOUT_MS: '2000', IM_HOOK_FAIL_OPEN: 'false' },
    }).then((n) => ({ status: 'fulfilled' as const, value: n }), (e: unknown) => ({ status: 'rejected' as const, reason: e }));
    const started = await Promise.allSettled([
      startExample('push-gateway-stub.ts', [], pushPort),
      startExample('business-service.ts', ['--push-gateway-url', `${loc(pushPort)}/push`], servicePort),
      startExample('moderation-hook.ts', ['--words', 'darn,heck'], hookPort),
      startExample('moderation-hook.ts', ['--words', 'darn,heck', '--mask']),
    ]);
    const nodeStarted = await nodeStarting;
    const failed = [...started, nodeStarted].find((r) => r.status === 'rejected');
    if (failed) {
      await Promise.all(started.map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
      if (nodeStarted.status === 'fulfilled') await nodeStarted.value.stop();
      throw failed.reason;
    }
    [push, service, hook, masking] = started.map((r) => (r as PromiseFulfilledResult<Example>).value);
    node = (nodeStarted as { value: ChatNodeHandle }).value;
  }, 60_000);
  afterAll(async () => {
    await Promise.all([node?.stop(), service?.stop(), hook?.stop(), push?.stop(), masking?.stop()]);
  });

  it('refuses a blocked word (nothing stored), counts messages per conversation, pushes to offline users only', async () => {
    const alice = await login(node.wsUrl, 'alice');
    const bob = await login(node.wsUrl, 'bob');
    try {
      const send = (f: Record<string, unknown>): Promise<Frame> => alice.client.request({ t: 'send', ...f });
      expect(await send({ to: 'bob', cmid: 'a1', body: { text: 'hello bob' } })).toMatchObject({ t: 'sent', seq: 1 });
      const refused = await send({ to: 'bob', cmid: 'a2', body: { text: 'oh DARN it' } });
      expect(refused).toMatchObject({ t: 'error', code: 'forbidden', message: expect.stringContaining('darn') });
      expect(await send({ to: 'bob', cmid: 'a3', body: { text: 'second' } })).toMatchObject({ t: 'sent', seq: 2 });
      expect(await send({ to: 'bob', cmid: 'a4', body: 'third, a plain string body' })).toMatchObject({ t: 'sent', seq: 3 });
      await bob.client.next((f) => f.t === 'msg' && f.seq === 3);
      expect(await alice.client.request({ t: 'recall', conv: 'dm:alice:bob', seq: 1 })).toMatchObject({ t: 'ok' });
      const stored = await bob.client.request({ t: 'sync', conv: 'dm:alice:bob', after: 0 });
      expect((stored.msgs as Array<{ cmid: string }>).map((m) => m.cmid)).toEqual(['a1', 'a3', 'a4']);

      // carol is offline: each group message needs a push for her; bob is online.
      expect(await alice.client.request({ t: 'group_create', group: 'exteam', members: ['bob', 'carol'] })).toMatchObject({ t: 'ok' });
      expect(await send({ conv: 'g:exteam', cmid: 'g1', body: { text: 'standup at 10' } })).toMatchObject({ t: 'sent', seq: 1 });
      expect(await send({ conv: 'g:exteam', cmid: 'g2', body: { text: 'what the heck' } })).toMatchObject({ t: 'error', code: 'forbidden' });
      // dave was never online.
      expect(await send({ to: 'dave', cmid: 'd1', body: { text: 'ping dave, are you there?' } })).toMatchObject({ t: 'sent', seq: 1 });

      const stats = await until(() => getJson<Stats>(`${service.url}/stats`),
        (s) => s.conversations['dm:alice:dave']?.created === 1 && s.conversations['dm:alice:bob']?.recalled === 1, 'the counts');
      expect(stats.conversations).toEqual({
        'dm:alice:bob': { messages: 2, created: 3, recalled: 1 },
        'g:exteam': { messages: 1, created: 1, recalled: 0 },
        'dm:alice:dave': { messages: 1, created: 1, recalled: 0 },
      });
      expect(stats.events.duplicates).toBe(0);
      // The refused group message ("heck") is neither stored nor counted nor pushed.
      await until(() => getJson<Sent>(`${push.url}/sent`), (s) => s.sent.some((p) => p.user === 'dave'), 'the push for dave');
      await sleep(300); // a late duplicate push would show now
      const all = (await getJson<Sent>(`${push.url}/sent`)).sent;
      expect(all.filter((p) => p.user === 'dave')).toEqual([expect.objectContaining({ conv: 'dm:alice:dave', from: 'alice', preview: 'ping dave, are you there?', seq: 1 })]);
      expect(all.filter((p) => p.user === 'carol')).toEqual([expect.objectContaining({ conv: 'g:exteam', from: 'alice', preview: 'standup at 10', seq: 1 })]);
      expect(all.filter((p) => p.user === 'bob' || p.user === 'alice')).toEqual([]);
      // The service prints its counts every 2 s when they changed.
      await until(async () => service.log.tail(), (t) => t.includes('[stats]') && t.includes('dm:alice:dave=1'), 'the printed counts', 5000);
      expect(push.log.tail()).toContain('push -> dave: [dm:alice:dave] alice: ping dave, are you there?');
    } finally {
      await alice.client.close();
      await bob.client.close();
    }
  });

  it('the service refuses unsigned batches and counts a redelivered event once', async () => {
    const before = await getJson<Stats>(`${service.url}/stats`);
    const batch = JSON.stringify({ events: [
      { id: '9000000000000000001', type: 'message.created', ts: 1, node: 't', conv: 'dm:x:y', seq: 1, mid: '1', from: 'x', cmid: 'c', kind: 'text', body: { text: 'hi' } },
      { id: '9000000000000000002', type: 'push.needed', ts: 1, node: 't', conv: 'dm:x:y', seq: 1, mid: '1', from: 'x', kind: 'text', users: ['y'] },
    ] });
    const post = (body: string, signature: string): Promise<Response> =>
      fetch(`${service.url}/events`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-im-signature': signature }, body, signal: AbortSignal.timeout(5000) });
    expect((await post(batch, sign(`${batch} `))).status).toBe(401);
    expect((await post(batch, 'sha256=')).status).toBe(401);
    const unsigned = await getJson<Stats>(`${service.url}/stats`);
    expect(unsigned.conversations['dm:x:y']).toBeUndefined();
    expect(unsigned.pushes).toBe(before.pushes);
    const first = await post(batch, sign(batch));
    expect(first.status).toBe(200);
    expect(await first.json()).toMatchObject({ events: 2, duplicates: 0 });
    const again = await post(batch, sign(batch));
    expect(await again.json()).toMatchObject({ events: 2, duplicates: 2 });
    const after = await getJson<Stats>(`${service.url}/stats`);
    expect(after.conversations['dm:x:y']).toEqual({ messages: 1, created: 1, recalled: 0 });
    expect(after.pushes).toBe(before.pushes + 1);
    expect((await getJson<Sent>(`${push.url}/sent?user=y`)).sent).toEqual([expect.objectContaining({ conv: 'dm:x:y', preview: 'hi' })]);
  });

  it('the moderation hook in --mask mode replaces the words; unsigned requests get 401', async () => {
    {
      const ask = async (body: string, signature = sign(body)): Promise<{ status: number; json: unknown }> => {
        const res = await fetch(masking.url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-im-signature': signature }, body, signal: AbortSignal.timeout(5000) });
        return { status: res.status, json: await res.json() };
      };
      const req = JSON.stringify({ from: 'alice', conv: 'dm:alice:bob', kind: 'text', body: { text: 'Darn, darnell! heck', list: ['HECK'] } });
      expect(await ask(req)).toEqual({ status: 200, json: { action: 'replace', body: { text: '****, darnell! ****', list: ['****'] } } });
      expect(await ask(JSON.stringify({ from: 'a', conv: 'dm:a:b', kind: 'text', body: { text: 'fine' } }))).toEqual({ status: 200, json: { action: 'allow' } });
      expect((await ask(req, 'sha256=deadbeef')).status).toBe(401);
    }
  });
});

describe('business service on NATS JetStream (durable pull consumer)', () => {
  let nats: ServerHandle;
  let nc: NatsConnection;
  let sink: JetStreamSink;
  let service: Example;

  beforeAll(async () => {
    nats = await startNats({ jetstream: true });
    // The service waits for the stream, which the node's sink creates with its first batch.
    [service, nc] = await Promise.all([
      startExample('business-service.ts', ['--nats', nats.url, '--consumer', 'stats-test']),
      connect({ servers: nats.url }),
    ]);
    sink = new JetStreamSink(nc, { maxAgeS: 3600, replicas: 1, duplicateWindowS: 60 });
  }, 60_000);
  afterAll(async () => {
    await service?.stop();
    await nc?.close();
    await nats?.stop();
  });

  const ev = (id: string, type: string, fields: Record<string, unknown>): { id: string; type: string; conv: string | null; json: string } =>
    ({ id, type, conv: (fields.conv as string | undefined) ?? null, json: JSON.stringify({ id, type, ts: Date.now(), node: 'n1', ...fields }) });

  it('counts, pushes, and skips an event delivered twice', async () => {
    await sink.deliver([
      ev('101', 'message.created', { conv: 'g:js', seq: 1, mid: 'm1', from: 'ann', cmid: 'c1', kind: 'text', body: { text: 'one' } }),
      ev('102', 'push.needed', { conv: 'g:js', seq: 1, mid: 'm1', from: 'ann', kind: 'text', users: ['zed'] }),
      ev('103', 'message.created', { conv: 'g:js', seq: 2, mid: 'm2', from: 'ann', cmid: 'c2', kind: 'text', body: { text: 'two' } }),
      ev('104', 'cursor.read', { conv: 'g:js', user: 'ann', seq: 2 }),
      ev('105', 'message.recalled', { conv: 'g:js', seq: 2, by: 'ann' }),
    ]);
    // A redelivery outside the stream's duplicate window: same event id, new stream message.
    await nc.jetstream().publish('im.events.message.created', new TextEncoder().encode(ev('103', 'message.created', { conv: 'g:js', seq: 2, mid: 'm2', from: 'ann', cmid: 'c2', kind: 'text', body: { text: 'two' } }).json));
    const stats = await until(() => getJson<Stats>(`${service.url}/stats`), (s) => s.events.processed + s.events.duplicates >= 6, 'six stream messages processed', 15_000);
    expect(stats.conversations).toEqual({ 'g:js': { messages: 1, created: 2, recalled: 1 } });
    expect(stats.events).toMatchObject({ processed: 5, duplicates: 1 });
    expect((await getJson<Sent>(`${service.url}/sent`)).sent).toEqual([expect.objectContaining({ user: 'zed', conv: 'g:js', from: 'ann', preview: 'one' })]);
    // Everything was acked: the durable consumer has nothing pending.
    const info = await until(async () => (await nc.jetstreamManager()).consumers.info('IM_EVENTS', 'stats-test'), (i) => i.num_ack_pending === 0 && i.num_pending === 0, 'acks');
    expect(info.delivered.stream_seq).toBe(6);
  });
});
