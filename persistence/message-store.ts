/**
 * Every query the actors make against the record, typed. SQL is written for both dialects at
 * once (portable spellings; the few that differ come from dialect.ts) and runs on the driver
 * through sql.ts (prepared-statement cache on SQLite, a pool on MySQL), which also says what a
 * driver error means (duplicate key, retryable deadlock).
 *
 * Cost as the record grows: every read of `message` is a seek on one of its keys — the primary
 * key (conversation_id, seq) or uq_message_cmid — that reads only the rows it returns (a
 * conversation's last seq is `ORDER BY seq DESC LIMIT 1` on the primary key, never an aggregate
 * over the conversation). test/unit/store-plans.test.ts holds every query here to that on both
 * databases with their query plans, on a store of 200k messages.
 *
 * Cursor moves not yet written are not this module's business: cursor-overlay.ts lays them
 * over what these queries return.
 */
import DataLoader from 'dataloader';
import type { Database } from './database.ts';
import { insertIgnore, type Dialect } from './dialect.ts';
import type { Row, SqlDb, SqlRunner } from './sql.ts';
import { FILE_KIND, fileIdOfJson, type FileMeta } from '../files/file-ref.ts';

/** A message about to be written by a group commit. */
export interface NewMessage {
  conv: string;
  seq: number;
  mid: string;
  from: string;
  cmid: string;
  kind: string;
  /** The body's JSON text, stored and pushed exactly as received. */
  bodyJson: string;
  ts: number;
  /** Members with no online device when it was committed: a `push.needed` event (only when events are on). */
  pushUsers?: string[];
}

/** An event written to the outbox in the same transaction as the fact it describes (docs/api.md, Events). */
export interface OutboxEvent { type: string; conv: string | null; seq?: number; data?: Record<string, unknown> }

/** An outbox row as the relay reads it; for message events the message's columns come along. */
export interface OutboxRow {
  id: string;
  node: string;
  type: string;
  conv: string | null;
  seq: number | null;
  ts: number;
  /** JSON of the event's own fields, or null. */
  data: string | null;
  msg: { mid: string; from: string; cmid: string; kind: string; bodyJson: string | null } | null;
}

/** A message as read back. `bodyJson` is null once recalled. */
export interface StoredMessage {
  conv: string;
  seq: number;
  mid: string;
  from: string;
  cmid: string;
  kind: string;
  bodyJson: string | null;
  ts: number;
  recalledAt: number | null;
}

export interface MemberRecord { user: string; role: 'owner' | 'member'; /** The member's read cursor in the record. */ readSeq?: number; /** The member's delivery cursor in the record. */ ackSeq?: number }

export interface ConversationRecord {
  id: string;
  kind: 'dm' | 'group';
  ownerId: string | null;
  members: MemberRecord[];
  /** Highest stored seq: the authority for the next seq. */
  maxSeq: number;
}

/** What `leaveGroup` did: `left` false when the user was not a member; `newOwner` when the owner role moved; `ended` when nobody is left. */
export interface LeaveResult { left: boolean; newOwner: string | null; ended: boolean }

export interface UserConversation { conv: string; lastSeq: number; ackSeq: number; readSeq: number }

export interface CursorMove { conv: string; user: string; ack?: number; read?: number }

export interface SentRecord { from: string; cmid: string; seq: number; mid: string; ts: number }

const num = (v: unknown): number => (typeof v === 'number' ? v : Number(v));
const str = (v: unknown): string => (typeof v === 'string' ? v : String(v));

function toStored(r: Row): StoredMessage {
  return {
    conv: str(r.conversation_id),
    seq: num(r.seq),
    mid: str(r.mid),
    from: str(r.sender_id),
    cmid: str(r.cmid),
    kind: str(r.kind),
    bodyJson: r.body == null ? null : str(r.body),
    ts: num(r.created_at),
    recalledAt: r.recalled_at == null ? null : num(r.recalled_at),
  };
}

