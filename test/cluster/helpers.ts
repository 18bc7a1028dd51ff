// Shared plumbing for the cluster suites: start real servers + N node processes, a protocol
// peer that tracks what it received and resends unanswered sends with the same cmid, and
// direct checks of what MariaDB holds.
import { createConnection } from 'mysql2/promise';
import { startChatNode, type ChatNodeHandle } from '../harness/chat-node.ts';
import { startAll } from '../harness/servers.ts';
import { login, type Frame, type TestClient } from '../harness/ws-client.ts';
import { setTimeout as sleep } from 'node:timers/promises';

export type Servers = Awaited<ReturnType<typeof startAll>>;

/** Small timing knobs so failure detection and retries fit in a test. */
export const FAST_ENV: Record<string, string> = {
  IM_NODE_HEARTBEAT_MS: '250',
  IM_NODE_TTL_MS: '1500',
  IM_CLUSTER_REQUEST_TIMEOUT_MS: '1500',
  IM_ACK_TIMEOUT_MS: '2000',
  IM_CURSOR_FLUSH_MS: '100',
  IM_RATE_MSGS: '1000',
};

export { sleep };

export async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000, stepMs = 50): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await sleep(stepMs);
  }
}

export function clusterEnv(s: Servers, extra: Record<string, string> = {}): Record<string, string> {
  return { IM_MYSQL_URL: s.mariadb.url, IM_NATS_URL: s.nats.url, IM_REDIS_URL: s.redis.url, ...FAST_ENV, ...extra };
}

/** Starts nodes one after another (schema migration is safe in parallel, but 2 cores are not fast). */
export async function startNodes(s: Servers, ids: string[], extra: Record<string, string> = {}): Promise<ChatNodeHandle[]> {
  const nodes: ChatNodeHandle[] = [];
  for (const id of ids) nodes.push(await startChatNode({ nodeId: id, env: clusterEnv(s, extra), readyTimeoutMs: 45_000 }));
  return nodes;
}

/** Waits until every node's /healthz answers `status` (200 or 503). */
export async function waitHealth(nodes: ChatNodeHandle[], status: number, timeoutMs = 20_000): Promise<void> {
  await until(async () => {
    const codes = await Promise.all(nodes.map((n) => healthz(n)));
    return codes.every((c) => c === status);
  }, `healthz ${status} on ${nodes.map((n) => n.nodeId).join(',')}`, timeoutMs, 100);
}

export async function healthz(n: ChatNodeHandle): Promise<number> {
  try {
    const r = await fetch(`${n.httpUrl}/healthz`, { signal: AbortSignal.timeout(2_000) });
    await r.text().catch(() => '');
    return r.status;
  } catch {
    return 0;
  }
}

export interface SendOutcome { conv: string; cmid: string; seq: number; mid: string; attempts: number; issuedAt: number; answeredAt: number }

/**
 * One logged-in device. Tracks every `msg` it got (by conv and seq, de-duplicated), acks them,
 * and sends reliably: an unanswered send (`unavailable`, timeout, socket lost) is resent with
 * the same cmid after a short delay, after reconnecting (to `urls` in turn) if needed.
 */
export class Peer {
  client!: TestClient;
  readonly msgs = new Map<string, Map<number, Frame>>();
  readonly pending = new Set<string>();
  readonly outcomes: SendOutcome[] = [];
  unavailableCount = 0;
  private seen = 0;
  private cmidCounter = 0;
  reconnects = 0;

  private constructor(readonly user: string, readonly device: string, public urls: string[], public autoAck: boolean) {}

  static async connect(user: string, urls: string[], opts: { device?: string; autoAck?: boolean } = {}): Promise<Peer> {
    const p = new Peer(user, opts.device ?? 'd1', urls, opts.autoAck ?? true);
    await p.open();
    return p;
  }

  get url(): string {
    return this.client.url;
  }

  private async open(): Promise<void> {
    let last: unknown = null;
    for (let i = 0; i < this.urls.length * 3; i++) {
      const url = this.urls[i % this.urls.length];
      try {
        const { client } = await login(url, this.user, { device: this.device, timeoutMs: 5_000 });
        this.client = client;
        this.seen = 0;
        return;
      } catch (e) {
        last = e;
        await sleep(200);
      }
    }
    throw new Error(`${this.user}: could not log in on any of ${this.urls.join(', ')}: ${String(last)}`);
  }

  /** Logs in again (first URL that works) after the socket was lost. */
  async reconnect(urls = this.urls): Promise<void> {
    this.urls = urls;
    this.reconnects++;
    await this.open();
  }

  /** Folds newly received frames into `msgs` and acks the highest seq per conversation. */
  drain(): void {
    const frames = this.client.received;
    const acks = new Map<string, number>();
    for (; this.seen < frames.length; this.seen++) {
      const f = frames[this.seen];
      if (f.t !== 'msg') continue;
      const conv = f.conv as string;
      const seq = f.seq as number;
      let m = this.msgs.get(conv);
      if (!m) this.msgs.set(conv, (m = new Map()));
      if (!m.has(seq)) m.set(seq, f);
      acks.set(conv, Math.max(acks.get(conv) ?? 0, seq));
    }
    if (this.autoAck && this.client.isOpen()) for (const [conv, seq] of acks) this.client.send({ t: 'ack', conv, seq });
  }

  /** Messages of `conv` this device holds, ascending by seq. */
  list(conv: string): Frame[] {
    this.drain();
    return [...(this.msgs.get(conv)?.values() ?? [])].sort((a, b) => (a.seq as number) - (b.seq as number));
  }

