/**
 * One chat node: opens the record, starts the actor system (Persistence, Conversation,
 * UserSession and the session directory), joins the cluster when IM_NATS_URL is set, and puts
 * the gateway in front. `startNode` is what main.ts runs and what in-process tests start;
 * `ChatNode.shutdown` is the SIGTERM path.
 */
import { modeOf, type NodeConfig } from './cluster.config.ts';
import { createLogger, type Logger } from './core/logger.ts';
import { Metrics } from './core/metrics.ts';
import { Snowflake } from './core/snowflake.ts';
import { UserLimits } from './core/token-bucket.ts';
import { SendAdmission } from './core/admission.ts';
import type { ConversationService } from './actors/conversation-protocol.ts';
import { ConversationRegistry } from './actors/conversation-registry.ts';
import type { Delivery } from './actors/delivery.ts';
import { LocalDelivery } from './actors/local-delivery.ts';
import { PersistencePool } from './actors/persistence-actor.ts';
import { PresenceService } from './actors/presence-watch.ts';
import { SessionDirectory, type SessionEntry } from './actors/session-directory.ts';
import { SessionManager, type DeviceAnnouncer } from './actors/session-manager.ts';
import { startEvents } from './events/node-events.ts';
import { createActorSystem, type ActorSystem } from './actors/system.ts';
import type { Connection } from './actors/user-session.ts';
import type { ClusterRuntime } from './cluster/cluster-runtime.ts';
import { Gateway } from './gateway/server.ts';
import { startServerApi } from './api/index.ts';
import { startFiles } from './files/index.ts';
import { openStore, type OpenStore } from './persistence/store.ts';

export interface ChatNode {
  config: NodeConfig;
  port: number;
  log: Logger;
  /** Stops accepting, finishes commits in flight, kicks every socket with `shutdown`, closes everything. */
  shutdown(): Promise<void>;
}

/** `typing` relays per second per user and conversation (docs/protocol.md, Limits). */
const TYPING_RELAYS_PER_S = 2;

const withTimeout = <T>(p: Promise<T>, ms: number, fallback: T): Promise<T> =>
  Promise.race([p, new Promise<T>((r) => setTimeout(() => r(fallback), ms).unref())]);

