/**
 * Node-wide send admission (core/admission.ts), driven through its API: `end(start)` with a start
 * set back in time stands for a send that took that long.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { SendAdmission } from '../../core/admission.ts';

const made: SendAdmission[] = [];
afterEach(() => { for (const a of made.splice(0)) a.stop(); });

function admission(floor: number, maxInflight = 10_000): SendAdmission {
  const a = new SendAdmission({ maxInflight, targetMs: 50, floor });
  made.push(a);
  return a;
}

function begin(a: SendAdmission): number {
  const r = a.tryBegin();
  if (!('start' in r)) throw new Error(`refused: ${r.refused}`);
  return r.start;
}

describe('SendAdmission', () => {
  it('refuses past maxInflight whatever the latency, and accepts again once answers come', () => {
    const a = admission(0, 3);
    const starts = [begin(a), begin(a), begin(a)];
    expect(a.tryBegin()).toMatchObject({ refused: expect.stringContaining('3 sends are waiting') });
    a.end(starts[0]!);
    expect('start' in a.tryBegin()).toBe(true);
  });

  it('above the floor, refuses once the smoothed time to answer is over the target', () => {
    const a = admission(10);
    const inflight = Array.from({ length: 20 }, () => begin(a));
    // A queue: every answer takes 80 ms, and each answer lets the next send in. Within a few
    // dozen answers the door shuts.
    let answered = 0;
    for (; answered < 100; answered++) {
      a.end(inflight.pop()! - 80);
      const r = a.tryBegin();
      if (!('start' in r)) break;
      inflight.push(r.start);
    }
    expect(answered).toBeGreaterThan(5);
    expect(answered).toBeLessThan(60);
    expect(a.tryBegin()).toMatchObject({ refused: expect.stringMatching(/^sends take \d+ ms$/) });
  });

  it('one slow group commit (its rows answered together) among fast ones does not refuse', () => {
    const a = admission(10);
    const inflight = Array.from({ length: 20 }, () => begin(a));
    for (let i = 0; i < 2000; i++) {
      // Every 500th answer starts a commit of 10 rows that took 70 ms; the rest take 3 ms.
      const slow = i % 500 < 10;
      a.end(inflight.pop()! - (slow ? 70 : 3));
      const r = a.tryBegin();
      expect(r, `answer ${i}`).toHaveProperty('start');
      if ('start' in r) inflight.push(r.start);
    }
  });

  it('up to the floor a send is accepted however slow recent sends were; fast answers open the door again', () => {
    const a = admission(10);
    const inflight = Array.from({ length: 50 }, () => begin(a));
    // 30 answers that took 200 ms: the smoothed time is far past 50 ms, with 20 still in flight.
    for (let i = 0; i < 30; i++) a.end(inflight.pop()! - 200);
    expect(a.tryBegin()).toHaveProperty('refused');
    // Answers bring the node down to the floor: accepted there, even with the smoothed time still high.
    while (inflight.length > 10) a.end(inflight.pop()! - 200);
    const atFloor = begin(a);
    expect(a.tryBegin(), 'one past the floor').toHaveProperty('refused');
    a.end(atFloor);
    // Sends answered fast within the floor bring the smoothed time down; then more than the floor may be in flight.
    for (let i = 0; i < 3000; i++) a.end(begin(a));
    for (let i = 0; i < 30; i++) begin(a);
  });
});