  /** Pulls everything after the highest contiguous seq it holds, page by page. */
  async syncAll(conv: string): Promise<void> {
    this.drain();
    const have = this.msgs.get(conv) ?? new Map<number, Frame>();
    this.msgs.set(conv, have);
    let after = 0;
    while (have.has(after + 1)) after++;
    for (let page = 0; page < 100; page++) {
      const r = await this.client.request({ t: 'sync', conv, after, limit: 200 }, 8_000);
      if (r.t !== 'batch') throw new Error(`${this.user}: sync ${conv} after ${after} got ${JSON.stringify(r)}`);
      const msgs = r.msgs as Frame[];
      for (const m of msgs) if (!have.has(m.seq as number)) have.set(m.seq as number, m);
      if (!r.more || msgs.length === 0) return;
      after = msgs[msgs.length - 1].seq as number;
    }
  }

  nextCmid(tag: string): string {
    return `${tag}-${this.user}-${++this.cmidCounter}`;
  }

  /**
   * Sends until answered with `sent` (same cmid every time) or a non-retryable error, within
   * `deadlineMs`. `reconnectUrls` is where to log in again if the socket is lost.
   */
  async sendReliable(target: { to: string } | { conv: string }, body: unknown, opts: { cmid?: string; deadlineMs?: number; retryDelayMs?: number; timeoutMs?: number } = {}): Promise<SendOutcome> {
    const cmid = opts.cmid ?? this.nextCmid('m');
    const deadline = Date.now() + (opts.deadlineMs ?? 30_000);
    this.pending.add(cmid);
    let attempts = 0;
    let lastErr = '';
    while (Date.now() < deadline) {
      if (!this.client.isOpen()) {
        try { await this.reconnect(); } catch (e) { lastErr = String(e); await sleep(opts.retryDelayMs ?? 200); continue; }
      }
      attempts++;
      const issuedAt = Date.now();
      let r: Frame;
      try {
        r = await this.client.request({ t: 'send', ...target, cmid, body }, opts.timeoutMs ?? 4_000);
      } catch (e) {
        lastErr = (e as Error).message;
        await sleep(opts.retryDelayMs ?? 200);
        continue;
      }
      if (r.t === 'sent') {
        const o: SendOutcome = { conv: r.conv as string, cmid, seq: r.seq as number, mid: r.mid as string, attempts, issuedAt, answeredAt: Date.now() };
        this.pending.delete(cmid);
        this.outcomes.push(o);
        return o;
      }
      if (r.t === 'error' && r.code === 'unavailable') {
        this.unavailableCount++;
        lastErr = JSON.stringify(r);
        await sleep(opts.retryDelayMs ?? 200);
        continue;
      }
      throw new Error(`${this.user}: send ${cmid} refused: ${JSON.stringify(r)}`);
    }
    throw new Error(`${this.user}: send ${cmid} not acknowledged within the deadline (${attempts} attempts; last: ${lastErr.slice(0, 300)})`);
  }

  async close(): Promise<void> {
    await this.client?.close().catch(() => undefined);
  }
}

/** Asserts on what a client list holds: seqs exactly 1..n. Returns the seqs found missing/extra for messages. */
export function gapless(list: Frame[]): { ok: boolean; detail: string } {
  for (let i = 0; i < list.length; i++) {
    if (list[i].seq !== i + 1) return { ok: false, detail: `position ${i} has seq ${String(list[i].seq)} (expected ${i + 1}); ${list.length} messages` };
  }
  return { ok: true, detail: '' };
}

export interface DbRow { seq: number; sender_id: string; cmid: string; mid: string }

/** The stored rows of a conversation, read directly from MariaDB. */
export async function dbMessages(mysqlUrl: string, conv: string): Promise<DbRow[]> {
  const c = await createConnection({ uri: mysqlUrl, connectTimeout: 5_000 });
  try {
    const [rows] = await c.query('SELECT seq, sender_id, cmid, CAST(mid AS CHAR) AS mid FROM message WHERE conversation_id = ? ORDER BY seq', [conv]);
    return (rows as Array<{ seq: number | string; sender_id: string; cmid: string; mid: string }>).map((r) => ({ seq: Number(r.seq), sender_id: r.sender_id, cmid: r.cmid, mid: String(r.mid) }));
  } finally {
    await c.end().catch(() => c.destroy());
  }
}

/** Checks stored rows: seqs 1..N, (sender, cmid) unique, and every acknowledged send present once with its seq. */
export function checkStored(rows: DbRow[], acknowledged: Array<{ user: string; cmid: string; seq: number; mid: string }>): string[] {
  const problems: string[] = [];
  rows.forEach((r, i) => { if (r.seq !== i + 1) problems.push(`stored seq at ${i} is ${r.seq}`); });
  const byKey = new Map<string, DbRow[]>();
  for (const r of rows) {
    const k = `${r.sender_id}/${r.cmid}`;
    byKey.set(k, [...(byKey.get(k) ?? []), r]);
  }
  for (const [k, list] of byKey) if (list.length > 1) problems.push(`${k} stored ${list.length} times`);
  for (const a of acknowledged) {
    const got = byKey.get(`${a.user}/${a.cmid}`);
    if (!got) problems.push(`acknowledged ${a.user}/${a.cmid} (seq ${a.seq}) not stored`);
    else if (got[0].seq !== a.seq || got[0].mid !== a.mid) problems.push(`acknowledged ${a.user}/${a.cmid} as seq ${a.seq} mid ${a.mid}, stored as seq ${got[0].seq} mid ${got[0].mid}`);
  }
  return problems.slice(0, 20);
}
