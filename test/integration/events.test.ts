/**
 * Events and hooks (docs/api.md) against real nodes and real HTTP receivers started here:
 * every committed fact reaches the signed webhook once it answers 2xx, in seq order per
 * conversation, also after the receiver was down and after kill -9 of the node while it was
 * down; the before-send hook allows, rejects, replaces, and fails open or closed on timeouts
 * and garbage answers, and a rejected send stores nothing. Run on the embedded store and MariaDB.
 */
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startChatNode, type ChatNodeHandle } from '../harness/chat-node.ts';
import { startMariaDB, type ServerHandle } from '../harness/servers.ts';
import { login, type Frame, type TestClient } from '../harness/ws-client.ts';
import { setTimeout as sleep } from 'node:timers/promises';

const SECRET = 'webhook-secret-0123456789';

interface Ev { id: string; type: string; ts: number; node: string; conv?: string; seq?: number; [k: string]: unknown }

/** A real HTTP receiver whose behaviour the test switches: ok, failing (500), or hanging. */
class Receiver {
  mode: 'ok' | 'fail' | 'hang' = 'ok';
  readonly batches: Ev[][] = [];
  badSignatures = 0;
  requests = 0;
  private server!: Server;
  port = 0;

  constructor(private readonly handler?: (body: string, res: ServerResponse) => void) {}

  async start(): Promise<void> {
    this.server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.requests++;
        const body = Buffer.concat(chunks).toString('utf8');
        const want = `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
        if (req.headers['x-im-signature'] !== want) this.badSignatures++;
        if (this.handler) return this.handler(body, res);
        if (this.mode === 'hang') return; // never answers: the sender's timeout ends it
        if (this.mode === 'fail') { res.statusCode = 500; res.end('down'); return; }
        this.batches.push((JSON.parse(body) as { events: Ev[] }).events);
        res.end('garbage that is not JSON, which a 2xx makes irrelevant');
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as { port: number }).port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/events`;
  }

  events(): Ev[] {
    return this.batches.flat();
  }

  /** Events de-duplicated by id (delivery is at least once), in arrival order. */
  unique(): Ev[] {
    const seen = new Set<string>();
    return this.events().filter((e) => (seen.has(e.id) ? false : (seen.add(e.id), true)));
  }

  async waitFor(pred: (evs: Ev[]) => boolean, ms = 20_000, what = 'events'): Promise<Ev[]> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const u = this.unique();
      if (pred(u)) return u;
      await sleep(100);
    }
    throw new Error(`receiver: timed out waiting for ${what}; got ${this.unique().length} events: ${JSON.stringify(this.unique().slice(-5))}`);
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** The message.created seqs of one conversation, in arrival order of first delivery. */
const createdSeqs = (evs: Ev[], conv: string): number[] => evs.filter((e) => e.type === 'message.created' && e.conv === conv).map((e) => e.seq as number);

async function sendAll(c: TestClient, to: string, n: number, tag: string): Promise<Frame[]> {
  const out: Frame[] = [];
  for (let i = 0; i < n; i++) out.push(await c.request({ t: 'send', to, cmid: `${tag}${i}`, body: { text: `${tag} ${i}` } }));
  return out;
}

let mariadb: ServerHandle | null = null;
beforeAll(async () => {
  mariadb = await startMariaDB({ database: 'im_events' });
  // A second database for the second single node (one MySQL-only node per database: ids).
  const { createConnection } = await import('mysql2/promise');
  const u = new URL(mariadb.url);
  const c = await createConnection({ host: u.hostname, port: Number(u.port), user: 'root' });
  await c.query('CREATE DATABASE IF NOT EXISTS im_events_closed CHARACTER SET utf8mb4');
  await c.end();
}, 120_000);
afterAll(async () => {
  await mariadb?.stop();
});