const MSG_COLS = 'conversation_id, seq, mid, sender_id, cmid, kind, body, created_at, recalled_at';

/**
 * The last stored seq of the conversation named by `convExpr` (a placeholder or a column): one
 * seek to the end of the conversation on the primary key. MAX(seq) is not used: as a correlated
 * subquery or with GROUP BY, a database may read every row of the conversation to compute it.
 */
const lastSeqOf = (convExpr: string): string =>
  `(SELECT ls.seq FROM message ls WHERE ls.conversation_id = ${convExpr} ORDER BY ls.seq DESC LIMIT 1)`;

/** What the actors need of the record, whether it runs in this thread or in a worker. */
export interface RecordStore {
  insertMessages(rows: NewMessage[]): Promise<void>;
  loadConversation(conv: string): Promise<ConversationRecord | null>;
  maxSeq(conv: string): Promise<number>;
  ensureDm(conv: string, a: string, b: string): Promise<void>;
  createGroup(conv: string, owner: string, members: string[], events?: OutboxEvent[]): Promise<void>;
  addMembers(conv: string, users: string[], events?: OutboxEvent[]): Promise<void>;
  removeMembers(conv: string, users: string[], events?: OutboxEvent[]): Promise<void>;
  findSent(conv: string, keys: Array<{ from: string; cmid: string }>): Promise<SentRecord[]>;
  recentSent(conv: string, limit: number): Promise<SentRecord[]>;
  history(conv: string, after: number, limit: number): Promise<StoredMessage[]>;
  /** v1.1: the newest `limit` messages with seq < `before`, newest first. */
  historyBefore(conv: string, before: number, limit: number): Promise<StoredMessage[]>;
  /** v1.1 group_leave: removes the member; hands an owner's role to the longest-standing member. */
  leaveGroup(conv: string, user: string): Promise<LeaveResult>;
  /** v1.1 presence_sub: which of `others` share a conversation with `user` (a group, or a 1:1 with a stored message). */
  sharingUsers(user: string, others: string[]): Promise<string[]>;
  getMessage(conv: string, seq: number): Promise<StoredMessage | null>;
  recall(conv: string, seq: number, now: number, events?: OutboxEvent[]): Promise<boolean>;
  /** The user's conversations; the reads of logins that arrive together go to the record as one (see batchedUserConversations). */
  userConversations(user: string): Promise<UserConversation[]>;
  /** The conversations of each of `users`, in their order, in one read. */
  usersConversations(users: readonly string[]): Promise<UserConversation[][]>;
  applyCursors(moves: CursorMove[]): Promise<void>;
  ping(): Promise<void>;
  /** From now on, facts are written with outbox events attributed to `node` (off until called). */
  enableEvents(node: string): Promise<void>;
  /** The oldest outbox rows (of these nodes; of every node when null), in id order. */
  outboxRead(nodes: string[] | null, limit: number): Promise<OutboxRow[]>;
  /** Removes relayed outbox rows. */
  outboxDelete(ids: string[]): Promise<void>;
  /** Nodes that have rows in the outbox. */
  outboxNodes(): Promise<string[]>;
  /** Files (docs/protocol.md): records an upload's metadata. */
  insertFile(meta: FileMeta): Promise<void>;
  /** The file's metadata when `user` may read it (its uploader, or a member of a conversation with a stored, not recalled message referring to it); null otherwise and for unknown ids. */
  readableFile(id: string, user: string): Promise<FileMeta | null>;
}

/**
 * `userConversations` for a login storm: the users asked for during one event-loop turn (up to
 * 100) are read with one `usersConversations` call, that is one query on MySQL or one round
 * trip to the SQLite worker instead of one per login. A failed read fails every login of its batch.
 */
export function batchedUserConversations(read: (users: readonly string[]) => Promise<UserConversation[][]>): DataLoader<string, UserConversation[]> {
  return new DataLoader<string, UserConversation[]>(read, { cache: false, maxBatchSize: 100, batchScheduleFn: (run) => setImmediate(run) });
}

