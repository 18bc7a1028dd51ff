// Real MariaDB / NATS / Redis servers for tests, started from local binaries on free loopback
// ports with temporary data directories. A test that needs a server it cannot start fails loudly.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, mkdir } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConnection, type Connection } from 'mysql2/promise';
import {
  LogTail,
  findBinary,
  forceKill,
  signal,
  sleep,
  spawnTracked,
  terminate,
  type Spawned,
} from './proc.ts';

export interface ServerHandle {
  kind: 'mariadb' | 'nats' | 'redis';
  /** mysql://root@127.0.0.1:PORT/im | nats://127.0.0.1:PORT | redis://127.0.0.1:PORT */
  url: string;
  host: string;
  port: number;
  /** PID of the current server process (changes on restart). */
  pid: number;
  dataDir: string;
  /** SIGTERM our pid only, wait for exit, remove the temp dir. */
  stop(): Promise<void>;
  /** SIGKILL our pid, wait for exit, keep the data. */
  kill(): Promise<void>;
  /** Start again on the same port with the same data (stops it first if running); resolves when ready. */
  restart(): Promise<void>;
  /** SIGSTOP / SIGCONT the server (simulates a hung server). */
  pause?(): void;
  resume?(): void;
  /** Last lines of the server's output, for failure messages. */
  logs(): string;
}

const HOST = '127.0.0.1';
const READY_TIMEOUT_MS = Number(process.env.IM_TEST_SERVER_TIMEOUT_MS ?? 30_000);
const STOP_GRACE_MS = 20_000;

/** Where freePort() draws from: above the well-known service ports, below the ephemeral range. */
const PORT_MIN = 10_000;

/** The first port of the kernel's ephemeral range (source ports of outgoing connections). */
function ephemeralStart(): number {
  try {
    const lo = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(lo) && lo > 0 ? lo : 32_768;
  } catch {
    return 32_768;
  }
}

/** Binds `port` on 127.0.0.1 and lets it go again: resolves with the port, or 0 if it was taken. */
function tryBind(port: number): Promise<number> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(0));
    srv.listen(port, HOST, () => {
      const addr = srv.address();
      const bound = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(bound));
    });
  });
}

/**
 * A port that was free on 127.0.0.1 a moment ago, drawn at random below the kernel's ephemeral
 * range. A port from that range (what listen(0) hands out) can be taken as the source port of
 * any outgoing connection, by this process or another test's, before the server binds it or
 * while a killed server waits to be restarted on it.
 */
export async function freePort(): Promise<number> {
  const max = ephemeralStart() - 1;
  for (let i = 0; max > PORT_MIN && i < 50; i++) {
    const port = await tryBind(PORT_MIN + Math.floor(Math.random() * (max - PORT_MIN + 1)));
    if (port > 0) return port;
  }
  const port = await tryBind(0);
  if (port === 0) throw new Error('freePort: no port assigned');
  return port;
}

// ---------------------------------------------------------------------------------------------
// Generic server lifecycle

interface ServerSpec {
  kind: ServerHandle['kind'];
  bin: string;
  /** Command-line for a given port; called again on every (re)start. */
  args(port: number): string[];
  /** Real protocol-level readiness check; throws while not ready. */
  probe(port: number): Promise<void>;
  /** Runs once after the first successful probe (e.g. create the database). */
  afterFirstStart?(port: number): Promise<void>;
  url(port: number): string;
  env?: NodeJS.ProcessEnv;
}

function serverError(spec: { kind: string; bin: string }, what: string, log: LogTail): Error {
  const tail = log.tail(25);
  return new Error(
    `${spec.kind}: ${what} (binary ${spec.bin})` + (tail ? `\n--- last output ---\n${tail}` : ''),
  );
}

async function launch(spec: ServerSpec, port: number, log: LogTail): Promise<Spawned> {
  log.note(`starting ${spec.bin} ${spec.args(port).join(' ')}`);
  let proc: Spawned;
  try {
    proc = await spawnTracked(spec.bin, spec.args(port), { env: spec.env, log });
  } catch (e) {
    throw serverError(spec, (e as Error).message, log);
  }
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastErr = 'no probe yet';
  for (;;) {
    if (proc.exitInfo) {
      throw serverError(
        spec,
        `exited during startup (code ${proc.exitInfo.code}, signal ${proc.exitInfo.signal})`,
        log,
      );
    }
    try {
      await withTimeout(spec.probe(port), 2_000, 'probe');
      return proc;
    } catch (e) {
      lastErr = (e as Error).message;
    }
    if (Date.now() > deadline) {
      await forceKill(proc);
      throw serverError(
        spec,
        `not ready on ${HOST}:${port} after ${READY_TIMEOUT_MS} ms (last probe error: ${lastErr})`,
        log,
      );
    }
    await sleep(50);
  }
}

function isPortInUse(log: LogTail): boolean {
  return /address already in use|EADDRINUSE|Can't start server: Bind|bind: address/i.test(log.tail(40));
}

