/**
 * `npm run cluster -- --nodes 3`: a local cluster for development. Starts MariaDB, NATS and
 * Redis from the local binaries on loopback with temporary data (through the test harness),
 * then N chat nodes on ports 9001.. (or the next free ones), prints their WebSocket URLs and
 * streams their logs prefixed by node id. Ctrl-C / SIGTERM stops the nodes (SIGTERM by PID,
 * so they finish commits in flight), then the servers, and exits 0.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../test/harness/chat-node.ts';
import { LogTail, spawnTracked, terminate, type Spawned } from '../test/harness/proc.ts';
import { startAll } from '../test/harness/servers.ts';

interface Args { nodes: number; port: number }

function parseArgs(argv: string[]): Args {
  const out: Args = { nodes: 3, port: 9001 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.includes('=') ? a.split('=', 2) : [a, undefined];
    const value = () => inline ?? argv[++i];
    if (flag === '--nodes' || flag === '-n') out.nodes = Number(value());
    else if (flag === '--port' || flag === '-p') out.port = Number(value());
    else if (flag === '--help' || flag === '-h') {
      process.stdout.write('usage: npm run cluster -- [--nodes N] [--port FIRST_PORT]\n');
      process.exit(0);
    } else {
      process.stderr.write(`cluster: unknown argument ${a}\n`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(out.nodes) || out.nodes < 1 || out.nodes > 32) fail('--nodes must be an integer from 1 to 32');
  if (!Number.isInteger(out.port) || out.port < 1 || out.port > 65535) fail('--port must be a port number');
  return out;
}

function fail(msg: string): never {
  process.stderr.write(`cluster: ${msg}\n`);
  process.exit(2);
}

const say = (line: string) => process.stdout.write(`[cluster] ${line}\n`);

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

async function nextFreePort(from: number, taken: Set<number>): Promise<number> {
  for (let p = from; p <= 65535; p++) if (!taken.has(p) && (await portFree(p))) return p;
  throw new Error(`no free port from ${from}`);
}

/** Copies a child's output to ours line by line, each line prefixed with `[id]`. */
function stream(child: Spawned, id: string): void {
  for (const [src, dst] of [[child.child.stdout, process.stdout], [child.child.stderr, process.stderr]] as const) {
    let partial = '';
    src?.on('data', (c: Buffer) => {
      const lines = (partial + c.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) dst.write(`[${id}] ${l}\n`);
    });
  }
}

async function healthy(port: number, timeoutMs: number, child: Spawned): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end && !child.exitInfo) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1_000) });
      await r.text().catch(() => '');
      if (r.status === 200) return true;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2).filter((a) => a !== '--'));
  say('starting MariaDB, NATS and Redis (temporary data, loopback only)...');
  const servers = await startAll();
  // The harness kills its servers with SIGKILL on SIGINT/SIGTERM; here the nodes must stop
  // first (they finish their commits), so take those signals over. Its exit hook still
  // kills by PID whatever is left if this process ends some other way.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) for (const l of process.listeners(sig)) process.off(sig, l);
  say(`mariadb ${servers.mariadb.url}  nats ${servers.nats.url}  redis ${servers.redis.url}`);

  const nodes: Array<{ id: string; port: number; proc: Spawned; dataDir: string }> = [];
  let stopping: Promise<void> | null = null;
  const stopAll = (why: string): Promise<void> => {
    stopping ??= (async () => {
      say(`${why}: stopping ${nodes.length} node(s)...`);
      await Promise.all(nodes.map(async (n) => {
        const { info, forced } = await terminate(n.proc, 20_000);
        say(`${n.id} exited (code ${info.code}${info.signal ? `, signal ${info.signal}` : ''}${forced ? ', killed after 20 s' : ''})`);
        await rm(n.dataDir, { recursive: true, force: true }).catch(() => undefined);
      }));
      say('stopping servers...');
      await servers.stop().catch((e: unknown) => say(`stopping servers failed: ${String(e)}`));
      say('stopped');
    })();
    return stopping;
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => { void stopAll(sig).then(() => process.exit(0), () => process.exit(1)); });
  }

  const taken = new Set<number>();
  try {
    for (let i = 1; i <= args.nodes; i++) {
      if (stopping) return;
      const id = `node${i}`;
      const port = await nextFreePort(nodes.length ? nodes[nodes.length - 1].port + 1 : args.port, taken);
      taken.add(port);
      const dataDir = await mkdtemp(join(tmpdir(), `im-cluster-${id}-`));
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        IM_PORT: String(port),
        IM_HOST: '127.0.0.1',
        IM_NODE_ID: id,
        IM_DATA_DIR: dataDir,
        IM_MYSQL_URL: servers.mariadb.url,
        IM_NATS_URL: servers.nats.url,
        IM_REDIS_URL: servers.redis.url,
      };
      // node directly, not through npm/sh, so SIGTERM reaches it.
      const proc = await spawnTracked(process.execPath, ['--import', 'tsx', 'main.ts'], { cwd: REPO_ROOT, env, log: new LogTail(50) });
      nodes.push({ id, port, proc, dataDir });
      stream(proc, id);
      if (!(await healthy(port, 60_000, proc))) throw new Error(`${id} did not become healthy on port ${port}`);
    }
  } catch (e) {
    say(`start failed: ${e instanceof Error ? e.message : String(e)}`);
    await stopAll('error');
    process.exit(1);
  }
  if (stopping) return;

  say(`${nodes.length} node(s) up:`);
  for (const n of nodes) say(`  ${n.id}  ws://127.0.0.1:${n.port}/ws   http://127.0.0.1:${n.port}/healthz`);
  say('get a login token with: npm run token -- alice');
  say('Ctrl-C stops everything.');
  // A node that dies on its own is reported; the rest keep running.
  for (const n of nodes) void n.proc.exited.then((info) => { if (!stopping) say(`${n.id} exited unexpectedly (code ${info.code}, signal ${info.signal})`); });
}

main().catch((e: unknown) => {
  process.stderr.write(`cluster: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
