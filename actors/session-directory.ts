/**
 * Directory of this node's sessions: user → device → the UserSession actor's reference. The
 * local half of the directory (docs/design.md); in a cluster the presence replica adds which
 * node holds which device. Delivery reads it on every push, so lookups are plain Map reads.
 * It holds references only: a session's state is reached by sending its actor a message.
 */
import type { ActorRef } from './system.ts';

export interface SessionEntry { readonly user: string; readonly device: string; readonly actor: ActorRef; /** Login time, ms since the epoch (server API presence). */ readonly since?: number }

/**
 * byUser holds a user's one session directly and a Map of them only from a second device on:
 * most users are logged in from one device, and an empty-most-of-the-time Map per user would
 * cost ~180 bytes each.
 */
type Devices = SessionEntry | Map<string, SessionEntry>;

export class SessionDirectory {
  private readonly byUser = new Map<string, Devices>();
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
    const d = this.byUser.get(user);
    if (d === undefined || d instanceof Map) return d?.get(device);
    return d.device === device ? d : undefined;
  }

  devices(user: string): Iterable<SessionEntry> {
    const d = this.byUser.get(user);
    if (d === undefined) return [];
    return d instanceof Map ? d.values() : [d];
  }

  /** Registers a session, returning the one it replaces (same user and device), if any. */
  add(entry: SessionEntry): SessionEntry | undefined {
    const { user, device } = entry;
    const d = this.byUser.get(user);
    let old: SessionEntry | undefined;
    if (d === undefined) {
      this.byUser.set(user, entry);
    } else if (d instanceof Map) {
      old = d.get(device);
      d.set(device, entry);
    } else if (d.device === device) {
      old = d;
      this.byUser.set(user, entry);
    } else {
      this.byUser.set(user, new Map([[d.device, d], [device, entry]]));
    }
    if (!old) this.count++;
    if (d === undefined) this.userChange?.(user, true);
    return old;
  }

  /** Removes the entry if it is still the registered one for its user and device. */
  remove(entry: SessionEntry): boolean {
    const d = this.byUser.get(entry.user);
    if (d === undefined) return false;
    if (d instanceof Map) {
      if (d.get(entry.device) !== entry) return false;
      d.delete(entry.device);
      // Back to one device: held directly again.
      if (d.size === 1) this.byUser.set(entry.user, d.values().next().value as SessionEntry);
    } else {
      if (d !== entry) return false;
      this.byUser.delete(entry.user);
    }
    this.count--;
    if (!this.byUser.has(entry.user)) this.userChange?.(entry.user, false);
    return true;
  }

  isCurrent(entry: SessionEntry): boolean {
    return this.get(entry.user, entry.device) === entry;
  }

  *all(): Iterable<SessionEntry> {
    for (const d of this.byUser.values()) {
      if (d instanceof Map) yield* d.values();
      else yield d;
    }
  }
}
