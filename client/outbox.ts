/**
 * Pending sends, in the order the application made them. An entry keeps its `cmid` (and its
 * `rid`) for its whole life, so every resend is the same request to the server, which answers a
 * repeated cmid with the original seq and stores nothing new. Pure bookkeeping: the caller owns
 * the socket and the clock.
 */
import { ChatError } from './types.ts';
import type { SendTarget, SentFrame } from './types.ts';

export interface OutboxEntry {
  readonly rid: string;
  readonly cmid: string;
  readonly target: SendTarget;
  readonly body: unknown;
  readonly kind?: string;
  /** queued: to be written; inflight: written on the current socket, awaiting its answer. */
  state: 'queued' | 'inflight';
  /** Times it was written to a socket. */
  attempts: number;
  /** When it was last written (ms). */
  sentAt: number;
  /** Do not write before this time (after rate_limited / unavailable). */
  notBefore: number;
}

interface Waiter {
  entry: OutboxEntry;
  resolve: (s: SentFrame) => void;
  reject: (e: Error) => void;
}

export class Outbox {
  // Map keeps insertion order, which is the application's send order.
  private readonly byRid = new Map<string, Waiter>();

  add(rid: string, cmid: string, target: SendTarget, body: unknown, kind?: string): Promise<SentFrame> {
    return new Promise<SentFrame>((resolve, reject) => {
      const entry: OutboxEntry = { rid, cmid, target, body, kind, state: 'queued', attempts: 0, sentAt: 0, notBefore: 0 };
      this.byRid.set(rid, { entry, resolve, reject });
    });
  }

  get size(): number {
    return this.byRid.size;
  }

  get inflight(): number {
    let n = 0;
    for (const w of this.byRid.values()) if (w.entry.state === 'inflight') n++;
    return n;
  }

  entries(): OutboxEntry[] {
    return [...this.byRid.values()].map((w) => w.entry);
  }

  has(rid: string): boolean {
    return this.byRid.has(rid);
  }

  /**
   * Entries to write now, in order, marked inflight. Stops at the first queued entry that must
   * wait (head-of-line) so a retried send is never overtaken by a later one, and keeps at most
   * `maxInFlight` unanswered on the wire so a long offline queue does not trip the rate limit.
   */
  take(now: number, maxInFlight = Infinity): OutboxEntry[] {
    const out: OutboxEntry[] = [];
    let inflight = this.inflight;
    for (const { entry } of this.byRid.values()) {
      if (entry.state === 'inflight') continue;
      if (entry.notBefore > now || inflight >= maxInFlight) break;
      entry.state = 'inflight';
      entry.attempts++;
      entry.sentAt = now;
      inflight++;
      out.push(entry);
    }
    return out;
  }

  /** The socket died: everything unanswered goes back to the queue (same cmid, same order). */
  requeueAll(): void {
    for (const { entry } of this.byRid.values()) entry.state = 'queued';
  }

  /** Inflight entries unanswered for `timeoutMs` go back to the queue; returns how many. */
  requeueExpired(now: number, timeoutMs: number): number {
    let n = 0;
    for (const { entry } of this.byRid.values()) {
      if (entry.state === 'inflight' && now - entry.sentAt >= timeoutMs) {
        entry.state = 'queued';
        n++;
      }
    }
    return n;
  }

  /** A retryable error (rate_limited, unavailable): write it again, not before `notBefore`. */
  retryLater(rid: string, notBefore: number): boolean {
    const w = this.byRid.get(rid);
    if (!w) return false;
    w.entry.state = 'queued';
    w.entry.notBefore = notBefore;
    return true;
  }

  /** Earliest notBefore among queued entries, for scheduling a wake-up; null if none waits. */
  nextWake(now: number): number | null {
    let t: number | null = null;
    for (const { entry } of this.byRid.values()) {
      if (entry.state === 'queued' && entry.notBefore > now) t = t === null ? entry.notBefore : Math.min(t, entry.notBefore);
    }
    return t;
  }

  /** Resolves the send answered by `sent`. A second answer for the same rid is ignored (false). */
  resolve(sent: SentFrame): boolean {
    const w = this.byRid.get(sent.rid);
    if (!w) return false;
    this.byRid.delete(sent.rid);
    w.resolve(sent);
    return true;
  }

  /** Final failure of one send. */
  reject(rid: string, err: Error): OutboxEntry | undefined {
    const w = this.byRid.get(rid);
    if (!w) return undefined;
    this.byRid.delete(rid);
    w.reject(err);
    return w.entry;
  }

  rejectAll(err: ChatError): void {
    const all = [...this.byRid.values()];
    this.byRid.clear();
    for (const w of all) w.reject(err);
  }

  get(rid: string): OutboxEntry | undefined {
    return this.byRid.get(rid)?.entry;
  }
}
