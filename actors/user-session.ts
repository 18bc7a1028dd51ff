/**
 * UserSession: one per connected device. Owns its socket's logged-in life: the send limiter,
 * the bound on requests in flight, per conversation the highest seq pushed, the pushes awaiting
 * `ack` (retried after IM_ACK_TIMEOUT_MS, up to IM_PUSH_RETRIES times), and the coalesced
 * cursor moves (`ack`/`read`) on their way to the conversations. It dies with its socket.
 *
 * After login_ok it pushes each conversation's backlog (seq > ack_seq) while the socket is
 * already live, so the client's acks for the backlog are taken as they come. Live messages that
 * arrive for a conversation whose backlog is still loading are held and merged in seq order, so
 * a device sees every message once, in order, even while catching up.
 *
 * Limits (every one answers `rate_limited`, never closes the socket): IM_RATE_MSGS sends per
 * second; MAX_INFLIGHT requests awaiting their answer; MAX_SYNCS_INFLIGHT history reads, refused
 * too while the socket holds more than MAX_UNREAD_BYTES its client has not read;
 * IM_GROUP_CREATES_PER_MIN group creations per user. Past the node's capacity (core/admission.ts)
 * a send is answered `unavailable`, which the client retries. `ack` and `read` are never refused for
 * rate: they are merged per conversation for CURSOR_COALESCE_MS and sent to the conversation
 * as one move, which checks membership and announces receipts only for real forward moves.
 */
import { TokenBucket } from '../core/token-bucket.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import type { NodeConfig } from '../cluster.config.ts';
import { ProtocolError, isProtocolError, unavailable, type ErrorCode } from '../protocol/errors.ts';
import type { ClientFrame, ClientFrameOf, KickReason, ServerFrame } from '../protocol/frames.ts';
import { dmConvId, groupConvId, parseConvId } from '../protocol/ids.ts';
import type { RecordStore } from '../persistence/message-store.ts';
import type { ConversationService } from './conversation-protocol.ts';
import { storedMsgJson } from './conversation.ts';
import { FILE_KIND, fileIdOf } from '../files/file-ref.ts';
import type { MessagePush } from './delivery.ts';
import type { SelfActor } from './system.ts';
import type { PresenceAccess } from './presence-watch.ts';
import type { SendAdmission } from '../core/admission.ts';

/** What a session needs of its socket; the gateway implements it over uWebSockets.js. */
export interface Connection {
  /** Sends one text frame; false when the socket is gone. */
  send(json: string): boolean;
  /** Closes the socket (after any frames already sent). */
  close(code: number, reason: string): void;
  /** Bytes sent on this socket that its client has not read yet (0 once closed). */
  buffered(): number;
}

/** Cursor moves taken but not yet written (the persistence layer's cursor buffer). */
export interface PendingAcks {
  /** The buffered ack cursor of (conv, user), 0 when none: a quick re-login does not redeliver. */
  pendingAck(conv: string, user: string): number;
}

/** Limits shared by all of a user's sessions on this node (core/token-bucket.ts UserLimits). */
export interface SharedUserLimits {
  /** Takes one of the user's group creations (IM_GROUP_CREATES_PER_MIN). */
  groupCreate(user: string): boolean;
  /** Whether the user's `typing` in `conv` may be relayed now (twice a second). */
  typing(user: string, conv: string): boolean;
}

export interface SessionDeps {
  config: NodeConfig;
  log: Logger;
  metrics: Metrics;
  store: RecordStore;
  conversations: ConversationService;
  /** Ack cursors not yet written: the backlog starts above them. */
  pending: PendingAcks;
  limits: SharedUserLimits;
  /** v1.1 presence_sub (absent: answered `unavailable`). */
  presence?: PresenceAccess;
  /** Node-wide admission of sends: past capacity a send is answered `unavailable`. */
  admission: SendAdmission;
  nodeId: string;
}

