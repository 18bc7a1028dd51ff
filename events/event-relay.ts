/**
 * The event relay (docs/api.md, Events): reads the outbox oldest first, hands each batch to
 * every sink, and deletes the rows only once every sink confirmed them. So an event is
 * delivered at least once, also across kill -9 (the rows stay until confirmed), keeps its id on
 * every redelivery (the outbox row id), and a conversation's events never overtake each other
 * (a batch is retried whole, with backoff up to 30 s, before anything after it is read).
 *
 * Which rows a node relays: its own, and in a cluster those of nodes that are not live, each
 * dead node's rows by exactly one live node (rendezvous over the live set), so a dead node's
 * pending events move within a heartbeat TTL. An embedded or MySQL-only node relays every row.
 *
 * The relay is an actor (EventRelayActor): its loop and batch are its own state; commits wake it
 * with a message, and a timer polls for rows other nodes left behind.
 */
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import type { OutboxRow, RecordStore } from '../persistence/message-store.ts';
import type { SelfActor } from '../actors/system.ts';

/** One event, ready to send: its JSON text is built once and shared by every sink. */
export interface RelayedEvent {
  id: string;
  type: string;
  conv: string | null;
  /** `{"id","type","ts","node",…fields}` */
  json: string;
}

/** Where events go. `deliver` resolves only when the sink has the whole batch (it may be retried). */
export interface EventSink {
  readonly name: string;
  deliver(events: readonly RelayedEvent[]): Promise<void>;
  close(): Promise<void>;
}

export interface RelayOptions {
  /** Rows this node relays now: null = every row (a single node), else these nodes' rows. */
  nodesToRelay(): Promise<string[] | null>;
  batchSize?: number;
  pollMs?: number;
  /** After a batch shorter than batchSize, the wait before the next read (default 100 ms). */
  gatherMs?: number;
  maxBackoffMs?: number;
}

const q = (s: string): string => JSON.stringify(s);

/** The event of an outbox row (its fields per docs/api.md's table). */
export function eventOf(row: OutboxRow): RelayedEvent {
  let json = `{"id":${q(row.id)},"type":${q(row.type)},"ts":${row.ts},"node":${q(row.node)}`;
  if (row.conv !== null) json += `,"conv":${q(row.conv)}`;
  if (row.seq !== null) json += `,"seq":${row.seq}`;
  if (row.msg && (row.type === 'message.created' || row.type === 'push.needed')) {
    json += `,"mid":${q(row.msg.mid)},"from":${q(row.msg.from)}`;
    if (row.type === 'message.created') json += `,"cmid":${q(row.msg.cmid)},"kind":${q(row.msg.kind)},"body":${row.msg.bodyJson ?? 'null'}`;
    else json += `,"kind":${q(row.msg.kind)}`;
  }
  // The event's own fields were stored as a JSON object: splice its members in.
  if (row.data !== null && row.data.length > 2) json += `,${row.data.slice(1, -1)}`;
  return { id: row.id, type: row.type, conv: row.conv, json: `${json}}` };
}

export class EventRelay {
  private running = false;
  private loop: Promise<void> | null = null;
  private wakeUp: (() => void) | null = null;
  private woken = false;

