/**
 * Conversation: one actor per active conversation, on the conversation's owner node
 * (ConversationActor, which alone holds its ConversationCore). It is the only writer of its
 * conversation: it assigns seq, hands each message to its Persistence writer, answers `sent`
 * only after the commit, then fans out to member devices.
 *
 * Mailbox discipline: comedy's in-memory mode runs a handler as soon as its message arrives,
 * also while earlier handlers await. Two things must not interleave, and are serialized here:
 *  - seq assignment: sends enter the `intake` queue and get their seq synchronously in `pump`,
 *    in arrival order, never across an await;
 *  - membership changes (group_create/add/remove): each waits for the previous one (`adminQueue`),
 *    so the member list changes in the order the record does.
 * Everything else reads state and answers, or changes it synchronously.
 *
 * Ordering and gaplessness:
 *  - seq is assigned synchronously in arrival order, and all writes of a conversation go
 *    through one group-commit writer in seq order, so commits (and fan-out) follow seq;
 *  - if any write fails, the conversation stops assigning seqs, waits for its in-flight writes
 *    to settle, reloads max(seq) from the record and replays the failed sends in order.
 *
 * Idempotency: a window of recent (sender, cmid) → (seq, mid, ts) answers most resends from
 * memory; the unique key (conversation_id, sender_id, cmid) is the real guarantee — a resend
 * that slipped past the window fails its insert, and recovery finds the original row.
 */
import { ProtocolError, unavailable } from '../protocol/errors.ts';
import { parseConvId, type ParsedConv } from '../protocol/ids.ts';
import type { MsgFrame } from '../protocol/frames.ts';
import { encodeGroup, encodeMsg, encodeReceipt, encodeRecalled, encodeTyping, msgFrame } from '../protocol/encode.ts';
import type { GroupOp } from '../protocol/wire.ts';
import type { RecordStore, NewMessage, StoredMessage, SentRecord } from '../persistence/message-store.ts';
import { DuplicateKeyError } from '../persistence/message-store.ts';
import type { ConvRequest, ConvReply, SendResult } from './conversation-protocol.ts';
import type { Delivery } from './delivery.ts';
import type { Logger } from '../core/logger.ts';
import type { SelfActor } from './system.ts';
import type { BeforeSend } from '../events/before-send-hook.ts';

/** Commits messages: the node's Persistence actors (actors/persistence-actor.ts). */
export interface MessageWriter {
  /** Commits one message in its conversation's group-commit writer; resolves once it is durable. */
  write(row: NewMessage): Promise<void>;
}

/** Hands out message ids (core/snowflake.ts). */
export interface IdSource {
  next(): string;
}

/** Takes members' delivery/read cursor moves; they are coalesced and written lazily (persistence/cursor-buffer.ts). */
export interface CursorMoves {
  move(conv: string, user: string, ack?: number, read?: number): void;
}

/** With events on: which users have no online device anywhere (for `push.needed`). */
export interface OfflineLookup {
  offlineUsers(users: readonly string[]): string[];
}

/** The node's services a conversation uses; none of them holds conversation state. */
export interface ConversationDeps {
  store: RecordStore;
  writer: MessageWriter;
  delivery: Delivery;
  mids: IdSource;
  cursors: CursorMoves;
  recallWindowMs: number;
  /** Most members a group may have (IM_GROUP_MAX_MEMBERS). */
  maxGroupMembers: number;
  /** The before-send hook (IM_HOOK_BEFORE_SEND_URL), when one is configured. */
  beforeSend?: BeforeSend;
  /** With events on: who is offline, for `push.needed`. */
  offline?: OfflineLookup;
  log: Logger;
  now?: () => number;
}

/** Largest idempotency window kept in memory per conversation. */
const CMID_WINDOW = 1024;
/** How often a send is replayed after failed writes before the client is told to retry. */
const MAX_ATTEMPTS = 3;

type SendReq = Extract<ConvRequest, { op: 'send' }>;

interface SendJob {
  req: SendReq;
  key: string;
  attempts: number;
  /** Waiting for the before-send hook: no seq is assigned to it, nor to any send behind it. */
  gated: boolean;
  /** The seq of its latest write attempt: replays keep this order. */
  seq: number;
  resolve(r: SendResult): void;
  reject(e: unknown): void;
}

