/**
 * Persistence actors: a few per node, each owning one group-commit writer. A conversation is
 * always written by the same actor (hash of its id), which keeps its rows in seq order.
 * Cursor moves share one coalescing buffer, flushed lazily; the store's reads overlay the moves
 * not yet written (cursor-overlay.ts).
 */
import { fnv1a } from '../core/hash.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import { CursorBuffer } from '../persistence/cursor-buffer.ts';
import type { CursorOverlayStore } from '../persistence/cursor-overlay.ts';
import { GroupCommitWriter } from '../persistence/group-commit.ts';
import type { NewMessage } from '../persistence/message-store.ts';
import { spawn, type ActorRef, type ParentActor, type SelfActor } from './system.ts';

class PersistenceActor {
  private writer!: GroupCommitWriter;

  initialize(self: SelfActor): void {
    this.writer = (self.getCustomParameters() as { writer: GroupCommitWriter }).writer;
  }

  write(row: NewMessage): Promise<void> {
    return this.writer.write(row);
  }
}

export interface PersistenceOptions {
  writers: number; maxRows: number; maxDelayMs: number; cursorFlushMs: number;
  /** Called after each group commit (the event relay reads the outbox rows it wrote). */
  onCommitted?: () => void;
}

export class PersistencePool {
  private readonly refs: ActorRef[] = [];
  private readonly writers: GroupCommitWriter[] = [];
  readonly cursors: CursorBuffer;

  private constructor(private readonly store: CursorOverlayStore, private readonly log: Logger, private readonly metrics: Metrics, private readonly opts: PersistenceOptions) {
    this.cursors = new CursorBuffer(store, opts.cursorFlushMs, (e) => log.warn({ err: String(e) }, 'cursor flush failed; will retry'));
    store.setPendingCursors((conv, user) => this.cursors.pending(conv, user));
  }

  static async start(parent: ParentActor, store: CursorOverlayStore, log: Logger, metrics: Metrics, opts: PersistenceOptions): Promise<PersistencePool> {
    const pool = new PersistencePool(store, log, metrics, opts);
    for (let i = 0; i < opts.writers; i++) {
      const writer = new GroupCommitWriter(store, opts.maxRows, opts.maxDelayMs, {
        onCommit: (rows, seconds) => {
          opts.onCommitted?.();
          metrics.committed.inc(rows);
          metrics.commitBatch.observe(rows);
          metrics.commitLatency.observe(seconds);
        },
        onError: (err, rows) => log.warn({ err: String(err), rows }, 'group commit failed'),
      });
      pool.writers.push(writer);
      pool.refs.push(await spawn(parent, PersistenceActor, { writer }, `persistence-${i}`));
    }
    return pool;
  }

  write(row: NewMessage): Promise<void> {
    const ref = this.refs[fnv1a(row.conv) % this.refs.length];
    return ref.sendAndReceive('write', row) as Promise<void>;
  }

  /** Buffered ack cursor for (conv, user), or 0. */
  pendingAck(conv: string, user: string): number {
    return this.cursors.pendingAck(conv, user);
  }

  /** Waits for every queued message to be committed (or failed), then writes buffered cursors. */
  async drain(): Promise<void> {
    await Promise.all(this.writers.map((w) => w.drain()));
    this.cursors.stop();
    await this.cursors.flush();
  }
}
