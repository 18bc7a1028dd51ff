/**
 * The events side of a node (docs/api.md, Events and Hooks), assembled from the configuration:
 * which sinks exist (webhook, JetStream), whether facts are written with outbox rows at all
 * (only when some sink will read them), the relay actor, the before-send hook, the best-effort
 * user.online/offline events, and the presence test behind `push.needed`.
 */
import type { NodeConfig } from '../cluster.config.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import type { Snowflake } from '../core/snowflake.ts';
import type { RecordStore } from '../persistence/message-store.ts';
import { spawn, type ActorRef, type ParentActor } from '../actors/system.ts';
import type { DeviceAnnouncer } from '../actors/session-manager.ts';
import type { ClusterRuntime } from '../cluster/cluster-runtime.ts';
import { ownerOf } from '../cluster/placement.ts';
import { beforeSendHook, type BeforeSend } from './before-send-hook.ts';
import { EventRelayActor, type EventSink, type RelayParams, type RelayedEvent } from './event-relay.ts';
import { JetStreamSink } from './jetstream-sink.ts';
import { WebhookSink } from './webhook-sink.ts';
import type { OfflineLookup } from '../actors/conversation.ts';

export interface NodeEvents {
  /** Set when events are on: members other than the sender with no online device, for push.needed. */
  offline?: OfflineLookup;
  beforeSend?: BeforeSend;
  /** user.online / user.offline, when events are on. */
  announcer?: DeviceAnnouncer;
  /** Tells the relay that rows were committed. */
  committed(): void;
}

export interface EventsDeps {
  config: NodeConfig;
  log: Logger;
  metrics: Metrics;
  store: RecordStore;
  root: ParentActor;
  cluster: ClusterRuntime | null;
  snowflake: Snowflake;
  /** Whether the user has a device online anywhere (cluster presence, or this node's sessions). */
  isOnline(user: string): boolean;
}

export async function startEvents(d: EventsDeps): Promise<NodeEvents> {
  const { config, log, metrics, cluster } = d;
  const beforeSend = config.hookBeforeSendUrl
    ? beforeSendHook(
      { url: config.hookBeforeSendUrl, secret: config.webhookSecret!, timeoutMs: config.hookTimeoutMs, failOpen: config.hookFailOpen, maxBodyBytes: config.maxFrameBytes },
      log, { calls: (outcome) => metrics.hookCalls.inc({ outcome }) })
    : undefined;

  const sinks: EventSink[] = [];
  if (config.webhookUrl) sinks.push(new WebhookSink(config.webhookUrl, config.webhookSecret!));
  if (cluster && config.eventsJetstream) {
    sinks.push(new JetStreamSink(cluster.nats.connection, { maxAgeS: config.eventsMaxAgeS, replicas: config.eventsReplicas, duplicateWindowS: config.eventsDuplicateWindowS }));
  }
  if (sinks.length === 0) return { beforeSend, committed: () => undefined };

  // Outbox rows are attributed to the node name the cluster knows this node by.
  const self = cluster ? cluster.self : config.nodeId;
  await d.store.enableEvents(self);
  const nodesToRelay = cluster
    ? async (): Promise<string[]> => {
      // Our own rows, and those of dead nodes whose rendezvous owner among the live ones is us.
      const live = cluster.membership.liveNodes();
      const pending = await d.store.outboxNodes();
      return [self, ...pending.filter((n) => n !== self && !live.includes(n) && ownerOf(n, live) === self)];
    }
    : async (): Promise<null> => null;
  const params: RelayParams = { store: d.store, sinks, opts: { nodesToRelay }, metrics, log };
  const relay: ActorRef = await spawn(d.root, EventRelayActor, params, 'event-relay');
  const ignore = (): void => undefined;

  const presenceEvent = (type: 'user.online' | 'user.offline', user: string, device: string): void => {
    const id = d.snowflake.next();
    const json = `{"id":"${id}","type":"${type}","ts":${Date.now()},"node":${JSON.stringify(self)},"user":${JSON.stringify(user)},"device":${JSON.stringify(device)}}`;
    relay.send('ephemeral', { id, type, conv: null, json } satisfies RelayedEvent).catch(ignore);
  };
  return {
    beforeSend,
    offline: { offlineUsers: (users) => users.filter((u) => !d.isOnline(u)) },
    announcer: {
      online: async (user, device) => presenceEvent('user.online', user, device),
      offline: (user, device) => presenceEvent('user.offline', user, device),
    },
    committed: () => { relay.send('wake').catch(ignore); },
  };
}
