/**
 * Directory of this node's sessions: user → device → the UserSession actor's reference. The
 * local half of the directory (docs/design.md); in a cluster the presence replica adds which
 * node holds which device. Delivery reads it on every push, so lookups are plain Map reads.
 * It holds references only: a session's state is reached by sending its actor a message.
 */
import type { ActorRef } from './system.ts';

export interface SessionEntry { readonly user: string; readonly device: string; readonly actor: ActorRef }

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
    const { user, device } = entry;
    let m = this.byUser.get(user);
    if (!m) this.byUser.set(user, (m = new Map()));
    const old = m.get(device);
    m.set(device, entry);
    if (!old) this.count++;
    return old;
  }

  /** Removes the entry if it is still the registered one for its user and device. */
  remove(entry: SessionEntry): boolean {
    const m = this.byUser.get(entry.user);
    const cur = m?.get(entry.device);
    if (!m || cur !== entry) return false;
    m.delete(entry.device);
    if (m.size === 0) this.byUser.delete(entry.user);
    this.count--;
    return true;
  }

  isCurrent(entry: SessionEntry): boolean {
    return this.byUser.get(entry.user)?.get(entry.device) === entry;
  }

  *all(): Iterable<SessionEntry> {
    for (const m of this.byUser.values()) yield* m.values();
  }
}
