/**
 * `npm run bench`: measures the project and its baselines in the same run and writes
 * bench/results/<date>.json, <date>.md (Markdown tables, ratios vs the uWS ceiling) and
 * <date>.svg (p99 latency vs offered load).
 *
 * Targets (servers, each a child process on a free loopback port, fresh per target):
 *   uws           bench/baselines/uws-echo.ts      — ceiling: bare uWS.js, same frames, no logic
 *   socketio      bench/baselines/socketio-chat.ts — the usual choice: plain Socket.IO chat
 *   node-sqlite   the project (`node --max-semi-space-size=8 --import tsx main.ts`), embedded SQLite in a temp IM_DATA_DIR
 *   node-mariadb  the project with IM_MYSQL_URL on a temporary MariaDB from the test harness
 *   node-cluster2 two project nodes on MariaDB + NATS + Redis (test harness `startAll`); every
 *                 pair / group / offline conversation spans both nodes
 *   ejabberd      bench/baselines/ejabberd.ts — what users pick instead: a private ejabberd
 *                 (Debian package, installed on demand), XMPP over WebSocket; pairs only
 * Scenarios: idle, pairs, fanout, reconnect (storm of clients with offline messages waiting).
 * plus the storage ceilings (bench/baselines/storage-ceiling.ts) for SQLite and MariaDB.
 *
 * A target that cannot start or a scenario that fails is reported as failed; the run goes on.
 * See bench/README.md for flags and bigger runs.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChatNodeHandle, ChatNodeOptions } from '../test/harness/chat-node.ts';
import type { ServerHandle } from '../test/harness/servers.ts';
import { startEjabberd } from './baselines/ejabberd.ts';
import { runStorageCeiling } from './baselines/storage-ceiling.ts';
import { seedPairsRecord } from './seed.ts';
import {
  defaultLoadOptions,
  loopbackAddrs,
  pairUsers,
  runFanout,
  runIdle,
  runPairs,
  runReconnect,
  type LoadOptions,
  type SearchParams,
  type Target,
} from './loadgen/coordinator.ts';
import { openFilesSoftLimit, sampleProc } from './loadgen/procstat.ts';
import { renderMarkdown, renderSvg, type BenchReport, type ScenarioFailure, type ScenarioName, type TargetResult } from './report.ts';
import { setTimeout as sleep } from 'node:timers/promises';

const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));
const REPO_ROOT = resolve(BENCH_DIR, '..');
const ALL_TARGETS = ['uws', 'socketio', 'node-sqlite', 'node-mariadb', 'node-cluster2', 'ejabberd'] as const;
type TargetName = (typeof ALL_TARGETS)[number];
const ALL_SCENARIOS: ScenarioName[] = ['idle', 'pairs', 'fanout', 'reconnect'];
/** The cluster skips idle by default: 5000 logins cost it ~20 s of a bounded run (`--cluster-scenarios`). */
const CLUSTER_DEFAULT_SCENARIOS: ScenarioName[] = ['pairs', 'fanout', 'reconnect'];

// ------------------------------------------------------------------------------------ flags

const HELP = `npm run bench -- [flags]
  --targets LIST        ${ALL_TARGETS.join(',')} (default: all; ejabberd runs pairs only)
  --scenarios LIST      idle,pairs,fanout,reconnect (default: all)
  --cluster-scenarios LIST  scenarios run on node-cluster2 (default: pairs,fanout,reconnect)
  --storage LIST        sqlite,mariadb | none (default: sqlite,mariadb)
  --duration SEC        seconds per search step (default 3)
  --workers N           load-generator processes (default 2)
  --idle-conns N        sockets in the idle scenario (default 5000)
  --idle-rest SEC       rest window of the idle scenario (default 5)
  --pairs N             1:1 pairs (default 100)
  --pairs-start RATE    first offered rate, msg/s (default 2000)
  --pairs-rates LIST    fixed offered rates instead of the search, e.g. 2000,5000 (each run --repeat times)
  --repeat N            runs of each fixed rate (default 1)
  --seed-messages N     node-sqlite / node-mariadb: store N messages in the pairs' conversations
                        before the node starts (default 0)
  --members N           group size in fanout (default 500)
  --fanout-start RATE   first offered rate, msg/s into the group (default 20)
  --max-steps N         doubling steps before refining (default 6)
  --refine N            bisection steps after the first failure (default 1)
  --p99-ms MS           pairs pass limit for p99 send→sent (default 50)
  --fanout-p99-ms MS    fanout pass limit for p99 send→last delivery (default 100)
  --reconnect-clients N clients with offline messages that connect at once (default 2000)
  --reconnect-msgs K    offline messages per client (default 5)
  --reconnect-senders N sender sockets writing the offline messages (default 50)
  --reconnect-concurrency N  connection attempts in flight per worker in the storm (default 0 = all at once)
  --reconnect-sync-ms MS     a client whose redelivery stalls this long sends sync (default 3000)
  --reconnect-timeout SEC    bound of the preparation and of the storm, each (default 60)
  --body-bytes N        message body size (default 100)
  --source-addrs N      rotate over 127.0.0.1..127.0.0.N (default: enough for the socket count)
  --conns-per-addr N    sockets per source address before rotating (default 25000)
  --ping-ms MS          ping interval (default: the server's heartbeat_ms)
  --out DIR             results directory (default bench/results)
  --quick               tiny sizes, for a smoke test (~1 minute)
  --render FILE.json    only re-write FILE.md and FILE.svg from a run's JSON (after report changes)
  --help`;

