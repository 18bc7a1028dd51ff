/**
 * Ceiling baseline: a bare uWebSockets.js server with no application logic that speaks the
 * same frames as the project (docs/protocol.md), so the load generator can drive it unchanged.
 *
 * - `login` → `login_ok` (the JWT payload is decoded, NOT verified: no logic, no crypto)
 * - `send` 1:1 → `sent` (fake per-conversation seq counter, nothing stored) and a `msg`
 *   pushed to the recipient's socket when it is connected; when it is not, the `msg` frame is
 *   kept in an in-memory mailbox (at most 500 per user, like IM_LOGIN_PUSH_MAX) and pushed right
 *   after its next `login_ok` (the ceiling of the reconnect-storm scenario)
 * - `send` to `g:<group>` → `sent` and a `msg` to every other online member through uWS
 *   native topic publish (`ws.subscribe`, `ws.publish`)
 * - `group_create` / `group_add` → `ok`; online members are subscribed to the topic
 * - `ping` → `pong`; `ack`, `read`, `typing` → nothing; anything else → `bad_request`
 *
 * Usage: node --import tsx bench/baselines/uws-echo.ts [port]   (or env PORT / IM_PORT)
 * Prints `READY <port>` on stdout once listening on 127.0.0.1 (`--host` / env HOST to change).
 */
import uWS from 'uWebSockets.js';
import { dmConv } from '../../protocol/ids.ts';

interface SocketData {
  user: string;
  device: string;
  loggedIn: boolean;
}

type Frame = Record<string, unknown>;

const args = process.argv.slice(2);
function argValue(name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}
const port = Number(argValue('--port') ?? args.find((a) => /^\d+$/.test(a)) ?? process.env.PORT ?? process.env.IM_PORT ?? 9101);
const host = argValue('--host') ?? process.env.HOST ?? '127.0.0.1';
const HEARTBEAT_MS = Number(process.env.IM_HEARTBEAT_MS ?? 30000);
const NODE_ID = 'uws-echo';

const sockets = new Map<string, uWS.WebSocket<SocketData>>();
const seqs = new Map<string, number>();
const groups = new Map<string, Set<string>>();
const groupsOf = new Map<string, Set<string>>();
let nextMid = 1;
/** Offline 1:1 messages (already encoded `msg` frames), pushed after the next login_ok. */
const mailboxes = new Map<string, string[]>();
const MAILBOX_MAX = 500;

function decodeSub(token: string): string | null {
  const parts = token.split('.');
  if (parts.length !== 3 || !parts[1]) return null;
  try {
    const payload = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')) as { sub?: unknown };
    return typeof payload.sub === 'string' && payload.sub.length > 0 ? payload.sub : null;
  } catch {
    return null;
  }
}

function send(ws: uWS.WebSocket<SocketData>, frame: Frame): void {
  ws.send(JSON.stringify(frame), false, false);
}

function error(ws: uWS.WebSocket<SocketData>, rid: unknown, code: string, message: string): void {
  send(ws, { t: 'error', rid, code, message });
}

function addMembers(conv: string, members: unknown): void {
  let set = groups.get(conv);
  if (!set) {
    set = new Set();
    groups.set(conv, set);
  }
  if (!Array.isArray(members)) return;
  for (const m of members) {
    if (typeof m !== 'string') continue;
    set.add(m);
    let mine = groupsOf.get(m);
    if (!mine) {
      mine = new Set();
      groupsOf.set(m, mine);
    }
    mine.add(conv);
    sockets.get(m)?.subscribe(conv);
  }
}

function nextSeq(conv: string): number {
  const s = (seqs.get(conv) ?? 0) + 1;
  seqs.set(conv, s);
  return s;
}

