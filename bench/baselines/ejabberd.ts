/**
 * The `ejabberd` bench target: what many teams deploy instead of writing a chat server. Starts a
 * private ejabberd instance (the Debian package's code, installed on demand by
 * install-ejabberd.sh; never the package's system service) on a free loopback port with a
 * temporary config, Mnesia spool and log directory, registers the bench users through its HTTP
 * API, and stops it (by the PID of the beam.smp process it started) afterwards.
 *
 * The instance runs without Erlang distribution (no -sname: node nonode@nohost), so no epmd is
 * started and nothing outlives stop(). Listener: `ejabberd_http` on 127.0.0.1 with `/ws` →
 * `ejabberd_http_ws` (XMPP over WebSocket, RFC 7395) and `/api` → `mod_http_api` (user
 * registration from loopback only), listen backlog 1024 (the default 5 resets bursts of
 * connections). No `ejabberd_c2s` listener, hence no c2s shaper: the WebSocket sessions are not
 * rate-limited (the project runs with IM_RATE_MSGS=1000000 too).
 *
 * Standalone: `node --import tsx bench/baselines/ejabberd.ts [--pairs N]` starts it, registers
 * the pairs scenario's users, prints the URL and runs until Ctrl-C.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pairUsers } from '../loadgen/coordinator.ts';
import { setTimeout as sleep } from 'node:timers/promises';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const execFileP = promisify(execFile);

export const EJABBERD_DOMAIN = 'localhost';
export const EJABBERD_PASSWORD = 'bench-password';

export interface EjabberdHandle {
  /** ws://127.0.0.1:PORT/ws */
  url: string;
  /** The beam.smp process of this instance (erl execs erlexec, which execs beam.smp: same PID). */
  pid: number;
  child: ChildProcess;
  domain: string;
  password: string;
  version: string;
  /** The generated config. */
  config: string;
  /** The erl command line flags (VM settings) the instance runs with. */
  vmFlags: string[];
  stop(): Promise<void>;
}

export interface EjabberdOptions {
  /** Users (local parts) registered before the run. */
  users: string[];
  log?: (line: string) => void;
  /** Called with the child right after spawn (so the caller's Ctrl-C handler can stop it). */
  onChild?: (child: ChildProcess) => void;
  startTimeoutMs?: number;
}

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


/** Runs install-ejabberd.sh (idempotent: returns at once when ejabberd is installed). */
export async function installEjabberd(log: (line: string) => void = () => undefined): Promise<void> {
  try {
    const { stdout } = await execFileP('bash', [join(HERE, 'install-ejabberd.sh')], { maxBuffer: 16 * 2 ** 20, timeout: 15 * 60_000 });
    const last = stdout.trim().split('\n').pop();
    if (last) log(`  ${last}`);
  } catch (e) {
    const err = e as { stderr?: string; message?: string };
    throw new Error(`install-ejabberd.sh failed: ${(err.stderr ?? '').trim().split('\n').slice(-3).join(' | ') || err.message}`);
  }
}

/** Where the package keeps its code and which `erl` it runs (read from ejabberdctl, with fallbacks). */
function locateRuntime(): { erl: string; erlLibs: string; version: string } {
  let erl = '/usr/bin/erl';
  let erlLibs = '';
  for (const ctl of ['/usr/sbin/ejabberdctl', '/usr/bin/ejabberdctl', '/usr/local/sbin/ejabberdctl']) {
    if (!existsSync(ctl)) continue;
    const text = readFileSync(ctl, 'utf8');
    erl = /^\s*ERL="?([^"\s]+)"?/m.exec(text)?.[1] ?? erl;
    erlLibs = /^\s*ERL_LIBS='?([^'\s]+)'?/m.exec(text)?.[1] ?? '';
    break;
  }
  const candidates = [erlLibs, '/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib/erlang/lib'].filter(Boolean);
  for (const dir of candidates) {
    const found = existsSync(dir) ? readdirSync(dir).filter((d) => /^ejabberd-\d/.test(d)).sort() : [];
    const first = found[0];
    if (first) return { erl, erlLibs: dir, version: first.slice('ejabberd-'.length) };
  }
  throw new Error(`ejabberd code not found (looked in ${candidates.join(', ')})`);
}

/**
 * The instance's ejabberd.yml (format of ejabberd 21.x–23.x). Modules: a usual chat deployment
 * (roster, offline storage, privacy/blocking, carbons, client state, disco, ping, last, private,
 * vCard) plus XEP-0198 stream management for the acks; all in Mnesia under the temp spool.
 * No MAM (message archive): ejabberd stores nothing of a message delivered to an online session.
 */
export function ejabberdConfig(port: number): string {
  return `# Generated by bench/baselines/ejabberd.ts for one bench run (temporary).
hosts:
  - ${EJABBERD_DOMAIN}
loglevel: warning
log_rotate_count: 0
auth_method: internal
auth_password_format: plain
default_db: mnesia
listen:
  -
    port: ${port}
    ip: "127.0.0.1"
    module: ejabberd_http
    backlog: 1024
    request_handlers:
      /ws: ejabberd_http_ws
      /api: mod_http_api
acl:
  loopback:
    ip:
      - 127.0.0.0/8
api_permissions:
  "bench: register users from loopback":
    from:
      - mod_http_api
    who:
      ip: 127.0.0.1/8
    what:
      - register
      - status
shaper_rules:
  max_user_sessions: 10
  max_user_offline_messages: 5000
modules:
  mod_blocking: {}
  mod_caps: {}
  mod_carboncopy: {}
  mod_client_state: {}
  mod_disco: {}
  mod_http_api: {}
  mod_last: {}
  mod_offline:
    access_max_user_messages: max_user_offline_messages
  mod_ping: {}
  mod_privacy: {}
  mod_private: {}
  mod_roster: {}
  mod_stream_mgmt:
    resend_on_timeout: if_offline
  mod_vcard:
    search: false
`;
}

