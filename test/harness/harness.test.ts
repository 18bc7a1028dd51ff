// The harness itself must work before any suite that builds on it can be trusted.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { createConnection } from 'mysql2/promise';
import { connect as natsConnect, StringCodec } from 'nats';
import { Redis } from 'ioredis';
import { freePort, startMariaDB, startNats, startRedis, type ServerHandle } from './servers.ts';
import { REPO_ROOT, startChatNode } from './chat-node.ts';
import { TestClient, login, signTestToken } from './ws-client.ts';

const started: ServerHandle[] = [];
afterAll(async () => {
  await Promise.all(started.map((h) => h.stop().catch(() => {})));
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('freePort', () => {
  it('returns a loopback port that can be bound, outside the range outgoing connections take their ports from', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    const ephemeralLow = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (ephemeralLow > 10_001) expect(port).toBeLessThan(ephemeralLow);
    const srv = net.createServer();
    await new Promise<void>((res, rej) => srv.once('error', rej).listen(port, '127.0.0.1', res));
    await new Promise<void>((res) => srv.close(() => res()));
  });
});

describe('MariaDB', () => {
  it('keeps a committed row across kill -9 and restart', async () => {
    const db = await startMariaDB();
    started.push(db);
    expect(db.url).toBe(`mysql://root@127.0.0.1:${db.port}/im`);
    const conn = async () =>
      createConnection({ host: db.host, port: db.port, user: 'root', database: 'im' });

    const c1 = await conn();
    const [settings] = await c1.query('SELECT @@innodb_flush_log_at_trx_commit AS flush, @@bind_address AS bind');
    expect(settings).toEqual([{ flush: 1, bind: '127.0.0.1' }]);
    await c1.query('CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(32)) ENGINE=InnoDB');
    await c1.query('INSERT INTO t VALUES (1, ?)', ['survives']);
    await c1.end();

    const oldPid = db.pid;
    await db.kill();
    expect(alive(oldPid)).toBe(false);
    await db.restart();
    expect(db.pid).not.toBe(oldPid);

    const c2 = await conn();
    const [rows] = await c2.query('SELECT v FROM t WHERE id = 1');
    expect(rows).toEqual([{ v: 'survives' }]);
    await c2.end();

    // restart() while running is a graceful restart.
    await db.restart();
    const c3 = await conn();
    const [rows3] = await c3.query('SELECT COUNT(*) AS n FROM t');
    expect(rows3).toEqual([{ n: 1 }]);
    await c3.end();
  });

  it('creates the requested database and removes its data on stop', async () => {
    const db = await startMariaDB({ database: 'other_db' });
    expect(db.url.endsWith('/other_db')).toBe(true);
    const c = await createConnection({ host: db.host, port: db.port, user: 'root', database: 'other_db' });
    await c.query('SELECT 1');
    await c.end();
    const pid = db.pid;
    await db.stop();
    expect(alive(pid)).toBe(false);
    const { existsSync } = await import('node:fs');
    expect(existsSync(db.dataDir)).toBe(false);
  });
});

describe('NATS', () => {
  it('does a pub/sub roundtrip, and again after kill and restart', async () => {
    const nats = await startNats();
    started.push(nats);
    expect(nats.url).toBe(`nats://127.0.0.1:${nats.port}`);
    const sc = StringCodec();

    const roundtrip = async (payload: string): Promise<string> => {
      const nc = await natsConnect({ servers: nats.url, reconnect: false, timeout: 3_000 });
      try {
        const sub = nc.subscribe('harness.test', { max: 1 });
        nc.publish('harness.test', sc.encode(payload));
        for await (const m of sub) return sc.decode(m.data);
        throw new Error('subscription ended without a message');
      } finally {
        await nc.close();
      }
    };

    expect(await roundtrip('one')).toBe('one');
    await nats.kill();
    await nats.restart();
    expect(await roundtrip('two')).toBe('two');
  });
});

describe('Redis', () => {
  it('does SET/GET, restarts, and pause/resume makes it hang and recover', async () => {
    const redis = await startRedis();
    started.push(redis);
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
    const client = () => new Redis(redis.url, { maxRetriesPerRequest: 1, connectTimeout: 2_000, lazyConnect: true });

    const r1 = client();
    await r1.connect();
    await r1.set('k', 'v');
    expect(await r1.get('k')).toBe('v');
    r1.disconnect();

    await redis.kill();
    await redis.restart();
    const r2 = client();
    await r2.connect();
    expect(await r2.ping()).toBe('PONG');
    await r2.set('k2', 'v2');
    expect(await r2.get('k2')).toBe('v2');

    redis.pause?.();
    const hung = await Promise.race([
      r2.ping().then(() => 'answered'),
      new Promise((r) => setTimeout(() => r('hung'), 300)),
    ]);
    expect(hung).toBe('hung');
    redis.resume?.();
    expect(await r2.ping()).toBe('PONG');
    r2.disconnect();
  });
});

describe('missing binaries', () => {
  it('fails with an error naming the binary', async () => {
    const saved = process.env.IM_TEST_NATS_SERVER;
    process.env.IM_TEST_NATS_SERVER = '/nonexistent/nats-server';
    try {
      await expect(startNats()).rejects.toThrow(/nats-server/);
    } finally {
      if (saved === undefined) delete process.env.IM_TEST_NATS_SERVER;
      else process.env.IM_TEST_NATS_SERVER = saved;
    }
  });
});

// A stand-in for main.ts that follows the parts of the protocol the harness relies on:
// /healthz, login with an HS256 JWT, rid echo, and SIGTERM → kicked(shutdown) → exit 0.
const FAKE_NODE = `
import http from 'node:http';
import { WebSocketServer } from 'ws';
import { jwtVerify } from 'jose';
const secret = new TextEncoder().encode(process.env.IM_JWT_SECRET);
const server = http.createServer((req, res) => {
  if (req.url === '/healthz') { res.writeHead(200); res.end(JSON.stringify({ status: 'ok', node: process.env.IM_NODE_ID })); }
  else { res.writeHead(404); res.end(); }
});
const wss = new WebSocketServer({ server, path: '/ws' });
wss.on('connection', (ws) => {
  let user = null;
  ws.on('message', async (data) => {
    let f;
    try { f = JSON.parse(String(data)); } catch { ws.send(JSON.stringify({ t: 'error', code: 'bad_request', message: 'not json' })); return; }
    if (!user) {
      if (f.t !== 'login') { ws.send(JSON.stringify({ t: 'error', rid: f.rid, code: 'unauthorized', message: 'login first' })); ws.close(); return; }
      try { user = (await jwtVerify(f.token, secret)).payload.sub; }
      catch { ws.send(JSON.stringify({ t: 'error', rid: f.rid, code: 'unauthorized', message: 'bad token' })); ws.close(); return; }
      ws.send(JSON.stringify({ t: 'login_ok', rid: f.rid, user, device: f.device ?? 'default', node: process.env.IM_NODE_ID, heartbeat_ms: 30000 }));
      return;
    }
    if (f.t === 'ping') ws.send(JSON.stringify({ t: 'pong', rid: f.rid, ts: Date.now() }));
    else if (f.t === 'burst') for (let i = 1; i <= f.n; i++) ws.send(JSON.stringify({ t: 'msg', seq: i }));
    else ws.send(JSON.stringify({ t: 'error', rid: f.rid, code: 'bad_request', message: 'unknown t' }));
  });
});
server.listen(Number(process.env.IM_PORT), '127.0.0.1');
process.on('SIGTERM', () => {
  for (const ws of wss.clients) { ws.send(JSON.stringify({ t: 'kicked', reason: 'shutdown' })); ws.close(); }
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
});
`;

describe('chat node + test client (against a stand-in node)', () => {
  // Under .tmp/ (gitignored) so that `ws` and `jose` resolve from the repo's node_modules.
  const dir = join(REPO_ROOT, '.tmp', `fake-node-${process.pid}`);
  const entry = join(dir, 'fake-main.ts');
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('spawns, is healthy, speaks the protocol, restarts and stops with exit code 0', async () => {
    await mkdir(dir, { recursive: true });
    await writeFile(entry, FAKE_NODE);
    const node = await startChatNode({ entry, nodeId: 'n1' });
    try {
      expect(node.wsUrl).toBe(`ws://127.0.0.1:${node.port}/ws`);
      expect(node.env.IM_JWT_SECRET).toBe('test-secret');
      const health = await fetch(`${node.httpUrl}/healthz`);
      expect(await health.json()).toEqual({ status: 'ok', node: 'n1' });

      const { client, loginOk } = await login(node.wsUrl, 'alice', { device: 'phone' });
      expect(loginOk).toMatchObject({ t: 'login_ok', user: 'alice', device: 'phone', node: 'n1' });
      expect(await client.request({ t: 'ping' })).toMatchObject({ t: 'pong' });
      // Error frames are answers too.
      expect(await client.request({ t: 'nope' })).toMatchObject({ t: 'error', code: 'bad_request' });
      // Raw malformed frame: the answer has no rid, so pick it with next().
      client.send('{not json');
      expect(await client.next((f) => f.t === 'error')).toMatchObject({ code: 'bad_request' });

      // Frames arriving before next()/collect() are queued, not lost.
      client.send({ t: 'burst', n: 5 });
      await new Promise((r) => setTimeout(r, 100));
      const third = await client.next((f) => f.t === 'msg' && f.seq === 3);
      expect(third.seq).toBe(3);
      const rest = await client.collect((f) => f.t === 'msg', 4);
      expect(rest.map((f) => f.seq)).toEqual([1, 2, 4, 5]);
      await expect(client.next((f) => f.t === 'never', 200)).rejects.toThrow(/timed out after 200 ms.*never/s);

      // A bad token is an error, not a hang.
      await expect(login(node.wsUrl, 'mallory', { secret: 'wrong' })).rejects.toThrow(/unauthorized/);
      const expired = await signTestToken('bob', 'test-secret', -60);
      const raw = await TestClient.connect(node.wsUrl);
      expect(await raw.request({ t: 'login', token: expired })).toMatchObject({ t: 'error', code: 'unauthorized' });
      await raw.closed;
      expect(raw.isOpen()).toBe(false);

      // kill -9 and restart on the same port.
      const oldPid = node.pid;
      await node.kill();
      await client.closed;
      await expect(client.next(() => true, 500)).rejects.toThrow(/closed/);
      await node.restart();
      expect(node.pid).not.toBe(oldPid);
      const again = await login(node.wsUrl, 'alice');

      // SIGTERM: the socket gets kicked(shutdown) and the node exits 0.
      const code = await node.stop();
      expect(code).toBe(0);
      expect(await again.client.next((f) => f.t === 'kicked')).toMatchObject({ reason: 'shutdown' });
      await again.client.close();
    } finally {
      await node.kill().catch(() => {});
    }
  });

  it('reports a node that never becomes healthy, with its logs', async () => {
    await mkdir(dir, { recursive: true });
    const bad = join(dir, 'crash-main.ts');
    await writeFile(bad, `console.error('boom: cannot start'); process.exit(3);\n`);
    await expect(startChatNode({ entry: bad })).rejects.toThrow(/exited during startup \(code 3[\s\S]*boom: cannot start/);
  });
});