export class MessageStore implements RecordStore {
  private readonly dialect: Dialect;
  private readonly sql: SqlDb;
  /** The node events are attributed to; null while events are off (no sink: nobody would read them). */
  private eventNode: string | null = null;
  private readonly conversationsOf = batchedUserConversations((users) => this.usersConversations(users));

  constructor(db: Database) {
    this.dialect = db.dialect;
    this.sql = db.sql;
  }

  private all(sql: string, params: unknown[] = []): Promise<Row[]> {
    return this.sql.all(sql, params);
  }

  private run(sql: string, params: unknown[] = []): Promise<number> {
    return this.sql.run(sql, params);
  }

  /**
   * One group commit: a single multi-row INSERT in its own transaction. Either every row is
   * stored or none is; a duplicate (conversation_id, seq) — a stale owner — throws
   * DuplicateKeyError so the caller can split the batch and fence the loser.
   */
  async insertMessages(rows: NewMessage[]): Promise<void> {
    if (rows.length === 0) return;
    const params: unknown[] = [];
    const values: string[] = [];
    for (const m of rows) {
      values.push('(?, ?, ?, ?, ?, ?, ?, ?)');
      params.push(m.conv, m.seq, m.mid, m.from, m.cmid, m.kind, m.bodyJson, m.ts);
    }
    const sql = `INSERT INTO message (conversation_id, seq, mid, sender_id, cmid, kind, body, created_at) VALUES ${values.join(', ')}`;
    // The outbox rows go in the same transaction: one more multi-row INSERT per group commit.
    const events: Array<OutboxEvent & { ts: number }> = [];
    if (this.eventNode !== null) {
      for (const m of rows) {
        events.push({ type: 'message.created', conv: m.conv, seq: m.seq, ts: m.ts });
        if (m.pushUsers && m.pushUsers.length > 0) events.push({ type: 'push.needed', conv: m.conv, seq: m.seq, ts: m.ts, data: { users: m.pushUsers } });
      }
    }
    // Files: `kind:"file"` messages record the file they refer to, in the same transaction.
    const refs: unknown[] = [];
    for (const m of rows) {
      if (m.kind !== FILE_KIND) continue;
      const file = fileIdOfJson(m.bodyJson);
      if (file !== null) refs.push(file, m.conv, m.seq);
    }
    const refSql = refs.length === 0 ? '' : `${insertIgnore(this.dialect)} INTO file_ref (file_id, conversation_id, seq) VALUES ${Array.from({ length: refs.length / 3 }, () => '(?, ?, ?)').join(', ')}`;
    // A deadlock victim was rolled back whole: the same batch can simply run again.
    for (let attempt = 1; ; attempt++) {
      try {
        if (refs.length === 0 && events.length === 0) {
          // One statement is atomic on its own: one round trip instead of three.
          await this.sql.run(sql, params);
        } else {
          await this.sql.transaction(async (tx) => {
            await tx.run(sql, params);
            if (refs.length > 0) await tx.run(refSql, refs);
            await this.writeEvents(events, tx);
          });
        }
        return;
      } catch (e) {
        if (attempt < 4 && this.sql.errorKind(e) === 'transient') continue;
        throw this.classify(e);
      }
    }
  }

  /** Raw driver errors (SqliteError, mysql2's) become DuplicateKeyError when a unique key refused the write. */
  private classify(e: unknown): unknown {
    return this.sql.errorKind(e) === 'duplicate' ? new DuplicateKeyError(e instanceof Error ? e.message : String(e)) : e;
  }

  async loadConversation(conv: string): Promise<ConversationRecord | null> {
    const rows = await this.all('SELECT id, kind, owner_id FROM conversation WHERE id = ?', [conv]);
    const c = rows[0];
    if (!c) return null;
    const [members, maxSeq] = await Promise.all([this.members(conv), this.maxSeq(conv)]);
    return { id: conv, kind: str(c.kind) === 'group' ? 'group' : 'dm', ownerId: c.owner_id == null ? null : str(c.owner_id), members, maxSeq };
  }

