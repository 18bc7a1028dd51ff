/**
 * UserSession: one per connected device. Owns its socket's logged-in life: the rate limiter,
 * per conversation the highest seq pushed, and the pushes awaiting `ack` (retried after
 * IM_ACK_TIMEOUT_MS, up to IM_PUSH_RETRIES times). It dies with its socket.
 *
 * After login it pushes each conversation's backlog (seq > ack_seq). Live messages that arrive
 * for a conversation whose backlog is still loading are held and merged in seq order, so a
 * device sees every message once, in order, even while catching up.
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
import { toMsgFrame } from './conversation.ts';
import type { MessagePush } from './delivery.ts';

/** What a session needs of its socket; the gateway implements it over uWebSockets.js. */
export interface Connection {
  /** Sends one text frame; false when the socket is gone. */
  send(json: string): boolean;
  /** Closes the socket (after any frames already sent). */
  close(code: number, reason: string): void;
}

export interface SessionDeps {
  config: NodeConfig;
  log: Logger;
  metrics: Metrics;
  store: RecordStore;
  conversations: ConversationService;
  moveCursor(conv: string, user: string, ack?: number, read?: number): void;
  /** Buffered (not yet written) ack cursor of this user, so a quick re-login does not redeliver. */
  pendingAck(conv: string, user: string): number;
  /** Delivers a `delivered` receipt of a 1:1 conversation to the other member's devices. */
  deliveredReceipt(conv: string, toUser: string, json: string): void;
  nodeId: string;
}

interface Unacked { json: string; attempts: number; due: number }

/** Most pushes remembered per session for retry; beyond it a message waits for the next login. */
const MAX_UNACKED = 5000;

export class UserSession {
  private readonly limiter: TokenBucket;
  // Allocated on first use: most sockets sit idle, and idle sockets should cost little memory.
  private highestPushed: Map<string, number> | null = null;
  private unacked: Map<string, Map<number, Unacked>> | null = null;
  private unackedCount = 0;
  /** Conversations whose login backlog is loading: live pushes wait here. */
  private held: Map<string, MessagePush[]> | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /**
   * True until login_ok is out. The session is in the directory (so it gets live pushes) before
   * start() has read the user's conversations: what arrives meanwhile waits in `early`.
   */
  private starting = true;
  private early: Array<MessagePush | string> | null = null;

