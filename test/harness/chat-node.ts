// Spawns a chat node of this project (main.ts) as a real process, for integration,
// cluster and chaos tests. Runs node directly, not via npm: dash would swallow SIGTERM.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  LogTail,
  forceKill,
  removeTempDirAtExit,
  sleep,
  spawnTracked,
  terminate,
  type Spawned,
} from './proc.ts';
import { freePort } from './servers.ts';
import { NODE_FLAGS } from '../../cluster.config.ts';

export interface ChatNodeHandle {
  nodeId: string;
  port: number;
  /** ws://127.0.0.1:PORT/ws */
  wsUrl: string;
  /** http://127.0.0.1:PORT */
  httpUrl: string;
  /** PID of the current process (changes on restart). */
  pid: number;
  /** The full IM_* environment the node was started with. */
  env: Record<string, string>;
  /** SIGTERM, wait for exit, return the exit code (null if it died by a signal). Keeps IM_DATA_DIR. */
  stop(): Promise<number | null>;
  /** SIGKILL, wait for exit. */
  kill(): Promise<void>;
  /** Start again with the same env and port (stops it first if running); resolves when healthy. */
  restart(): Promise<void>;
  /** Last ~200 lines of stdout+stderr. */
  logs(): string;
}

export interface ChatNodeOptions {
  env?: Record<string, string>;
  port?: number;
  nodeId?: string;
  /** IM_DATA_DIR; a temp dir (kept across stop/restart, removed when the test process exits) unless given. */
  dataDir?: string;
  /** Entry file relative to the repo root (default main.ts); tests of the harness use a fake. */
  entry?: string;
  /** Readiness bound in ms (default 30 s). */
  readyTimeoutMs?: number;
  /** How long stop() waits after SIGTERM before SIGKILL (default 20 s). */
  stopGraceMs?: number;
}

export const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..');

let nodeCounter = 0;

/** The node id a /healthz answer names, if any. */
function healthzNode(body: string): unknown {
  try {
    return (JSON.parse(body) as { node?: unknown }).node;
  } catch {
    return undefined;
  }
}

export async function startChatNode(opts: ChatNodeOptions = {}): Promise<ChatNodeHandle> {
  const port = opts.port ?? (await freePort());
  const nodeId = opts.nodeId ?? `test-node-${process.pid}-${++nodeCounter}`;
  const ownDataDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'im-node-')));
  if (ownDataDir) removeTempDirAtExit(dataDir);
  const entry = opts.entry ?? 'main.ts';
  const readyTimeoutMs = opts.readyTimeoutMs ?? 30_000;
  const stopGraceMs = opts.stopGraceMs ?? 20_000;

  const env: Record<string, string> = {
    IM_HOST: '127.0.0.1',
    IM_PORT: String(port),
    IM_NODE_ID: nodeId,
    IM_DATA_DIR: dataDir,
    IM_JWT_SECRET: 'test-secret',
    IM_LOG_LEVEL: 'warn',
    // Under vitest many nodes share one busy machine, where slow answers say nothing about a
    // node's capacity: latency-based shedding is off unless a test sets it (overload.test.ts).
    ...(process.env.VITEST ? { IM_OVERLOAD_MS: '60000' } : {}),
    // IM_TEST_NODE_ENV="IM_X=1 IM_Y=2" adds settings to every spawned node (benchmark experiments).
    ...Object.fromEntries((process.env.IM_TEST_NODE_ENV ?? '').split(/\s+/).filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])),
    ...opts.env,
  };
  // Inherit PATH etc., but no stray IM_* settings from the developer's shell.
  const baseEnv: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('IM_')) baseEnv[k] = v;
  const childEnv = { ...baseEnv, ...env };

  const log = new LogTail(200);
  const httpUrl = `http://127.0.0.1:${port}`;

  const launch = async (): Promise<Spawned> => {
    log.note(`starting node ${nodeId}: ${process.execPath} ${NODE_FLAGS.join(' ')} --import tsx ${entry} (port ${port})`);
    // IM_TEST_NODE_ARGS adds node flags to every spawned node, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the node under a bench.
    const extraArgs = (process.env.IM_TEST_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
    const proc = await spawnTracked(process.execPath, [...NODE_FLAGS, ...extraArgs, '--import', 'tsx', entry], {
      cwd: REPO_ROOT,
      env: childEnv,
      log,
    });
    const deadline = Date.now() + readyTimeoutMs;
    let last = 'no answer yet';
    for (;;) {
      if (proc.exitInfo) {
        throw new Error(
          `chat node ${nodeId} exited during startup (code ${proc.exitInfo.code}, signal ${proc.exitInfo.signal})\n` +
            `--- logs ---\n${log.tail(80)}`,
        );
      }
      try {
        const res = await fetch(`${httpUrl}/healthz`, { signal: AbortSignal.timeout(1_000) });
        const body = await res.text().catch(() => '');
        // Another process on the port (a node not yet gone) must not pass for this one.
        const node = healthzNode(body);
        if (res.status === 200 && node === nodeId) return proc;
        last = node === nodeId ? `HTTP ${res.status}` : `HTTP ${res.status} from node ${String(node)}, not ${nodeId}`;
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() > deadline) {
        await forceKill(proc);
        throw new Error(
          `chat node ${nodeId} not healthy on ${httpUrl}/healthz after ${readyTimeoutMs} ms (last: ${last})\n` +
            `--- logs ---\n${log.tail(80)}`,
        );
      }
      await sleep(100);
    }
  };

  let current: Spawned;
  try {
    current = await launch();
  } catch (e) {
    if (ownDataDir) await rm(dataDir, { recursive: true, force: true }).catch(() => {});
    throw e;
  }

  const handle: ChatNodeHandle = {
    nodeId,
    port,
    wsUrl: `ws://127.0.0.1:${port}/ws`,
    httpUrl,
    pid: current.pid,
    env,
    async stop() {
      const { info, forced } = await terminate(current, stopGraceMs);
      if (forced) {
        throw new Error(
          `chat node ${nodeId} did not exit within ${stopGraceMs} ms of SIGTERM; killed\n--- logs ---\n${log.tail(80)}`,
        );
      }
      return info.code;
    },
    async kill() {
      await forceKill(current);
    },
    async restart() {
      if (!current.exitInfo) await terminate(current, stopGraceMs);
      current = await launch();
      handle.pid = current.pid;
    },
    logs: () => log.tail(),
  };
  return handle;
}

/**
 * The value of a metric on a node's /metrics: its first series, labelled or not (NaN when the
 * metric is missing). `headers` carries the IM_METRICS_TOKEN bearer when the node has one.
 */
export async function readMetric(httpUrl: string, name: string, headers: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${httpUrl}/metrics`, { headers })).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line ? Number(line.split(' ').pop()) : NaN;
}