interface Unacked { json: string; attempts: number; due: number }
/** Cursor moves of one conversation not yet sent to it; 0 = no move. */
interface PendingCursor { ack: number; read: number }

/** Most pushes remembered per session for retry; beyond it a message waits for the next login. */
const MAX_UNACKED = 5000;
/** Requests of one socket awaiting their answer; more get rate_limited. */
const MAX_INFLIGHT = 64;
/** History reads (sync) of one socket in flight; each answer may be megabytes. */
const MAX_SYNCS_INFLIGHT = 4;
/**
 * Live pushes held for a session while its login or backlog is under way (count and bytes);
 * beyond either they are dropped and read back from the record once the backlog is done (the
 * client may have stopped reading, which pauses the backlog).
 */
const MAX_HELD = 2000;
const MAX_HELD_BYTES = 1024 * 1024;
/** Unread bytes on the socket beyond which history reads and conversation lists are refused. */
const MAX_UNREAD_BYTES = 1024 * 1024;
/** How long ack/read moves of a conversation are merged before they are sent to it. */
const CURSOR_COALESCE_MS = 20;
/** Conversations with merged cursor moves waiting; one more sends them at once. */
const MAX_PENDING_CURSORS = 256;
/** Cursor moves sent and not yet answered; beyond it moves are refused (only a hostile client gets there). */
const MAX_CURSOR_REQUESTS = 1024;

/** The backlogDone of a session with no backlog to push (shared: idle sessions allocate nothing for it). */
const NO_BACKLOG: Promise<void> = Promise.resolve();

export class UserSession {
  // Allocated on first use: most sockets sit idle, and idle sockets should cost little memory.
  private limiter: TokenBucket | null = null;
  private highestPushed: Map<string, number> | null = null;
  private unacked: Map<string, Map<number, Unacked>> | null = null;
  private unackedCount = 0;
  /** Conversations whose login backlog is loading: live pushes wait here. */
  private held: Map<string, MessagePush[]> | null = null;
  /** Pushes and events waiting in `held` and `early`. */
  private heldCount = 0;
  private heldBytes = 0;
  /** Set when a held push was dropped: the backlog ends with a catch-up from the record. */
  private missed = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private cursors: Map<string, PendingCursor> | null = null;
  private cursorTimer: NodeJS.Timeout | null = null;
  private cursorRequests = 0;
  private inflight = 0;
  private syncs = 0;
  /** presence_sub requests being answered (at most one). */
  private presenceSubs = 0;
  private closed = false;
  /** Settles once the login backlog has been pushed (or given up on); never rejects. */
  backlogDone: Promise<void> = NO_BACKLOG;
  /**
   * True until login_ok is out. The session is in the directory (so it gets live pushes) before
   * start() has read the user's conversations: what arrives meanwhile waits in `early`.
   */
  private starting = true;
  private early: Array<MessagePush | string> | null = null;

  constructor(readonly user: string, readonly device: string, private readonly conn: Connection, private readonly deps: SessionDeps) {}

  get isClosed(): boolean {
    return this.closed;
  }

  // ---- outgoing ----

  private out(frame: ServerFrame): void {
    this.raw(JSON.stringify(frame));
  }

  private raw(json: string): void {
    if (this.closed) return;
    this.conn.send(json);
    this.deps.metrics.framesOut.inc();
  }

  error(code: ErrorCode, message: string, rid?: string): void {
    this.deps.metrics.errors.inc({ code });
    this.out(rid === undefined ? { t: 'error', code, message } : { t: 'error', rid, code, message });
  }

  kick(reason: KickReason): void {
    if (this.closed) return;
    this.out({ t: 'kicked', reason });
    this.conn.close(4000, reason);
    this.dispose();
  }

  dispose(): void {
    // Cursor moves already taken still reach their conversations (a lost ack only redelivers).
    this.flushCursors();
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.unacked = null;
    this.held = null;
    this.early = null;
  }

  // ---- login ----

