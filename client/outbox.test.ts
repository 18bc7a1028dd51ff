import { describe, expect, it } from 'vitest';
import { Outbox } from './outbox.ts';
import { ChatError } from './types.ts';
import type { SentFrame } from './types.ts';

const sent = (rid: string, cmid: string, seq: number): SentFrame => ({ t: 'sent', rid, conv: 'g:a', cmid, seq, mid: String(seq), ts: 1 });

describe('Outbox', () => {
  it('hands out entries in send order and respects the in-flight window', () => {
    const o = new Outbox();
    for (let i = 1; i <= 5; i++) void o.add(`r${i}`, `c${i}`, { conv: 'g:a' }, i);
    expect(o.take(0, 2).map((e) => e.cmid)).toEqual(['c1', 'c2']);
    expect(o.take(0, 2)).toEqual([]);
    expect(o.inflight).toBe(2);
    o.resolve(sent('r1', 'c1', 1));
    expect(o.take(0, 2).map((e) => e.cmid)).toEqual(['c3']);
  });

  it('requeueAll resends everything unanswered with the same cmid, in order', () => {
    const o = new Outbox();
    for (let i = 1; i <= 3; i++) void o.add(`r${i}`, `c${i}`, { to: 'bob' }, i);
    o.take(0);
    o.requeueAll();
    const again = o.take(1);
    expect(again.map((e) => [e.cmid, e.rid, e.attempts])).toEqual([['c1', 'r1', 2], ['c2', 'r2', 2], ['c3', 'r3', 2]]);
  });

  it('resolves a send once even when the answer comes twice', async () => {
    const o = new Outbox();
    const p = o.add('r1', 'c1', { conv: 'g:a' }, 'hi');
    o.take(0);
    expect(o.resolve(sent('r1', 'c1', 7))).toBe(true);
    expect(o.resolve(sent('r1', 'c1', 7))).toBe(false);
    await expect(p).resolves.toMatchObject({ seq: 7, cmid: 'c1' });
    expect(o.size).toBe(0);
  });

  it('requeues only expired inflight entries', () => {
    const o = new Outbox();
    void o.add('r1', 'c1', { conv: 'g:a' }, 1);
    o.take(0);
    void o.add('r2', 'c2', { conv: 'g:a' }, 2);
    o.take(500);
    expect(o.requeueExpired(1000, 1000)).toBe(1);
    expect(o.take(1000).map((e) => e.cmid)).toEqual(['c1']);
  });

  it('retryLater holds the line: later sends do not overtake a waiting one', () => {
    const o = new Outbox();
    void o.add('r1', 'c1', { conv: 'g:a' }, 1);
    o.take(0);
    o.retryLater('r1', 100);
    void o.add('r2', 'c2', { conv: 'g:a' }, 2);
    expect(o.take(50)).toEqual([]);
    expect(o.nextWake(50)).toBe(100);
    expect(o.take(100).map((e) => e.cmid)).toEqual(['c1', 'c2']);
  });

  it('reject and rejectAll fail the promises', async () => {
    const o = new Outbox();
    const p1 = o.add('r1', 'c1', { conv: 'g:a' }, 1);
    const p2 = o.add('r2', 'c2', { conv: 'g:a' }, 2);
    o.reject('r1', new ChatError('forbidden', 'no'));
    o.rejectAll(new ChatError('closed', 'bye'));
    await expect(p1).rejects.toMatchObject({ code: 'forbidden' });
    await expect(p2).rejects.toMatchObject({ code: 'closed' });
  });
});
