/**
 * A small business service on the chat cluster's event stream (docs/api.md, Events): it counts
 * the messages of each conversation (message.created minus message.recalled), serves the counts
 * at `GET /stats`, and hands every `push.needed` to a push gateway (one notification per user
 * that had no device online, with a preview of the message).
 *
 * Two ways in, one processing path:
 *
 * - webhook (default): listens on --port, takes `POST /events` batches from the nodes'
 *   IM_WEBHOOK_URL, checks `x-im-signature` in constant time (401 otherwise), processes the
 *   batch in order and answers 2xx only afterwards (a failure answers 503: the node retries the
 *   whole batch, and the events already done are skipped as duplicates);
 * - NATS JetStream (--nats nats://…): a durable pull consumer (--consumer, default
 *   "business-service") on stream IM_EVENTS with explicit acks; a message is acked only once
 *   processed, and a failing one is retried in place so a conversation's order is kept.
 *
 * Delivery is at least once in both: events are de-duplicated by `id` (an LRU of the last
 * --dedup-size ids, default 100 000). The counts live in memory: a real service would store
 * them together with the processed ids, in one transaction.
 *
 *   IM_WEBHOOK_SECRET=… npm run example:service -- --port 8787 [--push-gateway-url http://127.0.0.1:8789/push]
 *   npm run example:service -- --nats nats://127.0.0.1:4222 --port 8787
 *
 * Without --push-gateway-url the push gateway stub runs inside this process (`GET /sent` here).
 */
import { createServer, type Server } from 'node:http';
import { parseArgs } from 'node:util';
import { AckPolicy, DeliverPolicy, connect, nanos, type NatsConnection } from 'nats';
import { BoundedMap, LruSet, answer, isMain, onShutdown, readBody, secretFrom, verified, SIGNATURE_HEADER } from './common.ts';
import { PushGatewayStub, type Notification } from './push-gateway-stub.ts';
import { setTimeout as sleep } from 'node:timers/promises';

/** The envelope of docs/api.md plus the fields this service reads. */
export interface ImEvent {
  id: string;
  type: string;
  ts?: number;
  node?: string;
  conv?: string;
  seq?: number;
  mid?: string;
  from?: string;
  kind?: string;
  body?: unknown;
  users?: string[];
  [k: string]: unknown;
}

export interface ConvCount { messages: number; created: number; recalled: number }

export type PushSender = (notifications: Notification[]) => Promise<void>;