interface Flags {
  targets: TargetName[];
  scenarios: ScenarioName[];
  clusterScenarios: ScenarioName[];
  reconnectClients: number;
  reconnectMsgs: number;
  reconnectSenders: number;
  reconnectConcurrency: number;
  reconnectSyncMs: number;
  reconnectTimeoutSec: number;
  storage: ('sqlite' | 'mariadb')[];
  durationSec: number;
  workers: number;
  idleConns: number;
  idleRestSec: number;
  pairs: number;
  pairsStart: number;
  pairsRates: number[];
  repeat: number;
  seedMessages: number;
  members: number;
  fanoutStart: number;
  maxSteps: number;
  refine: number;
  p99Ms: number;
  fanoutP99Ms: number;
  bodyBytes: number;
  sourceAddrs: number;
  connsPerAddr: number;
  pingMs: number;
  out: string;
}

function parseFlags(argv: string[]): Flags {
  const get = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    if (i < 0) return undefined;
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new Error(`--${name} needs a value`);
    return v;
  };
  const num = (name: string, def: number, min: number, max: number): number => {
    const v = get(name);
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max) throw new Error(`--${name} must be a number in [${min}, ${max}]`);
    return n;
  };
  const list = <T extends string>(name: string, all: readonly T[], def: readonly T[]): T[] => {
    const v = get(name);
    if (v === undefined) return [...def];
    if (v === 'none') return [];
    const items = v.split(',').map((s) => s.trim()).filter(Boolean);
    for (const it of items) if (!all.includes(it as T)) throw new Error(`--${name}: unknown '${it}' (known: ${all.join(', ')})`);
    return items as T[];
  };
  const quick = argv.includes('--quick');
  const known = new Set(['targets', 'scenarios', 'cluster-scenarios', 'reconnect-clients', 'reconnect-msgs', 'reconnect-senders', 'reconnect-concurrency', 'reconnect-sync-ms', 'reconnect-timeout', 'storage', 'duration', 'workers', 'idle-conns', 'idle-rest', 'pairs', 'pairs-start', 'pairs-rates', 'repeat', 'seed-messages', 'members', 'fanout-start', 'max-steps', 'refine', 'p99-ms', 'fanout-p99-ms', 'body-bytes', 'source-addrs', 'conns-per-addr', 'ping-ms', 'out']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === '--quick' || a === '--help') continue;
    if (a.startsWith('--') && known.has(a.slice(2))) {
      i++;
      continue;
    }
    throw new Error(`unknown argument '${a}'\n${HELP}`);
  }
  return {
    targets: list('targets', ALL_TARGETS, ALL_TARGETS),
    scenarios: list('scenarios', ALL_SCENARIOS, ALL_SCENARIOS),
    clusterScenarios: list('cluster-scenarios', ALL_SCENARIOS, CLUSTER_DEFAULT_SCENARIOS),
    reconnectClients: num('reconnect-clients', quick ? 200 : 2000, 1, 1_000_000),
    reconnectMsgs: num('reconnect-msgs', quick ? 3 : 5, 1, 10_000),
    reconnectSenders: num('reconnect-senders', quick ? 10 : 50, 1, 10_000),
    reconnectConcurrency: num('reconnect-concurrency', 0, 0, 1_000_000),
    reconnectSyncMs: num('reconnect-sync-ms', 3000, 100, 600_000),
    reconnectTimeoutSec: num('reconnect-timeout', quick ? 30 : 60, 1, 3600),
    storage: list('storage', ['sqlite', 'mariadb'] as const, ['sqlite', 'mariadb']),
    durationSec: num('duration', quick ? 1 : 3, 0.5, 600),
    workers: num('workers', 2, 1, 64),
    idleConns: num('idle-conns', quick ? 500 : 5000, 1, 1_000_000),
    idleRestSec: num('idle-rest', quick ? 1 : 5, 0, 3600),
    pairs: num('pairs', quick ? 20 : 100, 1, 100_000),
    pairsStart: num('pairs-start', quick ? 1000 : 2000, 1, 10_000_000),
    pairsRates: (get('pairs-rates') ?? '').split(',').filter(Boolean).map((v) => {
      const n = Number(v);
      if (!Number.isFinite(n) || n < 1 || n > 10_000_000) throw new Error(`--pairs-rates: '${v}' is not a rate in [1, 10000000]`);
      return n;
    }),
    repeat: num('repeat', 1, 1, 100),
    seedMessages: num('seed-messages', 0, 0, 100_000_000),
    members: num('members', quick ? 50 : 500, 2, 1_000_000),
    fanoutStart: num('fanout-start', 20, 1, 1_000_000),
    maxSteps: num('max-steps', quick ? 2 : 6, 1, 20),
    refine: num('refine', quick ? 0 : 1, 0, 10),
    p99Ms: num('p99-ms', 50, 1, 60_000),
    fanoutP99Ms: num('fanout-p99-ms', 100, 1, 60_000),
    bodyBytes: num('body-bytes', 100, 20, 60_000),
    sourceAddrs: num('source-addrs', 0, 0, 250),
    connsPerAddr: num('conns-per-addr', 25_000, 1, 60_000),
    pingMs: num('ping-ms', 0, 0, 3_600_000),
    out: resolve(get('out') ?? join(BENCH_DIR, 'results')),
  };
}