export class ConversationCore {
  readonly parsed: ParsedConv;
  private members = new Map<string, 'owner' | 'member'>();
  /** Members' read and delivery cursors as far as this conversation knows them (receipts announce only forward moves). */
  private readonly readCursors = new Map<string, number>();
  private readonly ackCursors = new Map<string, number>();
  private exists = false;
  private lastSeq = 0;
  private readonly sentWindow = new Map<string, SendResult>();
  private readonly inflight = new Map<string, Promise<SendResult>>();
  private intake: SendJob[] = [];
  private writing = 0;
  /** Set while no seq may be assigned: failed writes wait for in-flight ones, then replay. */
  private recovering: Promise<void> | null = null;
  private recoveryCause: unknown = null;
  private finishRecovery: (() => void) | null = null;
  private failed: SendJob[] = [];
  private loaded: Promise<void> | null = null;

  private drainWaiters: Array<() => void> = [];
  /** Membership changes, one after the other. */
  private adminQueue: Promise<unknown> = Promise.resolve();

  /**
   * `predecessor` is the drain of an earlier core of this conversation on this node (passivated
   * while writes were in flight): loading waits for it, or the two would collide in one batch.
   */
  constructor(readonly id: string, private readonly deps: ConversationDeps, private readonly predecessor: Promise<void> = Promise.resolve()) {
    const p = parseConvId(id);
    if (!p) throw new ProtocolError('bad_request', `"${id}" is not a conversation id`);
    this.parsed = p;
  }

  private now(): number {
    return this.deps.now ? this.deps.now() : Date.now();
  }

  /** Loads members, max(seq) and the recent cmid window; retried on the next request if it fails. */
  load(): Promise<void> {
    if (!this.loaded) {
      this.loaded = this.loadOnce().catch((e) => {
        this.loaded = null;
        this.deps.log.warn({ conv: this.id, err: String(e) }, 'conversation load failed');
        throw unavailable('the message store');
      });
    }
    return this.loaded;
  }

  private async loadOnce(): Promise<void> {
    await this.predecessor;
    const rec = await this.deps.store.loadConversation(this.id);
    this.members.clear();
    if (rec) {
      this.exists = true;
      for (const m of rec.members) {
        this.members.set(m.user, m.role);
        if (m.readSeq) this.readCursors.set(m.user, Math.max(m.readSeq, this.readCursors.get(m.user) ?? 0));
        if (m.ackSeq) this.ackCursors.set(m.user, Math.max(m.ackSeq, this.ackCursors.get(m.user) ?? 0));
      }
      this.lastSeq = rec.maxSeq;
      const recent = await this.deps.store.recentSent(this.id, Math.min(256, CMID_WINDOW));
      for (const r of recent.reverse()) this.remember(r);
    } else if (this.parsed.kind === 'dm') {
      // A 1:1 conversation exists implicitly; its row is written with the first message.
      this.members.set(this.parsed.a, 'member');
      this.members.set(this.parsed.b, 'member');
      this.lastSeq = await this.deps.store.maxSeq(this.id);
    }
  }

  get memberList(): string[] {
    return [...this.members.keys()];
  }

  get idle(): boolean {
    return this.drained && this.inflight.size === 0;
  }

  /** Nothing of it is in the record and nothing is under way: keeping its actor alive would only cost memory. */
  get vacant(): boolean {
    return !this.exists && this.idle;
  }

  /** No send queued, being written or waiting for a replay. */
  private get drained(): boolean {
    return this.intake.length === 0 && this.writing === 0 && !this.recovering && this.failed.length === 0;
  }

  /** Resolves once every send accepted so far has been committed or answered with an error. */
  whenDrained(): Promise<void> {
    if (this.drained) return Promise.resolve();
    return new Promise((r) => this.drainWaiters.push(r));
  }

  private checkDrained(): void {
    if (this.drainWaiters.length === 0 || !this.drained) return;
    const w = this.drainWaiters;
    this.drainWaiters = [];
    for (const r of w) r();
  }

  async handle<R extends ConvRequest>(req: R): Promise<ConvReply<R['op']>> {
    await this.load();
    return (await this.dispatch(req)) as ConvReply<R['op']>;
  }

