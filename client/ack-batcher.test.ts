import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AckBatcher } from './ack-batcher.ts';

describe('AckBatcher', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('coalesces per conversation and flushes after flushMs', () => {
    const sent: Array<[string, number]> = [];
    const b = new AckBatcher({ flushMs: 100, send: (c, s) => (sent.push([c, s]), true) });
    for (let s = 1; s <= 10; s++) b.note('g:a', s);
    b.note('g:b', 3);
    vi.advanceTimersByTime(99);
    expect(sent).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(sent).toEqual([['g:a', 10], ['g:b', 3]]);
  });

  it('flushes at once when maxPending acks wait', () => {
    const sent: Array<[string, number]> = [];
    const b = new AckBatcher({ flushMs: 1000, maxPending: 3, send: (c, s) => (sent.push([c, s]), true) });
    b.note('g:a', 1);
    b.note('g:a', 2);
    expect(sent).toEqual([]);
    b.note('g:a', 3);
    expect(sent).toEqual([['g:a', 3]]);
    vi.advanceTimersByTime(2000);
    expect(sent).toHaveLength(1);
  });

  it('ignores acks that do not move forward', () => {
    const sent: Array<[string, number]> = [];
    const b = new AckBatcher({ send: (c, s) => (sent.push([c, s]), true) });
    b.note('g:a', 5);
    b.flush();
    b.note('g:a', 4);
    b.flush();
    expect(sent).toEqual([['g:a', 5]]);
  });

  it('keeps acks it could not write (offline) until a later flush', () => {
    let online = false;
    const sent: Array<[string, number]> = [];
    const b = new AckBatcher({ send: (c, s) => (online ? (sent.push([c, s]), true) : false) });
    b.note('g:a', 2);
    vi.advanceTimersByTime(500);
    expect(b.pending()).toEqual({ 'g:a': 2 });
    online = true;
    b.flush();
    expect(sent).toEqual([['g:a', 2]]);
    expect(b.pending()).toEqual({});
  });

  it('dispose() stops the timer', () => {
    const send = vi.fn(() => true);
    const b = new AckBatcher({ send });
    b.note('g:a', 1);
    b.dispose();
    vi.advanceTimersByTime(1000);
    expect(send).not.toHaveBeenCalled();
  });
});
