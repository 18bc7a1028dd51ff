/**
 * The one owner of a session's life on this node: open → announce → backlog → live → close.
 *
 *  - open: spawns the device's UserSession actor (under a supervisor shard: comedy removes a
 *    child in O(siblings), so one flat parent of 100k sessions would be quadratic), registers
 *    it in the directory (kicking the same device's previous session with `replaced`), announces
 *    the device to the cluster and waits for that, then has the actor send `login_ok` and start
 *    its backlog. From registration on, pushes reach the actor; it holds those that come before
 *    `login_ok` (see UserSession).
 *  - close: unregisters, announces the device gone (if it was still the current one), and
 *    destroys the actor.
 *
 * Nothing here holds a UserSession: every step is a message to the session's actor.
 */
import { fnv1a } from '../core/hash.ts';
import type { Metrics } from '../core/metrics.ts';
import type { KickReason } from '../protocol/frames.ts';
import type { SessionDirectory, SessionEntry } from './session-directory.ts';
import { Supervisor, type ParentActor } from './system.ts';
import { UserSessionActor, type Connection, type SessionDeps } from './user-session.ts';

/** Who else must learn that a device came or went: the cluster's presence replica, or nobody. */
export interface DeviceAnnouncer {
  /** Resolves once every live node knows the device is here (so no push for it can miss it). */
  online(user: string, device: string): Promise<void>;
  offline(user: string, device: string): void;
}

export const noAnnouncer: DeviceAnnouncer = { online: () => Promise.resolve(), offline: () => undefined };

export class SessionManager {
  private readonly shards: Supervisor[] = [];
  private announcer: DeviceAnnouncer = noAnnouncer;
  /** Told of every session that leaves the directory (presence subscriptions are dropped with it). */
  private gone: (entry: SessionEntry) => void = () => undefined;

  private constructor(private readonly directory: SessionDirectory, private readonly deps: SessionDeps, private readonly metrics: Metrics) {}

  static async start(parent: ParentActor, directory: SessionDirectory, deps: SessionDeps, metrics: Metrics, shards: number): Promise<SessionManager> {
    const m = new SessionManager(directory, deps, metrics);
    for (let i = 0; i < shards; i++) m.shards.push(await Supervisor.start(parent, `sessions-${i}`));
    return m;
  }

  /** Set once the cluster runtime exists (it needs this manager to kick replaced devices). */
  setAnnouncer(a: DeviceAnnouncer): void {
    this.announcer = a;
  }

  /** Registers the listener of sessions that closed or were kicked (v1.1 presence watchers). */
  onSessionGone(fn: (entry: SessionEntry) => void): void {
    this.gone = fn;
  }

  /**
   * A verified login: spawns and registers the session, announces it, and resolves once its
   * actor has sent `login_ok` (rid). The backlog follows in the actor. If `stillWanted` says the
   * socket went away meanwhile, the session is closed instead and null is returned.
   */
  async open(user: string, device: string, conn: Connection, rid: string, stillWanted: () => boolean): Promise<SessionEntry | null> {
    const actor = await this.shards[fnv1a(`${user}/${device}`) % this.shards.length].spawn(UserSessionActor, { user, device, conn, deps: this.deps });
    const entry: SessionEntry = { user, device, actor, since: Date.now() };
    const old = this.directory.add(entry);
    if (old) void this.retire(old, 'replaced');
    this.metrics.sessions.set(this.directory.size);
    try {
      // In a cluster the login is known to every node before the backlog is read (cluster/presence.ts).
      await this.announcer.online(user, device);
      if (!stillWanted()) {
        this.close(entry);
        return null;
      }
      await actor.sendAndReceive('start', rid);
    } catch (e) {
      this.close(entry);
      throw e;
    }
    return entry;
  }

  /** The socket closed: forget the session, tell the cluster, stop its actor. */
  close(entry: SessionEntry): void {
    if (this.directory.remove(entry)) this.announcer.offline(entry.user, entry.device);
    this.gone(entry);
    this.metrics.sessions.set(this.directory.size);
    void entry.actor.destroy().catch(() => undefined);
  }

  /** Kicks the session of a logged-in socket (its token expired): the device is gone. */
  kick(entry: SessionEntry, reason: KickReason): void {
    if (!this.directory.isCurrent(entry)) return;
    void this.retire(entry, reason);
    this.announcer.offline(entry.user, entry.device);
  }

  /** Kicks a local session of (user, device), if there is one (a login elsewhere replaced it: the device stays online). */
  kickLocal(user: string, device: string, reason: KickReason): boolean {
    const e = this.directory.get(user, device);
    if (!e) return false;
    void this.retire(e, reason);
    return true;
  }

  /**
   * Has every session of this node push what it should hold but was never pushed (after this
   * node was cut off from the cluster bus), a few at a time so that a node with many sessions
   * does not flood the database. Returns how many messages were pushed.
   */
  async catchUpAll(concurrency = 4): Promise<number> {
    const queue = [...this.directory.all()];
    let pushed = 0;
    const worker = async () => {
      for (let e = queue.shift(); e; e = queue.shift()) {
        pushed += await (e.actor.sendAndReceive('catchUp') as Promise<number>).catch(() => 0);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    return pushed;
  }

  /**
   * Every session gets `kicked` with the reason and its socket closes (shutdown); resolves once
   * every kick is written, and returns the devices that were here.
   */
  async kickAll(reason: KickReason): Promise<Array<{ user: string; device: string }>> {
    const all = [...this.directory.all()];
    await Promise.all(all.map((e) => this.retire(e, reason)));
    return all.map((e) => ({ user: e.user, device: e.device }));
  }

  /**
   * Unregisters a session and has its actor send `kicked` and close the socket, then stops it.
   * Resolves once the kick is written.
   */
  private retire(e: SessionEntry, reason: KickReason): Promise<void> {
    this.directory.remove(e);
    this.gone(e);
    this.metrics.sessions.set(this.directory.size);
    const kicked = e.actor.sendAndReceive('kick', reason).then(() => undefined, () => undefined);
    void kicked.then(() => e.actor.destroy()).catch(() => undefined);
    return kicked;
  }
}
