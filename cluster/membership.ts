/**
 * Node membership: every node publishes a heartbeat on NATS every IM_NODE_HEARTBEAT_MS and
 * refreshes `im:node:<id>` in Redis with a TTL (so a starting node learns the others at once).
 * A node not heard from within IM_NODE_TTL_MS is dead and drops out of the live set; a node
 * that shuts down gracefully says so and drops out immediately.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../core/logger.ts';
import type { NatsTransport } from './nats-transport.ts';
import { subjects } from './subjects.ts';

interface Beat { node: string; startedAt: number }

export class Membership {
  private readonly lastSeen = new Map<string, number>();
  private live: string[] = [];
  private timer: NodeJS.Timeout | null = null;
  private connectedSince: number | null = null;
  private readonly listeners: Array<(live: readonly string[], before: readonly string[]) => void> = [];
  private readonly startedAt = Date.now();

  constructor(
    readonly self: string,
    private readonly nats: NatsTransport,
    private readonly redis: Redis,
    private readonly ttlMs: number,
    private readonly heartbeatMs: number,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    this.nats.subscribe<Beat>(subjects.heartbeat, (b) => { if (b.node !== this.self) this.seen(b.node); });
    this.nats.subscribe<Beat>(subjects.leaving, (b) => {
      if (b.node === this.self) return;
      this.lastSeen.delete(b.node);
      this.recompute();
    });
    await this.bootstrap().catch((e) => this.log.warn({ err: String(e) }, 'membership bootstrap from Redis failed; learning peers from heartbeats'));
    this.beat();
    this.timer = setInterval(() => this.beat(), this.heartbeatMs);
    this.timer.unref();
  }

  private async bootstrap(): Promise<void> {
    const keys = await this.scan('im:node:*');
    const now = Date.now();
    for (const k of keys) {
      const id = k.slice('im:node:'.length);
      if (id !== this.self) this.lastSeen.set(id, now);
    }
    this.recompute();
  }

  private async scan(pattern: string): Promise<string[]> {
    const out: string[] = [];
    let cursor = '0';
    for (let i = 0; i < 1000; i++) {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
      out.push(...keys);
      cursor = next;
      if (cursor === '0') break;
    }
    return out;
  }

  private seen(node: string): void {
    const isNew = !this.lastSeen.has(node);
    this.lastSeen.set(node, Date.now());
    if (isNew) this.recompute();
  }

  private beat(): void {
    const now = Date.now();
    if (this.nats.connected) {
      this.connectedSince ??= now;
      this.nats.publish(subjects.heartbeat, { node: this.self, startedAt: this.startedAt } satisfies Beat);
    } else {
      this.connectedSince = null;
    }
    this.redis.set(`im:node:${this.self}`, String(now), 'PX', this.ttlMs).catch(() => undefined);
    for (const [n, t] of this.lastSeen) if (now - t > this.ttlMs) this.lastSeen.delete(n);
    this.recompute();
  }

  private recompute(): void {
    const next = [this.self, ...this.lastSeen.keys()].sort();
    if (next.length === this.live.length && next.every((n, i) => n === this.live[i])) return;
    const before = this.live;
    this.live = next;
    this.log.info({ live: next }, 'cluster membership changed');
    for (const l of this.listeners) l(next, before);
  }

  liveNodes(): readonly string[] {
    return this.live;
  }

  isLive(node: string): boolean {
    return node === this.self || this.lastSeen.has(node);
  }

  /**
   * True once NATS has been up long enough to have heard every live peer: before that the
   * live set may be partial and two nodes could both think they own a conversation.
   */
  get settled(): boolean {
    return this.connectedSince !== null && Date.now() - this.connectedSince >= this.heartbeatMs * 1.5;
  }

  onChange(l: (live: readonly string[], before: readonly string[]) => void): void {
    this.listeners.push(l);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.nats.publish(subjects.leaving, { node: this.self, startedAt: this.startedAt } satisfies Beat);
    await this.redis.del(`im:node:${this.self}`).catch(() => undefined);
  }
}
