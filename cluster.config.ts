/**
 * The one typed place for node configuration.
 *
 * Every knob has a default that makes `npm start` a complete embedded chat server, and an
 * environment variable that overrides it. `loadConfig()` validates the result at start and
 * refuses to run with a configuration that cannot work (bad numbers, the default JWT secret
 * in production), with a message that names the variable.
 *
 * Modes follow from what is set:
 *   - nothing set                      → embedded: SQLite file under IM_DATA_DIR, in-process bus
 *   - IM_MYSQL_URL                     → single node on MySQL/MariaDB
 *   - IM_MYSQL_URL + IM_NATS_URL + IM_REDIS_URL → cluster node
 */
import { z } from 'zod';

export const DEFAULT_JWT_SECRET = 'dev-secret-change-me';
/** The server API key a node with the development JWT secret accepts while IM_API_KEYS is unset (docs/api.md). */
export const DEFAULT_API_KEY = 'dev-api-key-change-me';

/**
 * Flags the node process is started with (`npm start`, the Dockerfile's ENTRYPOINT and the test
 * harness all pass them; keep them in step, test/unit/deploy-files.test.ts checks). V8 fixes
 * these when the process starts, so they cannot be environment knobs read here.
 *
 * `--max-semi-space-size=8` (MiB): caps V8's young generation at 3 × 8 MiB instead of Node's
 * default 3 × 16 MiB. Every logged-in session survives its first scavenges, so a burst of logins
 * grows the young generation towards its cap and its pages stay resident (measured with the
 * default: ~17 MB of young-generation pages after 5,000 logins, ~3.5 KB per socket). Smaller is worse on MariaDB: scavenges then come
 * so often that the objects of logins waiting for the database are promoted, and the old space
 * fills with them (4 MiB: ~10 KB per socket). bench/results/idle-memory-2026-12-01.md. A later
 * flag on the command line wins (e.g. IM_TEST_NODE_ARGS in the harness; NODE_OPTIONS does not).
 */
export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=8'];