export async function startNode(config: NodeConfig, log: Logger = createLogger(config.logLevel, config.nodeId)): Promise<ChatNode> {
  const metrics = new Metrics();
  const mode = modeOf(config);
  let db: OpenStore | null = null;
  let system: ActorSystem | null = null;
  let cluster: ClusterRuntime | null = null;
  let admission: SendAdmission | null = null;
  try {
    db = await openStore({ mysqlUrl: config.mysqlUrl, dataDir: config.dataDir });
    const store = db.store;
    system = await createActorSystem();
    const root = system.root;
    const directory = new SessionDirectory();
    const local = new LocalDelivery(directory);
    // Late-bound: presence kicks sessions, and sessions need the conversation routing built after it.
    let sessions: SessionManager | null = null;
    if (mode === 'cluster') {
      const { startClusterRuntime } = await import('./cluster/cluster-runtime.ts');
      cluster = await startClusterRuntime(config, log, (user, device) => sessions?.kickLocal(user, device, 'replaced'));
    }
    const snowflake = new Snowflake(cluster ? cluster.lease.worker : 0);
    // Events (outbox relay, sinks, before-send hook): on only when configured (docs/api.md).
    const events = await startEvents({
      config, log, metrics, store, root, cluster, snowflake,
      isOnline: cluster ? (u) => cluster!.presence.isOnline(u) : (u) => !directory.devices(u)[Symbol.iterator]().next().done,
    });
    const persistence = await PersistencePool.start(root, store, log, metrics, {
      writers: config.persistenceWriters, maxRows: config.commitMaxRows, maxDelayMs: config.commitMaxDelayMs, minIntervalMs: config.commitIntervalMs, cursorFlushMs: config.cursorFlushMs,
      onCommitted: events.committed,
    });
    let delivery: Delivery = local;
    if (cluster) {
      const { ClusterDelivery } = await import('./cluster/cluster-delivery.ts');
      const cd = new ClusterDelivery(cluster.self, local, cluster.presence, cluster.nats);
      cd.listen();
      delivery = cd;
    }
    const registry = await ConversationRegistry.start(root, {
      store,
      writer: persistence,
      delivery,
      mids: snowflake,
      cursors: persistence.cursors,
      recallWindowMs: config.recallWindowMs,
      maxGroupMembers: config.groupMaxMembers,
      beforeSend: events.beforeSend,
      offline: events.offline,
      log,
    }, config.convIdleMs, metrics, log);
    let conversations: ConversationService = registry;
    if (cluster) {
      const { ClusterConversations } = await import('./cluster/cluster-conversations.ts');
      const cc = new ClusterConversations(cluster.self, registry, cluster.membership, cluster.nats, config.clusterRequestTimeoutMs, log);
      cc.listen();
      conversations = cc;
    }
    admission = new SendAdmission({ maxInflight: config.maxInflightSends, targetMs: config.overloadMs });
    const admitted = admission;
    metrics.admission = () => admitted.state();
    // v1.1 presence_sub: transitions from the cluster's presence replica, or this node's directory.
    const presenceWatch = new PresenceService(directory, store, cluster ? cluster.presence : directory);
    sessions = await SessionManager.start(root, directory, {
      config, log, metrics, store, conversations,
      pending: persistence.cursors,
      limits: new UserLimits(config.groupCreatesPerMin, TYPING_RELAYS_PER_S),
      presence: presenceWatch,
      admission,
      nodeId: config.nodeId,
    }, metrics, config.sessionShards);
    const sm = sessions;
    sm.onSessionGone((entry) => presenceWatch.sessionGone(entry));
    const announcers: DeviceAnnouncer[] = [];
    if (cluster) {
      const presence = cluster.presence;
      announcers.push({
        online: (user, device) => presence.announce(user, device, true),
        offline: (user, device) => { void presence.announce(user, device, false); },
      });
    }
    if (events.announcer) announcers.push(events.announcer);
    sm.setAnnouncer({
      online: async (user, device) => { await Promise.all(announcers.map((a) => a.online(user, device))); },
      offline: (user, device) => { for (const a of announcers) a.offline(user, device); },
    });
    if (cluster) {
      // After this node was cut off from NATS, pushes other nodes sent it meanwhile are lost.
      // Once peers have resubscribed too (a few heartbeats), devices here catch up from the record.
      const c = cluster;
      c.nats.onReconnect(() => {
        setTimeout(() => {
          void sm.catchUpAll().then((n) => { if (n > 0) log.info({ pushed: n }, 'caught sessions up after NATS reconnect'); });
        }, config.nodeHeartbeatMs * 3).unref();
      });
    }

    const api = startServerApi({ config, log, conversations, store, directory, sessions: sm, cluster });
    const files = await startFiles({ config, log, store, cluster });
    const gateway = new Gateway(config, {
      openSession: (user: string, device: string, conn: Connection, rid: string, stillWanted: () => boolean) => sm.open(user, device, conn, rid, stillWanted),
      closeSession: (entry: SessionEntry) => sm.close(entry),
      kickSession: (entry: SessionEntry, reason) => sm.kick(entry, reason),
      healthy: async () => {
        const dbUp = await withTimeout(store.ping().then(() => true, () => false), 1000, false);
        return dbUp && (!cluster || cluster.nats.connected);
      },
      metricsText: () => metrics.registry.metrics(),
      api,
      files,
    }, log, metrics);
    if (cluster) await cluster.settle();
    const port = await gateway.listen();
    log.info({ port, mode, engine: gateway.engine, db: db.dialect, dataDir: mode === 'embedded' ? config.dataDir : undefined }, 'node listening');

    let stopping: Promise<void> | null = null;
    const shutdown = () => {
      stopping ??= (async () => {
        log.info({ connections: gateway.connectionCount }, 'shutting down');
        gateway.stopAccepting();
        // Commits in flight finish and their `sent` answers go out before the sockets close.
        await withTimeout(persistence.drain(), config.shutdownGraceMs, undefined);
        await new Promise((r) => setImmediate(r));
        const devices = await sm.kickAll('shutdown');
        gateway.closeAll();
        registry.stop();
        if (cluster) {
          await cluster.presence.clearSelf(devices);
          await cluster.stop();
        }
        await system!.destroy().catch(() => undefined);
        admission?.stop();
        await db!.close();
        log.info('stopped');
      })();
      return stopping;
    };
    return { config, port, log, shutdown };
  } catch (e) {
    admission?.stop();
    await cluster?.stop().catch(() => undefined);
    await system?.destroy().catch(() => undefined);
    await db?.close().catch(() => undefined);
    throw e;
  }
}
