/**
 * Group commit: collects messages from every conversation and writes them as one multi-row
 * INSERT per flush. One flush runs at a time; whatever arrives meanwhile forms the next batch,
 * so the batch grows with load and an idle writer flushes at once (after `maxDelayMs`).
 * Under load, flushes start at most every `minIntervalMs`: a commit's cost is mostly fixed (the
 * fsync, the round trip), so pacing them bounds the CPU per message at the price of at most
 * that much latency; a writer that was idle for longer still flushes at once.
 *
 * Gapless seq depends on two rules here:
 *  - all rows of one conversation go through the same writer, in seq order;
 *  - when a conversation's rows fail, its rows still queued fail with them, so nothing later
 *    than a hole is ever committed. The conversation then reloads its seq from the record.
 */
import type { NewMessage } from './message-store.ts';
import { DuplicateKeyError } from './message-store.ts';

export interface CommitSink {
  insertMessages(rows: NewMessage[]): Promise<void>;
}

export interface CommitObserver {
  onCommit?(rows: number, seconds: number): void;
  onError?(err: unknown, rows: number): void;
}

export interface CommitLimits {
  /** Most rows in one flush; a queue this long flushes at once. */
  maxRows: number;
  /** Wait before an idle writer flushes (0: the next event-loop turn). */
  maxDelayMs: number;
  /** Least time between the starts of two flushes (0: none). */
  minIntervalMs?: number;
}

interface Pending {
  row: NewMessage;
  resolve(): void;
  reject(e: unknown): void;
}

export class GroupCommitWriter {
  private queue: Pending[] = [];
  private flushing = false;
  private timer: NodeJS.Timeout | null = null;
  private idleWaiters: Array<() => void> = [];
  private readonly maxRows: number;
  private readonly maxDelayMs: number;
  private readonly minIntervalMs: number;
  /** When the last flush started (performance.now()). */
  private lastStart = -Infinity;

  constructor(private readonly sink: CommitSink, limits: CommitLimits, private readonly observer: CommitObserver = {}) {
    this.maxRows = limits.maxRows;
    this.maxDelayMs = limits.maxDelayMs;
    this.minIntervalMs = limits.minIntervalMs ?? 0;
  }

  /** Resolves once the row is durably committed; rejects if its batch failed. */
  write(row: NewMessage): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ row, resolve, reject });
      this.schedule();
    });
  }

  /** Rows queued or in flight. */
  get pending(): number {
    return this.queue.length + (this.flushing ? 1 : 0);
  }

  /** Resolves when everything written so far has been committed or failed. */
  drain(): Promise<void> {
    if (this.queue.length === 0 && !this.flushing) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private schedule(): void {
    if (this.flushing) return; // the running flush picks the queue up when it ends
    if (this.queue.length >= this.maxRows) {
      void this.flush();
    } else if (!this.timer) {
      const run = () => { this.timer = null; void this.flush(); };
      const wait = Math.max(this.maxDelayMs, this.lastStart + this.minIntervalMs - performance.now());
      this.timer = (wait >= 1 ? setTimeout(run, wait) : setImmediate(run)) as NodeJS.Timeout;
    }
  }

  private async flush(): Promise<void> {
    if (this.timer) { clearTimeout(this.timer); clearImmediate(this.timer as unknown as NodeJS.Immediate); this.timer = null; }
    if (this.flushing || this.queue.length === 0) return this.settleIdle();
    this.flushing = true;
    this.lastStart = performance.now();
    const batch = this.queue.splice(0, this.maxRows);
    try {
      await this.commit(batch);
    } finally {
      this.flushing = false;
      if (this.queue.length > 0) this.schedule();
      else this.settleIdle();
    }
  }

  private async commit(batch: Pending[]): Promise<void> {
    const t0 = performance.now();
    try {
      await this.sink.insertMessages(batch.map((p) => p.row));
      this.observer.onCommit?.(batch.length, (performance.now() - t0) / 1000);
      for (const p of batch) p.resolve();
      return;
    } catch (e) {
      this.observer.onError?.(e, batch.length);
      // A duplicate key fences one stale conversation; commit the others on their own.
      const byConv = groupByConv(batch);
      if (e instanceof DuplicateKeyError && byConv.size > 1) {
        for (const rows of byConv.values()) await this.commit(rows);
        return;
      }
      for (const p of batch) p.reject(e);
      this.failQueued(new Set(byConv.keys()), e);
    }
  }

  private failQueued(convs: Set<string>, e: unknown): void {
    const keep: Pending[] = [];
    for (const p of this.queue) (convs.has(p.row.conv) ? p.reject(e) : keep.push(p));
    this.queue = keep;
  }

  private settleIdle(): void {
    if (this.queue.length > 0 || this.flushing) return;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const r of w) r();
  }
}

function groupByConv(batch: Pending[]): Map<string, Pending[]> {
  const m = new Map<string, Pending[]>();
  for (const p of batch) {
    const list = m.get(p.row.conv);
    if (list) list.push(p);
    else m.set(p.row.conv, [p]);
  }
  return m;
}