  /**
   * Sends login_ok and returns; the backlog of every conversation follows in the background
   * (live pushes may interleave safely), while frames of the socket are already handled.
   */
  async start(rid: string): Promise<void> {
    const { config, store } = this.deps;
    let convs;
    try {
      convs = await store.userConversations(this.user);
    } catch {
      this.error('unavailable', 'the message store is unavailable, log in again later', rid);
      this.conn.close(1011, 'store unavailable');
      this.dispose();
      return;
    }
    // userConversations (the overlay store) already counts cursor moves not yet written.
    const todo = convs.filter((c) => c.lastSeq > c.ackSeq);
    if (todo.length > 0) this.held = new Map(todo.map((c) => [c.conv, []]));
    this.out({ t: 'login_ok', rid, user: this.user, device: this.device, node: this.deps.nodeId, heartbeat_ms: config.heartbeatMs });
    // Live pushes that came before login_ok: into `held` for conversations whose backlog is
    // pending (merged in seq order after it), straight out for the others.
    this.starting = false;
    const early = this.early;
    this.early = null;
    if (early) {
      this.heldCount -= early.length;
      for (const e of early) this.heldBytes -= typeof e === 'string' ? e.length : e.json.length;
    }
    if (early) for (const e of early) (typeof e === 'string' ? this.raw(e) : this.push(e));
    if (todo.length > 0 || this.missed) this.backlogDone = this.pushBacklog(todo);
  }

  private async pushBacklog(todo: readonly { conv: string; ackSeq: number }[]): Promise<void> {
    const { config, store } = this.deps;
    for (const c of todo) {
      if (this.closed) return;
      // Acks taken since the list was read (another device of the user) count too.
      const after = Math.max(c.ackSeq, this.deps.pending.pendingAck(c.conv, this.user));
      try {
        const rows = await store.history(c.conv, after, config.loginPushMax);
        for (const r of rows) {
          // Paced by what the client reads: a backlog bigger than the socket's send buffer
          // would otherwise trip the backpressure limit and close the socket on every login.
          if (this.conn.buffered() > MAX_UNREAD_BYTES) await this.readDown();
          if (this.closed) return;
          this.pushTracked(c.conv, r.seq, storedMsgJson(r), 'backlog');
        }
      } catch (e) {
        this.deps.log.warn({ user: this.user, conv: c.conv, err: String(e) }, 'login backlog failed; client will sync');
      }
      this.releaseHeld(c.conv);
    }
    if (this.missed && !this.closed) {
      this.missed = false;
      await this.catchUp().catch((e: unknown) => this.deps.log.warn({ user: this.user, err: String(e) }, 'catch-up after login failed; client will sync'));
    }
  }

  /** Resolves once the client has read its socket down to half of MAX_UNREAD_BYTES, or the session closed. */
  private async readDown(): Promise<void> {
    while (!this.closed && this.conn.buffered() > MAX_UNREAD_BYTES / 2) await new Promise((r) => setTimeout(r, 5));
  }

  /**
   * Pushes what this device should hold but was never pushed: messages above both its ack
   * cursor and the highest seq pushed on this socket. Run after this node was cut off from the
   * cluster bus (pushes from other nodes sent meanwhile are gone: NATS does not keep them).
   * A message pushed live meanwhile with a higher seq makes the client see a gap and sync.
   */
  async catchUp(): Promise<number> {
    if (this.closed || this.starting) return 0;
    const { store, config } = this.deps;
    let pushed = 0;
    for (const c of await store.userConversations(this.user)) {
      if (this.closed) break;
      const after = Math.max(c.ackSeq, this.highestPushed?.get(c.conv) ?? 0);
      if (c.lastSeq <= after || this.held?.has(c.conv)) continue;
      const rows = await store.history(c.conv, after, config.loginPushMax);
      for (const r of rows) {
        if (this.conn.buffered() > MAX_UNREAD_BYTES) await this.readDown();
        if (this.closed) break;
        if (r.seq > (this.highestPushed?.get(c.conv) ?? 0)) pushed++;
        this.pushTracked(c.conv, r.seq, storedMsgJson(r), 'backlog');
      }
    }
    return pushed;
  }

