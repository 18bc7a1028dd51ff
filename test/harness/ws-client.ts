// A small promise-based protocol client for tests: talks to a node exactly like a real client
// (JSON text frames over `ws`), queues every frame so none is lost between awaits, and bounds
// every wait with an error that says what was awaited and what arrived instead.
import WebSocket from 'ws';
import { SignJWT } from 'jose';

export type Frame = { t: string; [k: string]: unknown };
/** A frame to send: any object with a type (the index-signature arm allows extra fields on literals). */
export type OutFrame = { t: string; [k: string]: unknown } | (object & { t: string });

const DEFAULT_TIMEOUT_MS = 5_000;

interface Waiter {
  pred: (f: Frame) => boolean;
  resolve: (f: Frame) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

function describe(pred: (f: Frame) => boolean): string {
  const src = pred.toString().replace(/\s+/g, ' ');
  return src.length > 120 ? `${src.slice(0, 117)}...` : src;
}

function short(f: unknown): string {
  const s = typeof f === 'string' ? f : JSON.stringify(f);
  return s.length > 300 ? `${s.slice(0, 297)}...` : s;
}

export class TestClient {
  /** Every parsed frame so far, in arrival order (frames consumed by next/request included). */
  readonly received: Frame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;

  // Frames not yet handed out by next()/collect()/request().
  private queue: Frame[] = [];
  private waiters: Waiter[] = [];
  private ridCounter = 0;
  private closeInfo: { code: number; reason: string } | null = null;