  constructor(
    private readonly store: RecordStore,
    private readonly sinks: readonly EventSink[],
    private readonly opts: RelayOptions,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** New rows were committed: read them now rather than at the next poll. */
  wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  /** Best-effort events that are not facts of the record (user.online/offline): sent once, never retried. */
  ephemeral(event: RelayedEvent): void {
    for (const s of this.sinks) {
      s.deliver([event]).then(
        () => this.metrics.eventsRelayed.inc({ sink: s.name }),
        () => this.metrics.eventsFailures.inc({ sink: s.name }),
      );
    }
  }

  /** Stops after the batch in hand (its rows stay in the outbox if not yet confirmed). */
  async stop(): Promise<void> {
    this.running = false;
    this.wakeUp?.();
    await this.loop;
    await Promise.all(this.sinks.map((s) => s.close().catch(() => undefined)));
  }

  private async run(): Promise<void> {
    const batchSize = this.opts.batchSize ?? 500;
    while (this.running) {
      let rows: OutboxRow[];
      try {
        this.woken = false;
        rows = await this.store.outboxRead(await this.opts.nodesToRelay(), batchSize);
      } catch (e) {
        this.log.warn({ err: String(e) }, 'event relay: reading the outbox failed; will retry');
        await this.pause(1000);
        continue;
      }
      if (rows.length === 0) {
        this.metrics.eventsLag.set(0);
        if (!this.woken) await this.pause(this.opts.pollMs ?? 250);
        continue;
      }
      this.metrics.eventsLag.set(Math.max(0, (Date.now() - rows[0].ts) / 1000));
      const events = rows.map(eventOf);
      for (const sink of this.sinks) if (!(await this.deliverSurely(sink, events))) return;
      await this.forget(rows.map((r) => r.id));
      // A short batch means the relay has caught up: let rows gather a moment, so that it costs
      // the record a few reads and deletes (transactions, each with its own fsync) per second
      // rather than one per group commit.
      if (rows.length < batchSize) await this.pause(this.opts.gatherMs ?? 100, false);
    }
  }

  /** Delivers the batch to one sink, retrying with backoff until it takes it; false if stopped first. */
  private async deliverSurely(sink: EventSink, events: readonly RelayedEvent[]): Promise<boolean> {
    let backoff = 250;
    for (;;) {
      try {
        await sink.deliver(events);
        this.metrics.eventsRelayed.inc({ sink: sink.name }, events.length);
        return true;
      } catch (e) {
        this.metrics.eventsFailures.inc({ sink: sink.name });
        this.log.warn({ sink: sink.name, events: events.length, retryInMs: backoff, err: e instanceof Error ? e.message : String(e) }, 'event sink failed; retrying');
      }
      if (!this.running) return false;
      await this.pause(backoff, false);
      if (!this.running) return false;
      this.metrics.eventsRetries.inc({ sink: sink.name });
      backoff = Math.min(backoff * 2, this.opts.maxBackoffMs ?? 30_000);
    }
  }

  /** Deletes confirmed rows; retried until it works (a repeat delivery is harmless, a lost delete is not). */
  private async forget(ids: string[]): Promise<void> {
    for (let backoff = 250; ; backoff = Math.min(backoff * 2, 5000)) {
      try {
        await this.store.outboxDelete(ids);
        return;
      } catch (e) {
        this.log.warn({ err: String(e) }, 'event relay: deleting relayed rows failed; retrying');
        if (!this.running) return;
        await this.pause(backoff, false);
      }
    }
  }

  /** Waits `ms`, or less when woken (if `wakeable`) or stopped. */
  private pause(ms: number, wakeable = true): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void { clearTimeout(timer); resolve(); }
      this.wakeUp = () => { if (wakeable || !this.running) done(); };
    }).finally(() => { this.wakeUp = null; });
  }
}

/** What the relay actor is spawned with: the node's services, no state. */
export interface RelayParams {
  store: RecordStore;
  sinks: readonly EventSink[];
  opts: RelayOptions;
  metrics: Metrics;
  log: Logger;
}

/** The relay as an actor: it alone holds its EventRelay; commits and sessions message it. */
export class EventRelayActor {
  private relay!: EventRelay;

  initialize(self: SelfActor): void {
    const p = self.getCustomParameters() as RelayParams;
    this.relay = new EventRelay(p.store, p.sinks, p.opts, p.metrics, p.log);
    this.relay.start();
  }

  wake(): void {
    this.relay.wake();
  }

  ephemeral(event: RelayedEvent): void {
    this.relay.ephemeral(event);
  }

  destroy(): Promise<void> {
    return this.relay.stop();
  }
}
