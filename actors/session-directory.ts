/**
 * Directory of this node's sessions: user → device → UserSession (with its actor). The local
 * half of the directory (docs/design.md); in a cluster the Redis directory adds which node holds
 * which device. Delivery reads it on every push, so lookups are plain Map reads.
 */
import type { ActorRef } from './system.ts';
import type { UserSession } from './user-session.ts';

export interface SessionEntry { session: UserSession; actor: ActorRef }

export class SessionDirectory {
  private readonly byUser = new Map<string, Map<string, SessionEntry>>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(user: string, device: string): SessionEntry | undefined {
    return this.byUser.get(user)?.get(device);
  }

  devices(user: string): Iterable<SessionEntry> {
    return this.byUser.get(user)?.values() ?? [];
  }

  /** Registers a session, returning the one it replaces (same user and device), if any. */
  add(entry: SessionEntry): SessionEntry | undefined {
    const { user, device } = entry.session;
    let m = this.byUser.get(user);
    if (!m) this.byUser.set(user, (m = new Map()));
    const old = m.get(device);
    m.set(device, entry);
    if (!old) this.count++;
    return old;
  }

  /** Removes the session if it is still the registered one for its user and device. */
  remove(session: UserSession): boolean {
    const m = this.byUser.get(session.user);
    const cur = m?.get(session.device);
    if (!m || cur?.session !== session) return false;
    m.delete(session.device);
    if (m.size === 0) this.byUser.delete(session.user);
    this.count--;
    return true;
  }

  *all(): Iterable<SessionEntry> {
    for (const m of this.byUser.values()) yield* m.values();
  }
}