/** Each entry: env var → description, used for validation errors and the README table. */
export const configDocs = {
  IM_PORT: 'WebSocket + HTTP port of this node (ws://HOST:PORT/ws, /healthz, /metrics). Default 9001. The node takes it for itself: if another process holds it, the node exits at start (it never shares a port).',
  IM_HOST: 'Address to listen on. Default 0.0.0.0.',
  IM_NODE_ID: 'Name of this node in a cluster and in logs. Default: node-<hostname>-<port>.',
  IM_JWT_SECRET: `HS256 secret for login tokens. Default "${DEFAULT_JWT_SECRET}" (refused when NODE_ENV=production).`,
  IM_DATA_DIR: 'Directory for the embedded SQLite database (embedded mode) or node-local scratch. Default ./data.',
  IM_MYSQL_URL: 'mysql://user:pass@host:port/db — use MySQL/MariaDB as the record instead of SQLite.',
  IM_NATS_URL: 'nats://host:port[,nats://...] — join a cluster over NATS.',
  IM_REDIS_URL: 'redis://host:port — directory (presence) and node worker ids in a cluster.',
  IM_MAX_FRAME_BYTES: 'Largest accepted client frame; larger ones get too_large and the socket closes. Default 65536.',
  IM_HEARTBEAT_MS: 'Heartbeat interval announced in login_ok; sockets silent for 2.5x this are closed. Default 30000.',
  IM_LOGIN_PUSH_MAX: 'Most undelivered messages pushed per conversation after login_ok. Default 500.',
  IM_ACK_TIMEOUT_MS: 'A pushed message not acked within this is pushed again (up to IM_PUSH_RETRIES times). Default 10000.',
  IM_PUSH_RETRIES: 'How many times an unacked push is retried while online. Default 3.',
  IM_RECALL_WINDOW_MS: 'How long after ts the sender may recall a message. Default 120000.',
  IM_RATE_MSGS: 'Sends per second per socket (token bucket; burst is twice this). Default 50.',
  IM_RATE_FRAMES: 'Frames of any type per second per socket, ping included (token bucket; burst is twice this); excess gets rate_limited, or is dropped when it has no rid. ack and read are never refused (they are coalesced). Default 200.',
  IM_GROUP_CREATES_PER_MIN: 'group_create calls per minute per user on one node (token bucket; burst is this). Default 20.',
  IM_GROUP_MAX_MEMBERS: 'Most members a group may have; group_create/group_add beyond it get bad_request. Default 5000.',
  IM_MAX_FILE_BYTES: 'Largest file accepted by POST /files; larger uploads get 413. Default 26214400 (25 MiB).',
  IM_UPLOADS_PER_MIN: 'File uploads (POST /files) per minute per user on one node (token bucket; burst is this); more get 429. Default 30.',
  IM_BAD_FRAME_LIMIT: 'Bad frames per 10 s tolerated before the socket is closed. Default 20.',
  IM_LOGIN_TIMEOUT_MS: 'A socket that has not logged in within this is closed. Default 10000.',
  IM_COMMIT_MAX_ROWS: 'Most messages in one group commit (one multi-row INSERT). Default 500.',
  IM_COMMIT_MAX_DELAY_MS: 'Extra wait before an idle writer flushes, to gather a bigger batch; 0 flushes on the next event-loop turn (batches still grow under load, while the previous flush runs). Default 0.',
  IM_COMMIT_INTERVAL_MS: 'Least time between the starts of two group commits of one writer: under load rows gather for up to this long, so a commit (mostly a fixed cost: the fsync, the round trip) carries more of them; a writer idle for longer commits at once. 0 commits as soon as the previous commit ends. Default 2.',
  IM_MAX_INFLIGHT_SENDS: 'Overload: most sends accepted and not yet answered on a node; past it sends are answered unavailable (clients retry with the same cmid). Default 2000.',
  IM_OVERLOAD_MS: 'Overload: the latency (ms) a node keeps accepted sends under. Once sends take more than a quarter of it on average, the node answers new sends unavailable while more are in progress than it answers in half of it (less the event loop\'s lateness) at its recent best rate, and never below 128 in progress. Default 50.',
  IM_PERSISTENCE_WRITERS: 'Number of Persistence actors (group-commit writers) per node. Default 1 (SQLite) / 2 (MySQL).',
  IM_CURSOR_FLUSH_MS: 'How often coalesced ack/read cursor moves are written. Default 200.',
  IM_CONV_IDLE_MS: 'A conversation actor idle this long is passivated (its state reloads on demand). Default 300000.',
  IM_SESSION_SHARDS: 'Supervisor actors that UserSession actors are spread over. Default 64.',
  IM_SHUTDOWN_GRACE_MS: 'On SIGTERM, the longest wait for in-flight commits before closing. Default 10000.',
  IM_METRICS_TOKEN: 'When set, GET /metrics requires the header "Authorization: Bearer <token>" (401 otherwise). Default unset.',
  IM_METRICS_PORT: 'When set, /metrics is served only on this port (bound to IM_METRICS_HOST) and no longer on the client port. Default unset.',
  IM_METRICS_HOST: 'Address the IM_METRICS_PORT listener binds to. Default 127.0.0.1.',
  IM_API_KEYS: `Comma-separated keys of the server API (/api/v1/, docs/api.md), each at least 16 characters; several so keys can be rotated. Unset: a node with the development JWT secret accepts "${DEFAULT_API_KEY}", any other node answers 404 under /api/v1/ (the development key is refused when NODE_ENV=production).`,
  IM_API_PORT: 'When set, the server API (/api/v1/) is served only on this port (bound to IM_API_HOST) and no longer on the client port. Default unset.',
  IM_API_HOST: 'Address the IM_API_PORT listener binds to. Default 127.0.0.1.',
  IM_WEBHOOK_URL: 'Events sink: every committed fact is POSTed here in signed batches {"events":[…]} (docs/api.md, Events). Default unset.',
  IM_WEBHOOK_SECRET: 'HMAC-SHA256 key of the x-im-signature header on webhook and hook requests; required (16+ characters) when IM_WEBHOOK_URL or IM_HOOK_BEFORE_SEND_URL is set.',
  IM_EVENTS_JETSTREAM: 'Cluster: also publish events to the NATS JetStream stream IM_EVENTS (the NATS server needs JetStream, nats-server -js). Default true when IM_NATS_URL is set.',
  IM_EVENTS_MAX_AGE_S: 'Max age of events kept in the IM_EVENTS stream when a node creates it. Default 604800 (7 days).',
  IM_EVENTS_REPLICAS: 'Replicas of the IM_EVENTS stream when a node creates it. Default 1.',
  IM_EVENTS_DUPLICATE_WINDOW_S: 'Window in which IM_EVENTS drops a redelivered event (same Nats-Msg-Id). Default 600.',
  IM_HOOK_BEFORE_SEND_URL: 'Before-send hook: asked {"from","conv","kind","body"} before a message gets its seq; answers allow, reject or replace (docs/api.md, Hooks). Default unset.',
  IM_HOOK_TIMEOUT_MS: 'How long the before-send hook may take. Default 500.',
  IM_HOOK_FAIL_OPEN: 'true: a hook that fails or times out allows the send; false: the send is refused with unavailable. Default true.',
  IM_LOG_LEVEL: 'pino level: trace, debug, info, warn, error, fatal, silent. Default info.',
  IM_NODE_TTL_MS: 'Cluster: a node missing heartbeats this long is considered dead; its conversations then move (failover time is about this). Default 2000.',
  IM_NODE_HEARTBEAT_MS: 'Cluster: how often a node announces itself on NATS and refreshes its Redis entry. Default 500.',
  IM_CLUSTER_REQUEST_TIMEOUT_MS: 'Cluster: timeout of a request to another node over NATS. Default 5000.',
} as const;

