/**
 * ChatClient: one logical connection to the cluster over a list of node URLs.
 *
 * State machine: idle → connecting → open ⇄ reconnecting → closed | kicked.
 * - A socket is "open" only after `login_ok`; sends and requests made before wait for it.
 * - When a socket dies the client rotates to the next URL after a jittered backoff, logs in
 *   again, resends unanswered sends (same cmid, same order), then asks `convs` and syncs every
 *   conversation it does not fully hold.
 * - Messages reach the application once per (conv, seq), in seq order per conversation, and are
 *   acked in batches after the `message` listeners ran.
 * - `connect()` gives up after `connectWaitMs` with a `ChatError` of code `unreachable` (naming
 *   the URLs and the last failure); the client then stops trying unless `retryForever` is set.
 *   Once logged in, a lost connection is retried forever (until close() or a kick as `replaced`).
 * Uses only the standard WebSocket API, so it runs in browsers and (with `ws`) in Node.
 */
import { AckBatcher, unref } from './ack-batcher.ts';
import { Backoff } from './backoff.ts';
import type { BackoffOptions } from './backoff.ts';
import { ConversationState } from './conversation-state.ts';
import { Outbox } from './outbox.ts';
import type { OutboxEntry } from './outbox.ts';
import { groupConv } from '../protocol/ids.ts';
import { ChatError } from './types.ts';
import type {
  AnswerFrame, BatchFrame, ClientFrame, ConvSummary, ConvsFrame, ErrorFrame, GroupFrame, LoginOkFrame, MembersFrame,
  MsgFrame, OkFrame, PresenceFrame, PresenceState, ReceiptFrame, RecalledFrame, SendTarget, SentFrame, ServerFrame,
  TypingFrame, WebSocketConstructor, WebSocketLike,
} from './types.ts';

export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed' | 'kicked';

export type TokenSource = string | (() => string | Promise<string>);

export interface ChatClientOptions {
  /** Node URLs (`ws://host:port/ws`); the client rotates through them on reconnect. */
  urls: string | string[];
  /** A JWT, or a function called on every (re)connect so the app can refresh it. */
  token: TokenSource;
  /** Device name (1–64 of `[A-Za-z0-9_.-]`). Default: random, stable for this client instance. */
  device?: string;
  /** WebSocket implementation. Default `globalThis.WebSocket`; in Node 20 pass `ws`'s `WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** conv → highest seq the app already holds (for apps that persist). Default: nothing held. */
  known?: Record<string, number>;
  /** Index of `urls` to try first. Default: random (spreads clients over nodes). */
  startIndex?: number;
  /** Timeout of requests (sync, convs, recall, group_*) including waiting to be logged in. Default 10000. */
  requestTimeoutMs?: number;
  /** An unanswered send on a live socket is resent (same cmid) after this. Default 10000. */
  sendTimeoutMs?: number;
  /** Socket open + login must finish within this, else try the next URL. Default 5000. */
  connectTimeoutMs?: number;
  /**
   * `connect()` rejects with code `unreachable` when no login succeeded within this (every URL
   * tried in turn, with backoff). Default 15000; `Infinity` waits as long as it takes.
   */
  connectWaitMs?: number;
  /**
   * When the first connection could not be made within `connectWaitMs`: keep trying in the
   * background (the `login` event tells when it worked). Default false: stop, state `idle`,
   * until the next `connect()`. Has no effect once logged in (reconnects never give up).
   */
  retryForever?: boolean;
  /** Reconnect backoff. Default base 100 ms, max 5000 ms. */
  backoff?: BackoffOptions;
  /** Max unanswered sends on the wire at once. Default 100 (the server's default burst). */
  maxInFlight?: number;
  /** Delay before resending a send answered `rate_limited`. Default 500 (plus jitter). */
  rateLimitRetryMs?: number;
  /** Longest (jittered) wait before resending a send answered `unavailable`. Default 1000 ms. */
  unavailableRetryMaxMs?: number;
  /** Sends failing with `internal`/`conflict` are retried this many times in all. Default 5. */
  maxSendAttempts?: number;
  /** Ack flush interval. Default 100. */
  ackFlushMs?: number;
  /** Ack at once when this many deliveries wait. Default 64. */
  ackMaxPending?: number;
  /** Ack automatically after `message` listeners ran. Default true; else call `ack()`. */
  autoAck?: boolean;
  /** A gap (out-of-order seq) still open after this long triggers a `sync`. Default 200. */
  gapGraceMs?: number;
  /** `limit` of the client's own syncs. Default 200 (the protocol max). */
  syncLimit?: number;
  /** After each login, list conversations and sync those not fully held. Default true. */
  syncOnLogin?: boolean;
  /** Declare the socket dead after this many heartbeats without any frame. Default 2. */
  deadAfterHeartbeats?: number;
  /**
   * For a conversation the client holds nothing of, the login catch-up delivers only its newest
   * `initialHistory` messages; older ones stay on the server for `history()`. Default: all.
   */
  initialHistory?: number;
}