  constructor(readonly user: string, readonly device: string, private readonly conn: Connection, private readonly deps: SessionDeps) {
    this.limiter = new TokenBucket(deps.config.rateMsgs, deps.config.rateMsgs * 2);
  }

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
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.unacked = null;
    this.held = null;
    this.early = null;
  }

  // ---- login ----

  /** Sends login_ok, then the backlog of every conversation. Live pushes may interleave safely. */
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
    const todo = convs.filter((c) => c.lastSeq > Math.max(c.ackSeq, this.deps.pendingAck(c.conv, this.user)));
    if (todo.length > 0) this.held = new Map(todo.map((c) => [c.conv, []]));
    this.out({ t: 'login_ok', rid, user: this.user, device: this.device, node: this.deps.nodeId, heartbeat_ms: config.heartbeatMs });
    // Live pushes that came before login_ok: into `held` for conversations whose backlog is
    // pending (merged in seq order after it), straight out for the others.
    this.starting = false;
    const early = this.early;
    this.early = null;
    if (early) for (const e of early) (typeof e === 'string' ? this.raw(e) : this.push(e));
    for (const c of todo) {
      if (this.closed) return;
      const after = Math.max(c.ackSeq, this.deps.pendingAck(c.conv, this.user));
      try {
        const rows = await store.history(c.conv, after, config.loginPushMax);
        for (const r of rows) this.pushTracked(c.conv, r.seq, JSON.stringify(toMsgFrame(r)), 'backlog');
      } catch (e) {
        this.deps.log.warn({ user: this.user, conv: c.conv, err: String(e) }, 'login backlog failed; client will sync');
      }
      this.releaseHeld(c.conv);
    }
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
        if (r.seq > (this.highestPushed?.get(c.conv) ?? 0)) pushed++;
        this.pushTracked(c.conv, r.seq, JSON.stringify(toMsgFrame(r)), 'backlog');
      }
    }
    return pushed;
  }

  private releaseHeld(conv: string): void {
    const list = this.held?.get(conv);
    this.held?.delete(conv);
    if (!list) return;
    list.sort((a, b) => a.seq - b.seq);
    for (const p of list) this.push(p);
  }

  // ---- pushes ----

  /** A message committed in one of this user's conversations. */
  push(p: MessagePush): void {
    if (this.closed) return;
    if (this.starting) { (this.early ??= []).push(p); return; }
    const held = this.held?.get(p.conv);
    if (held) { held.push(p); return; }
    this.pushTracked(p.conv, p.seq, p.json, 'live');
  }

  /** An unstored event (receipt, recalled, typing). */
  event(json: string): void {
    if (this.closed) return;
    if (this.starting) { (this.early ??= []).push(json); return; }
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
      await this.dispatch(frame);
    } catch (e) {
      if (isProtocolError(e)) this.error(e.code, e.message, rid);
      else {
        this.deps.log.error({ err: e instanceof Error ? e.stack : String(e), t: frame.t }, 'frame handling failed');
        this.error('internal', 'internal error', rid);
      }
    }
  }

  private async dispatch(f: ClientFrame): Promise<void> {
    const svc = this.deps.conversations;
    switch (f.t) {
      case 'login': throw new ProtocolError('bad_request', 'already logged in');
      case 'ping': this.out(f.rid === undefined ? { t: 'pong', ts: Date.now() } : { t: 'pong', rid: f.rid, ts: Date.now() }); return;
      case 'send': return this.send(f);
      case 'ack': return this.ack(f);
      case 'read': await svc.request({ op: 'read', conv: this.conv(f.conv), user: this.user, seq: f.seq }); return;
      case 'typing': await svc.request({ op: 'typing', conv: this.conv(f.conv), user: this.user }); return;
      case 'sync': {
        const r = await svc.request({ op: 'sync', conv: this.conv(f.conv), user: this.user, after: f.after, limit: f.limit ?? 50 });
        this.out({ t: 'batch', rid: f.rid, conv: f.conv, msgs: r.msgs, more: r.more });
        return;
      }
      case 'convs': {
        const list = await this.deps.store.userConversations(this.user).catch(() => { throw unavailable('the message store'); });
        this.out({ t: 'convs', rid: f.rid, convs: list.map((c) => ({ conv: c.conv, last_seq: c.lastSeq, ack_seq: Math.max(c.ackSeq, this.deps.pendingAck(c.conv, this.user)), read_seq: c.readSeq })) });
        return;
      }
      case 'recall':
        await svc.request({ op: 'recall', conv: this.conv(f.conv), user: this.user, seq: f.seq });
        this.out({ t: 'ok', rid: f.rid });
        return;
      case 'group_create': {
        const conv = groupConvId(f.group);
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
        const r = await svc.request({ op: 'group_members', conv: this.conv(f.conv), user: this.user });
        this.out({ t: 'members', rid: f.rid, conv: f.conv, members: r.members });
        return;
      }
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
    if (!this.limiter.take()) throw new ProtocolError('rate_limited', `more than ${this.deps.config.rateMsgs} sends per second`);
    let conv: string;
    if (f.to !== undefined) {
      if (f.to === this.user) throw new ProtocolError('bad_request', 'send: "to" must be another user');
      conv = dmConvId(this.user, f.to);
    } else {
      conv = this.conv(f.conv as string);
    }
    const bodyJson = JSON.stringify(f.body);
    const r = await this.deps.conversations.request({ op: 'send', conv, user: this.user, device: this.device, cmid: f.cmid, kind: f.kind ?? 'text', bodyJson });
    this.out({ t: 'sent', rid: f.rid, conv, cmid: f.cmid, seq: r.seq, mid: r.mid, ts: r.ts });
  }

  private ack(f: ClientFrameOf<'ack'>): void {
    const p = parseConvId(f.conv);
    if (!p) throw new ProtocolError('bad_request', `"${f.conv.slice(0, 80)}" is not a conversation id`);
    this.acked(f.conv, f.seq);
    // The store clamps the cursor to the last stored message when it writes it.
    this.deps.moveCursor(f.conv, this.user, f.seq);
    if (p.kind === 'dm' && (p.a === this.user || p.b === this.user)) {
      const other = p.a === this.user ? p.b : p.a;
      this.deps.deliveredReceipt(f.conv, other, JSON.stringify({ t: 'receipt', conv: f.conv, user: this.user, delivered: f.seq }));
    }
  }
}

function unique(list: string[]): string[] {
  return [...new Set(list)];
}
