/**
 * The gateway: a uWebSockets.js server with the WebSocket endpoint (/ws) and the HTTP endpoints
 * (/healthz, /metrics). It owns the socket-level rules of the wire protocol (docs/protocol.md) —
 * frame size, JSON and schema checks, the login handshake, bad-frame tolerance, the per-socket
 * frame rate limit, heartbeat deadlines — and hands every valid frame of a logged-in socket to
 * that socket's UserSession actor.
 *
 * Guarantee: no input ends the process. Every uWS callback runs inside `guarded`, which logs a
 * throw, counts it in `im_handler_errors_total` and answers the request (500) or closes the
 * socket (1011); promise chains started here end in the same handler.
 *
 * Text frames that are not valid UTF-8 never reach us: uWebSockets.js drops such a socket at once,
 * without a close frame (the client sees 1006); the `ws` fallback engine closes it with 1007.
 */
import type { WebSocket, us_listen_socket, HttpRequest, HttpResponse } from 'uWebSockets.js';
import type { NodeConfig } from '../cluster.config.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import type { ErrorCode } from '../protocol/errors.ts';
import { parseClientFrame, type ClientFrame, type ServerFrame } from '../protocol/frames.ts';
import type { SessionEntry } from '../actors/session-directory.ts';
import type { Connection } from '../actors/user-session.ts';
import { AuthError, signToken, verifyToken } from './auth.ts';
import { DEFAULT_JWT_SECRET } from '../cluster.config.ts';
import { refill } from '../core/token-bucket.ts';
import { timingSafeEqual } from 'node:crypto';
import { loadWebApp, type WebApp } from '../web/build.ts';
import { loadUws, type Engine } from './engine.ts';
import { NAME_RE } from '../protocol/ids.ts';

/** What the gateway needs from the node behind it. */
export interface GatewayHost {
  /**
   * Opens the session of a verified login and resolves once `login_ok` (rid) is out, or with
   * null when `stillWanted` turned false meanwhile (the socket closed; the session is gone too).
   */
  openSession(user: string, device: string, conn: Connection, rid: string, stillWanted: () => boolean): Promise<SessionEntry | null>;
  closeSession(entry: SessionEntry): void;
  /** Kicks the session of a socket whose token expired. */
  kickSession(entry: SessionEntry, reason: 'auth_expired'): void;
  /** Whether the node can accept and persist messages right now. */
  healthy(): Promise<boolean>;
  metricsText(): Promise<string>;
  /** The server API under /api/v1/ (api/http-api.ts); absent: 404 there. */
  api?: { handle(res: HttpResponse, req: HttpRequest): void | Promise<void> };
  /** Files (docs/protocol.md, v1.1; files/http-files.ts): POST /files and GET /files/<id>; absent: 404 there. */
  files?: {
    upload(res: HttpResponse, req: HttpRequest): void | Promise<void>;
    download(res: HttpResponse, req: HttpRequest): void | Promise<void>;
  };
}

type Phase = 'new' | 'auth' | 'ready' | 'closed';

/**
 * Times of a socket in ms since the gateway module loaded: small integers, which V8 stores in the
 * object itself (an epoch-ms Date.now() would be a separate 16-byte heap number per field).
 */
const CLOCK_BASE = Date.now();
const clock = (): number => Date.now() - CLOCK_BASE;

/**
 * One socket's state, and the session's Connection to it. One object per socket with its
 * methods on the prototype: idle sockets are most sockets, so nothing here is allocated per
 * socket beyond this object (no closures, no frame queue until a frame waits for the login).
 */
class SocketState implements Connection {
  phase: Phase = 'new';
  /** Set in uWS's open callback, before any frame. */
  ws: Ws | null = null;
  lastSeen: number;
  openedAt: number;
  badFrames = 0;
  badWindowStart: number;
  /** Frames that arrived while the login was being verified (allocated by the first one). */
  queued: ClientFrame[] | null = null;
  entry: SessionEntry | null = null;
  /** Token expiry on `clock()`; null: none to enforce (not logged in yet, or already kicked). */
  authExpAt: number | null = null;
  /**
   * IM_RATE_FRAMES: every frame but ack/read takes a token once logged in. A token bucket
   * (core/token-bucket.ts semantics: rate per second, burst of twice that, starts full) kept in
   * two fields of this object instead of an object of its own.
   */
  private frameTokens: number;
  private frameAt: number;

