/**
 * The cluster directory: user → device → node. Every node keeps a full replica in memory, so
 * fan-out needs no lookup per message; Redis (hash `im:presence`) holds the shared copy a
 * starting node loads. Entries of nodes that are not live are ignored and pruned; when a node
 * joins or rejoins the live set (or its NATS connection comes back) the peers exchange their
 * lists of local devices, so nothing pruned or announced during an outage stays missing.
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

/** `since`: login time in ms (server API presence); absent from older nodes. */
interface Change { user: string; device: string; node: string; on: boolean; since?: number }
/** Devices as [user, device, since?]. */
interface Snapshot { node: string; devices: Array<[string, string, number?]> }
/** `back`: the asker wants to be pulled in return (it was disconnected). */
interface SnapshotRequest { from: string; back: boolean }

const KEY = 'im:presence';
const DEL_IF = `if redis.call('hget', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('hdel', KEYS[1], ARGV[1]) end return 0`;

export class Presence {
  /** Login time (ms) of the devices in byUser, by user NUL device: the server API's presence call. */
  private readonly since = new Map<string, number>();
  private readonly byUser = new Map<string, Map<string, string>>();
  /**
   * v1.1 presence: told when a user's first device appears in this replica and when the last one
   * leaves it (every node sees the same transitions and pushes to its own subscribers). A device
   * that moves to another node (same user and device logging in there) changes no user's state.
   */
  private userChange: ((user: string, online: boolean) => void) | null = null;

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
    this.nats.subscribe<SnapshotRequest>(subjects.presenceSnapshot(this.self), (r) => {
      // The asker was cut off: what it announced meanwhile never reached us, so pull it too.
      if (r && r.back === true && typeof r.from === 'string' && r.from !== this.self) void this.pull(r.from, false);
      return this.snapshot();
    });
    // Announcements made or due while this node's NATS connection was down are lost both ways:
    // exchange full lists with every live peer.
    this.nats.onReconnect(() => {
      for (const n of this.membership.liveNodes()) if (n !== this.self) void this.pull(n, true);
    });
    this.membership.onChange((live, before) => {
      this.prune(new Set(live));
      // A peer that (re)joins the live set may hold devices we never heard of or pruned while
      // it looked dead (NATS outage, pause longer than the TTL): ask it for its list.
      const had = new Set(before);
      for (const n of live) if (n !== this.self && !had.has(n)) void this.pull(n);
    });
    // Refill the shared copy after Redis lost it (restart without persistence): nodes that
    // start later bootstrap from it.
    this.redis.on('ready', () => void this.rewriteOwn());
    try {
      const all = await this.redis.hgetall(KEY);
      for (const [field, node] of Object.entries(all)) {
        const i = field.indexOf('\u0000');
        if (i > 0 && node !== this.self) this.set(field.slice(0, i), field.slice(i + 1), node);
      }
    } catch (e) {
      this.log.warn({ err: String(e) }, 'presence bootstrap from Redis failed; learning from announcements');
    }
    // The peers' own lists are authoritative (Redis may have lost entries): start with them.
    await Promise.all(this.membership.liveNodes().filter((n) => n !== this.self).map((n) => this.pull(n)));
  }

  private set(user: string, device: string, node: string): void {
    let m = this.byUser.get(user);
    const first = !m;
    if (!m) this.byUser.set(user, (m = new Map()));
    m.set(device, node);
    if (first) this.userChange?.(user, true);
  }

  /** Forgets the user once no device is left (`offline` transition). */
  private dropIfEmpty(user: string, m: Map<string, string>): void {
    if (m.size > 0 || this.byUser.get(user) !== m) return;
    this.byUser.delete(user);
    this.userChange?.(user, false);
  }

  /** Registers the listener of first-device / last-device transitions (one). */
  onUserChange(fn: (user: string, online: boolean) => void): void {
    this.userChange = fn;
  }

  /** Whether the user has a device on a live node. */
  isOnline(user: string): boolean {
    const m = this.byUser.get(user);
    if (!m) return false;
    for (const node of m.values()) if (this.membership.isLive(node)) return true;
    return false;
  }

  private apply(c: Change): void {
    const m = this.byUser.get(c.user);
    if (c.on) {
      this.set(c.user, c.device, c.node);
      this.since.set(`${c.user}\u0000${c.device}`, typeof c.since === 'number' ? c.since : Date.now());
      // The same user and device logged in elsewhere: the socket here is replaced.
      if (c.node !== this.self) this.kickLocal(c.user, c.device);
    } else if (m && m.get(c.device) === c.node) {
      m.delete(c.device);
      this.since.delete(`${c.user}\u0000${c.device}`);
      this.dropIfEmpty(c.user, m);
    }
  }

  /** The devices connected to this node, for a peer that pulls them. */
  private snapshot(): Snapshot {
    const devices: Array<[string, string, number?]> = [];
    for (const [u, m] of this.byUser) for (const [d, n] of m) if (n === this.self) devices.push([u, d, this.since.get(`${u}\u0000${d}`)]);
    return { node: this.self, devices };
  }

  /** Merges a peer's devices; an entry that already points at another live node is newer and stays. */
  private async pull(node: string, back = false): Promise<void> {
    try {
      const req: SnapshotRequest = { from: this.self, back };
      const snap = await this.nats.request<Snapshot>(subjects.presenceSnapshot(node), req, this.timeoutMs);
      if (!snap || !Array.isArray(snap.devices) || !this.membership.isLive(node)) return;
      for (const [u, d, since] of snap.devices) {
        const cur = this.byUser.get(u)?.get(d);
        if (cur === undefined || cur === node || !this.membership.isLive(cur)) {
          this.set(u, d, node);
          if (typeof since === 'number') this.since.set(`${u}\u0000${d}`, since);
        }
      }
    } catch (e) {
      this.log.warn({ peer: node, err: String(e) }, 'presence snapshot from peer failed; relying on announcements');
    }
  }

  private async rewriteOwn(): Promise<void> {
    const { devices } = this.snapshot();
    if (devices.length === 0) return;
    try {
      for (let i = 0; i < devices.length; i += 500) {
        const args = devices.slice(i, i + 500).flatMap(([u, d]) => [`${u}\u0000${d}`, this.self]);
        await this.redis.hset(KEY, ...args);
      }
    } catch (e) {
      this.log.warn({ err: String(e) }, 'rewriting presence to Redis failed');
    }
  }

  /** Announces a device online/offline here, and waits until every live node has applied it. */
  async announce(user: string, device: string, on: boolean): Promise<void> {
    const c: Change = on ? { user, device, node: this.self, on, since: Date.now() } : { user, device, node: this.self, on };
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

  /** The devices of `user` on live nodes, with their node and login time (0: not known here). */
  devicesOf(user: string): Array<{ device: string; node: string; since: number }> {
    const out: Array<{ device: string; node: string; since: number }> = [];
    for (const [device, node] of this.byUser.get(user) ?? []) {
      if (this.membership.isLive(node)) out.push({ device, node, since: this.since.get(`${user}\u0000${device}`) ?? 0 });
    }
    return out;
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
      this.dropIfEmpty(u, m);
    }
  }

  /** Removes this node's entries from Redis on shutdown. */
  async clearSelf(devices: Array<{ user: string; device: string }>): Promise<void> {
    await Promise.all(devices.map((d) => this.redis.eval(DEL_IF, 1, KEY, `${d.user}\u0000${d.device}`, this.self).catch(() => undefined)));
  }
}
