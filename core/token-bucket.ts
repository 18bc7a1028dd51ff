/**
 * The tokens a bucket holds at `now` (ms, performance.now()) that held `tokens` at `last`: refilled
 * at `rate` per second, never above `burst`. The one refill rule, for TokenBucket and for state
 * kept in plain fields (the gateway's per-socket frame limit).
 */
export function refill(tokens: number, last: number, now: number, rate: number, burst: number): number {
  return Math.min(burst, tokens + ((now - last) / 1000) * rate);
}

/** Token bucket: `rate` tokens per second, up to `burst`; used for per-socket and per-user limits. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(private readonly rate: number, private readonly burst: number, now = performance.now()) {
    this.tokens = burst;
    this.last = now;
  }

  /** Whether the bucket has refilled to its burst by `now` (nothing of it is still being paid back). */
  isFull(now = performance.now()): boolean {
    return refill(this.tokens, this.last, now, this.rate, this.burst) >= this.burst;
  }

  take(now = performance.now()): boolean {
    this.tokens = refill(this.tokens, this.last, now, this.rate, this.burst);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/**
 * One token bucket per key (a user id), for limits shared by every socket of that key. Memory
 * stays bounded: when more than `maxKeys` keys are held, buckets that have refilled completely
 * (their key has been quiet long enough to be back at full burst) are forgotten, which changes
 * nothing for their keys; if every bucket is still draining, the oldest keys go.
 */
export class KeyedRateLimiter {
  private readonly buckets = new Map<string, TokenBucket>();

  constructor(private readonly rate: number, private readonly burst: number, private readonly maxKeys = 100_000) {}

  take(key: string, now = performance.now()): boolean {
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= this.maxKeys) this.prune(now);
      this.buckets.set(key, (b = new TokenBucket(this.rate, this.burst, now)));
    }
    return b.take(now);
  }

  get size(): number {
    return this.buckets.size;
  }

  private prune(now: number): void {
    for (const [k, b] of this.buckets) if (b.isFull(now)) this.buckets.delete(k);
    // Still full of draining buckets: drop the oldest half (Map keeps insertion order).
    let excess = this.buckets.size - Math.floor(this.maxKeys / 2);
    for (const k of this.buckets.keys()) {
      if (excess-- <= 0) break;
      this.buckets.delete(k);
    }
  }
}

/**
 * The limits shared by every session of a user on this node: group creations per minute, and
 * `typing` relays per second per conversation. One keyed limiter each, bounded in memory.
 */
export class UserLimits {
  private readonly groupCreates: KeyedRateLimiter;
  private readonly typings: KeyedRateLimiter;

  constructor(groupCreatesPerMin: number, typingPerSecond: number) {
    this.groupCreates = new KeyedRateLimiter(groupCreatesPerMin / 60, groupCreatesPerMin);
    this.typings = new KeyedRateLimiter(typingPerSecond, 1);
  }

  groupCreate(user: string): boolean {
    return this.groupCreates.take(user);
  }

  typing(user: string, conv: string): boolean {
    return this.typings.take(`${user}\u0000${conv}`);
  }
}
