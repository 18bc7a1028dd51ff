import { describe, expect, it } from 'vitest';
import { GroupCommitWriter, type CommitSink } from '../../persistence/group-commit.ts';
import { DuplicateKeyError, type NewMessage } from '../../persistence/message-store.ts';

const row = (conv: string, seq: number): NewMessage => ({ conv, seq, mid: `${conv}-${seq}`, from: 'a', cmid: `c${seq}`, kind: 'text', bodyJson: '1', ts: 0 });

/** A sink that records every batch and can be told to fail. */
class RecordingSink implements CommitSink {
  batches: NewMessage[][] = [];
  failNext: unknown = null;
  failConv: string | null = null;
  delayMs = 5;
  async insertMessages(rows: NewMessage[]): Promise<void> {
    await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.failNext) { const e = this.failNext; this.failNext = null; throw e; }
    if (this.failConv && rows.some((r) => r.conv === this.failConv)) throw new DuplicateKeyError('dup');
    this.batches.push(rows);
  }
}

describe('GroupCommitWriter', () => {
  it('commits everything written while a flush runs as one next batch', async () => {
    const sink = new RecordingSink();
    const w = new GroupCommitWriter(sink, { maxRows: 500, maxDelayMs: 0 });
    const first = w.write(row('a', 1));
    await new Promise((r) => setImmediate(r)); // first flush is now in progress
    const rest = Array.from({ length: 50 }, (_, i) => w.write(row('a', i + 2)));
    await Promise.all([first, ...rest]);
    expect(sink.batches.map((b) => b.length)).toEqual([1, 50]);
    expect(sink.batches.flat().map((r) => r.seq)).toEqual(Array.from({ length: 51 }, (_, i) => i + 1));
  });

  it('paces commits under load (minIntervalMs) but commits at once after an idle spell', async () => {
    const sink = new RecordingSink();
    sink.delayMs = 1;
    const w = new GroupCommitWriter(sink, { maxRows: 500, maxDelayMs: 0, minIntervalMs: 300 });
    await w.write(row('a', 1)); // idle writer: committed without waiting for the interval
    expect(sink.batches).toHaveLength(1);
    // Written one by one while the interval since the first commit runs: they wait and go together.
    const rest: Promise<void>[] = [];
    for (let i = 0; i < 5; i++) {
      rest.push(w.write(row('a', i + 2)));
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(sink.batches).toHaveLength(1);
    await Promise.all(rest);
    expect(sink.batches.map((b) => b.length)).toEqual([1, 5]);
    // A full batch does not wait for the interval.
    const full = new GroupCommitWriter(sink, { maxRows: 3, maxDelayMs: 0, minIntervalMs: 60_000 });
    await full.write(row('b', 1));
    await Promise.all([1, 2, 3].map((i) => full.write(row('b', i + 1))));
    expect(sink.batches.slice(2).map((b) => b.length)).toEqual([1, 3]);
  });

  it('never puts more than maxRows in one batch', async () => {
    const sink = new RecordingSink();
    const w = new GroupCommitWriter(sink, { maxRows: 10, maxDelayMs: 0 });
    await Promise.all(Array.from({ length: 35 }, (_, i) => w.write(row('a', i + 1))));
    expect(Math.max(...sink.batches.map((b) => b.length))).toBeLessThanOrEqual(10);
    expect(sink.batches.flat()).toHaveLength(35);
  });

  it('fails the queued rows of a failed conversation so nothing commits past a hole', async () => {
    const sink = new RecordingSink();
    const w = new GroupCommitWriter(sink, { maxRows: 500, maxDelayMs: 0 });
    sink.failNext = new Error('db down');
    const p1 = w.write(row('a', 1));
    await new Promise((r) => setImmediate(r));
    const p2 = w.write(row('a', 2)); // queued behind the failing batch
    const other = w.write(row('b', 1));
    await expect(p1).rejects.toThrow('db down');
    await expect(p2).rejects.toThrow('db down');
    await expect(other).resolves.toBeUndefined();
    expect(sink.batches.flat().map((r) => r.conv)).toEqual(['b']);
  });

  it('on a duplicate key, commits the other conversations of the batch on their own', async () => {
    const sink = new RecordingSink();
    const w = new GroupCommitWriter(sink, { maxRows: 500, maxDelayMs: 0 });
    sink.failConv = 'stale';
    const results = await Promise.allSettled([w.write(row('ok1', 1)), w.write(row('stale', 7)), w.write(row('ok2', 1))]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(DuplicateKeyError);
  });

  it('drain waits for every pending write', async () => {
    const sink = new RecordingSink();
    sink.delayMs = 20;
    const w = new GroupCommitWriter(sink, { maxRows: 500, maxDelayMs: 0 });
    const ps = Array.from({ length: 5 }, (_, i) => w.write(row('a', i + 1)));
    await w.drain();
    expect(sink.batches.flat()).toHaveLength(5);
    await Promise.all(ps);
  });
});