/** A one-line preview for a notification: the text of a text message, else `[kind]`. */
export function previewOf(kind: string | undefined, body: unknown, max = 60): string {
  let text: string | null = null;
  if (typeof body === 'string') text = body;
  else if (typeof body === 'object' && body !== null && typeof (body as { text?: unknown }).text === 'string') text = (body as { text: string }).text;
  if (text === null || (kind !== undefined && kind !== 'text')) return body === null || body === undefined ? 'New message' : `[${kind ?? 'message'}]`;
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** Everything the service does with an event, whichever way it came in. */
export class EventProcessor {
  readonly counts = new Map<string, ConvCount>();
  private readonly seen: LruSet;
  private readonly inFlight = new Map<string, Promise<void>>();
  /** Previews of recent messages, for the push.needed that follows a message.created. */
  private readonly previews = new BoundedMap<string>(10_000);
  private readonly byType = new Map<string, number>();
  processed = 0;
  duplicates = 0;
  pushes = 0;
  private changed = false;

  constructor(private readonly push: PushSender, dedupSize = 100_000) {
    this.seen = new LruSet(dedupSize);
  }

  /** Processes one event exactly once per id (as far as the LRU remembers); throws when it could not be processed. */
  async handle(ev: ImEvent): Promise<'done' | 'duplicate'> {
    if (this.seen.has(ev.id)) {
      this.duplicates++;
      return 'duplicate';
    }
    const running = this.inFlight.get(ev.id);
    if (running) {
      // The same event redelivered while its first delivery is still being processed.
      await running;
      this.duplicates++;
      return 'duplicate';
    }
    const p = this.apply(ev);
    this.inFlight.set(ev.id, p);
    try {
      await p;
      this.seen.add(ev.id);
      this.processed++;
      this.byType.set(ev.type, (this.byType.get(ev.type) ?? 0) + 1);
      this.changed = true;
      return 'done';
    } finally {
      this.inFlight.delete(ev.id);
    }
  }

  private count(conv: string): ConvCount {
    let c = this.counts.get(conv);
    if (!c) this.counts.set(conv, (c = { messages: 0, created: 0, recalled: 0 }));
    return c;
  }

  private async apply(ev: ImEvent): Promise<void> {
    switch (ev.type) {
      case 'message.created': {
        if (typeof ev.conv !== 'string') return;
        const c = this.count(ev.conv);
        c.created++;
        c.messages = c.created - c.recalled;
        this.previews.set(`${ev.conv}#${ev.seq}`, previewOf(ev.kind, ev.body));
        return;
      }
      case 'message.recalled': {
        if (typeof ev.conv !== 'string') return;
        const c = this.count(ev.conv);
        c.recalled++;
        c.messages = c.created - c.recalled;
        this.previews.set(`${ev.conv}#${ev.seq}`, 'Message recalled');
        return;
      }
      case 'push.needed': {
        if (typeof ev.conv !== 'string' || !Array.isArray(ev.users) || ev.users.length === 0) return;
        // The message.created of the same message comes first (events of a conversation keep their order).
        const preview = this.previews.get(`${ev.conv}#${ev.seq}`) ?? previewOf(ev.kind, undefined);
        const notifications = ev.users.map((user): Notification => ({
          user, conv: ev.conv!, from: ev.from ?? '', preview,
          ...(typeof ev.seq === 'number' ? { seq: ev.seq } : {}),
          ...(typeof ev.mid === 'string' ? { mid: ev.mid } : {}),
        }));
        await this.push(notifications);
        this.pushes += notifications.length;
        return;
      }
      default:
        // cursor.*, group.*, user.*: not this service's business (and new types may appear).
        return;
    }
  }

  stats(): object {
    return {
      conversations: Object.fromEntries([...this.counts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
      events: { processed: this.processed, duplicates: this.duplicates, by_type: Object.fromEntries(this.byType) },
      pushes: this.pushes,
    };
  }

  /** The counts in one line, when they changed since the last call. */
  summary(): string | null {
    if (!this.changed) return null;
    this.changed = false;
    const convs = [...this.counts].map(([conv, c]) => `${conv}=${c.messages}`).join(' ');
    return `[stats] ${this.processed} events (${this.duplicates} duplicates), ${this.pushes} pushes; messages: ${convs || '-'}`;
  }
}

/** Events of a webhook batch body, or null when it is not `{"events":[{id,type,…}]}`. */
export function parseBatch(raw: Buffer): ImEvent[] | null {
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch {
    return null;
  }
  const events = (body as { events?: unknown } | null)?.events;
  if (!Array.isArray(events)) return null;
  for (const e of events) if (typeof e !== 'object' || e === null || typeof e.id !== 'string' || typeof e.type !== 'string') return null;
  return events as ImEvent[];
}

/** POSTs notifications to a push gateway (`{"notifications":[…]}`); a non-2xx or no answer in 5 s throws. */
export function httpPushSender(url: string): PushSender {
  return async (notifications) => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ notifications }),
      signal: AbortSignal.timeout(5000),
    });
    await res.body?.cancel().catch(() => undefined);
    if (res.status < 200 || res.status > 299) throw new Error(`push gateway answered HTTP ${res.status}`);
  };
}

export interface ServiceOptions {
  /** Webhook secret; null in NATS mode (no POST /events then). */
  secret: string | null;
  processor: EventProcessor;
  /** The in-process push gateway, served at GET /sent. */
  stub?: PushGatewayStub;
  log?: (line: string) => void;
}

/** The HTTP side: POST /events (webhook mode), GET /stats, GET /sent (in-process stub), GET /healthz. */
export function serviceServer(o: ServiceOptions): Server {
  const log = o.log ?? ((l: string) => console.log(l));
  return createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://service');
    if (req.method === 'GET' && url.pathname === '/healthz') return answer(res, 200, { status: 'ok' });
    if (req.method === 'GET' && url.pathname === '/stats') return answer(res, 200, o.processor.stats());
    if (req.method === 'GET' && url.pathname === '/sent' && o.stub) return answer(res, 200, { sent: o.stub.list(url.searchParams.get('user') ?? undefined) });
    if (req.method !== 'POST' || url.pathname !== '/events' || o.secret === null) return answer(res, 404, { error: 'not found' });
    const secret = o.secret;
    // A batch holds up to 500 events whose bodies are each up to IM_MAX_FRAME_BYTES.
    readBody(req, 64 * 1024 * 1024).then(async (raw) => {
      if (raw === null) return answer(res, 413, { error: 'body too large' });
      if (!verified(raw, req.headers[SIGNATURE_HEADER], secret)) {
        log('rejected a batch with a bad x-im-signature (is the secret the node\'s IM_WEBHOOK_SECRET?)');
        return answer(res, 401, { error: 'bad signature' });
      }
      const events = parseBatch(raw);
      // Signed but not a batch: retrying would not help; answering 400 makes the node retry anyway, visibly.
      if (events === null) return answer(res, 400, { error: 'expected {"events":[…]}' });
      try {
        let dup = 0;
        for (const ev of events) if ((await o.processor.handle(ev)) === 'duplicate') dup++;
        answer(res, 200, { ok: true, events: events.length, duplicates: dup });
      } catch (e) {
        // Not confirmed: the node sends the batch again later; what was done is skipped then.
        log(`batch not processed, the node will retry it: ${e instanceof Error ? e.message : String(e)}`);
        answer(res, 503, { error: 'not processed, retry' });
      }
    }, () => answer(res, 400, { error: 'bad request' }));
  });
}