  private releaseHeld(conv: string): void {
    const list = this.held?.get(conv);
    this.held?.delete(conv);
    if (!list) return;
    this.heldCount -= list.length;
    for (const p of list) this.heldBytes -= p.json.length;
    list.sort((a, b) => a.seq - b.seq);
    for (const p of list) this.push(p);
  }

  // ---- pushes ----

  /** A message committed in one of this user's conversations. */
  push(p: MessagePush): void {
    if (this.closed) return;
    const held = this.starting ? (this.early ??= []) : this.held?.get(p.conv);
    if (held) {
      if (this.heldCount >= MAX_HELD || this.heldBytes >= MAX_HELD_BYTES) {
        this.missed = true;
        this.deps.metrics.pushesDeferred.inc();
        return;
      }
      this.heldCount++;
      this.heldBytes += p.json.length;
      held.push(p);
      return;
    }
    this.pushTracked(p.conv, p.seq, p.json, 'live');
  }

  /** An unstored event (receipt, recalled, typing); dropped when too many wait for login_ok. */
  event(json: string): void {
    if (this.closed) return;
    if (this.starting) {
      if (this.heldCount >= MAX_HELD || this.heldBytes >= MAX_HELD_BYTES) return;
      this.heldCount++;
      this.heldBytes += json.length;
      (this.early ??= []).push(json);
      return;
    }
    this.raw(json);
  }

  private pushTracked(conv: string, seq: number, json: string, kind: 'live' | 'backlog'): void {
    this.highestPushed ??= new Map();
    if (seq <= (this.highestPushed.get(conv) ?? 0)) return; // already pushed on this socket
    this.highestPushed.set(conv, seq);
    this.raw(json);
    this.deps.metrics.pushes.inc({ kind });
    if (this.deps.config.pushRetries > 0 && this.unackedCount < MAX_UNACKED) {
      this.unacked ??= new Map();
      let m = this.unacked.get(conv);
      if (!m) this.unacked.set(conv, (m = new Map()));
      m.set(seq, { json, attempts: 0, due: Date.now() + this.deps.config.ackTimeoutMs });
      this.unackedCount++;
      this.armRetry();
    }
  }