  private async dispatch(req: ConvRequest): Promise<ConvReply> {
    switch (req.op) {
      case 'send': return this.send(req);
      case 'sync': return req.before !== undefined ? this.syncBefore(req.user, req.before, req.limit) : this.sync(req.user, req.after, req.limit);
      case 'recall': return this.recall(req.user, req.seq);
      case 'cursor': return this.cursor(req.user, req.ack ?? 0, req.read ?? 0);
      case 'typing': return this.typing(req.user);
      case 'group_create': return this.serially(() => this.groupCreate(req.user, req.members));
      case 'group_add': return this.serially(() => this.groupAdd(req.user, req.members));
      case 'group_remove': return this.serially(() => this.groupRemove(req.user, req.members));
      case 'group_members': return this.membersOf(req.user);
      case 'group_leave': return this.serially(() => this.groupLeave(req.user));
      case 'api_history': return this.apiHistory(req.after, req.before, req.limit);
      case 'api_recall': return this.apiRecall(req.by, req.seq);
      case 'api_group_create': return this.serially(() => this.groupCreate(req.owner, req.members, req.by));
      case 'api_members': return this.serially(() => this.apiMembers(req.by, req.add, req.remove));
      case 'api_group': return this.apiGroup();
    }
  }

  private serially<T>(op: () => Promise<T>): Promise<T> {
    const run = this.adminQueue.then(op, op);
    this.adminQueue = run.catch(() => undefined);
    return run;
  }

  private requireMember(user: string): true {
    if (!this.exists && this.parsed.kind === 'group') throw new ProtocolError('not_found', `conversation ${this.id} does not exist`);
    if (!this.members.has(user)) throw new ProtocolError('forbidden', `not a member of ${this.id}`);
    return true;
  }

  // ---- send ----

  private send(req: SendReq): Promise<SendResult> {
    this.requireMember(req.user);
    const key = `${req.user}\u0000${req.cmid}`;
    const done = this.sentWindow.get(key);
    if (done) return Promise.resolve(done);
    const running = this.inflight.get(key);
    if (running) return running; // a resend while the original is still committing
    const hook = this.deps.beforeSend;
    const p = new Promise<SendResult>((resolve, reject) => {
      const job: SendJob = { req, key, attempts: 0, seq: 0, resolve, reject, gated: hook !== undefined };
      this.intake.push(job);
      if (hook) this.runHook(job, hook);
    });
    this.inflight.set(key, p);
    const forget = () => { if (this.inflight.get(key) === p) this.inflight.delete(key); };
    p.then(forget, forget);
    this.pump();
    return p;
  }

  /** Assigns seqs and starts writes for queued sends, unless a recovery is under way. */
  private pump(): void {
    if (this.recovering) return;
    if (!this.exists && this.intake.length > 0) {
      this.recovering = this.createDm().finally(() => { this.recovering = null; this.pump(); this.checkDrained(); });
      return;
    }
    // Seqs go in arrival order: a send waiting for the hook holds back the ones behind it.
    let ready = 0;
    while (ready < this.intake.length && !this.intake[ready].gated) ready++;
    const jobs = this.intake.splice(0, ready);
    for (const job of jobs) this.startWrite(job);
  }

  /** Asks the before-send hook about a queued send: allowed (maybe with a new body) or refused. */
  private runHook(job: SendJob, hook: BeforeSend): void {
    const { req } = job;
    const settle = (refusal: ProtocolError | null, bodyJson?: string) => {
      job.gated = false;
      if (refusal) {
        const i = this.intake.indexOf(job);
        if (i >= 0) this.intake.splice(i, 1);
        job.reject(refusal);
      } else if (bodyJson !== undefined) {
        job.req = { ...req, bodyJson };
      }
      this.pump();
      this.checkDrained();
    };
    hook({ from: req.user, conv: this.id, kind: req.kind, bodyJson: req.bodyJson }).then(
      (v) => {
        if (v.action === 'reject') settle(new ProtocolError('forbidden', v.reason));
        else if (v.action === 'unavailable') settle(unavailable('the before-send hook'));
        else settle(null, v.action === 'replace' ? v.bodyJson : undefined);
      },
      () => settle(unavailable('the before-send hook')),
    );
  }

  private async createDm(): Promise<void> {
    if (this.parsed.kind !== 'dm') return;
    try {
      await this.deps.store.ensureDm(this.id, this.parsed.a, this.parsed.b);
      this.exists = true;
    } catch (e) {
      this.deps.log.warn({ conv: this.id, err: String(e) }, 'creating 1:1 conversation failed');
      const jobs = this.intake;
      this.intake = [];
      for (const j of jobs) j.reject(unavailable('the message store'));
    }
  }

