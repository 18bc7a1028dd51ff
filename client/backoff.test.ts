import { describe, expect, it } from 'vitest';
import { Backoff } from './backoff.ts';

describe('Backoff (full jitter)', () => {
  it('doubles the window each attempt up to maxMs', () => {
    const b = new Backoff({ baseMs: 100, maxMs: 1000, random: () => 0.999999 });
    const d = Array.from({ length: 7 }, () => b.next());
    expect(d).toEqual([99, 199, 399, 799, 999, 999, 999]);
  });

  it('draws uniformly from [minMs, cap]', () => {
    const lo = new Backoff({ baseMs: 100, maxMs: 1000, minMs: 50, random: () => 0 });
    expect(lo.next()).toBe(50);
    const mid = new Backoff({ baseMs: 100, maxMs: 1000, minMs: 0, random: () => 0.5 });
    expect([mid.next(), mid.next()]).toEqual([50, 100]);
  });

  it('stays within bounds with real randomness and never overflows', () => {
    const b = new Backoff({ baseMs: 10, maxMs: 500 });
    for (let i = 0; i < 2000; i++) {
      const d = b.next();
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(500);
    }
  });

  it('reset() starts again from the base window', () => {
    const b = new Backoff({ baseMs: 100, maxMs: 10_000, random: () => 0.999999 });
    b.next(); b.next(); b.next();
    expect(b.attempts).toBe(3);
    b.reset();
    expect(b.next()).toBe(99);
  });
});
