/**
 * Coalesces acks: per conversation only the highest delivered seq matters (the server cursor only
 * moves forward), so a burst of 100 messages costs one `ack` frame, sent after `flushMs` or as
 * soon as `maxPending` messages are waiting.
 */
export interface AckBatcherOptions {
  /** Writes one ack; returns false when it could not be written (offline): it stays pending. */
  send: (conv: string, seq: number) => boolean;
  /** Default 100 ms. */
  flushMs?: number;
  /** Flush at once when this many acks are waiting. Default 64. */
  maxPending?: number;
}

export class AckBatcher {
  private readonly highest = new Map<string, number>();
  /** Last seq written per conv: the server cursor never moves back, so lower acks are useless. */
  private readonly written = new Map<string, number>();
  private count = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly flushMs: number;
  private readonly maxPending: number;

  constructor(private readonly opts: AckBatcherOptions) {
    this.flushMs = opts.flushMs ?? 100;
    this.maxPending = opts.maxPending ?? 64;
  }

  /** The application received (conv, seq). */
  note(conv: string, seq: number): void {
    const prev = this.highest.get(conv) ?? this.written.get(conv) ?? 0;
    if (seq <= prev) return;
    this.highest.set(conv, seq);
    this.count++;
    if (this.count >= this.maxPending) this.flush();
    else this.schedule();
  }

  /** Writes every pending ack now; those that cannot be written stay for the next flush. */
  flush(): void {
    this.cancel();
    for (const [conv, seq] of this.highest) {
      if (this.opts.send(conv, seq)) {
        this.highest.delete(conv);
        this.written.set(conv, seq);
      }
    }
    this.count = this.highest.size;
  }

  /** conv → seq still to ack. */
  pending(): Record<string, number> {
    return Object.fromEntries(this.highest);
  }

  /** Stops the timer (pending acks are kept; call flush() to write them). */
  dispose(): void {
    this.cancel();
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flush();
    }, this.flushMs);
    unref(this.timer);
  }

  private cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

/** In Node, lets the process exit while a timer is pending; a no-op in browsers. */
export function unref(t: unknown): void {
  if (typeof t === 'object' && t !== null && 'unref' in t && typeof t.unref === 'function') t.unref();
}