  /** Members with their cursors as the record has them. */
  private async members(conv: string): Promise<MemberRecord[]> {
    const rows = await this.all('SELECT user_id, role, ack_seq, read_seq FROM conversation_member WHERE conversation_id = ? ORDER BY user_id', [conv]);
    return rows.map((r) => ({ user: str(r.user_id), role: str(r.role) === 'owner' ? 'owner' : 'member', readSeq: num(r.read_seq ?? 0), ackSeq: num(r.ack_seq ?? 0) }));
  }

  async maxSeq(conv: string): Promise<number> {
    const rows = await this.all(`SELECT ${lastSeqOf('?')} AS m`, [conv]);
    return rows[0]?.m == null ? 0 : num(rows[0].m);
  }

  /** Creates a 1:1 conversation and its two members if it does not exist yet (idempotent). */
  async ensureDm(conv: string, a: string, b: string): Promise<void> {
    await this.sql.transaction(async (tx) => {
      const ig = insertIgnore(this.dialect);
      await tx.run(`${ig} INTO conversation (id, kind, owner_id) VALUES (?, 'dm', NULL)`, [conv]);
      await tx.run(
        `${ig} INTO conversation_member (conversation_id, user_id, role, ack_seq, read_seq) VALUES (?, ?, 'member', 0, 0), (?, ?, 'member', 0, 0)`,
        [conv, a, conv, b]);
    });
  }

  /** Creates a group; throws DuplicateKeyError when the group id is taken. */
  async createGroup(conv: string, owner: string, members: string[], events: OutboxEvent[] = []): Promise<void> {
    try {
      await this.sql.transaction(async (tx) => {
        await tx.run(`INSERT INTO conversation (id, kind, owner_id) VALUES (?, 'group', ?)`, [conv, owner]);
        await this.insertMembers(conv, owner, members, tx);
        await this.writeEvents(events, tx);
      });
    } catch (e) {
      throw this.classify(e);
    }
  }

  async addMembers(conv: string, users: string[], events: OutboxEvent[] = []): Promise<void> {
    await this.withEvents(events, (tx) => this.insertMembers(conv, null, users, tx));
  }

  private async insertMembers(conv: string, owner: string | null, users: string[], tx: SqlRunner): Promise<void> {
    const all = owner ? [{ u: owner, role: 'owner' }, ...users.filter((u) => u !== owner).map((u) => ({ u, role: 'member' }))] : users.map((u) => ({ u, role: 'member' }));
    // Join order (v1.1 group_leave hands the owner role to the longest-standing member): one
    // time for the whole call, so members added together tie and fall back to their user ids.
    const joinedAt = Date.now();
    for (let i = 0; i < all.length; i += 500) {
      const chunk = all.slice(i, i + 500);
      const params: unknown[] = [];
      for (const m of chunk) params.push(conv, m.u, m.role, joinedAt);
      await tx.run(
        `${insertIgnore(this.dialect)} INTO conversation_member (conversation_id, user_id, role, ack_seq, read_seq, joined_at) VALUES ${chunk.map(() => '(?, ?, ?, 0, 0, ?)').join(', ')}`,
        params);
    }
  }

  async removeMembers(conv: string, users: string[], events: OutboxEvent[] = []): Promise<void> {
    if (users.length === 0) return;
    await this.withEvents(events, (tx) => tx.run(
      `DELETE FROM conversation_member WHERE conversation_id = ? AND role <> 'owner' AND user_id IN (${users.map(() => '?').join(', ')})`, [conv, ...users]));
  }