function onFrame(ws: uWS.WebSocket<SocketData>, f: Frame): void {
  const data = ws.getUserData();
  const t = f.t;
  if (!data.loggedIn) {
    if (t !== 'login' || typeof f.token !== 'string') {
      error(ws, f.rid, 'unauthorized', 'login first');
      ws.end(4001, 'unauthorized');
      return;
    }
    const user = decodeSub(f.token);
    if (!user) {
      error(ws, f.rid, 'unauthorized', 'bad token');
      ws.end(4001, 'unauthorized');
      return;
    }
    data.user = user;
    data.device = typeof f.device === 'string' ? f.device : 'default';
    data.loggedIn = true;
    const old = sockets.get(user);
    sockets.set(user, ws);
    if (old && old !== ws) {
      send(old, { t: 'kicked', reason: 'replaced' });
      old.end(4000, 'replaced');
    }
    const mine = groupsOf.get(user);
    if (mine) for (const g of mine) ws.subscribe(g);
    send(ws, { t: 'login_ok', rid: f.rid, user, device: data.device, node: NODE_ID, heartbeat_ms: HEARTBEAT_MS });
    const box = mailboxes.get(user);
    if (box) {
      mailboxes.delete(user);
      for (const m of box) ws.send(m, false, false);
    }
    return;
  }
  switch (t) {
    case 'send': {
      const ts = Date.now();
      const mid = String(nextMid++);
      const kind = typeof f.kind === 'string' ? f.kind : 'text';
      if (typeof f.to === 'string') {
        const a = data.user;
        const b = f.to;
        const conv = dmConv(a, b);
        const seq = nextSeq(conv);
        send(ws, { t: 'sent', rid: f.rid, conv, cmid: f.cmid, seq, mid, ts });
        const peer = sockets.get(b);
        const msg = { t: 'msg', conv, seq, mid, from: a, cmid: f.cmid, ts, kind, body: f.body };
        if (peer) send(peer, msg);
        else {
          let box = mailboxes.get(b);
          if (!box) mailboxes.set(b, (box = []));
          if (box.length >= MAILBOX_MAX) box.shift();
          box.push(JSON.stringify(msg));
        }
      } else if (typeof f.conv === 'string') {
        const conv = f.conv;
        const seq = nextSeq(conv);
        send(ws, { t: 'sent', rid: f.rid, conv, cmid: f.cmid, seq, mid, ts });
        // ws.publish excludes the publishing socket itself.
        ws.publish(conv, JSON.stringify({ t: 'msg', conv, seq, mid, from: data.user, cmid: f.cmid, ts, kind, body: f.body }), false, false);
      } else {
        error(ws, f.rid, 'bad_request', 'send needs to or conv');
      }
      return;
    }
    case 'ping':
      send(ws, f.rid === undefined ? { t: 'pong', ts: Date.now() } : { t: 'pong', rid: f.rid, ts: Date.now() });
      return;
    case 'ack':
    case 'read':
    case 'typing':
      return;
    case 'group_create': {
      const conv = `g:${String(f.group)}`;
      addMembers(conv, [data.user, ...(Array.isArray(f.members) ? f.members : [])]);
      send(ws, { t: 'ok', rid: f.rid, conv });
      return;
    }
    case 'group_add': {
      if (typeof f.conv === 'string') addMembers(f.conv, f.members);
      send(ws, { t: 'ok', rid: f.rid });
      return;
    }
    default:
      error(ws, f.rid, 'bad_request', 'unknown frame');
  }
}

const decoder = new TextDecoder();
const app = uWS.App();
app.ws<SocketData>('/*', {
  compression: uWS.DISABLED,
  maxPayloadLength: 64 * 1024,
  maxBackpressure: 16 * 1024 * 1024,
  idleTimeout: Math.min(960, Math.ceil((HEARTBEAT_MS * 2.5) / 1000)),
  sendPingsAutomatically: false,
  upgrade: (res, req, context) => {
    res.upgrade<SocketData>(
      { user: '', device: '', loggedIn: false },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  },
  message: (ws, message) => {
    let f: unknown;
    try {
      f = JSON.parse(decoder.decode(message));
    } catch {
      error(ws, undefined, 'bad_request', 'not json');
      return;
    }
    if (typeof f !== 'object' || f === null || Array.isArray(f)) {
      error(ws, undefined, 'bad_request', 'not an object');
      return;
    }
    onFrame(ws, f as Frame);
  },
  close: (ws) => {
    const data = ws.getUserData();
    if (data.loggedIn && sockets.get(data.user) === ws) sockets.delete(data.user);
  },
});
app.get('/healthz', (res) => {
  res.writeHeader('content-type', 'application/json').end(`{"status":"ok","node":"${NODE_ID}"}`);
});

let listenSocket: uWS.us_listen_socket | null = null;
app.listen(host, port, (ls) => {
  if (!ls) {
    process.stderr.write(`uws-echo: cannot listen on ${host}:${port}\n`);
    process.exit(1);
  }
  listenSocket = ls;
  process.stdout.write(`READY ${port}\n`);
});

function shutdown(): void {
  if (listenSocket) uWS.us_listen_socket_close(listenSocket);
  listenSocket = null;
  for (const ws of sockets.values()) ws.close();
  setTimeout(() => process.exit(0), 50).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
