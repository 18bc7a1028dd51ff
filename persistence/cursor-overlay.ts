/**
 * The pending-cursor overlay: ack/read moves that were accepted but are not yet written
 * (CursorBuffer flushes them lazily) laid over the cursors that the record returns. This is the
 * one place it happens, for both databases alike: `CursorOverlayStore` wraps whichever
 * RecordStore the node runs on (MessageStore on MySQL, WorkerStore on SQLite) and overlays
 * every read that returns cursors — `userConversations`, `usersConversations` and
 * `loadConversation`'s members.
 *
 * The overlaid cursor is exactly what the record will hold once the move is flushed: the
 * larger of the two, and a pending move never past the conversation's last stored seq (the
 * flush clamps there too, see MessageStore.applyCursors).
 */
import type { ConversationRecord, RecordStore, UserConversation } from './message-store.ts';

/** Buffered or being-written cursors of (conv, user), 0 where none. */
export type PendingCursors = (conv: string, user: string) => { ack: number; read: number };

export interface Cursors { ack: number; read: number }

/** A cursor as it reads once the pending move is written: forward only, clamped to `lastSeq`. */
export function overlayCursors(record: Cursors, pending: Cursors, lastSeq: number): Cursors {
  return {
    ack: Math.max(record.ack, Math.min(pending.ack, lastSeq)),
    read: Math.max(record.read, Math.min(pending.read, lastSeq)),
  };
}

const NONE: PendingCursors = () => ({ ack: 0, read: 0 });

/** A RecordStore whose cursor reads include the moves not yet written. Everything else passes through. */
export class CursorOverlayStore implements RecordStore {
  private pending: PendingCursors = NONE;

  constructor(private readonly inner: RecordStore) {}

  /** Set by the owner of the write-behind cursor buffer (PersistencePool). */
  setPendingCursors(fn: PendingCursors | null): void {
    this.pending = fn ?? NONE;
  }

  async userConversations(user: string): Promise<UserConversation[]> {
    return this.overlayUser(user, await this.inner.userConversations(user));
  }

  async usersConversations(users: readonly string[]): Promise<UserConversation[][]> {
    const lists = await this.inner.usersConversations(users);
    return lists.map((list, i) => this.overlayUser(users[i], list));
  }

  private overlayUser(user: string, list: UserConversation[]): UserConversation[] {
    return list.map((c) => {
      const o = overlayCursors({ ack: c.ackSeq, read: c.readSeq }, this.pending(c.conv, user), c.lastSeq);
      return { ...c, ackSeq: o.ack, readSeq: o.read };
    });
  }

  async loadConversation(conv: string): Promise<ConversationRecord | null> {
    const rec = await this.inner.loadConversation(conv);
    if (!rec) return null;
    const members = rec.members.map((m) => {
      const o = overlayCursors({ ack: m.ackSeq ?? 0, read: m.readSeq ?? 0 }, this.pending(conv, m.user), rec.maxSeq);
      return { ...m, ackSeq: o.ack, readSeq: o.read };
    });
    return { ...rec, members };
  }

  insertMessages: RecordStore['insertMessages'] = (rows) => this.inner.insertMessages(rows);
  maxSeq: RecordStore['maxSeq'] = (conv) => this.inner.maxSeq(conv);
  ensureDm: RecordStore['ensureDm'] = (conv, a, b) => this.inner.ensureDm(conv, a, b);
  createGroup: RecordStore['createGroup'] = (conv, owner, members, events) => this.inner.createGroup(conv, owner, members, events);
  addMembers: RecordStore['addMembers'] = (conv, users, events) => this.inner.addMembers(conv, users, events);
  removeMembers: RecordStore['removeMembers'] = (conv, users, events) => this.inner.removeMembers(conv, users, events);
  findSent: RecordStore['findSent'] = (conv, keys) => this.inner.findSent(conv, keys);
  recentSent: RecordStore['recentSent'] = (conv, limit) => this.inner.recentSent(conv, limit);
  history: RecordStore['history'] = (conv, after, limit) => this.inner.history(conv, after, limit);
  getMessage: RecordStore['getMessage'] = (conv, seq) => this.inner.getMessage(conv, seq);
  historyBefore: RecordStore['historyBefore'] = (conv, before, limit) => this.inner.historyBefore(conv, before, limit);
  leaveGroup: RecordStore['leaveGroup'] = (conv, user) => this.inner.leaveGroup(conv, user);
  sharingUsers: RecordStore['sharingUsers'] = (user, others) => this.inner.sharingUsers(user, others);
  recall: RecordStore['recall'] = (conv, seq, now, events) => this.inner.recall(conv, seq, now, events);
  applyCursors: RecordStore['applyCursors'] = (moves) => this.inner.applyCursors(moves);
  ping: RecordStore['ping'] = () => this.inner.ping();
  enableEvents: RecordStore['enableEvents'] = (node) => this.inner.enableEvents(node);
  outboxRead: RecordStore['outboxRead'] = (nodes, limit) => this.inner.outboxRead(nodes, limit);
  outboxDelete: RecordStore['outboxDelete'] = (ids) => this.inner.outboxDelete(ids);
  outboxNodes: RecordStore['outboxNodes'] = () => this.inner.outboxNodes();
  insertFile: RecordStore['insertFile'] = (meta) => this.inner.insertFile(meta);
  readableFile: RecordStore['readableFile'] = (id, user) => this.inner.readableFile(id, user);
}
