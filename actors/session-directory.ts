/**
 * Directory of this node's sessions: user → device → the UserSession actor's reference. The
 * local half of the directory (docs/design.md); in a cluster the presence replica adds which
 * node holds which device. Delivery reads it on every push, so lookups are plain Map reads.
 * It holds references only: a session's state is reached by sending its actor a message.
 */
import type { ActorRef } from './system.ts';

export interface SessionEntry { readonly user: string; readonly device: string; readonly actor: ActorRef; /** Login time, ms since the epoch (server API presence). */ readonly since?: number }

export class SessionDirectory {
  private readonly byUser = new Map<string, Map<string, SessionEntry>>();
  private count = 0;
  /** v1.1 presence: told when a user's first device registers and when the last one goes. */
  private userChange: ((user: string, online: boolean) => void) | null = null;

  /** Whether the user has a device on this node (the embedded node's view of who is online). */
  isOnline(user: string): boolean {
    return this.byUser.has(user);
  }

  /** Registers the listener of first-device / last-device transitions (one; a device replacing itself is none). */
  onUserChange(fn: (user: string, online: boolean) => void): void {
    this.userChange = fn;
  }

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
    const { user, device } = entry;
    let m = this.byUser.get(user);
    const first = !m;
    if (!m) this.byUser.set(user, (m = new Map()));
    const old = m.get(device);
    m.set(device, entry);
    if (!old) this.count++;
    if (first) this.userChange?.(user, true);
    return old;
  }

  /** Removes the entry if it is still the registered one for its user and device. */
  remove(entry: SessionEntry): boolean {
    const m = this.byUser.get(entry.user);
    const cur = m?.get(entry.device);
    if (!m || cur !== entry) return false;
    m.delete(entry.device);
    this.count--;
    if (m.size === 0) {
      this.byUser.delete(entry.user);
      this.userChange?.(entry.user, false);
    }
    return true;
  }

  isCurrent(entry: SessionEntry): boolean {
    return this.byUser.get(entry.user)?.get(entry.device) === entry;
  }

  *all(): Iterable<SessionEntry> {
    for (const m of this.byUser.values()) yield* m.values();
  }
}