export interface HistoryOptions {
  /** Messages with seq < before; default: the newest ones. */
  before?: number;
  /** 1–200; default 50. */
  limit?: number;
}

/** A group's members and owner (`groupInfo`). */
export interface GroupInfo {
  conv: string;
  owner?: string;
  members: string[];
}

/** A watched user's presence (`presence` event): online, offline, or null when not watchable. */
export interface PresenceChange {
  user: string;
  online: boolean | null;
}

export interface SendOptions {
  /** Default `"text"`. */
  kind?: string;
  /** Idempotency key (1–64 chars, unique per conversation). Default: generated. */
  cmid?: string;
}

export interface StateChange {
  state: ConnectionState;
  url?: string;
  node?: string;
  /** Why the state changed (close code, kick reason, error). */
  reason?: string;
}

export interface ChatClientEvents {
  /** A message, exactly once per (conv, seq), in seq order per conversation (own sends included). */
  message: (msg: MsgFrame) => void;
  receipt: (r: ReceiptFrame) => void;
  /** A message was recalled; if the app already has it, it should drop its body. */
  recalled: (r: RecalledFrame) => void;
  typing: (t: TypingFrame) => void;
  state: (change: StateChange) => void;
  /** Every successful login (first connect and each reconnect). */
  login: (info: LoginOkFrame) => void;
  /** Non-fatal problems: unsolicited error frames, listener exceptions, token failures. */
  error: (err: ChatError) => void;
  /** v1.1: a group's membership or owner changed (the acting member included). */
  group: (g: GroupFrame) => void;
  /** v1.1: a user watched with `presenceSub` came online or went offline (also after each re-login). */
  presence: (p: PresenceChange) => void;
}

export interface ClientMetrics {
  connectAttempts: number;
  /** Successful logins after a lost connection. */
  reconnects: number;
  /** Sends written again (after reconnect, timeout, rate limit) with the same cmid. */
  resends: number;
  duplicatesDropped: number;
  syncRequests: number;
  /** ms from losing a logged-in socket to the next `login_ok`. */
  reconnectDurations: number[];
}

interface PendingRequest {
  expect: AnswerFrame['t'];
  frame: ClientFrame;
  /** Written on the current socket (else it waits for the next login). */
  written: boolean;
  resolve: (f: AnswerFrame) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

type Listener = (...args: never[]) => void;

interface OpenWaiter {
  resolve: (l: LoginOkFrame) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout> | null;
}

const OPEN = 1;
const CLOSED = 3;
/** Sends that no retry can fix; everything else is retried. */
const RETRY_ALWAYS = new Set(['rate_limited', 'unavailable']);
const RETRY_BOUNDED = new Set(['internal', 'conflict']);

export class ChatClient {
  readonly metrics: ClientMetrics = {
    connectAttempts: 0, reconnects: 0, resends: 0, duplicatesDropped: 0, syncRequests: 0, reconnectDurations: [],
  };
  readonly device: string;

  private readonly urls: string[];
  private readonly WS: WebSocketConstructor;
  private readonly opts: ChatClientOptions;
  private readonly backoff: Backoff;
  private readonly convState: ConversationState;
  private readonly outbox = new Outbox();
  private readonly acks: AckBatcher;
  private readonly listeners = new Map<keyof ChatClientEvents, Set<Listener>>();
  private readonly requests = new Map<string, PendingRequest>();
  private readonly reads = new Map<string, number>();
  private readonly filling = new Map<string, number>();
  private readonly gapTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private openWaiters: OpenWaiter[] = [];
  /** The users of the last presenceSub, subscribed again after every login. */
  private presenceUsers: string[] = [];

  private _state: ConnectionState = 'idle';
  private ws: WebSocketLike | null = null;
  /** Bumped for every socket; events of older sockets are ignored. */
  private gen = 0;
  private urlIndex: number;
  private everOpen = false;
  private login: LoginOkFrame | null = null;
  private lastRx = 0;
  private lostAt: number | null = null;
  /** Why the last connection attempt failed (`url: reason`), for the `unreachable` error. */
  private lastFailure = '';
  /** The error the current socket reported before closing (browsers give none). */
  private socketError = '';
  private ridSeq = 0;
  private connectTimer: ReturnType<typeof setTimeout> | null = null;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private heartbeatTimer: ReturnType<typeof setInterval> | null = null;
  private sendTimer: ReturnType<typeof setInterval> | null = null;
  private wakeTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(options: ChatClientOptions) {
    this.opts = options;
    this.urls = typeof options.urls === 'string' ? [options.urls] : [...options.urls];
    if (this.urls.length === 0) throw new ChatError('bad_request', 'ChatClient: at least one URL is required');
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) throw new ChatError('bad_request', 'ChatClient: no global WebSocket; pass options.WebSocket (e.g. the `ws` package)');
    this.WS = WS;
    this.device = options.device ?? `d-${randomId(16)}`;
    this.urlIndex = options.startIndex ?? Math.floor(Math.random() * this.urls.length);
    this.backoff = new Backoff({ baseMs: 100, maxMs: 5000, ...options.backoff });
    this.convState = new ConversationState(options.known);
    this.acks = new AckBatcher({
      send: (conv, seq) => this.writeIfOpen({ t: 'ack', conv, seq }),
      flushMs: options.ackFlushMs, maxPending: options.ackMaxPending,
    });
  }