export type ConfigEnvVar = keyof typeof configDocs;

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const schema = z.object({
  port: int(0, 65535),
  host: z.string().min(1),
  nodeId: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'IM_NODE_ID must be 1-64 chars of [A-Za-z0-9_.:-]'),
  jwtSecret: z.string().min(8, 'IM_JWT_SECRET must be at least 8 characters'),
  dataDir: z.string().min(1),
  mysqlUrl: z.string().url().optional(),
  natsUrl: z.string().optional(),
  redisUrl: z.string().url().optional(),
  maxFrameBytes: int(256, 16 * 1024 * 1024),
  heartbeatMs: int(100, 10 * 60_000),
  loginPushMax: int(0, 100_000),
  ackTimeoutMs: int(50, 10 * 60_000),
  pushRetries: int(0, 100),
  recallWindowMs: int(0, 365 * 24 * 3600_000),
  rateMsgs: int(1, 10_000_000),
  rateFrames: int(1, 10_000_000),
  groupCreatesPerMin: int(1, 1_000_000),
  groupMaxMembers: int(2, 1_000_000),
  maxFileBytes: int(0, 1024 * 1024 * 1024),
  uploadsPerMin: int(1, 1_000_000),
  badFrameLimit: int(1, 10_000),
  loginTimeoutMs: int(100, 10 * 60_000),
  commitMaxRows: int(1, 10_000),
  commitMaxDelayMs: int(0, 1000),
  commitIntervalMs: int(0, 1000),
  maxInflightSends: int(1, 1_000_000),
  overloadMs: int(1, 60_000),
  persistenceWriters: int(1, 64),
  cursorFlushMs: int(10, 60_000),
  convIdleMs: int(1000, 24 * 3600_000),
  sessionShards: int(1, 4096),
  shutdownGraceMs: int(0, 10 * 60_000),
  metricsToken: z.string().min(16, 'IM_METRICS_TOKEN must be at least 16 characters').optional(),
  metricsPort: int(0, 65535).optional(),
  metricsHost: z.string().min(1),
  apiKeys: z.array(z.string().min(16, 'IM_API_KEYS: every key must be at least 16 characters').max(512)).min(1, 'IM_API_KEYS must hold at least one key').optional(),
  apiPort: int(0, 65535).optional(),
  apiHost: z.string().min(1),
  webhookUrl: z.string().url('IM_WEBHOOK_URL must be a URL').optional(),
  webhookSecret: z.string().min(16, 'IM_WEBHOOK_SECRET must be at least 16 characters').optional(),
  eventsJetstream: z.boolean(),
  eventsMaxAgeS: int(1, 10 * 365 * 24 * 3600),
  eventsReplicas: int(1, 5),
  eventsDuplicateWindowS: int(1, 7 * 24 * 3600),
  hookBeforeSendUrl: z.string().url('IM_HOOK_BEFORE_SEND_URL must be a URL').optional(),
  hookTimeoutMs: int(10, 60_000),
  hookFailOpen: z.boolean(),
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']),
  nodeTtlMs: int(500, 10 * 60_000),
  nodeHeartbeatMs: int(100, 60_000),
  clusterRequestTimeoutMs: int(100, 10 * 60_000),
});

export type NodeConfig = z.infer<typeof schema>;
export type Mode = 'embedded' | 'mysql' | 'cluster';

export function modeOf(c: NodeConfig): Mode {
  if (c.natsUrl) return 'cluster';
  return c.mysqlUrl ? 'mysql' : 'embedded';
}

type Env = Record<string, string | undefined>;

