/**
 * Snowflake worker numbers (0..1023) leased from Redis: `SET im:worker:<n> <node> NX PX`, kept
 * alive while the node runs. A shared registry, not a hash of the node id, so two nodes never
 * mint ids with the same worker number while their leases hold.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../core/logger.ts';

const WORKERS = 1024;
const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0`;

export class WorkerLease {
  private timer: NodeJS.Timeout | null = null;

  private constructor(readonly worker: number, private readonly redis: Redis, private readonly node: string, private readonly ttlMs: number, private readonly log: Logger) {}

  static async acquire(redis: Redis, node: string, log: Logger, ttlMs = 30_000): Promise<WorkerLease> {
    const start = (await redis.incr('im:worker:next')) % WORKERS;
    for (let i = 0; i < WORKERS; i++) {
      const n = (start + i) % WORKERS;
      if ((await redis.set(`im:worker:${n}`, node, 'PX', ttlMs, 'NX')) === 'OK') {
        const lease = new WorkerLease(n, redis, node, ttlMs, log);
        lease.timer = setInterval(() => void lease.renew(), ttlMs / 3);
        lease.timer.unref();
        // Redis restarted without persistence has forgotten the lease: take it back at once,
        // before a starting node can be handed the same number.
        redis.on('ready', () => void lease.renew());
        return lease;
      }
    }
    throw new Error('no free snowflake worker number in Redis (1024 leases taken)');
  }

  private async renew(): Promise<void> {
    try {
      const ok = await this.redis.eval(RENEW, 1, `im:worker:${this.worker}`, this.node, this.ttlMs);
      if (ok !== 1) {
        // Lost (Redis was down past the TTL): take it back if still free, else say so loudly.
        const got = await this.redis.set(`im:worker:${this.worker}`, this.node, 'PX', this.ttlMs, 'NX');
        if (got !== 'OK') this.log.error({ worker: this.worker }, 'snowflake worker lease taken by another node; restart this node');
      }
    } catch (e) {
      this.log.warn({ err: String(e) }, 'renewing the snowflake worker lease failed; will retry');
    }
  }

  async release(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.redis.eval(`if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0`, 1, `im:worker:${this.worker}`, this.node).catch(() => undefined);
  }
}
