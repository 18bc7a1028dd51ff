/**
 * Opens and closes UserSession actors. Sessions are children of supervisor shards (comedy
 * removes a child in O(siblings), so one flat parent of 100k sessions would be quadratic).
 * A second login of the same user and device replaces the first, which is kicked.
 */
import { fnv1a } from '../core/hash.ts';
import type { Metrics } from '../core/metrics.ts';
import type { ClientFrame, KickReason } from '../protocol/frames.ts';
import type { SessionDirectory, SessionEntry } from './session-directory.ts';
import { Supervisor, spawn, type ActorRef, type ParentActor, type SelfActor } from './system.ts';
import { UserSession, type Connection, type SessionDeps } from './user-session.ts';

class UserSessionActor {
  private session!: UserSession;

  initialize(self: SelfActor): void {
    this.session = (self.getCustomParameters() as { session: UserSession }).session;
  }

  frame(f: ClientFrame): Promise<void> {
    return this.session.handle(f);
  }

  destroy(): void {
    this.session.dispose();
  }
}

export class SessionManager {
  private readonly shards: Supervisor[] = [];

  private constructor(private readonly directory: SessionDirectory, private readonly deps: SessionDeps, private readonly metrics: Metrics) {}

  static async start(parent: ParentActor, directory: SessionDirectory, deps: SessionDeps, metrics: Metrics, shards: number): Promise<SessionManager> {
    const m = new SessionManager(directory, deps, metrics);
    for (let i = 0; i < shards; i++) m.shards.push(await Supervisor.start(parent, `sessions-${i}`));
    return m;
  }

  /** Creates the session for a verified login, kicking the device's previous socket on this node. */
  async open(user: string, device: string, conn: Connection): Promise<SessionEntry> {
    const session = new UserSession(user, device, conn, this.deps);
    const actor = await this.shards[fnv1a(`${user}/${device}`) % this.shards.length].spawn(UserSessionActor, { session });
    const entry: SessionEntry = { session, actor };
    const old = this.directory.add(entry);
    if (old) this.retire(old, 'replaced');
    this.metrics.sessions.set(this.directory.size);
    return entry;
  }

  /** The socket closed: forget the session and stop its actor. */
  close(entry: SessionEntry): void {
    this.directory.remove(entry.session);
    entry.session.dispose();
    this.metrics.sessions.set(this.directory.size);
    void entry.actor.destroy().catch(() => undefined);
  }

  /** Kicks a local session of (user, device), if there is one. */
  kickLocal(user: string, device: string, reason: KickReason): boolean {
    const e = this.directory.get(user, device);
    if (!e) return false;
    this.retire(e, reason);
    return true;
  }

  /**
   * Runs UserSession.catchUp for every session of this node, a few at a time so that a node
   * with many sessions does not flood the database. Returns how many messages it pushed.
   */
  async catchUpAll(concurrency = 4): Promise<number> {
    const queue = [...this.directory.all()];
    let pushed = 0;
    const worker = async () => {
      for (let e = queue.shift(); e; e = queue.shift()) {
        pushed += await e.session.catchUp().catch(() => 0);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    return pushed;
  }

  kickAll(reason: KickReason): void {
    for (const e of [...this.directory.all()]) this.retire(e, reason);
  }

  private retire(e: SessionEntry, reason: KickReason): void {
    this.directory.remove(e.session);
    e.session.kick(reason);
    this.metrics.sessions.set(this.directory.size);
    void e.actor.destroy().catch(() => undefined);
  }
}