// ------------------------------------------------------------------------------------ processes

const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      srv.close(() => (port ? resolvePort(port) : reject(new Error('no free port'))));
    });
  });
}

interface RunningServer {
  url: string;
  pid: number;
  /** Cluster: every node (url/pid are the first one's). */
  urls?: string[];
  pids?: number[];
  stop(): Promise<void>;
}

/** Children this run started, so Ctrl-C can stop exactly those (by PID). */
const children = new Set<ChildProcess>();

/** ejabberd for the pairs scenario's users (bench/baselines/ejabberd.ts), stopped by its beam.smp PID. */
async function startEjabberdTarget(pairs: number): Promise<RunningServer & { xmpp: { domain: string; password: string }; version: string }> {
  const users = Array.from({ length: pairs }, (_, i) => pairUsers(i)).flat();
  const h = await startEjabberd({ users, log, onChild: (c) => children.add(c) });
  return {
    url: h.url,
    pid: h.pid,
    xmpp: { domain: h.domain, password: h.password },
    version: h.version,
    async stop() {
      await h.stop();
      children.delete(h.child);
    },
  };
}

async function startBaseline(script: string, path: string): Promise<RunningServer> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', join(BENCH_DIR, 'baselines', script), '--port', String(port), '--host', '127.0.0.1'], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, IM_HEARTBEAT_MS: '30000' },
  });
  children.add(child);
  let out = '';
  let err = '';
  child.stderr?.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-4000);
  });
  await new Promise<void>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`${script}: no READY within 30 s\n${err}`)), 30_000);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes(`READY ${port}`)) {
        clearTimeout(timer);
        ok();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`${script} exited with ${code}\n${err}`));
    });
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${script}: no pid`);
  return {
    url: `ws://127.0.0.1:${port}${path}`,
    pid,
    async stop() {
      await stopChild(child);
    },
  };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    children.delete(child);
    return;
  }
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
  children.delete(child);
}

