/**
 * "Usual choice" baseline: a plain Socket.IO chat server of the same shape as the project,
 * in memory, with rooms for groups. Events carry the protocol's frames as their payload:
 *   client → server: login, send, ping, ack, read, group_create, group_add
 *   server → client: login_ok, sent, msg, pong, ok, error, kicked
 * Nothing is stored; seqs are a per-conversation counter. The JWT payload is decoded, not
 * verified (same as the uWS ceiling).
 *
 * Usage: node --import tsx bench/baselines/socketio-chat.ts [port]   (or env PORT / IM_PORT)
 * Prints `READY <port>` once listening on 127.0.0.1. Socket.IO path: /socket.io/, Engine.IO v4.
 */
import { createServer } from 'node:http';
import { Server, type Socket } from 'socket.io';
import { dmConv } from '../../protocol/ids.ts';

type Frame = Record<string, unknown>;

const args = process.argv.slice(2);
function argValue(name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}
const port = Number(argValue('--port') ?? args.find((a) => /^\d+$/.test(a)) ?? process.env.PORT ?? process.env.IM_PORT ?? 9102);
const host = argValue('--host') ?? process.env.HOST ?? '127.0.0.1';
const HEARTBEAT_MS = Number(process.env.IM_HEARTBEAT_MS ?? 30000);
const NODE_ID = 'socketio-chat';

const users = new Map<string, Socket>();
const seqs = new Map<string, number>();
const groups = new Map<string, Set<string>>();
let nextMid = 1;

function decodeSub(token: unknown): string | null {
  if (typeof token !== 'string') return null;
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const payload = JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as { sub?: unknown };
    return typeof payload.sub === 'string' && payload.sub.length > 0 ? payload.sub : null;
  } catch {
    return null;
  }
}

function nextSeq(conv: string): number {
  const s = (seqs.get(conv) ?? 0) + 1;
  seqs.set(conv, s);
  return s;
}

function isFrame(v: unknown): v is Frame {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const http = createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(`{"status":"ok","node":"${NODE_ID}"}`);
    return;
  }
  // Socket.IO attaches its own request listener for /socket.io/.
  if (!req.url?.startsWith('/socket.io/')) res.writeHead(404).end();
});

const io = new Server(http, {
  transports: ['websocket'],
  perMessageDeflate: false,
  serveClient: false,
  maxHttpBufferSize: 64 * 1024,
  pingInterval: 25000,
  pingTimeout: 20000,
});

function joinGroup(conv: string, members: unknown): void {
  let set = groups.get(conv);
  if (!set) {
    set = new Set();
    groups.set(conv, set);
  }
  if (!Array.isArray(members)) return;
  for (const m of members) {
    if (typeof m !== 'string') continue;
    set.add(m);
    void users.get(m)?.join(conv);
  }
}

io.on('connection', (socket) => {
  let user: string | null = null;

  socket.on('login', (f: unknown) => {
    if (!isFrame(f)) return;
    const sub = decodeSub(f.token);
    if (!sub) {
      socket.emit('error', { t: 'error', rid: f.rid, code: 'unauthorized', message: 'bad token' });
      socket.disconnect(true);
      return;
    }
    user = sub;
    const old = users.get(sub);
    users.set(sub, socket);
    if (old && old !== socket) {
      old.emit('kicked', { t: 'kicked', reason: 'replaced' });
      old.disconnect(true);
    }
    for (const [conv, members] of groups) if (members.has(sub)) void socket.join(conv);
    const device = typeof f.device === 'string' ? f.device : 'default';
    socket.emit('login_ok', { t: 'login_ok', rid: f.rid, user: sub, device, node: NODE_ID, heartbeat_ms: HEARTBEAT_MS });
  });

  socket.on('send', (f: unknown) => {
    if (!isFrame(f)) return;
    if (!user) {
      socket.emit('error', { t: 'error', rid: f.rid, code: 'unauthorized', message: 'login first' });
      return;
    }
    const ts = Date.now();
    const mid = String(nextMid++);
    const kind = typeof f.kind === 'string' ? f.kind : 'text';
    if (typeof f.to === 'string') {
      const conv = dmConv(user, f.to);
      const seq = nextSeq(conv);
      socket.emit('sent', { t: 'sent', rid: f.rid, conv, cmid: f.cmid, seq, mid, ts });
      users.get(f.to)?.emit('msg', { t: 'msg', conv, seq, mid, from: user, cmid: f.cmid, ts, kind, body: f.body });
    } else if (typeof f.conv === 'string') {
      const conv = f.conv;
      const seq = nextSeq(conv);
      socket.emit('sent', { t: 'sent', rid: f.rid, conv, cmid: f.cmid, seq, mid, ts });
      socket.to(conv).emit('msg', { t: 'msg', conv, seq, mid, from: user, cmid: f.cmid, ts, kind, body: f.body });
    } else {
      socket.emit('error', { t: 'error', rid: f.rid, code: 'bad_request', message: 'send needs to or conv' });
    }
  });

  socket.on('ping', (f: unknown) => {
    const rid = isFrame(f) ? f.rid : undefined;
    socket.emit('pong', rid === undefined ? { t: 'pong', ts: Date.now() } : { t: 'pong', rid, ts: Date.now() });
  });
  socket.on('ack', () => undefined);
  socket.on('read', () => undefined);

  socket.on('group_create', (f: unknown) => {
    if (!isFrame(f) || !user) return;
    const conv = `g:${String(f.group)}`;
    joinGroup(conv, [user, ...(Array.isArray(f.members) ? f.members : [])]);
    socket.emit('ok', { t: 'ok', rid: f.rid, conv });
  });
  socket.on('group_add', (f: unknown) => {
    if (!isFrame(f) || !user) return;
    if (typeof f.conv === 'string') joinGroup(f.conv, f.members);
    socket.emit('ok', { t: 'ok', rid: f.rid });
  });

  socket.on('disconnect', () => {
    if (user && users.get(user) === socket) users.delete(user);
  });
});

http.listen(port, host, () => {
  process.stdout.write(`READY ${port}\n`);
});

function shutdown(): void {
  void io.close();
  setTimeout(() => process.exit(0), 100).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
