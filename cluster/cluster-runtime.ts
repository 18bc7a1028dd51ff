/**
 * The cluster side of a node: NATS transport, Redis client, membership, worker lease and
 * presence. node.ts starts it when IM_NATS_URL is set and plugs its delivery and conversation
 * routing into the actors; an embedded or MySQL-only node never loads this module.
 */
import { Redis } from 'ioredis';
import type { NodeConfig } from '../cluster.config.ts';
import type { Logger } from '../core/logger.ts';
import { Membership } from './membership.ts';
import { NatsTransport } from './nats-transport.ts';
import { Presence } from './presence.ts';
import { subjectSafe } from './subjects.ts';
import { WorkerLease } from './worker-lease.ts';

export interface ClusterRuntime {
  self: string;
  nats: NatsTransport;
  redis: Redis;
  membership: Membership;
  presence: Presence;
  lease: WorkerLease;
  /** Waits until this node has heard its peers (so placement agrees with theirs). */
  settle(): Promise<void>;
  stop(): Promise<void>;
}

export async function startClusterRuntime(config: NodeConfig, log: Logger, kickLocal: (user: string, device: string) => void): Promise<ClusterRuntime> {
  const self = subjectSafe(config.nodeId);
  const redis = new Redis(config.redisUrl!, {
    lazyConnect: true,
    // Fail commands at once while Redis is away (callers degrade) instead of queueing them.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: (times) => Math.min(times * 100, 1000),
    connectTimeout: 5000,
  });
  redis.on('error', (e: Error) => log.debug({ err: e.message }, 'redis error'));
  await redis.connect();
  const nats = await NatsTransport.connect(config.natsUrl!, self, log);
  const membership = new Membership(self, nats, redis, config.nodeTtlMs, config.nodeHeartbeatMs, log);
  const lease = await WorkerLease.acquire(redis, self, log);
  // A login waits for every live peer to confirm it; a peer silent for a second is dying (its TTL will
  // drop it), and waiting the full request timeout would stall every login of a reconnect storm.
  const presence = new Presence(self, nats, redis, membership, kickLocal, Math.min(1000, config.clusterRequestTimeoutMs), log);
  await membership.start();
  await presence.start();
  log.info({ self, worker: lease.worker }, 'joined cluster');
  return {
    self, nats, redis, membership, presence, lease,
    settle: async () => {
      for (let i = 0; i < 100 && !membership.settled; i++) await new Promise((r) => setTimeout(r, 50));
    },
    stop: async () => {
      await membership.stop();
      await lease.release();
      await nats.close();
      redis.disconnect();
    },
  };
}