interface ChatNodeModule {
  startChatNode(opts?: ChatNodeOptions): Promise<ChatNodeHandle>;
}
interface ServersModule {
  startMariaDB(opts?: { database?: string }): Promise<ServerHandle>;
  startAll(opts?: { database?: string }): Promise<{ mariadb: ServerHandle; nats: ServerHandle; redis: ServerHandle; stop(): Promise<void> }>;
}

async function harness<T>(file: string): Promise<T> {
  const url = new URL(`../test/harness/${file}`, import.meta.url);
  if (!existsSync(fileURLToPath(url))) throw new Error(`test/harness/${file} not found`);
  return (await import(url.href)) as T;
}

function projectEntry(): string {
  const entry = ['main.ts', 'src/main.ts'].find((f) => existsSync(join(REPO_ROOT, f)));
  if (!entry) throw new Error('the project entry main.ts does not exist yet');
  return entry;
}

function projectEnv(jwtSecret: string): Record<string, string> {
  return {
    IM_HOST: '127.0.0.1',
    IM_JWT_SECRET: jwtSecret,
    IM_LOG_LEVEL: 'warn',
    IM_RATE_MSGS: '1000000',
  };
}

/** `seed`: messages written into the record (the pairs' conversations) before the node starts. */
async function startProject(name: string, jwtSecret: string, mysqlUrl: string | undefined, seed: { pairs: number; messages: number }): Promise<RunningServer> {
  const entry = projectEntry();
  const { startChatNode } = await harness<ChatNodeModule>('chat-node.ts');
  const env = projectEnv(jwtSecret);
  if (mysqlUrl) env.IM_MYSQL_URL = mysqlUrl;
  const dataDir = mkdtempSync(join(os.tmpdir(), 'im-bench-node-'));
  const cleanup = () => rmSync(dataDir, { recursive: true, force: true });
  let node: ChatNodeHandle;
  try {
    if (seed.messages > 0) await seedPairsRecord({ mysqlUrl, dataDir, pairs: seed.pairs, messages: seed.messages, log });
    node = await startChatNode({ entry, env, dataDir, nodeId: `bench-${name}`, readyTimeoutMs: 60_000, stopGraceMs: 20_000 });
  } catch (e) {
    cleanup();
    throw e;
  }
  return {
    url: node.wsUrl,
    pid: node.pid,
    async stop() {
      try {
        await node.stop();
      } catch (e) {
        log(`  ${name}: stop: ${e instanceof Error ? (e.message.split('\n')[0] ?? '') : String(e)}`);
      }
      cleanup();
    },
  };
}

/**
 * `nodes` project nodes on their own MariaDB + NATS + Redis (test harness `startAll`), started
 * one after the other; stop() ends the nodes first, then the servers.
 */
async function startCluster(nodes: number, jwtSecret: string): Promise<RunningServer> {
  const entry = projectEntry();
  const { startChatNode } = await harness<ChatNodeModule>('chat-node.ts');
  const { startAll } = await harness<ServersModule>('servers.ts');
  log('  starting MariaDB + NATS + Redis (test harness)…');
  const servers = await startAll();
  const handles: ChatNodeHandle[] = [];
  const stop = async (): Promise<void> => {
    for (const n of handles.splice(0).reverse()) {
      await n.stop().catch((e: unknown) => log(`  ${n.nodeId}: stop: ${e instanceof Error ? (e.message.split('\n')[0] ?? '') : String(e)}`));
    }
    await servers.stop().catch((e: unknown) => log(`  cluster servers: stop: ${String(e)}`));
  };
  try {
    for (let i = 1; i <= nodes; i++) {
      const env = { ...projectEnv(jwtSecret), IM_MYSQL_URL: servers.mariadb.url, IM_NATS_URL: servers.nats.url, IM_REDIS_URL: servers.redis.url };
      handles.push(await startChatNode({ entry, env, nodeId: `bench-c${i}`, readyTimeoutMs: 60_000, stopGraceMs: 20_000 }));
    }
    // Let every node see the others (heartbeats) before placement matters.
    await sleep(2500);
  } catch (e) {
    await stop();
    throw e;
  }
  const first = handles[0];
  if (!first) throw new Error('no cluster node');
  return { url: first.wsUrl, pid: first.pid, urls: handles.map((h) => h.wsUrl), pids: handles.map((h) => h.pid), stop };
}

// ------------------------------------------------------------------------------------ main

