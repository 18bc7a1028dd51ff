/**
 * Full-jitter exponential backoff (AWS architecture blog): the delay for attempt n is uniform in
 * [minMs, min(maxMs, baseMs * 2^n)]. Jitter spreads the reconnect storm when a node dies and all
 * its clients come back at once.
 */
export interface BackoffOptions {
  /** Cap of the first attempt's window. Default 100 ms. */
  baseMs?: number;
  /** Upper bound of any delay. Default 5000 ms. */
  maxMs?: number;
  /** Lower bound of any delay. Default 0. */
  minMs?: number;
  /** Injected for tests; returns [0, 1). */
  random?: () => number;
}

export class Backoff {
  private attempt = 0;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly minMs: number;
  private readonly random: () => number;

  constructor(opts: BackoffOptions = {}) {
    this.baseMs = opts.baseMs ?? 100;
    this.maxMs = opts.maxMs ?? 5000;
    this.minMs = Math.min(opts.minMs ?? 0, this.maxMs);
    this.random = opts.random ?? Math.random;
  }

  /** Delay for the next attempt; each call widens the window until maxMs. */
  next(): number {
    // Clamp the exponent so 2^n never overflows into Infinity/NaN after many failures.
    const cap = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    const hi = Math.max(cap, this.minMs);
    return Math.floor(this.minMs + this.random() * (hi - this.minMs));
  }

  /** Number of delays handed out since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  reset(): void {
    this.attempt = 0;
  }
}