  private armRetry(): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => { this.retryTimer = null; this.retryDue(); }, Math.max(50, this.deps.config.ackTimeoutMs / 4));
    this.retryTimer.unref();
  }

  private retryDue(): void {
    const now = Date.now();
    const { ackTimeoutMs, pushRetries } = this.deps.config;
    if (!this.unacked) return;
    for (const [conv, m] of this.unacked) {
      for (const [seq, u] of m) {
        if (u.due > now) continue;
        if (u.attempts >= pushRetries) { m.delete(seq); this.unackedCount--; continue; }
        u.attempts++;
        u.due = now + ackTimeoutMs;
        this.raw(u.json);
        this.deps.metrics.pushes.inc({ kind: 'retry' });
      }
      if (m.size === 0) this.unacked.delete(conv);
    }
    if (this.unackedCount > 0) this.armRetry();
  }

  private acked(conv: string, seq: number): void {
    const m = this.unacked?.get(conv);
    if (!m) return;
    for (const s of m.keys()) if (s <= seq) { m.delete(s); this.unackedCount--; }
    if (m.size === 0) this.unacked?.delete(conv);
  }

  // ---- incoming ----

  async handle(frame: ClientFrame): Promise<void> {
    const rid = 'rid' in frame ? frame.rid : undefined;
    try {
      if (frame.t === 'ack' || frame.t === 'read') return this.cursor(frame);
      if (frame.t === 'ping') return this.out(frame.rid === undefined ? { t: 'pong', ts: Date.now() } : { t: 'pong', rid: frame.rid, ts: Date.now() });
      if (this.inflight >= MAX_INFLIGHT) throw new ProtocolError('rate_limited', `more than ${MAX_INFLIGHT} requests waiting for their answer`);
      this.inflight++;
      try {
        await this.dispatch(frame);
      } finally {
        this.inflight--;
      }
    } catch (e) {
      if (isProtocolError(e)) {
        // A frame without rid that is refused for rate is dropped silently (docs/protocol.md, Limits).
        if (rid === undefined && e.code === 'rate_limited' && frame.t !== 'ack' && frame.t !== 'read') return;
        this.error(e.code, e.message, rid);
      } else {
        this.deps.log.error({ err: e instanceof Error ? e.stack : String(e), t: frame.t }, 'frame handling failed');
        this.error('internal', 'internal error', rid);
      }
    }
  }

  private async dispatch(f: ClientFrame): Promise<void> {
    const svc = this.deps.conversations;
    switch (f.t) {
      case 'login': throw new ProtocolError('bad_request', 'already logged in');
      case 'send': return this.send(f);
      case 'ack':
      case 'read': return this.cursor(f);
      case 'typing': {
        const conv = this.conv(f.conv);
        // Over the relay rate a typing frame is dropped here: it never costs the conversation a request.
        if (this.deps.limits.typing(this.user, conv)) await svc.request({ op: 'typing', conv, user: this.user });
        return;
      }
      case 'sync': {
        const conv = this.conv(f.conv);
        this.checkUnread();
        if (this.syncs >= MAX_SYNCS_INFLIGHT) throw new ProtocolError('rate_limited', `more than ${MAX_SYNCS_INFLIGHT} sync requests in flight`);
        this.syncs++;
        try {
          const r = await svc.request({ op: 'sync', conv, user: this.user, after: f.after ?? 0, ...(f.before !== undefined ? { before: f.before } : {}), limit: f.limit ?? 50 });
          this.out({ t: 'batch', rid: f.rid, conv: f.conv, msgs: r.msgs, more: r.more });
        } finally {
          this.syncs--;
        }
        return;
      }
      case 'convs': {
        this.checkUnread();
        const list = await this.deps.store.userConversations(this.user).catch(() => { throw unavailable('the message store'); });
        this.out({ t: 'convs', rid: f.rid, convs: list.map((c) => ({ conv: c.conv, last_seq: c.lastSeq, ack_seq: c.ackSeq, read_seq: c.readSeq })) });
        return;
      }
      case 'recall':
        await svc.request({ op: 'recall', conv: this.conv(f.conv), user: this.user, seq: f.seq });
        this.out({ t: 'ok', rid: f.rid });
        return;
      case 'group_create': {
        const conv = groupConvId(f.group);
        if (!this.deps.limits.groupCreate(this.user)) throw new ProtocolError('rate_limited', `more than ${this.deps.config.groupCreatesPerMin} group creations per minute`);
        await svc.request({ op: 'group_create', conv, user: this.user, members: unique(f.members) });
        this.out({ t: 'ok', rid: f.rid, conv });
        return;
      }
      case 'group_add':
      case 'group_remove':
        await svc.request({ op: f.t, conv: this.groupConv(f.conv), user: this.user, members: unique(f.members) });
        this.out({ t: 'ok', rid: f.rid });
        return;
      case 'group_members': {
        this.checkUnread();
        const r = await svc.request({ op: 'group_members', conv: this.conv(f.conv), user: this.user });
        this.out(r.owner !== undefined ? { t: 'members', rid: f.rid, conv: f.conv, owner: r.owner, members: r.members } : { t: 'members', rid: f.rid, conv: f.conv, members: r.members });
        return;
      }
      case 'group_leave':
        await svc.request({ op: 'group_leave', conv: this.groupConv(f.conv), user: this.user });
        this.out({ t: 'ok', rid: f.rid });
        return;
      case 'presence_sub': return this.presenceSub(f);
    }
  }

  /** v1.1 presence_sub: one at a time per socket (each is a store query over up to 500 users). */
  private async presenceSub(f: ClientFrameOf<'presence_sub'>): Promise<void> {
    const presence = this.deps.presence;
    if (!presence) throw new ProtocolError('unavailable', 'presence is not available on this node');
    this.checkUnread();
    if (this.presenceSubs > 0) throw new ProtocolError('rate_limited', 'a presence_sub of this socket is still being answered');
    this.presenceSubs++;
    try {
      const users = await presence.subscribe(this.user, this.device, f.users);
      this.out({ t: 'presence', rid: f.rid, users });
    } finally {
      this.presenceSubs--;
    }
  }

  private conv(id: string): string {
    if (!parseConvId(id)) throw new ProtocolError('bad_request', `"${id.slice(0, 80)}" is not a conversation id (dm:<a>:<b> with a < b, or g:<group>)`);
    return id;
  }

  private groupConv(id: string): string {
    const p = parseConvId(id);
    if (!p || p.kind !== 'group') throw new ProtocolError('bad_request', `"${id.slice(0, 80)}" is not a group conversation id (g:<group>)`);
    return id;
  }

  private async send(f: ClientFrameOf<'send'>): Promise<void> {
    // Created full on the first send, as if it had been there since login (it would have refilled).
    this.limiter ??= new TokenBucket(this.deps.config.rateMsgs, this.deps.config.rateMsgs * 2);
    if (!this.limiter.take()) throw new ProtocolError('rate_limited', `more than ${this.deps.config.rateMsgs} sends per second`);
    let conv: string;
    if (f.to !== undefined) {
      if (f.to === this.user) throw new ProtocolError('bad_request', 'send: "to" must be another user');
      conv = dmConvId(this.user, f.to);
    } else {
      conv = this.conv(f.conv as string);
    }
    const kind = f.kind ?? 'text';
    if (kind === FILE_KIND) await this.checkFileRef(f.body);
    const bodyJson = JSON.stringify(f.body);
    const admitted = this.deps.admission.tryBegin();
    if ('refused' in admitted) {
      this.deps.metrics.sendsShed.inc();
      throw new ProtocolError('unavailable', `the node is past its capacity (${admitted.refused}); send again later with the same cmid`);
    }
    let r;
    try {
      r = await this.deps.conversations.request({ op: 'send', conv, user: this.user, device: this.device, cmid: f.cmid, kind, bodyJson });
    } finally {
      this.deps.admission.end(admitted.start);
    }
    this.out({ t: 'sent', rid: f.rid, conv, cmid: f.cmid, seq: r.seq, mid: r.mid, ts: r.ts });
  }

  /**
   * Files (docs/protocol.md): a `kind:"file"` message must name a file (`body.file`) its sender
   * may read — uploaded it, or shares a conversation where a stored, not recalled message refers
   * to it. Checked before the message goes to its conversation, so a refused one never gets a seq.
   */
  private async checkFileRef(body: unknown): Promise<void> {
    const id = fileIdOf(body);
    if (id === null) throw new ProtocolError('bad_request', 'a "file" message needs a body object with "file": the id of an uploaded file');
    const meta = await this.deps.store.readableFile(id, this.user).catch(() => { throw unavailable('the message store'); });
    if (!meta) throw new ProtocolError('forbidden', `file ${id} does not exist or may not be read by ${this.user}`);
  }

  /** Refuses a request whose answer would pile up behind output the client has not read. */
  private checkUnread(): void {
    const unread = this.conn.buffered();
    if (unread > MAX_UNREAD_BYTES) throw new ProtocolError('rate_limited', `${unread} bytes sent to this socket are not read yet; read them first`);
  }

  // ---- cursors (ack, read) ----

  /**
   * Takes an `ack` or `read`: retries stop at once for acked pushes, and the move is merged with
   * the conversation's other pending moves. Strangers to a 1:1 conversation are refused here;
   * group membership is the conversation's to check when the move arrives.
   */
  private cursor(f: ClientFrameOf<'ack'> | ClientFrameOf<'read'>): void {
    const p = parseConvId(f.conv);
    if (!p) throw new ProtocolError('bad_request', `${f.t}: "${f.conv.slice(0, 80)}" is not a conversation id`);
    if (p.kind === 'dm' && p.a !== this.user && p.b !== this.user) throw new ProtocolError('forbidden', `${f.t}: not a member of ${f.conv}`);
    if (f.seq === 0) return;
    if (f.t === 'ack') this.acked(f.conv, f.seq);
    this.cursors ??= new Map();
    let c = this.cursors.get(f.conv);
    if (!c) {
      if (this.cursors.size >= MAX_PENDING_CURSORS) this.flushCursors();
      if (this.cursorRequests >= MAX_CURSOR_REQUESTS) throw new ProtocolError('rate_limited', `${f.t}: too many cursor moves in flight`);
      (this.cursors ??= new Map()).set(f.conv, (c = { ack: 0, read: 0 }));
    }
    if (f.t === 'ack') c.ack = Math.max(c.ack, f.seq);
    else c.read = Math.max(c.read, f.seq);
    if (!this.cursorTimer) {
      this.cursorTimer = setTimeout(() => { this.cursorTimer = null; this.flushCursors(); }, CURSOR_COALESCE_MS);
      this.cursorTimer.unref();
    }
  }

  /** Sends every merged cursor move to its conversation; a refusal comes back as an error frame naming it. */
  private flushCursors(): void {
    if (this.cursorTimer) clearTimeout(this.cursorTimer);
    this.cursorTimer = null;
    const pending = this.cursors;
    this.cursors = null;
    if (!pending) return;
    for (const [conv, c] of pending) {
      this.cursorRequests++;
      const req = { op: 'cursor' as const, conv, user: this.user, ...(c.ack ? { ack: c.ack } : {}), ...(c.read ? { read: c.read } : {}) };
      this.deps.conversations.request(req).then(
        () => { this.cursorRequests--; },
        (e: unknown) => {
          this.cursorRequests--;
          const what = c.read && !c.ack ? 'read' : 'ack';
          if (isProtocolError(e)) this.error(e.code, `${what}: ${e.message}`);
          else this.deps.log.warn({ user: this.user, conv, err: String(e) }, 'cursor move failed');
        },
      );
    }
  }
}