  private startWrite(job: SendJob): void {
    const { req } = job;
    const seq = ++this.lastSeq;
    job.seq = seq;
    const row: NewMessage = { conv: this.id, seq, mid: this.deps.mids.next(), from: req.user, cmid: req.cmid, kind: req.kind, bodyJson: req.bodyJson, ts: this.now() };
    if (this.deps.offline) row.pushUsers = this.deps.offline.offlineUsers(this.memberList.filter((u) => u !== req.user));
    this.writing++;
    this.deps.writer.write(row).then(
      () => {
        this.writing--;
        const result: SendResult = { seq, mid: row.mid, ts: row.ts };
        this.remember({ from: req.user, cmid: req.cmid, ...result });
        job.resolve(result);
        this.afterCommit(row, req.device);
        this.maybeFinishRecovery();
        this.checkDrained();
      },
      (e: unknown) => {
        this.writing--;
        job.attempts++;
        this.failed.push(job);
        if (!(e instanceof DuplicateKeyError)) this.deps.log.warn({ conv: this.id, seq, err: String(e) }, 'message write failed');
        this.beginRecovery(e);
        // This may have been the last write in flight of a recovery already begun.
        this.maybeFinishRecovery();
      },
    );
  }

  private afterCommit(row: NewMessage, device: string): void {
    // Sending moves the sender's own cursors to the message.
    this.deps.cursors.move(this.id, row.from, row.seq, row.seq);
    if (row.seq > (this.readCursors.get(row.from) ?? 0)) this.readCursors.set(row.from, row.seq);
    const json = msgJson(row);
    this.deps.delivery.message(this.memberList, { conv: this.id, seq: row.seq, json }, { user: row.from, device });
  }

  private beginRecovery(cause: unknown): void {
    if (this.recovering) return;
    let finish!: () => void;
    this.recovering = new Promise<void>((r) => { finish = r; });
    this.recoveryCause = cause;
    this.finishRecovery = finish;
  }

  /** Once every in-flight write has settled, reload the seq and replay what failed, in order. */
  private maybeFinishRecovery(): void {
    if (!this.finishRecovery || this.writing > 0) return;
    const finish = this.finishRecovery;
    this.finishRecovery = null;
    void this.recover().finally(() => {
      this.recovering = null;
      finish();
      this.pump();
      this.checkDrained();
    });
  }

  private async recover(): Promise<void> {
    // Replays keep their original seq order, ahead of sends that arrived meanwhile.
    const ordered = this.failed.sort((a, b) => a.seq - b.seq);
    this.failed = [];
    try {
      this.lastSeq = await this.deps.store.maxSeq(this.id);
      const found = await this.deps.store.findSent(this.id, ordered.map((j) => ({ from: j.req.user, cmid: j.req.cmid })));
      const byKey = new Map(found.map((f) => [`${f.from}\u0000${f.cmid}`, f]));
      const replay: SendJob[] = [];
      for (const j of ordered) {
        const f = byKey.get(j.key);
        if (f) {
          this.remember(f);
          j.resolve({ seq: f.seq, mid: f.mid, ts: f.ts });
        } else if (j.attempts >= MAX_ATTEMPTS || !(this.recoveryCause instanceof DuplicateKeyError)) {
          // The store itself failed: tell the client to resend later with the same cmid.
          j.reject(unavailable('the message store'));
        } else {
          replay.push(j);
        }
      }
      this.intake = [...replay, ...this.intake];
    } catch (e) {
      this.deps.log.warn({ conv: this.id, err: String(e) }, 'conversation recovery failed');
      for (const j of ordered) j.reject(unavailable('the message store'));
      // lastSeq may now be stale: a write from it fails on the (conversation_id, seq) key and
      // recovers again, and the next request reloads the conversation.
      this.loaded = null;
    }
  }

  private remember(r: SentRecord): void {
    const key = `${r.from}\u0000${r.cmid}`;
    this.sentWindow.delete(key);
    this.sentWindow.set(key, { seq: r.seq, mid: r.mid, ts: r.ts });
    if (this.sentWindow.size > CMID_WINDOW) {
      const oldest = this.sentWindow.keys().next().value;
      if (oldest !== undefined) this.sentWindow.delete(oldest);
    }
  }

  // ---- other operations ----

  private async sync(user: string, after: number, limit: number): Promise<{ msgs: MsgFrame[]; more: boolean }> {
    this.requireMember(user);
    const rows = await this.deps.store.history(this.id, after, limit + 1).catch(() => { throw unavailable('the message store'); });
    const more = rows.length > limit;
    return { msgs: rows.slice(0, limit).map(toMsgFrame), more };
  }