  private constructor(
    private readonly ws: WebSocket,
    readonly url: string,
  ) {
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        // Nothing more will arrive: fail pending waits now instead of at their timeout.
        for (const w of this.waiters.splice(0)) {
          clearTimeout(w.timer);
          w.reject(
            new Error(
              `TestClient(${url}): socket closed (code ${code}, reason ${JSON.stringify(this.closeInfo.reason)}) ` +
                `while waiting for ${describe(w.pred)}; ${this.lastFrames()}`,
            ),
          );
        }
        resolve(this.closeInfo);
      });
    });
    ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    ws.on('error', () => {}); // surfaced through `closed` and the waiters
  }

  static connect(wsUrl: string, opts: { timeoutMs?: number } = {}): Promise<TestClient> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(wsUrl, { handshakeTimeout: timeoutMs });
      // Attach listeners before 'open' so no early frame (or close) can be missed.
      const client = new TestClient(ws, wsUrl);
      const timer = setTimeout(() => {
        ws.terminate();
        reject(new Error(`TestClient: connecting to ${wsUrl} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      ws.once('open', () => {
        clearTimeout(timer);
        resolve(client);
      });
      ws.once('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`TestClient: cannot connect to ${wsUrl}: ${err.message}`));
      });
      ws.once('unexpected-response', (_req, res) => {
        clearTimeout(timer);
        ws.terminate();
        reject(new Error(`TestClient: ${wsUrl} answered the upgrade with HTTP ${res.statusCode}`));
      });
    });
  }

  private onMessage(data: WebSocket.RawData, isBinary: boolean): void {
    const text = Array.isArray(data)
      ? Buffer.concat(data).toString()
      : Buffer.isBuffer(data)
        ? data.toString()
        : Buffer.from(data).toString();
    let frame: Frame;
    try {
      const parsed: unknown = JSON.parse(text);
      frame =
        parsed !== null && typeof parsed === 'object' && typeof (parsed as Frame).t === 'string'
          ? (parsed as Frame)
          : { t: '_malformed', raw: text, binary: isBinary };
    } catch {
      // The server must never send this; keep it visible to tests instead of dropping it.
      frame = { t: '_malformed', raw: text, binary: isBinary };
    }
    this.received.push(frame);
    const i = this.waiters.findIndex((w) => w.pred(frame));
    if (i >= 0) {
      const [w] = this.waiters.splice(i, 1);
      clearTimeout(w.timer);
      w.resolve(frame);
    } else {
      this.queue.push(frame);
    }
  }

  /** Raw send: objects are JSON-encoded; strings and Buffers go as-is (for malformed-frame tests). */
  send(frame: object | string | Buffer): void {
    if (this.ws.readyState !== WebSocket.OPEN) {
      throw new Error(`TestClient(${this.url}): send on a socket that is not open; ${this.lastFrames()}`);
    }
    if (typeof frame === 'string' || Buffer.isBuffer(frame)) this.ws.send(frame);
    else this.ws.send(JSON.stringify(frame));
  }

  /** Send a request (adds a rid if missing) and resolve with the first frame carrying that rid, errors included. */
  request<T = Frame>(frame: OutFrame, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<T> {
    const withRid = frame as { t: string; rid?: unknown };
    const rid = typeof withRid.rid === 'string' ? withRid.rid : `r${++this.ridCounter}`;
    const out = { ...frame, rid };
    try {
      this.send(out);
    } catch (e) {
      return Promise.reject(e);
    }
    // Registering after send is safe: no frame can be handled before this synchronous code ends.
    return this.wait((f) => f.rid === rid, timeoutMs, `answer to ${short(out)}`) as Promise<T>;
  }

  /** The next received frame matching `pred` (default: any). Earlier non-matching frames stay queued. */
  next(pred: (f: Frame) => boolean = () => true, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Frame> {
    return this.wait(pred, timeoutMs, describe(pred));
  }

  /** The next `count` frames matching `pred`, within one overall timeout. */
  async collect(pred: (f: Frame) => boolean, count: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Frame[]> {
    const deadline = Date.now() + timeoutMs;
    const got: Frame[] = [];
    while (got.length < count) {
      const left = deadline - Date.now();
      try {
        got.push(await this.wait(pred, Math.max(1, left), describe(pred)));
      } catch (e) {
        throw new Error(`collect: got ${got.length} of ${count} frames. ${(e as Error).message}`);
      }
    }
    return got;
  }

  /** Frames received but not yet handed out by next/collect/request. */
  pending(): Frame[] {
    return [...this.queue];
  }

  /** Stops reading from the socket (the server's frames pile up in its send buffer) until resumeReading. */
  pauseReading(): void {
    (this.ws as unknown as { _socket: { pause(): void } })._socket.pause();
  }

  resumeReading(): void {
    (this.ws as unknown as { _socket: { resume(): void } })._socket.resume();
  }

  isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    if (this.ws.readyState !== WebSocket.CLOSING) this.ws.close(1000, 'test done');
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = await Promise.race([
      this.closed.then(() => false),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(true), 2_000);
      }),
    ]);
    clearTimeout(timer);
    if (gaveUp) {
      this.ws.terminate(); // the server did not complete the close handshake
      await this.closed;
    }
  }

  private wait(pred: (f: Frame) => boolean, timeoutMs: number, what: string): Promise<Frame> {
    const i = this.queue.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.queue.splice(i, 1)[0]);
    if (this.closeInfo) {
      return Promise.reject(
        new Error(
          `TestClient(${this.url}): socket already closed (code ${this.closeInfo.code}) while waiting for ${what}; ${this.lastFrames()}`,
        ),
      );
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        pred,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          reject(
            new Error(`TestClient(${this.url}): timed out after ${timeoutMs} ms waiting for ${what}; ${this.lastFrames()}`),
          );
        }, timeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  private lastFrames(n = 8): string {
    if (this.received.length === 0) return 'no frames received';
    const last = this.received.slice(-n).map(short);
    return `last ${last.length} of ${this.received.length} frames received: ${last.join(' | ')}`;
  }
}

/** An HS256 JWT for `user` (sub), valid for `expSeconds` (negative makes an expired token). */
export async function signTestToken(user: string, secret = 'test-secret', expSeconds = 3600): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(user)
    .setIssuedAt(now)
    .setExpirationTime(now + expSeconds)
    .sign(new TextEncoder().encode(secret));
}

/** Connect, log in as `user`, and return the client once `login_ok` arrived (throws with the error frame otherwise). */
export async function login(
  wsUrl: string,
  user: string,
  opts: { device?: string; secret?: string; timeoutMs?: number } = {},
): Promise<{ client: TestClient; loginOk: Frame }> {
  const token = await signTestToken(user, opts.secret);
  const client = await TestClient.connect(wsUrl, { timeoutMs: opts.timeoutMs });
  const frame: { t: string; token: string; device?: string } = { t: 'login', token };
  if (opts.device !== undefined) frame.device = opts.device;
  let answer: Frame;
  try {
    answer = await client.request(frame, opts.timeoutMs);
  } catch (e) {
    await client.close().catch(() => {});
    throw new Error(`login as ${user} on ${wsUrl} failed: ${(e as Error).message}`);
  }
  if (answer.t !== 'login_ok') {
    await client.close().catch(() => {});
    throw new Error(`login as ${user} on ${wsUrl} failed: got ${short(answer)}`);
  }
  return { client, loginOk: answer };
}