  constructor(private readonly rateFrames: number) {
    const now = clock();
    this.lastSeen = now;
    this.openedAt = now;
    this.badWindowStart = now;
    this.frameTokens = rateFrames * 2;
    this.frameAt = performance.now();
  }

  takeFrame(now = performance.now()): boolean {
    this.frameTokens = refill(this.frameTokens, this.frameAt, now, this.rateFrames, this.rateFrames * 2);
    this.frameAt = now;
    if (this.frameTokens < 1) return false;
    this.frameTokens -= 1;
    return true;
  }

  send(json: string): boolean {
    if (this.phase === 'closed' || !this.ws) return false;
    this.ws.send(json, false);
    return true;
  }

  close(code: number, reason: string): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.ws?.end(code, reason);
  }

  buffered(): number {
    return this.phase === 'closed' || !this.ws ? 0 : this.ws.getBufferedAmount();
  }
}

/** uWS copies the user data's fields onto its socket object: one field, the state. */
interface UserData { s: SocketState }

type Ws = WebSocket<UserData>;

/** uWS's LIBUS_LISTEN_EXCLUSIVE_PORT (typed as the enum ListenOptions, which the module does not export). */
const LISTEN_EXCLUSIVE_PORT = 1;

/** Most frames buffered while a login is verified; a client that floods then is closed. */
const MAX_QUEUED = 256;
const BAD_WINDOW_MS = 10_000;
/** Frames up to this size are read whole so that an oversized one can be answered with too_large. */
const OVERSIZE_HEADROOM_BYTES = 1024 * 1024;

export class Gateway {
  readonly engine: Engine;
  private listenSocket: us_listen_socket | null = null;
  private metricsListenSocket: us_listen_socket | null = null;
  private apiListenSocket: us_listen_socket | null = null;
  private readonly sockets = new Set<Ws>();
  private sweepTimer: NodeJS.Timeout | null = null;
  private accepting = true;
  private readonly uws: ReturnType<typeof loadUws>['uws'];
  /** The web chat app (web/dist, rebuilt at start when stale): `/` and `/web/<file>`. */
  private readonly web: WebApp = loadWebApp();
  port = 0;
  /** The port /metrics listens on when IM_METRICS_PORT is set (0 lets the OS pick, as for IM_PORT). */
  metricsPort: number | null = null;
  /** The port /api/v1/ listens on when IM_API_PORT is set. */
  apiPort: number | null = null;

  constructor(private readonly config: NodeConfig, private readonly host: GatewayHost, private readonly log: Logger, private readonly metrics: Metrics) {
    const { uws, engine } = loadUws();
    this.uws = uws;
    this.engine = engine;
  }