  private async recall(user: string, seq: number): Promise<Record<string, never>> {
    this.requireMember(user);
    const m = await this.deps.store.getMessage(this.id, seq).catch(() => { throw unavailable('the message store'); });
    if (!m) throw new ProtocolError('not_found', `no message ${seq} in ${this.id}`);
    if (m.from !== user) throw new ProtocolError('forbidden', 'only the sender may recall a message');
    if (this.now() - m.ts > this.deps.recallWindowMs) throw new ProtocolError('forbidden', 'the recall window has passed');
    if (m.recalledAt === null) {
      const changed = await this.deps.store.recall(this.id, seq, this.now(), [{ type: 'message.recalled', conv: this.id, seq, data: { by: user } }]).catch(() => { throw unavailable('the message store'); });
      if (changed) this.deps.delivery.event(this.memberList, encodeRecalled({ conv: this.id, seq, by: user }));
    }
    return {};
  }

  /**
   * A member's merged `ack`/`read`. Each cursor is clamped to the last stored seq and moves only
   * forward; only a real move is written and announced: `delivered` to the other member of a 1:1
   * conversation, `read` to every other member. A non-member (also of a group that does not
   * exist) gets `forbidden` and moves nothing.
   */
  private cursor(user: string, ack: number, read: number): Record<string, never> {
    if (!this.members.has(user) || (!this.exists && this.parsed.kind === 'group')) throw new ProtocolError('forbidden', `not a member of ${this.id}`);
    const ackTo = Math.min(ack, this.lastSeq);
    const readTo = Math.min(read, this.lastSeq);
    const ackMoved = ackTo > (this.ackCursors.get(user) ?? 0);
    const readMoved = readTo > (this.readCursors.get(user) ?? 0);
    if (!ackMoved && !readMoved) return {};
    if (ackMoved) this.ackCursors.set(user, ackTo);
    if (readMoved) this.readCursors.set(user, readTo);
    this.deps.cursors.move(this.id, user, ackMoved ? ackTo : undefined, readMoved ? readTo : undefined);
    if (ackMoved && this.parsed.kind === 'dm') {
      const other = this.parsed.a === user ? this.parsed.b : this.parsed.a;
      this.deps.delivery.event([other], encodeReceipt({ conv: this.id, user, delivered: ackTo }));
    }
    if (readMoved) this.deps.delivery.event(this.memberList, encodeReceipt({ conv: this.id, user, read: readTo }), user);
    return {};
  }

  /** Relays a member's typing to the other members (sessions throttle it before it comes here). */
  private typing(user: string): Record<string, never> {
    this.requireMember(user);
    this.deps.delivery.event(this.memberList, encodeTyping({ conv: this.id, user }), user);
    return {};
  }

  private checkGroupSize(adding: readonly string[]): void {
    const after = new Set([...this.members.keys(), ...adding]).size;
    if (after > this.deps.maxGroupMembers) throw new ProtocolError('bad_request', `a group has at most ${this.deps.maxGroupMembers} members (${this.id} would have ${after})`);
  }

  /** `user` becomes the owner; `by` is who acted (the server API may create a group for another owner). */
  private async groupCreate(user: string, members: string[], by = user): Promise<Record<string, never>> {
    if (this.parsed.kind !== 'group') throw new ProtocolError('bad_request', 'group_create makes groups only');
    if (this.exists) throw new ProtocolError('conflict', `group ${this.id} already exists`);
    this.checkGroupSize([user, ...members]);
    try {
      await this.deps.store.createGroup(this.id, user, members, [{ type: 'group.created', conv: this.id, data: { by, members: [user, ...members.filter((m) => m !== user)] } }]);
    } catch (e) {
      if (e instanceof DuplicateKeyError) throw new ProtocolError('conflict', `group ${this.id} already exists`);
      throw unavailable('the message store');
    }
    this.exists = true;
    this.members.set(user, 'owner');
    for (const m of members) if (m !== user) this.members.set(m, 'member');
    this.announceGroup(this.memberList, 'created', this.memberList, by);
    return {};
  }

  private requireOwner(user: string): void {
    this.requireMember(user);
    if (this.parsed.kind !== 'group') throw new ProtocolError('bad_request', 'members of a 1:1 conversation cannot change');
    if (this.members.get(user) !== 'owner') throw new ProtocolError('forbidden', 'only the group owner may change members');
  }