  /**
   * Looks up messages already stored for these (sender, cmid) pairs: the idempotency check. One
   * point lookup on uq_message_cmid per key (UNION ALL): an OR of keys may be planned as a range
   * over the whole conversation on the primary key instead.
   */
  async findSent(conv: string, keys: Array<{ from: string; cmid: string }>): Promise<SentRecord[]> {
    const out: SentRecord[] = [];
    for (let i = 0; i < keys.length; i += 200) {
      const chunk = keys.slice(i, i + 200);
      const params: unknown[] = [];
      for (const k of chunk) params.push(conv, k.from, k.cmid);
      const sql = chunk.map(() => 'SELECT sender_id, cmid, seq, mid, created_at FROM message WHERE conversation_id = ? AND sender_id = ? AND cmid = ?').join(' UNION ALL ');
      for (const r of await this.all(sql, params)) out.push({ from: str(r.sender_id), cmid: str(r.cmid), seq: num(r.seq), mid: str(r.mid), ts: num(r.created_at) });
    }
    return out;
  }

  /** The newest `limit` messages' idempotency keys, to warm a conversation's cmid cache. */
  async recentSent(conv: string, limit: number): Promise<SentRecord[]> {
    const rows = await this.all(`SELECT sender_id, cmid, seq, mid, created_at FROM message WHERE conversation_id = ? ORDER BY seq DESC LIMIT ?`, [conv, limit]);
    return rows.map((r) => ({ from: str(r.sender_id), cmid: str(r.cmid), seq: num(r.seq), mid: str(r.mid), ts: num(r.created_at) }));
  }

  async history(conv: string, after: number, limit: number): Promise<StoredMessage[]> {
    const rows = await this.all(`SELECT ${MSG_COLS} FROM message WHERE conversation_id = ? AND seq > ? ORDER BY seq ASC LIMIT ?`, [conv, after, limit]);
    return rows.map(toStored);
  }

  // ---- v1.1: sync before, group_leave, presence_sub ----

  /** A seek to `before` on the primary key, read backwards: only the rows returned. */
  async historyBefore(conv: string, before: number, limit: number): Promise<StoredMessage[]> {
    const rows = await this.all(`SELECT ${MSG_COLS} FROM message WHERE conversation_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?`, [conv, before, limit]);
    return rows.map(toStored);
  }

  /**
   * Removes `user` from the group in one transaction. When the user was the owner, the
   * longest-standing remaining member (smallest joined_at, then user id: a seek on
   * idx_member_join) becomes owner; when nobody remains, the group has ended: its row stays
   * (so the name stays taken) with no owner and no members, and its messages stay.
   */
  async leaveGroup(conv: string, user: string): Promise<LeaveResult> {
    return this.sql.transaction(async (tx) => {
      const me = await tx.all(`SELECT role FROM conversation_member WHERE conversation_id = ? AND user_id = ?`, [conv, user]);
      if (!me[0]) return { left: false, newOwner: null, ended: false };
      await tx.run(`DELETE FROM conversation_member WHERE conversation_id = ? AND user_id = ?`, [conv, user]);
      const next = await tx.all(`SELECT user_id, role FROM conversation_member WHERE conversation_id = ? ORDER BY joined_at, user_id LIMIT 1`, [conv]);
      if (!next[0]) {
        await tx.run(`UPDATE conversation SET owner_id = NULL WHERE id = ?`, [conv]);
        return { left: true, newOwner: null, ended: true };
      }
      if (str(me[0].role) !== 'owner') return { left: true, newOwner: null, ended: false };
      const heir = str(next[0].user_id);
      await tx.run(`UPDATE conversation_member SET role = 'owner' WHERE conversation_id = ? AND user_id = ?`, [conv, heir]);
      await tx.run(`UPDATE conversation SET owner_id = ? WHERE id = ?`, [heir, conv]);
      return { left: true, newOwner: heir, ended: false };
    });
  }

