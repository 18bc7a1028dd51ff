/**
 * The cluster directory: user → device → node. Every node keeps a full replica in memory, so
 * fan-out needs no lookup per message; Redis (hash `im:presence`) holds the shared copy a
 * starting node loads. Entries of nodes that are not live are ignored and pruned.
 *
 * A login is announced as a request to every live node and awaited before the session reads
 * its backlog: once a node has answered, every message it commits afterwards reaches the new
 * device, and every message it committed before is already in the record for the backlog.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../core/logger.ts';
import type { Membership } from './membership.ts';
import type { NatsTransport } from './nats-transport.ts';
import { subjects } from './subjects.ts';

interface Change { user: string; device: string; node: string; on: boolean }

const KEY = 'im:presence';
const DEL_IF = `if redis.call('hget', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('hdel', KEYS[1], ARGV[1]) end return 0`;

export class Presence {
  private readonly byUser = new Map<string, Map<string, string>>();

  constructor(
    private readonly self: string,
    private readonly nats: NatsTransport,
    private readonly redis: Redis,
    private readonly membership: Membership,
    /** Kicks a local session replaced by a login on another node. */
    private readonly kickLocal: (user: string, device: string) => void,
    private readonly timeoutMs: number,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    this.nats.subscribe<Change>(subjects.presence(this.self), (c) => { this.apply(c); return {}; });
    this.membership.onChange((live) => this.prune(new Set(live)));
    try {
      const all = await this.redis.hgetall(KEY);
      for (const [field, node] of Object.entries(all)) {
        const i = field.indexOf('\u0000');
        if (i > 0 && node !== this.self) this.set(field.slice(0, i), field.slice(i + 1), node);
      }
    } catch (e) {
      this.log.warn({ err: String(e) }, 'presence bootstrap from Redis failed; learning from announcements');
    }
  }

  private set(user: string, device: string, node: string): void {
    let m = this.byUser.get(user);
    if (!m) this.byUser.set(user, (m = new Map()));
    m.set(device, node);
  }

  private apply(c: Change): void {
    const m = this.byUser.get(c.user);
    if (c.on) {
      this.set(c.user, c.device, c.node);
      // The same user and device logged in elsewhere: the socket here is replaced.
      if (c.node !== this.self) this.kickLocal(c.user, c.device);
    } else if (m && m.get(c.device) === c.node) {
      m.delete(c.device);
      if (m.size === 0) this.byUser.delete(c.user);
    }
  }

  /** Announces a device online/offline here, and waits until every live node has applied it. */
  async announce(user: string, device: string, on: boolean): Promise<void> {
    const c: Change = { user, device, node: this.self, on };
    this.apply(c);
    const peers = this.membership.liveNodes().filter((n) => n !== this.self);
    const redisWrite = on
      ? this.redis.hset(KEY, `${user}\u0000${device}`, this.self)
      : this.redis.eval(DEL_IF, 1, KEY, `${user}\u0000${device}`, this.self);
    await Promise.all([
      ...peers.map((n) => this.nats.request(subjects.presence(n), c, this.timeoutMs).catch((e: unknown) => {
        this.log.warn({ peer: n, err: String(e) }, 'presence announcement not confirmed');
      })),
      Promise.resolve(redisWrite).catch((e: unknown) => this.log.warn({ err: String(e) }, 'presence write to Redis failed')),
    ]);
  }

  /** Groups the online users among `users` by the live node that holds their devices. */
  nodesOf(users: readonly string[]): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const u of users) {
      const m = this.byUser.get(u);
      if (!m) continue;
      const seen = new Set<string>();
      for (const node of m.values()) {
        if (seen.has(node) || !this.membership.isLive(node)) continue;
        seen.add(node);
        const list = out.get(node);
        if (list) list.push(u);
        else out.set(node, [u]);
      }
    }
    return out;
  }

  private prune(live: Set<string>): void {
    for (const [u, m] of this.byUser) {
      for (const [d, n] of m) if (!live.has(n)) m.delete(d);
      if (m.size === 0) this.byUser.delete(u);
    }
  }

  /** Removes this node's entries from Redis on shutdown. */
  async clearSelf(devices: Array<{ user: string; device: string }>): Promise<void> {
    await Promise.all(devices.map((d) => this.redis.eval(DEL_IF, 1, KEY, `${d.user}\u0000${d.device}`, this.self).catch(() => undefined)));
  }
}