  async listen(): Promise<number> {
    const { config } = this;
    const app = this.uws.App();
    app.ws<UserData>('/ws', {
      // uWS closes frames over maxPayloadLength itself, without a word (close 1009): give it headroom
      // so that oversized frames a client may plausibly send (a pasted file as body) are answered
      // too_large first and the client learns not to resend them. Only beyond the headroom is the
      // close silent.
      maxPayloadLength: Math.max(config.maxFrameBytes * 2 + 1024, OVERSIZE_HEADROOM_BYTES),
      idleTimeout: 0, // heartbeat deadlines are ours (see sweep), in ms rather than uWS's seconds
      sendPingsAutomatically: false,
      maxBackpressure: 16 * 1024 * 1024,
      // A client too slow to drain 16 MiB is dropped rather than silently losing frames; it redelivers on login.
      closeOnBackpressureLimit: 1 as unknown as number,
      upgrade: (res, req, ctx) => this.guarded('upgrade', res, () => {
        if (!this.accepting) {
          res.writeStatus('503 Service Unavailable').end('shutting down');
          return;
        }
        res.upgrade<UserData>({ s: new SocketState(this.config.rateFrames) }, req.getHeader('sec-websocket-key'), req.getHeader('sec-websocket-protocol'), req.getHeader('sec-websocket-extensions'), ctx);
      }),
      open: (ws) => this.guardedWs('open', ws, () => {
        ws.getUserData().s.ws = ws;
        this.sockets.add(ws);
        this.metrics.connections.inc();
      }),
      message: (ws, data, isBinary) => this.guardedWs('message', ws, () => this.onMessage(ws, data, isBinary)),
      close: (ws) => {
        try {
          this.onClose(ws);
        } catch (e) {
          this.handlerError('close', e);
        }
      },
    });
    app.get('/healthz', (res) => this.guarded('healthz', res, () => this.healthz(res)));
    // With IM_METRICS_PORT, /metrics lives only on that (internal) listener.
    if (config.metricsPort === undefined) app.get('/metrics', (res, req) => this.guarded('metrics', res, () => this.metricsEndpoint(res, req.getHeader('authorization'))));
    if (this.web.note) this.log.warn({ note: this.web.note, source: this.web.source }, 'web app');
    app.get('/', (res) => this.guarded('page', res, () => this.webFile(res, 'index.html')));
    app.get('/web/:file', (res, req) => this.guarded('page', res, () => this.webFile(res, req.getParameter(0) ?? '')));
    // The raw query, decoded strictly: uWS's own decoding turns a malformed escape ("%zz") into a byte.
    app.get('/dev/token', (res, req) => this.guarded('dev_token', res, () => this.devToken(res, new URLSearchParams(req.getQuery() ?? '').get('user') ?? '')));
    // With IM_API_PORT, the server API lives only on that (internal) listener.
    if (config.apiPort === undefined) this.apiRoutes(app);
    app.post('/files', (res, req) => this.guarded('files_upload', res, () => {
      const files = this.host.files;
      if (files) return files.upload(res, req);
      res.writeStatus('404 Not Found').end('not found', true);
    }));
    // The query may carry a login token (?token=): nothing here logs the URL.
    app.get('/files/:id', (res, req) => this.guarded('files_download', res, () => {
      const files = this.host.files;
      if (files) return files.download(res, req);
      res.writeStatus('404 Not Found').end('not found');
    }));
    app.any('/*', (res) => this.guarded('not_found', res, () => { res.writeStatus('404 Not Found').end('not found'); }));

    this.listenSocket = await this.listenOn(app, config.host, config.port);
    this.port = this.uws.us_socket_local_port(this.listenSocket as never);
    if (config.metricsPort !== undefined) {
      const internal = this.uws.App();
      internal.get('/metrics', (res, req) => this.guarded('metrics', res, () => this.metricsEndpoint(res, req.getHeader('authorization'))));
      internal.any('/*', (res) => this.guarded('not_found', res, () => { res.writeStatus('404 Not Found').end('not found'); }));
      this.metricsListenSocket = await this.listenOn(internal, config.metricsHost, config.metricsPort);
      this.metricsPort = this.uws.us_socket_local_port(this.metricsListenSocket as never);
    }
    if (config.apiPort !== undefined) {
      const internal = this.uws.App();
      this.apiRoutes(internal);
      internal.any('/*', (res) => this.guarded('not_found', res, () => { res.writeStatus('404 Not Found').end('not found'); }));
      this.apiListenSocket = await this.listenOn(internal, config.apiHost, config.apiPort);
      this.apiPort = this.uws.us_socket_local_port(this.apiListenSocket as never);
    }
    const every = Math.max(50, Math.min(1000, Math.floor(config.heartbeatMs / 4)));
    this.sweepTimer = setInterval(() => this.sweep(), every);
    this.sweepTimer.unref();
    return this.port;
  }

  /** A file of the web app (web/dist); 404 for anything else. */
  private webFile(res: HttpResponse, name: string): void {
    const f = this.web.files.get(name);
    if (!f) {
      res.writeStatus('404 Not Found').end('not found');
      return;
    }
    res.cork(() => res.writeHeader('content-type', f.type).writeHeader('cache-control', 'no-cache').end(f.body));
  }