  /**
   * Which of `others` share a conversation with `user`: a group both are members of, or a 1:1
   * conversation with at least one stored message. One row per other user at most (no DISTINCT
   * to sort): per user a seek on idx_member_user (their memberships), each checked against the
   * caller's row by key (conversation_id, user_id) and, for a 1:1, one probe of its first message;
   * the EXISTS stops at the first shared conversation. Chunks of 100 users (SQLite allows 500
   * terms in one compound SELECT).
   */
  async sharingUsers(user: string, others: string[]): Promise<string[]> {
    const out: string[] = [];
    const list = [...new Set(others)];
    for (let i = 0; i < list.length; i += 100) {
      const chunk = list.slice(i, i + 100);
      const rows = await this.all(
        `SELECT v.u AS user_id FROM (${chunk.map((_, j) => (j === 0 ? 'SELECT ? AS u' : 'SELECT ?')).join(' UNION ALL ')}) v
          WHERE EXISTS (
            SELECT 1 FROM conversation_member o
              JOIN conversation_member me ON me.conversation_id = o.conversation_id AND me.user_id = ?
             WHERE o.user_id = v.u
               AND (o.conversation_id LIKE 'g:%' OR EXISTS (SELECT 1 FROM message ls WHERE ls.conversation_id = o.conversation_id LIMIT 1))
             LIMIT 1)`,
        [...chunk, user]);
      for (const r of rows) out.push(str(r.user_id));
    }
    return out;
  }

  async getMessage(conv: string, seq: number): Promise<StoredMessage | null> {
    const rows = await this.all(`SELECT ${MSG_COLS} FROM message WHERE conversation_id = ? AND seq = ?`, [conv, seq]);
    return rows[0] ? toStored(rows[0]) : null;
  }

  /** Marks a message recalled and drops its body. Returns false when it was already recalled. */
  async recall(conv: string, seq: number, now: number, events: OutboxEvent[] = []): Promise<boolean> {
    let changed = false;
    await this.sql.transaction(async (tx) => {
      changed = (await tx.run('UPDATE message SET recalled_at = ?, body = NULL WHERE conversation_id = ? AND seq = ? AND recalled_at IS NULL', [now, conv, seq])) > 0;
      // Only a recall that happened is a fact: a repeated one writes no event.
      if (changed) await this.writeEvents(events, tx);
    });
    return changed;
  }

  /** The user's conversations with cursors (as the record has them) and the highest stored seq of each. */
  userConversations(user: string): Promise<UserConversation[]> {
    return this.conversationsOf.load(user);
  }

  /** `userConversations` of several users in one query, in the order of `users`. */
  async usersConversations(users: readonly string[]): Promise<UserConversation[][]> {
    if (users.length === 0) return [];
    const rows = await this.all(
      `SELECT cm.user_id AS uid, cm.conversation_id AS conv, cm.ack_seq, cm.read_seq, ${lastSeqOf('cm.conversation_id')} AS last_seq
         FROM conversation_member cm WHERE cm.user_id IN (${users.map(() => '?').join(', ')}) ORDER BY cm.user_id, cm.conversation_id`, [...users]);
    const byUser = new Map<string, UserConversation[]>();
    for (const r of rows) {
      const uid = str(r.uid);
      let list = byUser.get(uid);
      if (!list) byUser.set(uid, (list = []));
      list.push({ conv: str(r.conv), lastSeq: r.last_seq == null ? 0 : num(r.last_seq), ackSeq: num(r.ack_seq), readSeq: num(r.read_seq) });
    }
    // A user twice in one batch (two devices logging in at once) gets a list of its own each time.
    return users.map((u) => [...(byUser.get(u) ?? [])]);
  }