/** Builds the validated configuration from defaults, then `overrides`, then the environment. */
export function loadConfig(env: Env = process.env, overrides: Partial<NodeConfig> = {}): NodeConfig {
  const e = (k: ConfigEnvVar) => (env[k] === undefined || env[k] === '' ? undefined : env[k]);
  const port = e('IM_PORT') ?? overrides.port ?? 9001;
  const mysqlUrl = e('IM_MYSQL_URL') ?? overrides.mysqlUrl;
  const raw = {
    port,
    host: e('IM_HOST') ?? overrides.host ?? '0.0.0.0',
    nodeId: e('IM_NODE_ID') ?? overrides.nodeId ?? `node-${sanitizeHost()}-${port}`,
    jwtSecret: e('IM_JWT_SECRET') ?? overrides.jwtSecret ?? DEFAULT_JWT_SECRET,
    dataDir: e('IM_DATA_DIR') ?? overrides.dataDir ?? './data',
    mysqlUrl,
    natsUrl: e('IM_NATS_URL') ?? overrides.natsUrl,
    redisUrl: e('IM_REDIS_URL') ?? overrides.redisUrl,
    maxFrameBytes: e('IM_MAX_FRAME_BYTES') ?? overrides.maxFrameBytes ?? 64 * 1024,
    heartbeatMs: e('IM_HEARTBEAT_MS') ?? overrides.heartbeatMs ?? 30_000,
    loginPushMax: e('IM_LOGIN_PUSH_MAX') ?? overrides.loginPushMax ?? 500,
    ackTimeoutMs: e('IM_ACK_TIMEOUT_MS') ?? overrides.ackTimeoutMs ?? 10_000,
    pushRetries: e('IM_PUSH_RETRIES') ?? overrides.pushRetries ?? 3,
    recallWindowMs: e('IM_RECALL_WINDOW_MS') ?? overrides.recallWindowMs ?? 120_000,
    rateMsgs: e('IM_RATE_MSGS') ?? overrides.rateMsgs ?? 50,
    rateFrames: e('IM_RATE_FRAMES') ?? overrides.rateFrames ?? 200,
    groupCreatesPerMin: e('IM_GROUP_CREATES_PER_MIN') ?? overrides.groupCreatesPerMin ?? 20,
    groupMaxMembers: e('IM_GROUP_MAX_MEMBERS') ?? overrides.groupMaxMembers ?? 5000,
    maxFileBytes: e('IM_MAX_FILE_BYTES') ?? overrides.maxFileBytes ?? 25 * 1024 * 1024,
    uploadsPerMin: e('IM_UPLOADS_PER_MIN') ?? overrides.uploadsPerMin ?? 30,
    badFrameLimit: e('IM_BAD_FRAME_LIMIT') ?? overrides.badFrameLimit ?? 20,
    loginTimeoutMs: e('IM_LOGIN_TIMEOUT_MS') ?? overrides.loginTimeoutMs ?? 10_000,
    commitMaxRows: e('IM_COMMIT_MAX_ROWS') ?? overrides.commitMaxRows ?? 500,
    commitMaxDelayMs: e('IM_COMMIT_MAX_DELAY_MS') ?? overrides.commitMaxDelayMs ?? 0,
    commitIntervalMs: e('IM_COMMIT_INTERVAL_MS') ?? overrides.commitIntervalMs ?? 2,
    maxInflightSends: e('IM_MAX_INFLIGHT_SENDS') ?? overrides.maxInflightSends ?? 2000,
    overloadMs: e('IM_OVERLOAD_MS') ?? overrides.overloadMs ?? 50,
    persistenceWriters: e('IM_PERSISTENCE_WRITERS') ?? overrides.persistenceWriters ?? (mysqlUrl ? 2 : 1),
    cursorFlushMs: e('IM_CURSOR_FLUSH_MS') ?? overrides.cursorFlushMs ?? 200,
    convIdleMs: e('IM_CONV_IDLE_MS') ?? overrides.convIdleMs ?? 300_000,
    sessionShards: e('IM_SESSION_SHARDS') ?? overrides.sessionShards ?? 64,
    shutdownGraceMs: e('IM_SHUTDOWN_GRACE_MS') ?? overrides.shutdownGraceMs ?? 10_000,
    metricsToken: e('IM_METRICS_TOKEN') ?? overrides.metricsToken,
    metricsPort: e('IM_METRICS_PORT') ?? overrides.metricsPort,
    metricsHost: e('IM_METRICS_HOST') ?? overrides.metricsHost ?? '127.0.0.1',
    apiKeys: e('IM_API_KEYS')?.split(',').map((k) => k.trim()).filter((k) => k !== '') ?? overrides.apiKeys,
    apiPort: e('IM_API_PORT') ?? overrides.apiPort,
    apiHost: e('IM_API_HOST') ?? overrides.apiHost ?? '127.0.0.1',
    webhookUrl: e('IM_WEBHOOK_URL') ?? overrides.webhookUrl,
    webhookSecret: e('IM_WEBHOOK_SECRET') ?? overrides.webhookSecret,
    eventsJetstream: bool(e('IM_EVENTS_JETSTREAM'), 'IM_EVENTS_JETSTREAM') ?? overrides.eventsJetstream ?? true,
    eventsMaxAgeS: e('IM_EVENTS_MAX_AGE_S') ?? overrides.eventsMaxAgeS ?? 7 * 24 * 3600,
    eventsReplicas: e('IM_EVENTS_REPLICAS') ?? overrides.eventsReplicas ?? 1,
    eventsDuplicateWindowS: e('IM_EVENTS_DUPLICATE_WINDOW_S') ?? overrides.eventsDuplicateWindowS ?? 600,
    hookBeforeSendUrl: e('IM_HOOK_BEFORE_SEND_URL') ?? overrides.hookBeforeSendUrl,
    hookTimeoutMs: e('IM_HOOK_TIMEOUT_MS') ?? overrides.hookTimeoutMs ?? 500,
    hookFailOpen: bool(e('IM_HOOK_FAIL_OPEN'), 'IM_HOOK_FAIL_OPEN') ?? overrides.hookFailOpen ?? true,
    logLevel: e('IM_LOG_LEVEL') ?? overrides.logLevel ?? 'info',
    nodeTtlMs: e('IM_NODE_TTL_MS') ?? overrides.nodeTtlMs ?? 2000,
    nodeHeartbeatMs: e('IM_NODE_HEARTBEAT_MS') ?? overrides.nodeHeartbeatMs ?? 500,
    clusterRequestTimeoutMs: e('IM_CLUSTER_REQUEST_TIMEOUT_MS') ?? overrides.clusterRequestTimeoutMs ?? 5000,
  };
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${envNameOf(String(i.path[0]))}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`);
  }
  const cfg = parsed.data;
  if (env.NODE_ENV === 'production' && cfg.jwtSecret === DEFAULT_JWT_SECRET) {
    throw new ConfigError('IM_JWT_SECRET is the default development secret; set a real one when NODE_ENV=production');
  }
  if (env.NODE_ENV === 'production' && cfg.apiKeys?.includes(DEFAULT_API_KEY)) {
    throw new ConfigError(`IM_API_KEYS holds the development key "${DEFAULT_API_KEY}"; set real keys when NODE_ENV=production`);
  }
  if ((cfg.webhookUrl || cfg.hookBeforeSendUrl) && !cfg.webhookSecret) {
    throw new ConfigError('IM_WEBHOOK_SECRET is required when IM_WEBHOOK_URL or IM_HOOK_BEFORE_SEND_URL is set (requests are signed with it)');
  }
  if (cfg.nodeTtlMs < cfg.nodeHeartbeatMs * 2) {
    throw new ConfigError(`IM_NODE_TTL_MS (${cfg.nodeTtlMs}) must be at least twice IM_NODE_HEARTBEAT_MS (${cfg.nodeHeartbeatMs}), or live nodes would flap`);
  }
  if (cfg.natsUrl && (!cfg.mysqlUrl || !cfg.redisUrl)) {
    throw new ConfigError('a cluster node (IM_NATS_URL set) also needs IM_MYSQL_URL and IM_REDIS_URL');
  }
  return cfg;
}

/** "true"/"false" (also 1/0, yes/no) from the environment; anything else is a ConfigError naming the variable. */
function bool(v: string | undefined, name: string): boolean | undefined {
  if (v === undefined) return undefined;
  if (/^(true|1|yes)$/i.test(v)) return true;
  if (/^(false|0|no)$/i.test(v)) return false;
  throw new ConfigError(`${name} must be true or false, got "${v.slice(0, 40)}"`);
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function envNameOf(key: string): string {
  const snake = key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
  const name = `IM_${snake}`;
  return name in configDocs ? name : key;
}

function sanitizeHost(): string {
  const h = (process.env.HOSTNAME ?? 'local').replace(/[^A-Za-z0-9_.-]/g, '').slice(0, 32);
  return h || 'local';
}