  private async groupAdd(user: string, members: string[]): Promise<Record<string, never>> {
    this.requireOwner(user);
    this.checkGroupSize(members);
    await this.deps.store.addMembers(this.id, members, [{ type: 'group.members_added', conv: this.id, data: { by: user, members } }]).catch(() => { throw unavailable('the message store'); });
    const added = members.filter((m) => !this.members.has(m));
    for (const m of added) this.members.set(m, 'member');
    this.announceGroup(this.memberList, 'added', added, user);
    return {};
  }

  private async groupRemove(user: string, members: string[]): Promise<Record<string, never>> {
    this.requireOwner(user);
    const removable = members.filter((m) => this.members.get(m) === 'member');
    await this.deps.store.removeMembers(this.id, removable, [{ type: 'group.members_removed', conv: this.id, data: { by: user, members: removable } }]).catch(() => { throw unavailable('the message store'); });
    const before = this.memberList;
    for (const m of removable) this.members.delete(m);
    this.announceGroup(before, 'removed', removable, user);
    return {};
  }

  // ---- v1.1: sync before, group_leave, group pushes, owner in group_members ----

  /** The `limit` messages just below `before`, ascending; `more` when older ones exist. */
  private async syncBefore(user: string, before: number, limit: number): Promise<{ msgs: MsgFrame[]; more: boolean }> {
    this.requireMember(user);
    const rows = await this.deps.store.historyBefore(this.id, before, limit + 1).catch(() => { throw unavailable('the message store'); });
    const more = rows.length > limit;
    return { msgs: rows.slice(0, limit).reverse().map(toMsgFrame), more };
  }

  private membersOf(user: string): { members: string[]; owner?: string } {
    this.requireMember(user);
    const owner = this.groupOwner();
    return owner === null ? { members: this.memberList } : { members: this.memberList, owner };
  }

  private groupOwner(): string | null {
    for (const [u, role] of this.members) if (role === 'owner') return u;
    return null;
  }

  /** `{"t":"group",…}` to `to` (every member the change concerns, the acting one and those it removes included). */
  private announceGroup(to: readonly string[], op: GroupOp, members: string[], by: string): void {
    if (members.length === 0 || to.length === 0) return;
    this.deps.delivery.event(to, encodeGroup({ conv: this.id, op, members, by }));
  }

  /**
   * A member leaves. The record decides the owner hand-over (earliest join, then smallest user
   * id: MessageStore.leaveGroup reads the join order); the last one out ends the group: its row
   * and messages stay, so the name stays taken, and nobody is a member.
   */
  private async groupLeave(user: string): Promise<Record<string, never>> {
    if (this.parsed.kind !== 'group') throw new ProtocolError('bad_request', 'only a group can be left');
    this.requireMember(user);
    const r = await this.deps.store.leaveGroup(this.id, user).catch(() => { throw unavailable('the message store'); });
    const before = this.memberList;
    this.members.delete(user);
    if (r.newOwner !== null && this.members.has(r.newOwner)) this.members.set(r.newOwner, 'owner');
    this.announceGroup(before, 'left', [user], user);
    if (r.newOwner !== null) this.announceGroup(before, 'owner', [r.newOwner], user);
    return {};
  }

  // ---- server API (docs/api.md): a trusted backend, no membership checks ----

  private requireExists(): void {
    if (!this.exists) throw new ProtocolError('not_found', `conversation ${this.id} does not exist`);
  }

  private requireGroup(): void {
    this.requireExists();
    if (this.parsed.kind !== 'group') throw new ProtocolError('bad_request', `${this.id} is not a group`);
  }

  /** A page of history: after `after` ascending, or (with `before`) the `limit` messages just below `before`. `more`: messages exist further in the paging direction. */
  private async apiHistory(after: number | undefined, before: number | undefined, limit: number): Promise<{ msgs: MsgFrame[]; more: boolean }> {
    this.requireExists();
    const rows = await (before === undefined ? this.deps.store.history(this.id, after ?? 0, limit + 1) : this.deps.store.historyBefore(this.id, before, limit + 1))
      .catch(() => { throw unavailable('the message store'); });
    const page = rows.slice(0, limit);
    // historyBefore reads newest first.
    if (before !== undefined) page.reverse();
    return { msgs: page.map(toMsgFrame), more: rows.length > limit };
  }