  /** /api/v1/*: every call inside `guarded`, like every other route. */
  private apiRoutes(app: ReturnType<Gateway['uws']['App']>): void {
    app.any('/api/v1/*', (res, req) => this.guarded('api', res, () => {
      const api = this.host.api;
      if (api) return api.handle(res, req);
      res.writeStatus('404 Not Found').end('not found');
    }));
  }

  /**
   * Listens with the port to itself: uWS binds with SO_REUSEPORT on Linux unless told otherwise,
   * so a second node started on a port in use would share its connections instead of failing.
   */
  private listenOn(app: ReturnType<Gateway['uws']['App']>, host: string, port: number): Promise<us_listen_socket> {
    // The typings lack the (host, port, options, cb) form that both the binary and the fallback take.
    const listen = app.listen.bind(app) as unknown as (host: string, port: number, options: number, cb: (s: us_listen_socket | false) => void) => unknown;
    return new Promise((resolve, reject) => {
      listen(host, port, LISTEN_EXCLUSIVE_PORT, (sock) => {
        if (!sock) reject(new Error(`cannot listen on ${host}:${port} (port in use?)`));
        else resolve(sock);
      });
    });
  }

  /**
   * The edge of every HTTP callback: a throw (or a rejected promise the handler returns) is
   * logged, counted and answered 500 if the response is still open; it never reaches uWS,
   * where it would end the process.
   */
  private guarded(route: string, res: HttpResponse, fn: () => void | Promise<void>): void {
    const fail = (e: unknown): void => {
      this.handlerError(route, e);
      try {
        res.cork(() => res.writeStatus('500 Internal Server Error').writeHeader('content-type', 'text/plain').end('internal error'));
      } catch {
        // The response was already answered or aborted: nothing left to tell the client.
      }
    };
    try {
      const r = fn();
      if (r) r.catch(fail);
    } catch (e) {
      fail(e);
    }
  }

  private handlerError(where: string, e: unknown): void {
    this.metrics.handlerErrors.inc({ where });
    this.log.error({ where, err: e instanceof Error ? e.stack : String(e) }, 'handler failed');
  }