  /**
   * Applies coalesced cursor moves; cursors only ever move forward, and never past the last
   * stored message (a client acking far ahead would otherwise never get later messages
   * redelivered). The last seqs come from a plain SELECT first: inside the UPDATE the same
   * subquery would be a locking read on InnoDB, holding gap locks where the next messages are
   * inserted, and deadlock with group commits. One UPDATE per chunk, joined against the moves
   * as a derived table, so a flush holds the database for one statement, not one per member.
   */
  async applyCursors(moves: CursorMove[]): Promise<void> {
    for (let i = 0; i < moves.length; i += 250) {
      const chunk = moves.slice(i, i + 250);
      const last = await this.lastSeqs([...new Set(chunk.map((m) => m.conv))]);
      const params: unknown[] = [];
      // Coalesced cursor events: the latest value per user and conversation, as written.
      const events: OutboxEvent[] = [];
      for (const m of chunk) {
        const cap = last.get(m.conv) ?? 0;
        const ack = Math.min(m.ack ?? 0, cap);
        const read = Math.min(m.read ?? 0, cap);
        params.push(m.conv, m.user, ack, read);
        if (ack > 0) events.push({ type: 'cursor.delivered', conv: m.conv, data: { user: m.user, seq: ack } });
        if (read > 0) events.push({ type: 'cursor.read', conv: m.conv, data: { user: m.user, seq: read } });
      }
      const sql = this.dialect === 'mysql'
        ? `UPDATE conversation_member cm JOIN (${chunk.map((_, j) => (j === 0 ? 'SELECT ? AS c, ? AS u, ? AS a, ? AS r' : 'SELECT ?, ?, ?, ?')).join(' UNION ALL ')}) v
             ON cm.conversation_id = v.c AND cm.user_id = v.u
           SET cm.ack_seq = GREATEST(cm.ack_seq, v.a), cm.read_seq = GREATEST(cm.read_seq, v.r)`
        : `UPDATE conversation_member SET ack_seq = MAX(ack_seq, v.column3), read_seq = MAX(read_seq, v.column4)
           FROM (VALUES ${chunk.map(() => '(?, ?, ?, ?)').join(', ')}) AS v
           WHERE conversation_member.conversation_id = v.column1 AND conversation_member.user_id = v.column2`;
      if (this.eventNode === null) await this.run(sql, params);
      else await this.withEvents(events, (tx) => tx.run(sql, params));
    }
  }

  /**
   * Highest stored seq of each conversation (a consistent, non-locking read): one seek per
   * conversation on the primary key, all in one statement. Not `MAX(seq) … GROUP BY`: SQLite
   * answers that by reading every row of each conversation (0.08–0.15 s per call at 800k rows),
   * and MariaDB reads them too (a range over the primary key). Callers pass at most 250
   * conversations: SQLite allows 500 terms in one compound SELECT.
   */
  private async lastSeqs(convs: string[]): Promise<Map<string, number>> {
    if (convs.length === 0) return new Map();
    const rows = await this.all(
      `SELECT v.c AS conv, ${lastSeqOf('v.c')} AS m FROM (${convs.map((_, j) => (j === 0 ? 'SELECT ? AS c' : 'SELECT ?')).join(' UNION ALL ')}) v`, convs);
    return new Map(rows.filter((r) => r.m != null).map((r) => [str(r.conv), num(r.m)]));
  }

  async ping(): Promise<void> {
    await this.all('SELECT 1 AS ok');
  }

  // ---- event outbox ----

  async enableEvents(node: string): Promise<void> {
    this.eventNode = node;
  }

  /** Writes outbox rows inside the caller's transaction; nothing while events are off. */
  private async writeEvents(events: ReadonlyArray<OutboxEvent & { ts?: number }>, tx: SqlRunner): Promise<void> {
    if (this.eventNode === null || events.length === 0) return;
    const now = Date.now();
    for (let i = 0; i < events.length; i += 500) {
      const chunk = events.slice(i, i + 500);
      const params: unknown[] = [];
      for (const e of chunk) params.push(this.eventNode, e.type, e.conv, e.seq ?? null, e.ts ?? now, e.data === undefined ? null : JSON.stringify(e.data));
      await tx.run(
        `INSERT INTO event_outbox (node, type, conv, seq, ts, data) VALUES ${chunk.map(() => '(?, ?, ?, ?, ?, ?)').join(', ')}`,
        params);
    }
  }