async function startServer(spec: ServerSpec, dataDir: string): Promise<ServerHandle> {
  const log = new LogTail(200);
  // freePort() can race with another process grabbing the port before the server binds it.
  let port = 0;
  let proc: Spawned | undefined;
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    try {
      proc = await launch(spec, port, log);
      break;
    } catch (e) {
      if (attempt < 3 && isPortInUse(log)) continue;
      await rm(dataDir, { recursive: true, force: true }).catch(() => {});
      throw e;
    }
  }
  if (spec.afterFirstStart) {
    try {
      await spec.afterFirstStart(port);
    } catch (e) {
      await forceKill(proc);
      await rm(dataDir, { recursive: true, force: true }).catch(() => {});
      throw serverError(spec, `post-start setup failed: ${(e as Error).message}`, log);
    }
  }

  let current: Spawned = proc;
  let removed = false;
  const handle: ServerHandle = {
    kind: spec.kind,
    url: spec.url(port),
    host: HOST,
    port,
    pid: current.pid,
    dataDir,
    logs: () => log.tail(),
    async stop() {
      if (removed) return;
      const { forced } = await terminate(current, STOP_GRACE_MS);
      if (forced) log.note(`did not exit within ${STOP_GRACE_MS} ms of SIGTERM; killed`);
      removed = true;
      await rm(dataDir, { recursive: true, force: true });
    },
    async kill() {
      await forceKill(current);
    },
    async restart() {
      if (removed) throw serverError(spec, 'restart() after stop(): data directory is gone', log);
      if (!current.exitInfo) await terminate(current, STOP_GRACE_MS);
      current = await launch(spec, port, log);
      handle.pid = current.pid;
    },
    pause() {
      signal(current, 'SIGSTOP');
    },
    resume() {
      signal(current, 'SIGCONT');
    },
  };
  return handle;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, rej) => {
      timer = setTimeout(() => rej(new Error(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function requireBinary(kind: string, name: string, envOverride: string): string {
  const bin = findBinary(name, envOverride);
  if (!bin) {
    throw new Error(
      `${kind}: binary '${name}' not found (searched PATH and /usr/sbin; set ${envOverride} to override). ` +
        `Run scripts/install-deps.sh to install mariadb-server, nats-server and redis-server.`,
    );
  }
  return bin;
}

/** Connect, write `send` (if any), and resolve with the data read until `done(buffer)` is true. */
function tcpExchange(port: number, send: string | null, done: (buf: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: HOST, port });
    let buf = '';
    const finish = (err: Error | null): void => {
      sock.destroy();
      if (err) reject(err);
      else resolve(buf);
    };
    sock.setTimeout(1_500, () => finish(new Error(`no answer from ${HOST}:${port}; got ${JSON.stringify(buf)}`)));
    sock.once('error', (e) => finish(e));
    sock.once('connect', () => {
      if (send !== null) sock.write(send);
    });
    sock.on('data', (c: Buffer) => {
      buf += c.toString();
      if (done(buf)) finish(null);
    });
    sock.once('end', () => finish(new Error(`connection closed by ${HOST}:${port}; got ${JSON.stringify(buf)}`)));
  });
}

// ---------------------------------------------------------------------------------------------
// MariaDB

export async function startMariaDB(opts: { database?: string } = {}): Promise<ServerHandle> {
  const database = opts.database ?? 'im';
  if (!/^[A-Za-z0-9_]+$/.test(database)) throw new Error(`mariadb: bad database name '${database}'`);
  const mariadbd = requireBinary('mariadb', 'mariadbd', 'IM_TEST_MARIADBD');
  const installDb = requireBinary('mariadb', 'mariadb-install-db', 'IM_TEST_MARIADB_INSTALL_DB');

  const root = await mkdtemp(join(tmpdir(), 'im-mariadb-'));
  const datadir = join(root, 'data');
  const asRoot = process.getuid?.() === 0;
  // mariadbd refuses to run as root unless told to; --user is only valid (and needed) as root.
  const userArgs = asRoot ? ['--user=root'] : [];
  // Shared between mariadb-install-db (it passes unknown options on to mariadbd --bootstrap) and the server.
  const serverOpts = [
    '--skip-name-resolve',
    '--innodb-buffer-pool-size=32M',
    '--innodb-log-file-size=32M',
    '--innodb-flush-log-at-trx-commit=1', // durable: a `sent` must survive kill -9
    '--skip-log-bin',
    '--performance-schema=OFF',
    '--character-set-server=utf8mb4',
    '--collation-server=utf8mb4_unicode_ci',
    '--max-connections=500',
    `--tmpdir=${root}`,
  ];

  const initLog = new LogTail(100);
  const initArgs = [
    '--no-defaults', // must be first: ignore /etc/mysql/*.cnf of the machine
    `--datadir=${datadir}`,
    '--auth-root-authentication-method=normal', // root@127.0.0.1 with no password
    '--skip-test-db',
    ...userArgs,
    ...serverOpts,
  ];
  const t0 = Date.now();
  const initCode = await new Promise<number | null>((resolve, reject) => {
    const p = spawn(installDb, initArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
    p.stdout.on('data', (c: Buffer) => initLog.push('out', c));
    p.stderr.on('data', (c: Buffer) => initLog.push('err', c));
    const timer = setTimeout(() => p.kill('SIGKILL'), READY_TIMEOUT_MS);
    p.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    p.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  }).catch((e: Error) => {
    initLog.note(e.message);
    return -1;
  });
  if (initCode !== 0 || !existsSync(join(datadir, 'mysql'))) {
    await rm(root, { recursive: true, force: true });
    throw serverError(
      { kind: 'mariadb', bin: installDb },
      `mariadb-install-db failed (exit ${initCode}, ${Date.now() - t0} ms)`,
      initLog,
    );
  }

  const connect = (port: number, db?: string): Promise<Connection> =>
    createConnection({ host: HOST, port, user: 'root', database: db, connectTimeout: 1_500 });

  return startServer(
    {
      kind: 'mariadb',
      bin: mariadbd,
      args: (port) => [
        '--no-defaults',
        `--datadir=${datadir}`,
        `--port=${port}`,
        `--bind-address=${HOST}`,
        `--socket=${join(root, 'mysqld.sock')}`,
        `--pid-file=${join(root, 'mysqld.pid')}`,
        '--skip-networking=0',
        ...userArgs,
        ...serverOpts,
      ],
      async probe(port) {
        const c = await connect(port);
        try {
          await c.query('SELECT 1');
        } finally {
          await c.end().catch(() => c.destroy());
        }
      },
      async afterFirstStart(port) {
        const c = await connect(port);
        try {
          await c.query(`CREATE DATABASE IF NOT EXISTS \`${database}\` CHARACTER SET utf8mb4`);
          await c.query(`SELECT 1 FROM information_schema.schemata WHERE schema_name = ?`, [database]);
        } finally {
          await c.end().catch(() => c.destroy());
        }
      },
      url: (port) => `mysql://root@${HOST}:${port}/${database}`,
    },
    root,
  );
}

// ---------------------------------------------------------------------------------------------
// NATS

export async function startNats(opts: { jetstream?: boolean } = {}): Promise<ServerHandle> {
  const bin = requireBinary('nats', 'nats-server', 'IM_TEST_NATS_SERVER');
  const root = await mkdtemp(join(tmpdir(), 'im-nats-'));
  if (opts.jetstream) await mkdir(join(root, 'jetstream'), { recursive: true });
  return startServer(
    {
      kind: 'nats',
      bin,
      args: (port) => [
        '-a', HOST,
        '-p', String(port),
        '-m', '0', // no monitoring port (it would need another free port)
        ...(opts.jetstream ? ['-js', '-sd', join(root, 'jetstream')] : []),
      ],
      async probe(port) {
        // INFO on connect, then a PING must get a PONG once we have sent CONNECT.
        const out = await tcpExchange(port, 'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n', (b) =>
          /\r\nPONG\r\n/.test(b) || /^-ERR/m.test(b),
        );
        if (!out.startsWith('INFO ') || !out.includes('PONG')) {
          throw new Error(`unexpected NATS greeting ${JSON.stringify(out.slice(0, 200))}`);
        }
      },
      url: (port) => `nats://${HOST}:${port}`,
    },
    root,
  );
}

// ---------------------------------------------------------------------------------------------
// Redis

export async function startRedis(): Promise<ServerHandle> {
  const bin = requireBinary('redis', 'redis-server', 'IM_TEST_REDIS_SERVER');
  const root = await mkdtemp(join(tmpdir(), 'im-redis-'));
  return startServer(
    {
      kind: 'redis',
      bin,
      args: (port) => [
        '--port', String(port),
        '--bind', HOST,
        '--save', '',
        '--appendonly', 'no',
        '--dir', root,
        '--daemonize', 'no',
        '--protected-mode', 'no',
        '--logfile', '', // log to stdout, which we capture
      ],
      async probe(port) {
        const out = await tcpExchange(port, 'PING\r\n', (b) => b.includes('\r\n'));
        if (!out.startsWith('+PONG')) throw new Error(`unexpected PING answer ${JSON.stringify(out)}`);
      },
      url: (port) => `redis://${HOST}:${port}`,
    },
    root,
  );
}

/** Start all three in parallel (for cluster/chaos suites). */
export async function startAll(opts: { database?: string } = {}): Promise<{
  mariadb: ServerHandle;
  nats: ServerHandle;
  redis: ServerHandle;
  stop(): Promise<void>;
}> {
  // NATS with JetStream: cluster nodes publish their events to the IM_EVENTS stream.
  const results = await Promise.allSettled([startMariaDB(opts), startNats({ jetstream: true }), startRedis()]);
  const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as Error] : []));
  if (failed.length > 0) {
    await Promise.all(ok.map((h) => h.stop().catch(() => {})));
    throw new Error(failed.map((e) => e.message).join('\n\n'));
  }
  const [mariadb, nats, redis] = ok as [ServerHandle, ServerHandle, ServerHandle];
  return {
    mariadb,
    nats,
    redis,
    stop: async () => {
      await Promise.all([mariadb.stop(), nats.stop(), redis.stop()]);
    },
  };
}