  // ---------------------------------------------------------------- public API

  get state(): ConnectionState {
    return this._state;
  }

  /** The logged-in user, once the first `login_ok` arrived. */
  get user(): string | undefined {
    return this.login?.user;
  }

  /** Id of the node the current socket is logged in to. */
  get node(): string | undefined {
    return this._state === 'open' ? this.login?.node : undefined;
  }

  /** URL of the current (or next) socket. */
  get url(): string {
    return this.urls[this.urlIndex % this.urls.length];
  }

  /** Highest contiguous seq the application has received in `conv`. */
  held(conv: string): number {
    return this.convState.held(conv);
  }

  /** conv → highest contiguous seq held; persist it and pass it back as `known`. */
  snapshot(): Record<string, number> {
    return this.convState.snapshot();
  }

  /** Unanswered sends. */
  get pendingSends(): number {
    return this.outbox.size;
  }

  on<K extends keyof ChatClientEvents>(event: K, fn: ChatClientEvents[K]): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn);
    return () => this.off(event, fn);
  }

  off<K extends keyof ChatClientEvents>(event: K, fn: ChatClientEvents[K]): void {
    this.listeners.get(event)?.delete(fn);
  }

  /**
   * Starts connecting (if not yet) and resolves on the next `login_ok` (at once if logged in).
   * Rejects if the client is closed or kicked first, or the token is refused, and with code
   * `unreachable` when not logged in within `connectWaitMs`; a first connection then stops
   * trying (state `idle`) unless `retryForever` is set.
   */
  connect(): Promise<LoginOkFrame> {
    if (this._state === 'closed' || this._state === 'kicked') {
      return Promise.reject(new ChatError(this._state, `client is ${this._state}`));
    }
    if (this._state === 'open' && this.login) return Promise.resolve(this.login);
    const waitMs = this.opts.connectWaitMs ?? 15_000;
    const attemptsBefore = this.metrics.connectAttempts;
    const p = new Promise<LoginOkFrame>((resolve, reject) => {
      const waiter: OpenWaiter = { resolve, reject, timer: null };
      if (Number.isFinite(waitMs)) {
        waiter.timer = setTimeout(() => this.giveUp(waiter, waitMs, this.metrics.connectAttempts - attemptsBefore), Math.max(0, waitMs));
        unref(waiter.timer);
      }
      this.openWaiters.push(waiter);
    });
    if (this._state === 'idle') {
      this.setState('connecting');
      this.openSocket();
    }
    return p;
  }

  /**
   * Sends a message; resolves with the server's `sent` (seq, mid, ts). Survives disconnects:
   * unanswered sends are written again with the same cmid after reconnecting, in order. Rejects
   * only on a final error (forbidden, bad_request, too_large, not_found, …) or close()/kick.
   */
  send(target: SendTarget, body: unknown, options: SendOptions = {}): Promise<SentFrame> {
    if (this._state === 'closed' || this._state === 'kicked') {
      return Promise.reject(new ChatError(this._state, `client is ${this._state}`));
    }
    const cmid = options.cmid ?? randomUuid();
    const p = this.outbox.add(this.nextRid('s'), cmid, target, body, options.kind);
    this.pump();
    return p;
  }

  /**
   * Fetches stored messages with seq > after. New ones also go through the normal delivery path
   * (`message` events, de-duplicated, in order).
   */
  async sync(conv: string, after: number, limit?: number): Promise<BatchFrame> {
    const batch = await this.request<BatchFrame>('batch', (rid) => ({ t: 'sync', rid, conv, after, limit }));
    this.metrics.syncRequests++;
    for (const m of batch.msgs) this.onMsg(normalizeMsg(m, batch.conv || conv));
    return batch;
  }

  async convs(): Promise<ConvSummary[]> {
    const f = await this.request<ConvsFrame>('convs', (rid) => ({ t: 'convs', rid }));
    return f.convs;
  }

  /** Moves the read cursor (others get a `receipt`). Kept and sent after reconnect if offline. */
  read(conv: string, seq: number): void {
    if ((this.reads.get(conv) ?? 0) >= seq) return;
    this.reads.set(conv, seq);
    if (this.writeIfOpen({ t: 'read', conv, seq })) this.reads.delete(conv);
  }

  /** Acks delivery up to `seq` (only needed with `autoAck: false`). */
  ack(conv: string, seq: number): void {
    this.acks.note(conv, seq);
  }

  async recall(conv: string, seq: number): Promise<void> {
    await this.request<OkFrame>('ok', (rid) => ({ t: 'recall', rid, conv, seq }));
  }

  /** Typing indicator; dropped (returns false) while offline: it is never stored. */
  typing(conv: string): boolean {
    return this.writeIfOpen({ t: 'typing', conv });
  }

  /** Creates group `group` owned by the caller; resolves with its conversation id `g:<group>`. */
  async groupCreate(group: string, members: string[]): Promise<string> {
    const f = await this.request<OkFrame>('ok', (rid) => ({ t: 'group_create', rid, group, members }));
    return f.conv ?? groupConv(group);
  }

  async groupAdd(conv: string, members: string[]): Promise<void> {
    await this.request<OkFrame>('ok', (rid) => ({ t: 'group_add', rid, conv, members }));
  }

  async groupRemove(conv: string, members: string[]): Promise<void> {
    await this.request<OkFrame>('ok', (rid) => ({ t: 'group_remove', rid, conv, members }));
  }

  async groupMembers(conv: string): Promise<string[]> {
    const f = await this.request<MembersFrame>('members', (rid) => ({ t: 'group_members', rid, conv }));
    return f.members;
  }

  /** v1.1: members and owner of a group. */
  async groupInfo(conv: string): Promise<GroupInfo> {
    const f = await this.request<MembersFrame>('members', (rid) => ({ t: 'group_members', rid, conv }));
    return f.owner === undefined ? { conv: f.conv, members: f.members } : { conv: f.conv, owner: f.owner, members: f.members };
  }

  /** v1.1: leaves a group (the owner hands over to the longest-standing member). */
  async groupLeave(conv: string): Promise<void> {
    await this.request<OkFrame>('ok', (rid) => ({ t: 'group_leave', rid, conv }));
  }

  /**
   * v1.1: pages backwards through stored history: up to `limit` messages just below `before`
   * (default: the newest), ascending; `more` when older ones exist. The messages are returned
   * only, not delivered as `message` events.
   */
  async history(conv: string, options: HistoryOptions = {}): Promise<BatchFrame> {
    const before = options.before ?? Number.MAX_SAFE_INTEGER;
    const batch = await this.request<BatchFrame>('batch', (rid) =>
      (options.limit === undefined ? { t: 'sync', rid, conv, before } : { t: 'sync', rid, conv, before, limit: options.limit }));
    return { ...batch, msgs: batch.msgs.map((m) => normalizeMsg(m, batch.conv || conv)) };
  }

  /**
   * v1.1: watches these users' presence (replacing the previous list; [] ends it) and resolves with
   * their current state. Changes arrive as `presence` events; the client subscribes again after
   * every re-login and emits each user's state then.
   */
  async presenceSub(users: string[]): Promise<PresenceChange[]> {
    this.presenceUsers = [...users];
    const f = await this.request<PresenceFrame>('presence', (rid) => ({ t: 'presence_sub', rid, users }));
    return presenceStates(f.users);
  }

  /**
   * Stops for good: flushes acks and reads if logged in, closes the socket, rejects what is
   * pending with code `closed`, clears every timer. Resolves when the socket closed (≤ 1 s).
   */
  close(): Promise<void> {
    if (this._state === 'closed') return Promise.resolve();
    if (this._state === 'open') {
      this.acks.flush();
      for (const [conv, seq] of this.reads) this.writeIfOpen({ t: 'read', conv, seq });
    }
    const ws = this.ws;
    this.terminate('closed', new ChatError('closed', 'client closed'), 'closed by application');
    if (!ws || ws.readyState === CLOSED) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 1000);
      unref(t);
      ws.onclose = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  // ---------------------------------------------------------------- connection

  private openSocket(): void {
    this.reconnectTimer = null;
    if (this._state === 'closed' || this._state === 'kicked') return;
    const gen = ++this.gen;
    const url = this.url;
    this.metrics.connectAttempts++;
    this.setState(this.everOpen ? 'reconnecting' : 'connecting', url);
    let ws: WebSocketLike;
    try {
      ws = new this.WS(url);
    } catch (e) {
      this.emitError(new ChatError('connection_lost', `cannot open ${url}: ${errText(e)}`));
      this.lose(`cannot open: ${errText(e)}`);
      return;
    }
    this.ws = ws;
    this.socketError = '';
    this.connectTimer = setTimeout(() => {
      if (gen === this.gen) this.lose('connect timeout');
    }, this.opts.connectTimeoutMs ?? 5000);
    ws.onopen = () => {
      if (gen === this.gen) void this.sendLogin(gen);
    };
    ws.onmessage = (ev) => {
      if (gen !== this.gen) return;
      this.lastRx = Date.now();
      const frame = parseFrame(ev.data);
      if (frame) this.onFrame(frame);
      else this.emitError(new ChatError('bad_request', 'server sent a frame that is not a JSON object with "t"'));
    };
    ws.onclose = (ev) => {
      const why = ev.reason || this.socketError;
      if (gen === this.gen) this.lose(`socket closed (${ev.code}${why ? `: ${why}` : ''})`);
    };
    // An error is always followed by close; keep its text (`ws` has one, browsers do not) for that.
    ws.onerror = (ev) => {
      if (gen === this.gen) this.socketError = errorEventText(ev);
    };
  }

  private async sendLogin(gen: number): Promise<void> {
    let token: string;
    try {
      token = typeof this.opts.token === 'function' ? await this.opts.token() : this.opts.token;
    } catch (e) {
      if (gen !== this.gen) return;
      this.emitError(new ChatError('unauthorized', `token provider failed: ${errText(e)}`));
      this.lose('token provider failed');
      return;
    }
    if (gen !== this.gen) return;
    this.write({ t: 'login', rid: `login-${gen}`, token, device: this.device });
  }

  private onLoggedIn(f: LoginOkFrame): void {
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = null;
    this.login = f;
    this.everOpen = true;
    this.backoff.reset();
    if (this.lostAt !== null) {
      this.metrics.reconnects++;
      this.metrics.reconnectDurations.push(Date.now() - this.lostAt);
      this.lostAt = null;
    }
    const gen = this.gen;
    this.startTimers(f.heartbeat_ms);
    this.setState('open', this.url, undefined, f.node);
    this.emit('login', f);
    const waiters = this.openWaiters;
    this.openWaiters = [];
    for (const w of waiters) {
      if (w.timer) clearTimeout(w.timer);
      w.resolve(f);
    }
    if (gen !== this.gen) return; // a listener closed the client
    // Order: what the app was doing offline first (acks, reads, sends), then catch up.
    this.acks.flush();
    for (const [conv, seq] of [...this.reads]) if (this.writeIfOpen({ t: 'read', conv, seq })) this.reads.delete(conv);
    this.pump();
    for (const r of this.requests.values()) if (!r.written) r.written = this.write(r.frame);
    if (this.presenceUsers.length > 0) void this.resubscribePresence(gen);
    if (this.opts.syncOnLogin ?? true) void this.catchUp();
    else for (const conv of this.convState.gaps()) this.scheduleGapFill(conv);
  }

  /** Lists conversations and syncs each one where the server has more than we hold. */
  private async catchUp(): Promise<void> {
    const gen = this.gen;
    let list: ConvSummary[];
    try {
      list = await this.convs();
    } catch (e) {
      if (gen === this.gen && this._state === 'open') this.emitError(asChatError(e));
      return; // a lost socket brings a new login, which catches up again
    }
    if (gen !== this.gen) return;
    const tail = this.opts.initialHistory;
    for (const c of list) {
      if (tail !== undefined && this.convState.held(c.conv) === 0 && c.last_seq > tail) {
        for (const m of this.convState.skipTo(c.conv, c.last_seq - Math.max(0, Math.floor(tail)))) this.deliver(m);
      }
      if (c.last_seq > this.convState.held(c.conv)) this.fill(c.conv, c.last_seq);
    }
    for (const conv of this.convState.gaps()) this.scheduleGapFill(conv);
  }

  private async resubscribePresence(gen: number): Promise<void> {
    const users = this.presenceUsers;
    try {
      const f = await this.request<PresenceFrame>('presence', (rid) => ({ t: 'presence_sub', rid, users }));
      if (gen !== this.gen || users !== this.presenceUsers) return;
      for (const p of presenceStates(f.users)) this.emit('presence', p);
    } catch (e) {
      if (gen === this.gen && this._state === 'open') this.emitError(asChatError(e));
    }
  }

  /**
   * A connect() waited `waitMs` in vain: reject it with `unreachable`. If nobody else waits and
   * the client never logged in, stop trying (back to `idle`) unless `retryForever`.
   */
  private giveUp(waiter: OpenWaiter, waitMs: number, attempts: number): void {
    const i = this.openWaiters.indexOf(waiter);
    if (i < 0) return;
    this.openWaiters.splice(i, 1);
    const urls = this.urls.join(', ');
    const last = this.lastFailure ? `; last failure: ${this.lastFailure}` : '';
    waiter.reject(new ChatError('unreachable',
      `no chat node reachable within ${waitMs} ms (${attempts} connection attempt${attempts === 1 ? '' : 's'} to ${urls}${last})`));
    if (this.openWaiters.length > 0 || this.everOpen || this.opts.retryForever || this._state !== 'connecting') return;
    this.dropSocket(1000, 'gave up connecting');
    this.backoff.reset();
    this.setState('idle', undefined, 'unreachable');
  }

  /** The current socket is gone (or must go): clean up and schedule the next attempt. */
  private lose(reason: string): void {
    const wasOpen = this._state === 'open';
    this.lastFailure = `${this.url}: ${reason}`;
    this.dropSocket(4000, reason);
    if (this._state === 'closed' || this._state === 'kicked') return;
    if (wasOpen) this.lostAt = Date.now();
    this.outbox.requeueAll();
    this.failRequests(new ChatError('connection_lost', `connection lost: ${reason}`), true);
    this.urlIndex = (this.urlIndex + 1) % this.urls.length;
    this.setState(this.everOpen ? 'reconnecting' : 'connecting', this.url, reason);
    const delay = this.backoff.next();
    this.reconnectTimer = setTimeout(() => this.openSocket(), delay);
  }

  /** Detaches and closes the current socket and stops the per-socket timers. */
  private dropSocket(code: number, reason: string): void {
    this.gen++;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      // Keep an error handler: `ws` throws on an 'error' event nobody listens to (close() while connecting).
      ws.onerror = () => undefined;
      try {
        if (ws.readyState <= OPEN) ws.close(code === 1000 ? 1000 : 4000, reason.slice(0, 100));
      } catch {
        // already closing
      }
    }
    for (const t of [this.connectTimer, this.wakeTimer, this.reconnectTimer]) if (t) clearTimeout(t);
    for (const t of [this.heartbeatTimer, this.sendTimer]) if (t) clearInterval(t);
    this.connectTimer = this.wakeTimer = this.reconnectTimer = this.heartbeatTimer = this.sendTimer = null;
    for (const t of this.gapTimers.values()) clearTimeout(t);
    this.gapTimers.clear();
    this.filling.clear();
    this.acks.dispose();
  }

  /** Final stop (close() or kicked as replaced). */
  private terminate(state: 'closed' | 'kicked', err: ChatError, reason: string): void {
    this.dropSocket(1000, reason);
    this.setState(state, undefined, reason);
    this.outbox.rejectAll(err);
    this.failRequests(err, false);
    const waiters = this.openWaiters;
    this.openWaiters = [];
    for (const w of waiters) {
      if (w.timer) clearTimeout(w.timer);
      w.reject(err);
    }
  }

  private startTimers(heartbeatMs: number): void {
    const hb = heartbeatMs > 0 ? heartbeatMs : 30_000;
    const deadMs = hb * (this.opts.deadAfterHeartbeats ?? 2);
    const gen = this.gen;
    this.heartbeatTimer = setInterval(() => {
      if (gen !== this.gen) return;
      if (Date.now() - this.lastRx > deadMs) this.lose('no frame from server within 2 heartbeats');
      else this.write({ t: 'ping' });
    }, hb);
    const sendTimeout = this.opts.sendTimeoutMs ?? 10_000;
    this.sendTimer = setInterval(() => {
      if (gen === this.gen && this.outbox.requeueExpired(Date.now(), sendTimeout) > 0) this.pump();
    }, Math.max(20, Math.min(1000, sendTimeout / 4)));
    // The socket keeps the process alive while it is open; these timers never should.
    unref(this.heartbeatTimer);
    unref(this.sendTimer);
  }

  // ---------------------------------------------------------------- frames in

  private onFrame(f: ServerFrame): void {
    switch (f.t) {
      case 'msg':
        this.onMsg(normalizeMsg(f, f.conv));
        return;
      case 'login_ok':
        if (f.rid === `login-${this.gen}`) this.onLoggedIn(f);
        return;
      case 'sent':
        this.onSent(f);
        return;
      case 'error':
        this.onError(f);
        return;
      case 'receipt':
        this.emit('receipt', f);
        return;
      case 'recalled':
        this.convState.markRecalled(f.conv, f.seq);
        this.emit('recalled', f);
        return;
      case 'typing':
        this.emit('typing', f);
        return;
      case 'kicked':
        this.onKicked(f.reason);
        return;
      case 'group':
        this.emit('group', f);
        return;
      case 'presence':
        if (f.rid !== undefined) this.answer(f.rid, f);
        else if (typeof f.user === 'string') this.emit('presence', { user: f.user, online: f.online ?? null });
        return;
      case 'pong':
        if (f.rid !== undefined) this.answer(f.rid, f);
        return;
      case 'batch':
      case 'convs':
      case 'ok':
      case 'members':
        this.answer(f.rid, f);
        return;
      default:
        // Unknown push types are allowed by the protocol's "add only" rule: ignore them.
        return;
    }
  }

  private onMsg(msg: MsgFrame): void {
    const r = this.convState.offer(msg);
    if (r.duplicate) this.metrics.duplicatesDropped++;
    for (const m of r.deliver) this.deliver(m);
    if (this.convState.gapAfter(msg.conv) !== null) this.scheduleGapFill(msg.conv);
  }

  private deliver(m: MsgFrame): void {
    this.emit('message', m);
    if (this.opts.autoAck ?? true) this.acks.note(m.conv, m.seq);
  }

  private onSent(f: SentFrame): void {
    const entry = this.outbox.get(f.rid);
    if (!entry || !this.outbox.resolve(f)) return; // answer to a resend of something already answered
    // The sending device gets no `msg` for its own message: deliver it from the answer, so the
    // conversation has no hole at this seq.
    const own: MsgFrame = {
      t: 'msg', conv: f.conv, seq: f.seq, mid: f.mid, from: this.login?.user ?? '', cmid: f.cmid, ts: f.ts,
      kind: entry.kind ?? 'text', body: entry.body,
    };
    this.onMsg(own);
    this.pump();
  }

  private onError(f: ErrorFrame): void {
    const err = new ChatError(f.code, f.message);
    if (f.rid === undefined) {
      this.emitError(err);
      return;
    }
    if (f.rid === `login-${this.gen}`) {
      this.onLoginError(err);
      return;
    }
    const entry = this.outbox.get(f.rid);
    if (entry) {
      this.onSendError(entry, err);
      return;
    }
    const req = this.requests.get(f.rid);
    if (req) {
      clearTimeout(req.timer);
      this.requests.delete(f.rid);
      req.reject(err);
      return;
    }
    this.emitError(err);
  }

  private onLoginError(err: ChatError): void {
    // A fixed token that is refused will always be refused; a provider may hand out a fresh one.
    if (err.code === 'unauthorized' && typeof this.opts.token === 'string') {
      this.emitError(err);
      this.terminate('closed', err, `login refused: ${err.message}`);
      return;
    }
    this.emitError(err);
    this.lose(`login failed: ${err.code}`);
  }

  private onSendError(entry: OutboxEntry, err: ChatError): void {
    const now = Date.now();
    if (err.code === 'rate_limited') {
      const base = this.opts.rateLimitRetryMs ?? 500;
      this.outbox.retryLater(entry.rid, now + base + Math.floor(Math.random() * base));
    } else if (RETRY_ALWAYS.has(err.code) || (RETRY_BOUNDED.has(err.code) && entry.attempts < (this.opts.maxSendAttempts ?? 5))) {
      // `unavailable` clears as soon as failover completes (about IM_NODE_TTL_MS): keep its waits short.
      const cap = err.code === 'unavailable' ? (this.opts.unavailableRetryMaxMs ?? 1000) : 5000;
      const backoff = Math.min(cap, 100 * 2 ** Math.min(entry.attempts, 10));
      this.outbox.retryLater(entry.rid, now + Math.floor(Math.random() * backoff));
    } else {
      this.outbox.reject(entry.rid, err);
    }
    this.pump();
  }

  private onKicked(reason: string): void {
    // shutdown / auth_expired: the node closes this socket; move on now (to another node, with a
    // fresh token) rather than wait for it.
    if (reason === 'shutdown' || reason === 'auth_expired') {
      this.lose(`kicked: ${reason}`);
      return;
    }
    // replaced (another login with this device took over: reconnecting would kick it back), or
    // an app backend's disconnect (e.g. "banned"): stay disconnected.
    const why = reason === 'replaced' ? 'replaced by another login of this device' : `disconnected by the server: ${reason}`;
    this.terminate('kicked', new ChatError('kicked', why), reason);
  }

  // ---------------------------------------------------------------- sending

  /** Writes what the outbox allows now and wakes up later for sends that wait (rate limit). */
  private pump(): void {
    if (this._state !== 'open') return;
    const now = Date.now();
    for (const e of this.outbox.take(now, this.opts.maxInFlight ?? 100)) {
      if (e.attempts > 1) this.metrics.resends++;
      const frame: ClientFrame = { t: 'send', rid: e.rid, cmid: e.cmid, body: e.body };
      if (e.target.to !== undefined) frame.to = e.target.to;
      else frame.conv = e.target.conv;
      if (e.kind !== undefined) frame.kind = e.kind;
      this.write(frame);
    }
    const wake = this.outbox.nextWake(now);
    if (wake !== null && !this.wakeTimer) {
      this.wakeTimer = setTimeout(() => {
        this.wakeTimer = null;
        this.pump();
      }, wake - now);
    }
  }

  private request<F extends AnswerFrame>(expect: F['t'], build: (rid: string) => ClientFrame): Promise<F> {
    if (this._state === 'closed' || this._state === 'kicked') {
      return Promise.reject(new ChatError(this._state, `client is ${this._state}`));
    }
    const rid = this.nextRid('r');
    const frame = build(rid);
    const timeoutMs = this.opts.requestTimeoutMs ?? 10_000;
    return new Promise<F>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.requests.delete(rid);
        reject(new ChatError('timeout', `${frame.t} got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      unref(timer);
      const req: PendingRequest = {
        expect, frame, written: false,
        // The answer's type was checked against `expect` in answer().
        resolve: (f) => resolve(f as F),
        reject,
        timer,
      };
      this.requests.set(rid, req);
      // Not logged in yet: it is written on the next login_ok.
      req.written = this.writeIfOpen(frame);
    });
  }

  private answer(rid: string, f: AnswerFrame): void {
    const req = this.requests.get(rid);
    if (!req) return;
    clearTimeout(req.timer);
    this.requests.delete(rid);
    if (req.expect !== f.t) req.reject(new ChatError('bad_request', `expected "${req.expect}" answer, got "${f.t}"`));
    else req.resolve(f);
  }

  /**
   * Rejects requests in flight. On a lost socket (`onlyWritten`) requests that were never written
   * stay queued for the next login; the others cannot know whether they took effect.
   */
  private failRequests(err: ChatError, onlyWritten: boolean): void {
    for (const [rid, req] of [...this.requests]) {
      if (onlyWritten && !req.written) continue;
      clearTimeout(req.timer);
      this.requests.delete(rid);
      req.reject(err);
    }
  }

  // ---------------------------------------------------------------- gaps and sync

  private scheduleGapFill(conv: string): void {
    if (this.filling.has(conv) || this.gapTimers.has(conv)) return;
    const t = setTimeout(() => {
      this.gapTimers.delete(conv);
      if (this.convState.gapAfter(conv) !== null) this.fill(conv, 0);
    }, this.opts.gapGraceMs ?? 200);
    unref(t);
    this.gapTimers.set(conv, t);
  }

  /**
   * Syncs `conv` from the highest contiguous seq until it holds `target` and has no gap. One loop
   * per conversation; a second call only raises the target. Stops when the socket goes away (the
   * next login catches up again) or when the server returns nothing new.
   */
  private fill(conv: string, target: number): void {
    const running = this.filling.get(conv);
    if (running !== undefined) {
      this.filling.set(conv, Math.max(running, target));
      return;
    }
    this.filling.set(conv, target);
    const gap = this.gapTimers.get(conv);
    if (gap) clearTimeout(gap);
    this.gapTimers.delete(conv);
    void this.fillLoop(conv, this.gen);
  }

  private async fillLoop(conv: string, gen: number): Promise<void> {
    const limit = this.opts.syncLimit ?? 200;
    try {
      for (;;) {
        const want = this.filling.get(conv) ?? 0;
        const before = this.convState.held(conv);
        if (before >= want && this.convState.gapAfter(conv) === null) break;
        const batch = await this.sync(conv, before, limit);
        if (gen !== this.gen) return;
        const progressed = this.convState.held(conv) > before;
        if (!progressed) break; // nothing new from the server: stop rather than spin
        if (!batch.more && this.convState.gapAfter(conv) === null && this.convState.held(conv) >= want) break;
      }
    } catch (e) {
      if (gen === this.gen && this._state === 'open') this.emitError(asChatError(e));
      return;
    } finally {
      if (gen === this.gen) this.filling.delete(conv);
    }
    // A gap the server could not fill yet (e.g. its commit is still landing): look again later.
    if (gen === this.gen && this.convState.gapAfter(conv) !== null) this.scheduleGapFill(conv);
  }

  // ---------------------------------------------------------------- plumbing

  private write(frame: ClientFrame): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return false;
    try {
      ws.send(JSON.stringify(frame));
    } catch {
      return false;
    }
    return true;
  }

  private writeIfOpen(frame: ClientFrame): boolean {
    return this._state === 'open' ? this.write(frame) : false;
  }

  private nextRid(prefix: string): string {
    return `${prefix}${(++this.ridSeq).toString(36)}`;
  }

  private setState(state: ConnectionState, url?: string, reason?: string, node?: string): void {
    if (state === this._state) return;
    this._state = state;
    this.emit('state', { state, url, node, reason });
  }

  private emit<K extends keyof ChatClientEvents>(event: K, ...args: Parameters<ChatClientEvents[K]>): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        (fn as unknown as (...a: Parameters<ChatClientEvents[K]>) => void)(...args);
      } catch (e) {
        // A throwing listener must not break the connection state machine.
        if (event !== 'error') this.emitError(new ChatError('listener', `"${event}" listener threw: ${errText(e)}`));
      }
    }
  }

  private emitError(err: ChatError): void {
    this.emit('error', err);
  }
}

// ------------------------------------------------------------------ helpers

function parseFrame(data: unknown): ServerFrame | null {
  let text: string;
  if (typeof data === 'string') text = data;
  else if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) text = new TextDecoder().decode(data);
  else return null;
  try {
    const v: unknown = JSON.parse(text);
    if (typeof v === 'object' && v !== null && typeof (v as { t?: unknown }).t === 'string') return v as ServerFrame;
  } catch {
    // fall through
  }
  return null;
}

/** Batch entries may omit `t`/`conv`/`kind`; give every delivered message the full `msg` shape. */
function normalizeMsg(m: MsgFrame, conv: string): MsgFrame {
  return { ...m, t: 'msg', conv: m.conv ?? conv, kind: m.kind ?? 'text' };
}

function presenceStates(users: PresenceState[] | undefined): PresenceChange[] {
  return (users ?? []).map((u) => ({ user: u.user, online: u.online }));
}

/** The text of a WebSocket `error` event: `ws` puts one in `message` (or `error`); browsers have none. */
function errorEventText(ev: unknown): string {
  if (typeof ev !== 'object' || ev === null) return '';
  const { message, error } = ev as { message?: unknown; error?: unknown };
  if (typeof message === 'string' && message) return message;
  return error instanceof Error ? error.message : '';
}

function asChatError(e: unknown): ChatError {
  return e instanceof ChatError ? e : new ChatError('internal', errText(e));
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

const ALNUM = 'abcdefghijklmnopqrstuvwxyz0123456789';

function randomId(n: number): string {
  const bytes = new Uint8Array(n);
  const c = (globalThis as { crypto?: { getRandomValues?: (a: Uint8Array) => Uint8Array } }).crypto;
  if (c?.getRandomValues) c.getRandomValues(bytes);
  else for (let i = 0; i < n; i++) bytes[i] = Math.floor(Math.random() * 256);
  let s = '';
  for (const b of bytes) s += ALNUM[b % ALNUM.length];
  return s;
}

/** 36 chars, within the 64-char cmid limit. */
function randomUuid(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  return c?.randomUUID ? c.randomUUID() : `${Date.now().toString(36)}-${randomId(20)}`;
}