describe.each(['embedded', 'mariadb'] as const)('events and hooks — %s', (mode) => {
  const store = (): Record<string, string> => (mode === 'mariadb' ? { IM_MYSQL_URL: mariadb!.url } : {});

  describe('webhook', () => {
    const rx = new Receiver();
    let node: ChatNodeHandle;
    beforeAll(async () => {
      await rx.start();
      node = await startChatNode({ env: { ...store(), IM_WEBHOOK_URL: rx.url, IM_WEBHOOK_SECRET: SECRET, IM_CURSOR_FLUSH_MS: '50' } });
    });
    afterAll(async () => {
      await node?.stop();
      await rx.stop();
    });

    it('every committed fact becomes one signed event with the documented fields', async () => {
      const ann = await login(node.wsUrl, `ann${mode}`);
      const bob = await login(node.wsUrl, `bob${mode}`);
      const conv = [`ann${mode}`, `bob${mode}`].sort().join(':');
      const dm = `dm:${conv}`;
      const sent = await sendAll(ann.client, `bob${mode}`, 3, 'e');
      const m = await bob.client.next((f) => f.t === 'msg' && f.seq === 3);
      bob.client.send({ t: 'ack', conv: dm, seq: 3 });
      bob.client.send({ t: 'read', conv: dm, seq: 2 });
      expect((await ann.client.request({ t: 'recall', conv: dm, seq: 1 })).t).toBe('ok');
      const g = `g:ev${mode}`;
      expect((await ann.client.request({ t: 'group_create', group: `ev${mode}`, members: [`bob${mode}`] })).t).toBe('ok');
      expect((await ann.client.request({ t: 'group_add', conv: g, members: [`cat${mode}`] })).t).toBe('ok');
      // cat is offline: the group message needs a push for cat only.
      const gm = await ann.client.request({ t: 'send', conv: g, cmid: 'g1', body: 'to the group' });
      expect((await ann.client.request({ t: 'group_remove', conv: g, members: [`cat${mode}`] })).t).toBe('ok');
      await bob.client.close();

      const evs = await rx.waitFor((u) => u.some((e) => e.type === 'group.members_removed') && u.some((e) => e.type === 'cursor.read' && e.user === `bob${mode}`) && u.some((e) => e.type === 'user.offline' && e.user === `bob${mode}`), 20_000, 'every kind of event');
      expect(rx.badSignatures).toBe(0);
      expect(new Set(evs.map((e) => e.id)).size).toBe(evs.length);
      for (const e of evs) expect(e).toMatchObject({ id: expect.stringMatching(/^\d+$/), ts: expect.any(Number), node: expect.any(String) });
      expect(createdSeqs(evs, dm)).toEqual([1, 2, 3]);
      const first = evs.find((e) => e.type === 'message.created' && e.conv === dm && e.seq === 3)!;
      expect(first).toMatchObject({ mid: sent[2].mid, from: `ann${mode}`, cmid: 'e2', kind: 'text', body: { text: 'e 2' } });
      expect(m.mid).toBe(first.mid);
      expect(evs.find((e) => e.type === 'message.recalled')).toMatchObject({ conv: dm, seq: 1, by: `ann${mode}` });
      expect(evs.find((e) => e.type === 'cursor.delivered' && e.user === `bob${mode}`)).toMatchObject({ conv: dm, seq: 3 });
      expect(evs.find((e) => e.type === 'cursor.read' && e.user === `bob${mode}`)).toMatchObject({ conv: dm, seq: 2 });
      expect(evs.find((e) => e.type === 'group.created')).toMatchObject({ conv: g, by: `ann${mode}`, members: [`ann${mode}`, `bob${mode}`] });
      expect(evs.find((e) => e.type === 'group.members_added')).toMatchObject({ conv: g, by: `ann${mode}`, members: [`cat${mode}`] });
      expect(evs.find((e) => e.type === 'group.members_removed')).toMatchObject({ conv: g, by: `ann${mode}`, members: [`cat${mode}`] });
      expect(evs.filter((e) => e.type === 'push.needed' && e.conv === g)).toEqual([
        expect.objectContaining({ seq: gm.seq, mid: gm.mid, from: `ann${mode}`, kind: 'text', users: [`cat${mode}`] }),
      ]);
      // Both were online for the 1:1 messages: no push needed there.
      expect(evs.filter((e) => e.type === 'push.needed' && e.conv === dm)).toEqual([]);
      expect(evs.some((e) => e.type === 'user.online' && e.user === `ann${mode}`)).toBe(true);
      await ann.client.close();
    });

    it('a receiver that fails or hangs delays only its events: sends stay fast, and every event arrives in order afterwards', async () => {
      const a = await login(node.wsUrl, `outa${mode}`);
      const dm = `dm:outa${mode}:outb${mode}`;
      rx.mode = 'fail';
      const t0 = Date.now();
      await sendAll(a.client, `outb${mode}`, 20, 'f');
      rx.mode = 'hang';
      await sendAll(a.client, `outb${mode}`, 20, 'h');
      expect(Date.now() - t0).toBeLessThan(8_000); // 40 sends answered while the receiver is useless
      await sleep(1000);
      expect(createdSeqs(rx.unique(), dm)).toEqual([]);
      rx.mode = 'ok';
      const evs = await rx.waitFor((u) => createdSeqs(u, dm).length === 40, 45_000, '40 message.created after the outage');
      expect(createdSeqs(evs, dm)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
      const metrics = await (await fetch(`${node.httpUrl}/metrics`)).text();
      expect(metrics).toMatch(/im_events_sink_failures_total\{sink="webhook"\} [1-9]/);
      expect(metrics).toMatch(/im_events_sink_retries_total\{sink="webhook"\} [1-9]/);
      await a.client.close();
    }, 90_000);

    it('kill -9 of the node while the receiver fails loses no event: after a restart on the same data they all arrive', async () => {
      const a = await login(node.wsUrl, `killa${mode}`);
      const dm = `dm:killa${mode}:killb${mode}`;
      rx.mode = 'fail';
      await sendAll(a.client, `killb${mode}`, 25, 'k');
      await node.kill();
      await node.restart();
      rx.mode = 'ok';
      const evs = await rx.waitFor((u) => createdSeqs(u, dm).length === 25, 45_000, '25 message.created after kill -9');
      expect(createdSeqs(evs, dm)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    }, 90_000);
  });

  describe('before-send hook', () => {
    let slowMs = 0;
    const hook = new Receiver((body, res) => {
      const req = JSON.parse(body) as { from: string; conv: string; kind: string; body: { text?: string } };
      const text = req.body?.text ?? '';
      const answer = (o: unknown): void => { res.setHeader('content-type', 'application/json'); res.end(JSON.stringify(o)); };
      if (text.includes('badword')) return answer({ action: 'reject', reason: 'no bad words' });
      if (text.includes('replace')) return answer({ action: 'replace', body: { text: '***' } });
      if (text.includes('garbage')) { res.end('{"action":'); return; }
      if (text.includes('status')) { res.statusCode = 503; res.end('{"action":"allow"}'); return; }
      if (text.includes('huge')) return answer({ action: 'replace', body: { text: 'x'.repeat(20_000) } });
      if (text.includes('slow')) { setTimeout(() => answer({ action: 'allow' }), slowMs); return; }
      answer({ action: 'allow' });
    });
    let open: ChatNodeHandle;
    let closed: ChatNodeHandle;
    beforeAll(async () => {
      await hook.start();
      const env = { ...store(), IM_HOOK_BEFORE_SEND_URL: hook.url, IM_WEBHOOK_SECRET: SECRET, IM_HOOK_TIMEOUT_MS: '300', IM_MAX_FRAME_BYTES: '16384' };
      [open, closed] = await Promise.all([
        startChatNode({ env: { ...env, IM_HOOK_FAIL_OPEN: 'true' } }),
        startChatNode({ env: { ...env, IM_HOOK_FAIL_OPEN: 'false', ...(mode === 'mariadb' ? { IM_MYSQL_URL: mariadb!.url.replace(/\/[^/]*$/, '/im_events_closed') } : {}) } }),
      ]);
    }, 120_000);
    afterAll(async () => {
      await open?.stop();
      await closed?.stop();
      await hook.stop();
    });

    it('allows, rejects (forbidden, nothing stored) and replaces; keeps the order of a sender\'s sends', async () => {
      const a = await login(open.wsUrl, `hka${mode}`);
      const b = await login(open.wsUrl, `hkb${mode}`);
      const dm = `dm:hka${mode}:hkb${mode}`;
      slowMs = 100;
      const answers = await Promise.all([
        a.client.request({ t: 'send', to: `hkb${mode}`, cmid: 'h1', body: { text: 'slow hello' } }),
        a.client.request({ t: 'send', to: `hkb${mode}`, cmid: 'h2', body: { text: 'a badword' } }),
        a.client.request({ t: 'send', to: `hkb${mode}`, cmid: 'h3', body: { text: 'please replace me' } }),
        a.client.request({ t: 'send', to: `hkb${mode}`, cmid: 'h4', body: { text: 'plain' } }),
      ]);
      expect(answers.map((f) => f.t)).toEqual(['sent', 'error', 'sent', 'sent']);
      expect(answers[1]).toMatchObject({ code: 'forbidden', message: 'no bad words' });
      expect(answers.filter((f) => f.t === 'sent').map((f) => f.seq)).toEqual([1, 2, 3]); // arrival order kept across the slow hook
      const batch = await b.client.request({ t: 'sync', conv: dm, after: 0 });
      expect((batch.msgs as Array<{ cmid: string; body: unknown }>).map((m) => [m.cmid, m.body])).toEqual([
        ['h1', { text: 'slow hello' }], ['h3', { text: '***' }], ['h4', { text: 'plain' }],
      ]);
      // A resend of a stored cmid is answered without asking the hook again.
      const before = hook.requests;
      const again = await a.client.request({ t: 'send', to: `hkb${mode}`, cmid: 'h3', body: { text: 'please replace me' } });
      expect(again).toMatchObject({ t: 'sent', seq: 2 });
      expect(hook.requests).toBe(before);
      expect(hook.badSignatures).toBe(0);
      await a.client.close();
      await b.client.close();
    });

    it('fail open: a timeout, a non-2xx, a malformed answer or an oversized replacement allow the send as it was', async () => {
      const a = await login(open.wsUrl, `foa${mode}`);
      slowMs = 1500;
      const answers = [];
      for (const text of ['slow one', 'status', 'garbage', 'huge']) answers.push(await a.client.request({ t: 'send', to: `fob${mode}`, cmid: text, body: { text } }));
      expect(answers.map((f) => f.t)).toEqual(['sent', 'sent', 'sent', 'sent']);
      const batch = await a.client.request({ t: 'sync', conv: `dm:foa${mode}:fob${mode}`, after: 0 });
      expect((batch.msgs as Array<{ body: { text: string } }>).map((m) => m.body.text)).toEqual(['slow one', 'status', 'garbage', 'huge']);
      await a.client.close();
    });

    it('fail closed: a timeout or a malformed answer is unavailable and stores nothing', async () => {
      const a = await login(closed.wsUrl, `fca${mode}`);
      slowMs = 1500;
      const answers = [];
      for (const text of ['slow one', 'garbage', 'fine']) answers.push(await a.client.request({ t: 'send', to: `fcb${mode}`, cmid: text, body: { text } }));
      expect(answers.map((f) => f.code ?? f.t)).toEqual(['unavailable', 'unavailable', 'sent']);
      const batch = await a.client.request({ t: 'sync', conv: `dm:fca${mode}:fcb${mode}`, after: 0 });
      expect((batch.msgs as Array<{ seq: number; body: { text: string } }>).map((m) => [m.seq, m.body.text])).toEqual([[1, 'fine']]);
      await a.client.close();
    });
  });
});
