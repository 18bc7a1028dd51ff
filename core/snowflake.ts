/**
 * Cluster-unique message ids (snowflake layout): 41 bits of milliseconds since EPOCH, 10 bits of
 * worker number, 12 bits of sequence. The worker number comes from a shared registry (a Redis
 * lease in a cluster, 0 when embedded), never from a hash of the node id, which could collide.
 * Returned as decimal strings because JSON numbers cannot hold 63 bits.
 */
const EPOCH = 1_735_689_600_000n; // 2025-01-01T00:00:00Z

export class Snowflake {
  private lastMs = -1n;
  private seq = 0n;

  constructor(private readonly worker: number) {
    if (!Number.isInteger(worker) || worker < 0 || worker > 1023) throw new RangeError(`worker ${worker} out of 0..1023`);
  }

  next(nowMs: number = Date.now()): string {
    let ms = BigInt(nowMs);
    // Never go backwards: a clock step back keeps using the last millisecond.
    if (ms < this.lastMs) ms = this.lastMs;
    if (ms === this.lastMs) {
      this.seq = (this.seq + 1n) & 0xfffn;
      if (this.seq === 0n) ms = this.lastMs + 1n; // 4096 ids in one ms: borrow the next millisecond
    } else {
      this.seq = 0n;
    }
    this.lastMs = ms;
    return (((ms - EPOCH) << 22n) | (BigInt(this.worker) << 12n) | this.seq).toString();
  }
}