function unique(list: string[]): string[] {
  return [...new Set(list)];
}

/**
 * The comedy actor of one device's session: the only holder of its UserSession. Everything else
 * (gateway frames, pushes and events from delivery, kicks, catch-up, close) reaches the session
 * by a message to this actor.
 *
 * Mailbox discipline: comedy's in-memory mode starts a handler as soon as its message arrives,
 * also while an earlier one awaits. The session's state that must not interleave is guarded in
 * UserSession itself: pushes before `login_ok` wait in `early`, pushes for a conversation whose
 * backlog is loading wait in `held` (merged in seq order after it), and per-conversation
 * `highestPushed` drops anything already pushed; every other handler changes state
 * synchronously, before or after its one await, so interleaving cannot tear it.
 */
export class UserSessionActor {
  private session!: UserSession;

  initialize(self: SelfActor): void {
    const p = self.getCustomParameters() as { user: string; device: string; conn: Connection; deps: SessionDeps };
    this.session = new UserSession(p.user, p.device, p.conn, p.deps);
  }

  /** Sends login_ok and starts the backlog. */
  start(rid: string): Promise<void> {
    return this.session.start(rid);
  }

  frame(f: ClientFrame): Promise<void> {
    return this.session.handle(f);
  }

  push(p: MessagePush): void {
    this.session.push(p);
  }

  event(json: string): void {
    this.session.event(json);
  }

  kick(reason: KickReason): void {
    this.session.kick(reason);
  }

  catchUp(): Promise<number> {
    return this.session.catchUp();
  }

  destroy(): void {
    this.session.dispose();
  }
}