  /** The edge of every WebSocket callback: a throw closes that socket (1011), never the process. */
  private guardedWs(where: string, ws: Ws, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.handlerError(where, e);
      try { ws.getUserData().s.close(1011, 'internal error'); } catch { /* already closed */ }
    }
  }

  private reply(ws: Ws, frame: ServerFrame): void {
    const s = ws.getUserData().s;
    if (s.phase === 'closed') return;
    ws.send(JSON.stringify(frame), false);
    this.metrics.framesOut.inc();
  }

  private error(ws: Ws, code: ErrorCode, message: string, rid?: string): void {
    this.metrics.errors.inc({ code });
    this.reply(ws, rid === undefined ? { t: 'error', code, message } : { t: 'error', rid, code, message });
  }

  private onMessage(ws: Ws, data: ArrayBuffer, isBinary: boolean): void {
    const s = ws.getUserData().s;
    if (s.phase === 'closed') return;
    s.lastSeen = clock();
    if (data.byteLength > this.config.maxFrameBytes) {
      this.metrics.framesIn.inc({ t: 'too_large' });
      this.error(ws, 'too_large', `frame of ${data.byteLength} bytes exceeds the limit of ${this.config.maxFrameBytes}`);
      s.close(1009, 'frame too large');
      return;
    }
    if (isBinary) {
      this.badFrame(ws, 'frames must be text (one JSON object per text frame)');
      return;
    }
    const parsed = parseClientFrame(Buffer.from(data).toString('utf8'));
    if (!parsed.ok) {
      if (s.phase === 'new') return this.refuseLogin(ws, 'the first frame must be a valid login');
      this.badFrame(ws, parsed.message, parsed.rid);
      return;
    }
    const f = parsed.frame;
    this.metrics.framesIn.inc({ t: f.t });
    switch (s.phase) {
      case 'new':
        if (f.t !== 'login') return this.refuseLogin(ws, 'the first frame must be login', 'rid' in f ? f.rid : undefined);
        void this.login(ws, f);
        return;
      case 'auth':
        if (s.queued && s.queued.length >= MAX_QUEUED) {
          this.error(ws, 'rate_limited', 'too many frames before login completed');
          s.close(1008, 'flood');
          return;
        }
        (s.queued ??= []).push(f);
        return;
      case 'ready':
        this.dispatch(ws, f);
        return;
    }
  }

  /**
   * Hands a frame of a logged-in socket to its session, within IM_RATE_FRAMES. `ack` and `read`
   * are exempt (the session coalesces them); other excess frames get `rate_limited` when they
   * carry a rid and are dropped otherwise. Rate answers never count as bad frames.
   */
  private dispatch(ws: Ws, f: ClientFrame): void {
    const s = ws.getUserData().s;
    if (f.t !== 'ack' && f.t !== 'read' && !s.takeFrame()) {
      if ('rid' in f && f.rid !== undefined) this.error(ws, 'rate_limited', `more than ${this.config.rateFrames} frames per second`, f.rid);
      else this.metrics.errors.inc({ code: 'rate_limited' });
      return;
    }
    s.entry!.actor.send('frame', f).catch((e: unknown) => this.handlerError('frame', e));
  }

  private badFrame(ws: Ws, message: string, rid?: string): void {
    const s = ws.getUserData().s;
    if (s.phase === 'new') return this.refuseLogin(ws, 'the first frame must be a valid login');
    const now = clock();
    if (now - s.badWindowStart > BAD_WINDOW_MS) { s.badWindowStart = now; s.badFrames = 0; }
    s.badFrames++;
    this.metrics.framesIn.inc({ t: 'bad' });
    this.error(ws, 'bad_request', message, rid);
    if (s.badFrames > this.config.badFrameLimit) {
      this.log.info({ user: s.entry?.user }, 'closing socket after repeated bad frames');
      s.close(1008, 'too many bad frames');
    }
  }

  private refuseLogin(ws: Ws, message: string, rid?: string): void {
    this.error(ws, 'unauthorized', message, rid);
    ws.getUserData().s.close(4001, 'unauthorized');
  }

  private login(ws: Ws, f: Extract<ClientFrame, { t: 'login' }>): void {
    this.loginSteps(ws, f).catch((e: unknown) => {
      this.handlerError('login', e);
      const s = ws.getUserData().s;
      if (s.phase === 'closed') return;
      this.error(ws, 'internal', 'login failed', f.rid);
      s.close(1011, 'internal error');
    });
  }

  private async loginSteps(ws: Ws, f: Extract<ClientFrame, { t: 'login' }>): Promise<void> {
    const s = ws.getUserData().s;
    s.phase = 'auth';
    // The socket may close during any await below (phase is re-read, not narrowed).
    const closed = (): boolean => (s.phase as Phase) === 'closed';
    let user: string;
    try {
      const id = await verifyToken(f.token, this.config.jwtSecret);
      user = id.user;
      s.authExpAt = id.expMs - CLOCK_BASE;
    } catch (e) {
      if (!closed()) this.refuseLogin(ws, e instanceof AuthError ? e.message : 'token rejected', f.rid);
      return;
    }
    if (closed()) return;
    let entry: SessionEntry | null;
    try {
      // Resolves once login_ok is out; the backlog follows while the socket is live, so the
      // client's acks for it go straight to the session (they are not queued here).
      entry = await this.host.openSession(user, f.device ?? 'default', s, f.rid, () => !closed());
    } catch (e) {
      this.log.warn({ user, err: String(e) }, 'opening session failed');
      if (closed()) return;
      this.error(ws, 'unavailable', 'cannot open a session now, retry later', f.rid);
      s.close(1011, 'unavailable');
      return;
    }
    if (!entry) return;
    if (closed()) { this.host.closeSession(entry); return; }
    s.entry = entry;
    s.phase = 'ready';
    const queued = s.queued;
    s.queued = null;
    if (queued) for (const q of queued) this.dispatch(ws, q);
  }

  private onClose(ws: Ws): void {
    const s = ws.getUserData().s;
    s.phase = 'closed';
    this.sockets.delete(ws);
    this.metrics.connections.dec();
    if (s.entry) this.host.closeSession(s.entry);
    s.entry = null;
  }

  /** Closes sockets past their heartbeat or login deadline, and logins whose token expired. */
  private sweep(): void {
    const now = clock();
    const silentLimit = this.config.heartbeatMs * 2.5;
    for (const ws of this.sockets) {
      const s = ws.getUserData().s;
      if (s.phase === 'closed') continue;
      if (s.phase !== 'ready' && now - s.openedAt > this.config.loginTimeoutMs) {
        this.refuseLogin(ws, 'no login within the login timeout');
      } else if (now - s.lastSeen > silentLimit) {
        s.close(4002, 'heartbeat timeout');
      } else if (s.authExpAt !== null && now >= s.authExpAt && s.entry) {
        this.host.kickSession(s.entry, 'auth_expired');
        s.authExpAt = null;
      }
    }
  }

  private async healthz(res: HttpResponse): Promise<void> {
    let aborted = false;
    res.onAborted(() => { aborted = true; });
    const ok = (await this.host.healthy().catch(() => false)) && this.accepting;
    if (aborted) return;
    res.cork(() => {
      res.writeStatus(ok ? '200 OK' : '503 Service Unavailable').writeHeader('content-type', 'application/json')
        .end(JSON.stringify({ status: ok ? 'ok' : 'unavailable', node: this.config.nodeId }));
    });
  }

  /**
   * Tokens for the demo page, only while the node runs with the development secret (which a
   * production node refuses): anyone can then act as any user, which is the point of a demo.
   */
  private async devToken(res: HttpResponse, user: string): Promise<void> {
    if (this.config.jwtSecret !== DEFAULT_JWT_SECRET) {
      res.writeStatus('404 Not Found').end('not found: /dev/token exists only with the development secret');
      return;
    }
    if (!NAME_RE.test(user)) {
      res.writeStatus('400 Bad Request').writeHeader('content-type', 'text/plain').end('user must be 1-64 chars of [A-Za-z0-9_.-]');
      return;
    }
    let aborted = false;
    res.onAborted(() => { aborted = true; });
    const token = await signToken(user, this.config.jwtSecret, 3600);
    if (!aborted) res.cork(() => res.writeHeader('content-type', 'application/json').end(JSON.stringify({ token })));
  }

  private async metricsEndpoint(res: HttpResponse, authorization: string): Promise<void> {
    const token = this.config.metricsToken;
    if (token !== undefined && !bearerMatches(authorization, token)) {
      res.writeStatus('401 Unauthorized').writeHeader('www-authenticate', 'Bearer').end('unauthorized');
      return;
    }
    let aborted = false;
    res.onAborted(() => { aborted = true; });
    const text = await this.host.metricsText();
    if (aborted) return;
    res.cork(() => { res.writeStatus('200 OK').writeHeader('content-type', 'text/plain; version=0.0.4').end(text); });
  }

  /** Stops accepting new sockets; existing ones stay until closeAll. */
  stopAccepting(): void {
    this.accepting = false;
    if (this.listenSocket) this.uws.us_listen_socket_close(this.listenSocket);
    this.listenSocket = null;
    if (this.metricsListenSocket) this.uws.us_listen_socket_close(this.metricsListenSocket);
    this.metricsListenSocket = null;
    if (this.apiListenSocket) this.uws.us_listen_socket_close(this.apiListenSocket);
    this.apiListenSocket = null;
  }

  /** Closes every remaining socket (sessions were kicked first, so this catches unauthenticated ones). */
  closeAll(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    for (const ws of [...this.sockets]) ws.getUserData().s.close(1001, 'shutdown');
  }

  get connectionCount(): number {
    return this.sockets.size;
  }
}

/** Constant-time check of an `Authorization: Bearer <token>` header. */
export function bearerMatches(header: string, token: string): boolean {
  const given = Buffer.from(header.startsWith('Bearer ') ? header.slice(7) : '');
  const want = Buffer.from(token);
  // Compare equal lengths only (timingSafeEqual's rule); a length mismatch still costs one compare.
  return timingSafeEqual(given.length === want.length ? given : want, want) && given.length === want.length;
}
