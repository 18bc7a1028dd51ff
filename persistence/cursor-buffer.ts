/**
 * Coalesces cursor moves (ack/read, and the sender's own cursors on send) and writes them every
 * `flushMs`. Losing a buffered move only causes a redelivery, which clients de-duplicate by
 * (conv, seq), so this never blocks a reply. Until a move is written, `pending` tells readers
 * about it (cursor-overlay.ts lays it over what the record says).
 */
import type { CursorMove } from './message-store.ts';

export interface CursorSink {
  applyCursors(moves: CursorMove[]): Promise<void>;
}

export class CursorBuffer {
  private moves = new Map<string, CursorMove>();
  /** Moves being written by the running flush: still pending until the write completes. */
  private writing = new Map<string, CursorMove>();
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;

  constructor(private readonly sink: CursorSink, private readonly flushMs: number, private readonly onError: (e: unknown) => void) {}

  move(conv: string, user: string, ack?: number, read?: number): void {
    const key = `${conv}\u0000${user}`;
    const m = this.moves.get(key) ?? { conv, user };
    if (ack !== undefined && ack > (m.ack ?? 0)) m.ack = ack;
    if (read !== undefined && read > (m.read ?? 0)) m.read = read;
    this.moves.set(key, m);
    this.arm();
  }

  /** The buffered (not yet written) ack cursor, or 0. */
  pendingAck(conv: string, user: string): number {
    return this.pending(conv, user).ack;
  }

  /** Buffered or being-written cursors of (conv, user), 0 where none: reads merge these with the record. */
  pending(conv: string, user: string): { ack: number; read: number } {
    const key = `${conv}\u0000${user}`;
    const a = this.moves.get(key);
    const b = this.writing.get(key);
    return { ack: Math.max(a?.ack ?? 0, b?.ack ?? 0), read: Math.max(a?.read ?? 0, b?.read ?? 0) };
  }

  private arm(): void {
    if (!this.timer) this.timer = setTimeout(() => { this.timer = null; void this.flush(); }, this.flushMs);
  }

  async flush(): Promise<void> {
    if (this.flushing) await this.flushing;
    if (this.moves.size === 0) return;
    const moves = [...this.moves.values()];
    this.writing = this.moves;
    this.moves = new Map();
    this.flushing = (async () => {
      try {
        await this.sink.applyCursors(moves);
      } catch (e) {
        // Keep the moves for the next flush (merged with newer ones): the database may be back by then.
        for (const m of moves) this.move(m.conv, m.user, m.ack, m.read);
        this.onError(e);
      } finally {
        this.writing = new Map();
      }
    })();
    try { await this.flushing; } finally { this.flushing = null; }
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
