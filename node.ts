/**
 * One chat node: opens the record, starts the actor system (Persistence, Conversation,
 * UserSession and the session directory), and the gateway in front. `startNode` is what
 * main.ts runs and what in-process tests start; `ChatNode.shutdown` is the SIGTERM path.
 */
import { modeOf, type NodeConfig } from './cluster.config.ts';
import { createLogger, type Logger } from './core/logger.ts';
import { Metrics } from './core/metrics.ts';
import { Snowflake } from './core/snowflake.ts';
import { ConversationRegistry } from './actors/conversation-registry.ts';
import { LocalDelivery } from './actors/local-delivery.ts';
import { PersistencePool } from './actors/persistence-actor.ts';
import { SessionDirectory, type SessionEntry } from './actors/session-directory.ts';
import { SessionManager } from './actors/session-manager.ts';
import { createActorSystem, type ActorSystem } from './actors/system.ts';
import type { Connection } from './actors/user-session.ts';
import { Gateway } from './gateway/server.ts';
import { openDatabase, type Database } from './persistence/database.ts';
import { MessageStore } from './persistence/message-store.ts';

export interface ChatNode {
  config: NodeConfig;
  port: number;
  log: Logger;
  /** Stops accepting, finishes commits in flight, kicks every socket with `shutdown`, closes everything. */
  shutdown(): Promise<void>;
}

const withTimeout = <T>(p: Promise<T>, ms: number, fallback: T): Promise<T> =>
  Promise.race([p, new Promise<T>((r) => setTimeout(() => r(fallback), ms).unref())]);

export async function startNode(config: NodeConfig, log: Logger = createLogger(config.logLevel, config.nodeId)): Promise<ChatNode> {
  const metrics = new Metrics();
  const mode = modeOf(config);
  let db: Database | null = null;
  let system: ActorSystem | null = null;
  try {
    db = await openDatabase({ mysqlUrl: config.mysqlUrl, dataDir: config.dataDir });
    const store = new MessageStore(db);
    system = await createActorSystem();
    const root = system.root;
    const snowflake = new Snowflake(0);
    const persistence = await PersistencePool.start(root, store, log, metrics, {
      writers: config.persistenceWriters, maxRows: config.commitMaxRows, maxDelayMs: config.commitMaxDelayMs, cursorFlushMs: config.cursorFlushMs,
    });
    const directory = new SessionDirectory();
    const delivery = new LocalDelivery(directory);
    const moveCursor = (conv: string, user: string, ack?: number, read?: number) => persistence.cursors.move(conv, user, ack, read);
    const conversations = await ConversationRegistry.start(root, {
      store,
      write: (row) => persistence.write(row),
      delivery,
      nextMid: () => snowflake.next(),
      moveCursor,
      noteLastSeq: (conv, seq) => persistence.cursors.lastSeq(conv, seq),
      recallWindowMs: config.recallWindowMs,
      log,
    }, config.convIdleMs, metrics, log);
    const sessions = await SessionManager.start(root, directory, {
      config, log, metrics, store, conversations, moveCursor,
      pendingAck: (conv, user) => persistence.pendingAck(conv, user),
      deliveredReceipt: (_conv, toUser, json) => delivery.event([toUser], json),
      nodeId: config.nodeId,
    }, metrics, config.sessionShards);

    let storeUp = true;
    const gateway = new Gateway(config, {
      openSession: (user: string, device: string, conn: Connection) => sessions.open(user, device, conn),
      closeSession: (entry: SessionEntry) => sessions.close(entry),
      healthy: async () => {
        storeUp = await withTimeout(store.ping().then(() => true, () => false), 1000, false);
        return storeUp;
      },
      metricsText: () => metrics.registry.metrics(),
    }, log, metrics);
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
        sessions.kickAll('shutdown');
        gateway.closeAll();
        conversations.stop();
        await system!.destroy().catch(() => undefined);
        await db!.close();
        log.info('stopped');
      })();
      return stopping;
    };
    return { config, port, log, shutdown };
  } catch (e) {
    await system?.destroy().catch(() => undefined);
    await db?.close().catch(() => undefined);
    throw e;
  }
}
