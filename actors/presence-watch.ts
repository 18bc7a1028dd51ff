/**
 * v1.1 presence (docs/protocol.md, `presence_sub`): who watches whom on this node, and the
 * pushes when a watched user comes online (first device) or goes offline (last device).
 *
 * Where the transitions come from: an embedded node's SessionDirectory (it holds every device);
 * in a cluster the presence replica (cluster/presence.ts), which every node keeps of every
 * device, so each node sees the same transitions and pushes only to its own subscribers.
 *
 * Bounds: one subscription per session (a new presence_sub replaces it), at most
 * MAX_PRESENCE_USERS users each (the frame schema refuses more), dropped when the session leaves
 * the directory (closed, kicked, replaced). Only users who share a conversation with the
 * subscriber when it subscribes are watched (one bounded store query, MessageStore.sharingUsers);
 * the others are answered `online: null` and never pushed.
 */
import { encodePresence } from '../protocol/encode.ts';
import type { PresenceState } from '../protocol/wire.ts';
import type { RecordStore } from '../persistence/message-store.ts';
import { unavailable } from '../protocol/errors.ts';
import type { SessionDirectory, SessionEntry } from './session-directory.ts';

/** Who is online, and the first-device / last-device transitions. */
export interface OnlineView {
  isOnline(user: string): boolean;
  onUserChange(fn: (user: string, online: boolean) => void): void;
}

/** What a UserSession asks of presence. */
export interface PresenceAccess {
  /** Replaces the subscription of the session of (user, device); answers each listed user's state, in order. */
  subscribe(user: string, device: string, users: readonly string[]): Promise<PresenceState[]>;
}

const dropped = (): void => undefined;

/** watched user → subscriber sessions, and each subscriber's list (to replace or drop it). */
export class PresenceWatchers {
  private readonly byWatched = new Map<string, Set<SessionEntry>>();
  private readonly bySub = new Map<SessionEntry, readonly string[]>();

  /** Sessions with a subscription. */
  get subscribers(): number {
    return this.bySub.size;
  }

  /** Replaces the session's subscription with `users` (an empty list only drops it). */
  set(sub: SessionEntry, users: readonly string[]): void {
    this.drop(sub);
    if (users.length === 0) return;
    this.bySub.set(sub, users);
    for (const u of users) {
      let s = this.byWatched.get(u);
      if (!s) this.byWatched.set(u, (s = new Set()));
      s.add(sub);
    }
  }

  drop(sub: SessionEntry): void {
    const users = this.bySub.get(sub);
    if (!users) return;
    this.bySub.delete(sub);
    for (const u of users) {
      const s = this.byWatched.get(u);
      if (!s) continue;
      s.delete(sub);
      if (s.size === 0) this.byWatched.delete(u);
    }
  }

  /** Pushes `{"t":"presence","user","online"}` to every session watching `user`. */
  notify(user: string, online: boolean): void {
    const subs = this.byWatched.get(user);
    if (!subs) return;
    const json = encodePresence(user, online);
    for (const e of subs) e.actor.send('event', json).catch(dropped);
  }
}

/** The node's presence service: owns the watchers, fed by the node's OnlineView. */
export class PresenceService implements PresenceAccess {
  readonly watchers = new PresenceWatchers();

  constructor(private readonly directory: SessionDirectory, private readonly store: RecordStore, private readonly view: OnlineView) {
    view.onUserChange((user, online) => this.watchers.notify(user, online));
  }

  async subscribe(user: string, device: string, users: readonly string[]): Promise<PresenceState[]> {
    const entry = this.directory.get(user, device);
    const others = [...new Set(users)];
    const allowed = others.length === 0 ? new Set<string>() : new Set(await this.store.sharingUsers(user, others).catch(() => { throw unavailable('the message store'); }));
    // The session may have closed (or been replaced) while the store answered: subscribe nobody then.
    if (entry && this.directory.isCurrent(entry)) this.watchers.set(entry, others.filter((u) => allowed.has(u)));
    return users.map((u) => ({ user: u, online: allowed.has(u) ? this.view.isOnline(u) : null }));
  }

  /** A session left the directory: its subscription goes with it. */
  sessionGone(entry: SessionEntry): void {
    this.watchers.drop(entry);
  }
}