function describe(name: TargetName): { kind: TargetResult['kind']; description: string } {
  switch (name) {
    case 'uws':
      return { kind: 'ceiling', description: 'bare uWebSockets.js, same frames, no logic, no storage (bench/baselines/uws-echo.ts)' };
    case 'socketio':
      return { kind: 'baseline', description: 'plain Socket.IO chat server, in memory, rooms for groups (bench/baselines/socketio-chat.ts)' };
    case 'node-sqlite':
      return { kind: 'project', description: 'the project, embedded mode (SQLite, WAL) in a temp IM_DATA_DIR' };
    case 'node-mariadb':
      return { kind: 'project', description: 'the project, single node on MariaDB (IM_MYSQL_URL)' };
    case 'node-cluster2':
      return { kind: 'project', description: 'the project, 2 nodes on MariaDB + NATS + Redis; every pair, group and offline conversation spans both nodes' };
    case 'ejabberd':
      return { kind: 'baseline', description: 'what users pick instead: ejabberd (Debian package) on its own temp config and Mnesia spool, XMPP over WebSocket, XEP-0198 acks (bench/baselines/ejabberd.ts)' };
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes('--help')) {
    process.stdout.write(`${HELP}\n`);
    return;
  }
  const ri = argv.indexOf('--render');
  if (ri >= 0) {
    // Same measurements, new rendering: the JSON is the record, MD and SVG are views of it.
    const file = resolve(argv[ri + 1] ?? '');
    if (!file.endsWith('.json') || !existsSync(file)) throw new Error('--render needs an existing results .json file');
    const report = JSON.parse(readFileSync(file, 'utf8')) as BenchReport;
    const stem = file.slice(0, -'.json'.length);
    writeFileSync(`${stem}.md`, renderMarkdown(report, `${basename(stem)}.svg`));
    writeFileSync(`${stem}.svg`, renderSvg(report));
    log(`re-rendered ${stem}.{md,svg}`);
    return;
  }
  const f = parseFlags(argv);
  const started = new Date();
  const jwtSecret = process.env.IM_JWT_SECRET ?? 'bench-secret';

  const fdLimit = openFilesSoftLimit();
  if (f.scenarios.includes('idle') && f.idleConns + 200 > fdLimit) {
    const clamped = Math.max(1, fdLimit - 500);
    log(`open-files limit is ${fdLimit}: idle sockets clamped ${f.idleConns} → ${clamped} (raise it with 'ulimit -n', see bench/README.md)`);
    f.idleConns = clamped;
  }
  if (f.scenarios.includes('reconnect') && f.reconnectClients + f.reconnectSenders + 200 > fdLimit) {
    const clamped = Math.max(1, fdLimit - f.reconnectSenders - 500);
    log(`open-files limit is ${fdLimit}: reconnect clients clamped ${f.reconnectClients} → ${clamped} (raise it with 'ulimit -n', see bench/README.md)`);
    f.reconnectClients = clamped;
  }
  const maxConns = Math.max(f.scenarios.includes('idle') ? f.idleConns : 0, f.pairs * 2, f.members, f.reconnectClients + f.reconnectSenders);
  const addrCount = f.sourceAddrs > 0 ? f.sourceAddrs : Math.ceil(maxConns / f.connsPerAddr);
  const load: LoadOptions = defaultLoadOptions({
    workers: f.workers,
    jwtSecret,
    sourceAddrs: loopbackAddrs(addrCount),
    connsPerAddr: f.connsPerAddr,
    bodyBytes: f.bodyBytes,
    pingEveryMs: f.pingMs,
    log,
  });
  const seed = { pairs: f.pairs, messages: f.seedMessages };
  const search = (durationSec: number, startRate: number, p99LimitMs: number): SearchParams => ({
    durationMs: durationSec * 1000,
    graceMs: 3000,
    startRate,
    factor: 2,
    maxSteps: f.maxSteps,
    refineSteps: f.refine,
    p99LimitMs,
    maxLossRatio: 0.001,
    pauseMs: 1500,
    warmupMs: 1000,
  });

  let gitCommit = 'unknown';
  try {
    gitCommit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
  } catch {
    /* not a git checkout */
  }

  const report: BenchReport = {
    version: 1,
    startedAt: started.toISOString(),
    finishedAt: '',
    durationSeconds: 0,
    command: `bench/run.ts ${argv.join(' ')}`.trim(),
    environment: {
      node: process.version,
      platform: `${os.platform()} ${os.release()}`,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model.trim() ?? '?',
      memoryGB: Math.round(os.totalmem() / 2 ** 30),
      loadAvgAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
      loadAvgAtEnd: [],
      openFilesLimit: fdLimit,
      gitCommit,
    },
    settings: {
      load: { workers: load.workers, jwtSecret: '(hidden)', sourceAddrs: load.sourceAddrs, connsPerAddr: load.connsPerAddr, connectConcurrency: load.connectConcurrency, bodyBytes: load.bodyBytes, pingEveryMs: load.pingEveryMs, ackEveryMs: load.ackEveryMs },
      idle: { connections: f.idleConns, restMs: f.idleRestSec * 1000 },
      pairs: { pairs: f.pairs, startRate: f.pairsStart, durationMs: f.durationSec * 1000, p99LimitMs: f.p99Ms, ...(f.pairsRates.length > 0 ? { fixedRates: f.pairsRates, repeat: f.repeat } : {}), ...(f.seedMessages > 0 ? { seedMessages: f.seedMessages } : {}) },
      fanout: { members: f.members, startRate: f.fanoutStart, durationMs: f.durationSec * 1000, p99LimitMs: f.fanoutP99Ms },
      reconnect: { clients: f.reconnectClients, perClient: f.reconnectMsgs, senders: f.reconnectSenders, concurrency: f.reconnectConcurrency, syncAfterMs: f.reconnectSyncMs, timeoutMs: f.reconnectTimeoutSec * 1000 },
      cluster: { nodes: 2, scenarios: f.clusterScenarios, reference: 'node-mariadb' },
    },
    ceiling: 'uws',
    targets: [],
  };

  // One MariaDB for the storage ceiling and the node-mariadb target, started on demand.
  const db: { maria: ServerHandle | null } = { maria: null };
  let mariaError: string | null = null;
  const getMaria = async (): Promise<string> => {
    if (db.maria) return db.maria.url;
    if (mariaError) throw new Error(mariaError);
    try {
      log('starting MariaDB (test harness)…');
      const { startMariaDB } = await harness<ServersModule>('servers.ts');
      db.maria = await startMariaDB();
      return db.maria.url;
    } catch (e) {
      mariaError = `MariaDB: ${e instanceof Error ? e.message : String(e)}`;
      throw new Error(mariaError);
    }
  };

  try {
    if (f.storage.length > 0) {
      log(`storage ceilings: ${f.storage.join(', ')}`);
      let mysqlUrl: string | undefined;
      if (f.storage.includes('mariadb')) mysqlUrl = await getMaria().catch(() => undefined);
      const engines = f.storage.filter((e) => e !== 'mariadb' || mysqlUrl !== undefined);
      const res = await runStorageCeiling({ engines, mysqlUrl, batches: [1, 100, 250, 500], seconds: f.durationSec === 1 ? 1 : 3, maxRows: 1_000_000, convs: 1000 });
      if (f.storage.includes('mariadb') && mysqlUrl === undefined) {
        res.engines.push({ engine: 'mariadb', status: 'failed', error: mariaError ?? 'no MariaDB', settings: {}, runs: [], bestRowsPerSec: 0, singleRowPerSec: 0 });
      }
      for (const e of res.engines) log(`  ${e.engine}: ${e.status === 'ok' ? `${e.bestRowsPerSec} rows/s batched, ${e.singleRowPerSec} rows/s single-row` : `FAILED ${e.error ?? ''}`}`);
      report.storage = res;
    }

    for (const name of f.targets) {
      const d = describe(name);
      const t: TargetResult = { name, ...d, status: 'ok', loadAvg1: Math.round((os.loadavg()[0] ?? 0) * 100) / 100 };
      report.targets.push(t);
      log(`target ${name}: starting`);
      let server: RunningServer & { xmpp?: { domain: string; password: string }; version?: string };
      try {
        server =
          name === 'ejabberd'
            ? await startEjabberdTarget(f.pairs)
            : name === 'uws'
            ? await startBaseline('uws-echo.ts', '/ws')
            : name === 'socketio'
              ? await startBaseline('socketio-chat.ts', '/')
              : name === 'node-sqlite'
                ? await startProject(name, jwtSecret, undefined, seed)
                : name === 'node-mariadb'
                  ? await startProject(name, jwtSecret, await getMaria(), seed)
                  : await startCluster(2, jwtSecret);
      } catch (e) {
        t.status = 'failed';
        t.error = e instanceof Error ? e.message : String(e);
        log(`target ${name}: FAILED to start: ${t.error.split('\n')[0] ?? ''}`);
        continue;
      }
      t.url = server.url;
      if (server.urls) t.urls = server.urls;
      if (server.version) t.description += `, version ${server.version}`;
      const target: Target = { name, url: server.url, codec: name === 'socketio' ? 'socketio' : name === 'ejabberd' ? 'xmpp' : 'im', pid: server.pid, urls: server.urls, pids: server.pids, xmpp: server.xmpp };
      // The Socket.IO baseline keeps nothing for offline users: no reconnect storm there.
      const scenarios = f.scenarios.filter((sc) => (name === 'node-cluster2' ? f.clusterScenarios.includes(sc) : true) && !(name === 'socketio' && sc === 'reconnect'));
      // The XMPP client mode of the load generator does the pairs scenario only.
      if (name === 'ejabberd') {
        for (const sc of scenarios.filter((x) => x !== 'pairs')) t[sc] = { scenario: sc, status: 'unsupported', error: 'not supported for ejabberd (pairs only)' } satisfies ScenarioFailure;
        scenarios.splice(0, scenarios.length, ...scenarios.filter((x) => x === 'pairs'));
      }
      try {
        for (const sc of scenarios) {
          log(`target ${name}: ${sc}`);
          if ((server.pids ?? [server.pid]).some((pid) => !sampleProc(pid))) {
            t[sc] = { scenario: sc, status: 'failed', error: 'server process is gone' } satisfies ScenarioFailure;
            continue;
          }
          try {
            if (sc === 'idle') t.idle = await runIdle(target, load, { connections: f.idleConns, restMs: f.idleRestSec * 1000 });
            else if (sc === 'pairs') t.pairs = await runPairs(target, load, { ...search(f.durationSec, f.pairsStart, f.p99Ms), fixedRates: f.pairsRates, repeat: f.repeat, pairs: f.pairs });
            else if (sc === 'fanout') t.fanout = await runFanout(target, load, { ...search(f.durationSec, f.fanoutStart, f.fanoutP99Ms), members: f.members });
            else {
              t.reconnect = await runReconnect(target, load, {
                clients: f.reconnectClients,
                perClient: f.reconnectMsgs,
                senders: f.reconnectSenders,
                concurrency: f.reconnectConcurrency,
                syncAfterMs: f.reconnectSyncMs,
                timeoutMs: f.reconnectTimeoutSec * 1000,
              });
            }
          } catch (e) {
            const error = e instanceof Error ? e.message : String(e);
            t[sc] = { scenario: sc, status: 'failed', error } satisfies ScenarioFailure;
            log(`target ${name}: ${sc} FAILED: ${error.split('\n')[0] ?? ''}`);
          }
          await sleep(500);
        }
      } finally {
        await server.stop();
      }
    }
  } finally {
    if (db.maria) await db.maria.stop().catch(() => undefined);
  }

  const finished = new Date();
  report.finishedAt = finished.toISOString();
  report.environment.loadAvgAtEnd = os.loadavg().map((x) => Math.round(x * 100) / 100);
  report.durationSeconds = Math.round((finished.getTime() - started.getTime()) / 1000);
  mkdirSync(f.out, { recursive: true });
  const stem = started.toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z');
  const svgName = `${stem}.svg`;
  const md = renderMarkdown(report, svgName);
  writeFileSync(join(f.out, `${stem}.json`), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(f.out, `${stem}.md`), md);
  writeFileSync(join(f.out, svgName), renderSvg(report));
  process.stdout.write(`${md}\n`);
  log(`wrote ${join(f.out, stem)}.{json,md,svg} in ${report.durationSeconds} s`);
}

function onSignal(sig: NodeJS.Signals): void {
  log(`${sig}: stopping servers started by this run`);
  for (const c of children) c.kill('SIGTERM');
  setTimeout(() => process.exit(130), 2000).unref();
}
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);

main().catch((e: unknown) => {
  log(e instanceof Error ? (e.stack ?? e.message) : String(e));
  for (const c of children) c.kill('SIGTERM');
  process.exitCode = 1;
});