export const EVENTS_STREAM = 'IM_EVENTS';

/**
 * Consumes stream IM_EVENTS with a durable pull consumer and explicit acks until `signal` aborts.
 * Waits for the stream: nodes create it when they first publish an event.
 */
export async function consumeJetStream(nc: NatsConnection, durable: string, processor: EventProcessor, signal: AbortSignal, log: (line: string) => void): Promise<void> {
  const jsm = await nc.jetstreamManager();
  for (let said = false; ; said = true) {
    try {
      await jsm.streams.info(EVENTS_STREAM);
      break;
    } catch {
      if (!said) log(`waiting for stream ${EVENTS_STREAM} (a node creates it with its first event)`);
      if (signal.aborted) return;
      await sleep(1000);
    }
  }
  try {
    await jsm.consumers.info(EVENTS_STREAM, durable);
  } catch {
    await jsm.consumers.add(EVENTS_STREAM, {
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: 'im.events.>',
      ack_wait: nanos(30_000),
      max_ack_pending: 1000,
    });
  }
  const consumer = await nc.jetstream().consumers.get(EVENTS_STREAM, durable);
  const messages = await consumer.consume({ max_messages: 256 });
  signal.addEventListener('abort', () => { void messages.close(); }, { once: true });
  log(`consuming ${EVENTS_STREAM} as durable consumer "${durable}"`);
  for await (const m of messages) {
    let ev: ImEvent;
    try {
      ev = m.json<ImEvent>();
      if (typeof ev?.id !== 'string' || typeof ev.type !== 'string') throw new Error('not an event');
    } catch {
      m.term(); // never processable: do not redeliver
      continue;
    }
    // Retried in place (not nak'ed), so later events of the conversation do not overtake it.
    for (let delay = 500; ; delay = Math.min(delay * 2, 10_000)) {
      try {
        await processor.handle(ev);
        m.ack();
        break;
      } catch (e) {
        if (signal.aborted) {
          m.nak();
          return;
        }
        log(`event ${ev.id} not processed, retrying in ${delay} ms: ${e instanceof Error ? e.message : String(e)}`);
        m.working();
        await sleep(delay);
      }
    }
  }
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '8787' },
      host: { type: 'string', default: '127.0.0.1' },
      secret: { type: 'string' },
      nats: { type: 'string' },
      consumer: { type: 'string', default: 'business-service' },
      'push-gateway-url': { type: 'string' },
      'dedup-size': { type: 'string', default: '100000' },
    },
  });
  const log = (line: string): void => console.log(line);
  const gatewayUrl = values['push-gateway-url'];
  const stub = gatewayUrl ? undefined : new PushGatewayStub(1000);
  const push: PushSender = gatewayUrl ? httpPushSender(gatewayUrl) : async (n) => { stub!.send(n); };
  const processor = new EventProcessor(push, Number(values['dedup-size']));
  const secret = values.nats ? null : secretFrom(values.secret);
  const server = serviceServer({ secret, processor, stub, log });
  const ticker = setInterval(() => {
    const line = processor.summary();
    if (line) log(line);
  }, 2000);
  const stopConsuming = new AbortController();
  let nc: NatsConnection | null = null;

  server.listen(Number(values.port), values.host, () => {
    const base = `http://${values.host}:${values.port}`;
    if (secret !== null) log(`business service: webhook at ${base}/events (set the node's IM_WEBHOOK_URL to it), counts at ${base}/stats`);
    else log(`business service: JetStream ${values.nats}, counts at ${base}/stats`);
    log(gatewayUrl ? `push.needed goes to ${gatewayUrl}` : `push.needed goes to the in-process push gateway stub (${base}/sent)`);
  });
  if (values.nats) {
    const servers = values.nats.split(',');
    connect({ servers, name: 'business-service', maxReconnectAttempts: -1 })
      .then(async (conn) => {
        nc = conn;
        await consumeJetStream(conn, values.consumer, processor, stopConsuming.signal, log);
      })
      .catch((e: unknown) => {
        console.error('JetStream consumer failed:', e);
        process.exit(1);
      });
  }
  onShutdown(async () => {
    clearInterval(ticker);
    stopConsuming.abort();
    await (nc as NatsConnection | null)?.drain().catch(() => undefined);
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    const line = processor.summary();
    if (line) log(line);
  });
}