  /** Recalls any message, whoever sent it and however old; members get `recalled` with `by`. */
  private async apiRecall(by: string, seq: number): Promise<Record<string, never>> {
    this.requireExists();
    const m = await this.deps.store.getMessage(this.id, seq).catch(() => { throw unavailable('the message store'); });
    if (!m) throw new ProtocolError('not_found', `no message ${seq} in ${this.id}`);
    if (m.recalledAt === null) {
      const changed = await this.deps.store.recall(this.id, seq, this.now(), [{ type: 'message.recalled', conv: this.id, seq, data: { by } }]).catch(() => { throw unavailable('the message store'); });
      if (changed) this.deps.delivery.event(this.memberList, encodeRecalled({ conv: this.id, seq, by }));
    }
    return {};
  }

  /** Adds `add`, then removes `remove`; the owner cannot be removed (nothing changes then). Pushes `group` like group_add/group_remove. */
  private async apiMembers(by: string, add: string[], remove: string[]): Promise<{ members: string[] }> {
    this.requireGroup();
    const owner = this.groupOwner();
    if (owner !== null && remove.includes(owner)) throw new ProtocolError('bad_request', `the owner (${owner}) cannot be removed`);
    const added = add.filter((m) => !this.members.has(m));
    if (added.length > 0) {
      this.checkGroupSize(added);
      await this.deps.store.addMembers(this.id, added, [{ type: 'group.members_added', conv: this.id, data: { by, members: added } }]).catch(() => { throw unavailable('the message store'); });
      for (const m of added) this.members.set(m, 'member');
      this.announceGroup(this.memberList, 'added', added, by);
    }
    const removable = remove.filter((m) => this.members.get(m) === 'member');
    if (removable.length > 0) {
      await this.deps.store.removeMembers(this.id, removable, [{ type: 'group.members_removed', conv: this.id, data: { by, members: removable } }]).catch(() => { throw unavailable('the message store'); });
      const before = this.memberList;
      for (const m of removable) this.members.delete(m);
      this.announceGroup(before, 'removed', removable, by);
    }
    return { members: this.memberList.sort() };
  }

  private apiGroup(): { owner: string | null; members: string[] } {
    this.requireGroup();
    return { owner: this.groupOwner(), members: this.memberList.sort() };
  }
}

/** The `msg` frame for a freshly committed row, built once per message (the body is spliced in as stored). */
export function msgJson(r: NewMessage): string {
  return encodeMsg(r, r.bodyJson);
}

/** The `msg` frame of a stored message as JSON text (login backlog, catch-up): the stored body is spliced in, not parsed. */
export function storedMsgJson(m: StoredMessage): string {
  return encodeMsg(m, m.recalledAt !== null ? null : m.bodyJson);
}

/** The `msg` frame of a stored message as an object (`batch` answers); same frame as storedMsgJson. */
export function toMsgFrame(m: StoredMessage): MsgFrame {
  return msgFrame(m, m.recalledAt !== null ? null : m.bodyJson);
}

/** What a ConversationActor is spawned with: its id and the node's services (no state). */
export interface ConversationParams {
  id: string;
  deps: ConversationDeps;
  /** Settles when an earlier actor of this conversation on this node has finished its writes. */
  predecessor: Promise<void>;
}

/** An answer plus whether the conversation turned out not to exist (its actor may go at once). */
export interface ConversationAnswer<R = ConvReply> { reply: R; vacant: boolean }

/**
 * The comedy actor of one conversation: the only holder of its ConversationCore. Requests come
 * as messages (`request`); a refused request rejects with its ProtocolError, which the NATS edge
 * turns into a value for a remote caller. `destroy` (passivation) resolves once every accepted
 * send has been committed or answered.
 */
export class ConversationActor {
  private core!: ConversationCore;

  initialize(self: SelfActor): void {
    const p = self.getCustomParameters() as ConversationParams;
    this.core = new ConversationCore(p.id, p.deps, p.predecessor);
  }

  async request(req: ConvRequest): Promise<ConversationAnswer> {
    const reply = await this.core.handle(req);
    return { reply, vacant: this.core.vacant };
  }

  /** Whether nothing of the conversation exists and nothing is under way (asked after a refusal). */
  vacant(): boolean {
    return this.core.vacant;
  }

  destroy(): Promise<void> {
    return this.core.whenDrained();
  }
}
