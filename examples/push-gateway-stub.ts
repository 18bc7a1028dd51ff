/**
 * A stub mobile push gateway: where a real one would call APNs/FCM with each user's device tokens,
 * this one prints one line per notification and keeps the last N in memory.
 *
 *   POST /push   {"notifications":[{"user","conv","from","preview","seq","mid"}]}  -> {"accepted":N}
 *   GET  /sent   {"sent":[…the last N, oldest first…]}   (?user=<id> for one user's)
 *   GET  /healthz
 *
 * A notification for a (user, mid) it already sent is skipped, the way push providers collapse
 * notifications by a collapse id: the business service may forward a push.needed event twice
 * (events are delivered at least once; a crash between forwarding and confirming repeats it).
 *
 *   npm run example:push -- --port 8789 --keep 1000
 */
import { createServer, type Server } from 'node:http';
import { parseArgs } from 'node:util';
import { LruSet, answer, isMain, onShutdown, readBody } from './common.ts';

export interface Notification {
  user: string;
  conv: string;
  from: string;
  preview: string;
  seq?: number;
  mid?: string;
}

export interface SentNotification extends Notification { at: number }

export class PushGatewayStub {
  private readonly sent: SentNotification[] = [];
  private readonly seen = new LruSet(100_000);

  constructor(private readonly keep = 1000, private readonly print: (line: string) => void = (l) => console.log(l)) {}

  /** "Sends" each notification (prints it); answers how many were new. */
  send(notifications: readonly Notification[]): number {
    let n = 0;
    for (const p of notifications) {
      const key = p.mid === undefined ? null : `${p.user}\n${p.mid}`;
      if (key !== null && this.seen.has(key)) continue;
      if (key !== null) this.seen.add(key);
      this.print(`push -> ${p.user}: [${p.conv}] ${p.from}: ${p.preview}`);
      this.sent.push({ ...p, at: Date.now() });
      if (this.sent.length > this.keep) this.sent.shift();
      n++;
    }
    return n;
  }

  list(user?: string): SentNotification[] {
    return user === undefined ? [...this.sent] : this.sent.filter((p) => p.user === user);
  }
}

const isStr = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= 1000;

/** Parses a POST /push body; null when it is not `{"notifications":[…]}` of well-formed entries. */
export function parseNotifications(raw: Buffer): Notification[] | null {
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch {
    return null;
  }
  const list = (body as { notifications?: unknown } | null)?.notifications;
  if (!Array.isArray(list)) return null;
  const out: Notification[] = [];
  for (const n of list as Array<Record<string, unknown>>) {
    if (typeof n !== 'object' || n === null || !isStr(n.user) || !isStr(n.conv) || !isStr(n.from) || typeof n.preview !== 'string') return null;
    out.push({
      user: n.user, conv: n.conv, from: n.from, preview: n.preview.slice(0, 200),
      ...(typeof n.seq === 'number' ? { seq: n.seq } : {}),
      ...(isStr(n.mid) ? { mid: n.mid } : {}),
    });
  }
  return out;
}

export function pushGatewayServer(stub: PushGatewayStub): Server {
  return createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://stub');
    if (req.method === 'GET' && url.pathname === '/healthz') return answer(res, 200, { status: 'ok' });
    if (req.method === 'GET' && url.pathname === '/sent') return answer(res, 200, { sent: stub.list(url.searchParams.get('user') ?? undefined) });
    if (req.method !== 'POST' || url.pathname !== '/push') return answer(res, 404, { error: 'not found' });
    readBody(req, 1024 * 1024).then((raw) => {
      if (raw === null) return answer(res, 413, { error: 'body too large' });
      const list = parseNotifications(raw);
      if (list === null) return answer(res, 400, { error: 'expected {"notifications":[{"user","conv","from","preview"}]}' });
      answer(res, 200, { accepted: stub.send(list) });
    }, () => answer(res, 400, { error: 'bad request' }));
  });
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '8789' },
      host: { type: 'string', default: '127.0.0.1' },
      keep: { type: 'string', default: '1000' },
    },
  });
  const stub = new PushGatewayStub(Number(values.keep));
  const server = pushGatewayServer(stub);
  server.listen(Number(values.port), values.host, () => {
    console.log(`push gateway stub on http://${values.host}:${values.port}/push (GET /sent shows the last ${values.keep})`);
  });
  onShutdown(() => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }));
}
