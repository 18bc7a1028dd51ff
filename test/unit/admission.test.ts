/**
 * Node-wide send admission (core/admission.ts), driven through its API: `end(start)` with a start
 * set back in time stands for a send that took that long, and `sample(now, lag)` stands for the
 * node's 100 ms timer, at times the test chooses.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { SendAdmission } from '../../core/admission.ts';

const made: SendAdmission[] = [];
afterEach(() => { for (const a of made.splice(0)) a.stop(); });

/** A target of 50 ms: the node is slow past 12.5 ms, and keeps what it answers in 25 ms. */
function admission(floor: number, maxInflight = 10_000): SendAdmission {
  const a = new SendAdmission({ maxInflight, targetMs: 50, floor });
  a.stop(); // the test drives the samples
  made.push(a);
  return a;
}

function begin(a: SendAdmission): number {
  const r = a.tryBegin();
  if (!('start' in r)) throw new Error(`refused: ${r.refused}`);
  return r.start;
}

/** Accepts sends until one is refused (at most `max`); returns their starts. */
function fill(a: SendAdmission, max = 10_000): number[] {
  const out: number[] = [];
  while (out.length < max && 'start' in a.tryBegin()) out.push(0);
  return out;
}

/** A start for the samples' clock, in whole ms so that the rates come out exact. */
function clock(a: SendAdmission): number {
  const t = Math.ceil(performance.now()) + 1;
  a.sample(t, 0);
  return t;
}

/** The node answers `perSample` sends that took `ms` each in every 100 ms sample, `samples` times. */
function run(a: SendAdmission, t0: number, samples: number, perSample: number, ms: number, lagMs = 0): number {
  let t = t0;
  for (let s = 0; s < samples; s++) {
    for (let i = 0; i < perSample; i++) a.end(begin(a) - ms);
    t += 100;
    a.sample(t, lagMs);
  }
  return t;
}

describe('SendAdmission', () => {
  it('refuses past maxInflight whatever the latency, and accepts again once answers come', () => {
    const a = admission(0, 3);
    const starts = [begin(a), begin(a), begin(a)];
    expect(a.tryBegin()).toMatchObject({ refused: expect.stringContaining('3 sends are waiting') });
    a.end(starts[0]!);
    expect('start' in a.tryBegin()).toBe(true);
  });

  it('a node that answers fast accepts a burst far past its usual queue', () => {
    const a = admission(16);
    // 100 answers per 100 ms (1 per ms) in 3 ms each: the limit is 1/ms × 25 ms = 25.
    run(a, clock(a), 5, 100, 3);
    expect(fill(a, 1500)).toHaveLength(1500);
  });

  it('a slow node keeps what it answers in half the target: the queue is capped at rate × 25 ms', () => {
    const a = admission(16);
    const t = run(a, clock(a), 5, 200, 40); // 2 per ms, 40 ms each: slow
    const accepted = fill(a);
    // 2/ms × 25 ms = 50 in progress at most, whatever arrives.
    expect(accepted).toHaveLength(50);
    expect(a.tryBegin()).toMatchObject({ refused: expect.stringMatching(/^50 sends in progress take \d+ ms$/) });
    // The event loop running 15 ms late leaves 10 ms of the budget: 2/ms × 10 = 20 (already past it).
    a.sample(t + 100, 15);
    expect(a.tryBegin()).toMatchObject({ refused: expect.stringContaining('the event loop runs 15 ms late') });
  });

  it('a group commit that stalls 70 ms at 5 sends per ms: what arrives meanwhile is accepted, and so is what follows', () => {
    const a = admission(64);
    let t = run(a, clock(a), 5, 500, 3);
    for (let round = 0; round < 3; round++) {
      // 350 sends arrive while one commit takes 70 ms: past the limit (5/ms × 25 ms = 125), but the node was fast.
      const stalled = Array.from({ length: 350 }, () => begin(a));
      // The commit ends: its rows are answered together, having waited 70 ms down to 0.
      stalled.forEach((s, i) => a.end(s - (70 - i / 5)));
      // The smoothed time is past 12.5 ms now, yet the queue is short: sends go on, answered in 3 ms.
      for (let s = 0; s < 3; s++) {
        for (let i = 0; i < 500; i++) {
          const r = a.tryBegin();
          expect(r, `round ${round}, sample ${s}, send ${i}`).toHaveProperty('start');
          if ('start' in r) a.end(r.start - 3);
        }
        a.sample((t += 100), 0);
      }
    }
  });

  it('when answers stop, the limit falls to the floor within half a second; fast answers open the door again', () => {
    const a = admission(10);
    let t = run(a, clock(a), 5, 300, 60); // slow, 3/ms: limit 75
    expect(fill(a)).toHaveLength(75);
    // The store stalls: nothing is answered for 5 samples.
    for (let s = 0; s < 5; s++) a.sample((t += 100), 0);
    expect(a.tryBegin(), 'nothing answered for half a second').toHaveProperty('refused');
    // 70 of the 75 are answered late, in 200 ms each, then nothing for half a second again: with
    // 5 in progress, 5 more are accepted, up to the floor of 10.
    for (let i = 0; i < 70; i++) a.end(performance.now() - 200);
    a.sample((t += 100), 0);
    for (let s = 0; s < 5; s++) a.sample((t += 100), 0);
    expect(fill(a)).toHaveLength(5);
    // Fast answers bring the smoothed time down: then a burst is accepted again.
    for (let i = 0; i < 10; i++) a.end(performance.now());
    for (let i = 0; i < 200; i++) a.end(begin(a));
    expect(fill(a, 500)).toHaveLength(500);
  });
});