async function api(base: string, command: string, body: unknown): Promise<{ status: number; text: string }> {
  const res = await fetch(`${base}/api/${command}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, text: await res.text() };
}

/** Starts the instance and registers `opts.users`; throws (after cleaning up) when it cannot. */
export async function startEjabberd(opts: EjabberdOptions): Promise<EjabberdHandle> {
  const log = opts.log ?? (() => undefined);
  await installEjabberd(log);
  const rt = locateRuntime();
  const port = await freePort();
  const dir = mkdtempSync(join(os.tmpdir(), 'im-bench-ejabberd-'));
  const spool = join(dir, 'spool');
  const logs = join(dir, 'log');
  mkdirSync(spool);
  mkdirSync(logs);
  const config = ejabberdConfig(port);
  const configPath = join(dir, 'ejabberd.yml');
  writeFileSync(configPath, config);
  // The VM flags ejabberdctl uses (+K, +P process limit); no -sname/-name: no distribution, no
  // epmd. +sbwt none (and for the dirty schedulers): idle schedulers sleep instead of spinning,
  // so the beam.smp CPU time is work, not busy-waiting, on a 2-core machine shared with the load
  // generator (the BEAM's own advice for shared hosts); EJABBERD_BENCH_BUSY_WAIT=1 keeps the default.
  const busyWait = process.env.EJABBERD_BENCH_BUSY_WAIT === '1' ? [] : ['+sbwt', 'none', '+sbwtdcpu', 'none', '+sbwtdio', 'none'];
  const child = spawn(rt.erl, ['-noinput', '-noshell', '+K', 'true', '+P', '250000', ...busyWait, '-mnesia', 'dir', JSON.stringify(spool), '-s', 'ejabberd'], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      EJABBERD_CONFIG_PATH: configPath,
      EJABBERD_LOG_PATH: join(logs, 'ejabberd.log'),
      ERL_LIBS: rt.erlLibs,
      ERL_CRASH_DUMP: join(logs, 'erl_crash.dump'),
      ERL_MAX_PORTS: '65536',
      HOME: dir,
    },
  });
  opts.onChild?.(child);
  let out = '';
  const keep = (d: Buffer): void => {
    out = (out + d.toString()).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const cleanupDir = (): void => rmSync(dir, { recursive: true, force: true });

  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      // SIGTERM makes the BEAM run init:stop() (ejabberd and Mnesia shut down in order).
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(t);
    }
    cleanupDir();
  };

  try {
    const pid = child.pid;
    if (pid === undefined) throw new Error('ejabberd: no pid');
    const base = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + (opts.startTimeoutMs ?? 60_000);
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`ejabberd exited (${child.exitCode ?? child.signalCode}) during start:\n${out}\n${tailLog(logs)}`);
      const ok = await api(base, 'status', {}).then(
        (r) => r.status === 200 && r.text.includes('started'),
        () => false,
      );
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`ejabberd: not started within ${opts.startTimeoutMs ?? 60_000} ms:\n${out}\n${tailLog(logs)}`);
      await sleep(250);
    }
    const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    if (comm !== 'beam.smp') throw new Error(`ejabberd: PID ${pid} is '${comm}', not beam.smp: its /proc figures would not be the server's`);
    // Register the users (HTTP API, a few in flight): before the run, outside every measurement.
    const t0 = Date.now();
    let next = 0;
    const lane = async (): Promise<void> => {
      for (;;) {
        const user = opts.users[next++];
        if (user === undefined) return;
        const r = await api(base, 'register', { user, host: EJABBERD_DOMAIN, password: EJABBERD_PASSWORD });
        if (r.status !== 200 && !r.text.includes('already registered')) throw new Error(`ejabberd: register ${user}: HTTP ${r.status} ${r.text.slice(0, 200)}`);
      }
    };
    await Promise.all(Array.from({ length: 8 }, lane));
    log(`  ejabberd ${rt.version} on ${base} (beam.smp PID ${pid}), ${opts.users.length} users registered in ${Date.now() - t0} ms`);
    return { url: `ws://127.0.0.1:${port}/ws`, pid, child, domain: EJABBERD_DOMAIN, password: EJABBERD_PASSWORD, version: rt.version, config, vmFlags: ['+K', 'true', '+P', '250000', ...busyWait], stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

function tailLog(logs: string): string {
  try {
    return readFileSync(join(logs, 'ejabberd.log'), 'utf8').split('\n').slice(-20).join('\n');
  } catch {
    return '';
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const i = process.argv.indexOf('--pairs');
  const pairs = i >= 0 ? Number(process.argv[i + 1]) : 100;
  const users = Array.from({ length: pairs }, (_, k) => pairUsers(k)).flat();
  const h = await startEjabberd({ users, log: (l) => process.stderr.write(`${l}\n`) });
  process.stdout.write(`READY ${h.url} pid ${h.pid} (users pa<i>a / pa<i>b, password ${h.password})\n`);
  const bye = (): void => {
    void h.stop().then(() => process.exit(0));
  };
  process.once('SIGINT', bye);
  process.once('SIGTERM', bye);
}