  /** Runs `write` and the events' outbox rows in one transaction. */
  private async withEvents(events: readonly OutboxEvent[], write: (tx: SqlRunner) => Promise<unknown>): Promise<void> {
    await this.sql.transaction(async (tx) => {
      await write(tx);
      await this.writeEvents(events, tx);
    });
  }

  /**
   * The oldest outbox rows of `nodes` (every node when null), in id order. With nodes given, a
   * row is held back while another node still has an older row of the same conversation (a
   * conversation that moved between nodes): its events never overtake each other.
   */
  async outboxRead(nodes: string[] | null, limit: number): Promise<OutboxRow[]> {
    if (nodes !== null && nodes.length === 0) return [];
    const list = nodes?.map(() => '?').join(', ') ?? '';
    const where = nodes === null ? '' : `WHERE o.node IN (${list})
      AND NOT EXISTS (SELECT 1 FROM event_outbox p WHERE p.conv = o.conv AND p.id < o.id AND p.node NOT IN (${list}))`;
    const rows = await this.all(
      `SELECT o.id, o.node, o.type, o.conv, o.seq, o.ts, o.data, m.mid, m.sender_id, m.cmid, m.kind, m.body
         FROM event_outbox o
         LEFT JOIN message m ON m.conversation_id = o.conv AND m.seq = o.seq AND o.type IN ('message.created', 'push.needed')
         ${where} ORDER BY o.id LIMIT ?`, [...(nodes ?? []), ...(nodes ?? []), limit]);
    return rows.map((r) => ({
      id: str(r.id), node: str(r.node), type: str(r.type), conv: r.conv == null ? null : str(r.conv), seq: r.seq == null ? null : num(r.seq),
      ts: num(r.ts), data: r.data == null ? null : str(r.data),
      msg: r.mid == null ? null : { mid: str(r.mid), from: str(r.sender_id), cmid: str(r.cmid), kind: str(r.kind), bodyJson: r.body == null ? null : str(r.body) },
    }));
  }

  async outboxDelete(ids: string[]): Promise<void> {
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = ids.slice(i, i + 500);
      await this.run(`DELETE FROM event_outbox WHERE id IN (${chunk.map(() => '?').join(', ')})`, chunk);
    }
  }

  async outboxNodes(): Promise<string[]> {
    return (await this.all('SELECT DISTINCT node FROM event_outbox')).map((r) => str(r.node));
  }

  // ---- files ----

  async insertFile(f: FileMeta): Promise<void> {
    await this.run('INSERT INTO file (id, uploader_id, name, size, mime, sha256, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      [f.id, f.uploader, f.name, f.size, f.mime, f.sha256, f.created]);
  }

  /**
   * The file by its primary key, when `user` uploaded it or is a member of a conversation in
   * which a stored, not recalled message refers to it: file_ref by its key prefix (file_id), each
   * message and the reader's membership by their primary keys; EXISTS stops at the first hit.
   */
  async readableFile(id: string, user: string): Promise<FileMeta | null> {
    const rows = await this.all(
      `SELECT f.id, f.uploader_id, f.name, f.size, f.mime, f.sha256, f.created_at FROM file f
        WHERE f.id = ? AND (f.uploader_id = ? OR EXISTS (
          SELECT 1 FROM file_ref r
            JOIN message ON message.conversation_id = r.conversation_id AND message.seq = r.seq
            JOIN conversation_member cm ON cm.conversation_id = r.conversation_id AND cm.user_id = ?
           WHERE r.file_id = f.id AND message.recalled_at IS NULL))`, [id, user, user]);
    const r = rows[0];
    if (!r) return null;
    return { id: str(r.id), uploader: str(r.uploader_id), name: str(r.name), size: num(r.size), mime: str(r.mime), sha256: str(r.sha256), created: num(r.created_at) };
  }
}

/** A unique key refused a write: a duplicate seq (stale owner) or a taken id. */
export class DuplicateKeyError extends Error {
  override name = 'DuplicateKeyError';
}
