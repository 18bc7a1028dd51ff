/**
 * The embedded record seen from the main thread: every RecordStore call is posted to the
 * SQLite worker (sqlite-worker.ts) and answered asynchronously, so commits never block sockets.
 */
import { Worker } from 'node:worker_threads';
import type { StoreAnswer, StoreCall } from './sqlite-worker.ts';
import {
  DuplicateKeyError, batchedUserConversations, type ConversationRecord, type CursorMove, type LeaveResult, type NewMessage, type OutboxEvent, type OutboxRow,
  type RecordStore, type SentRecord, type StoredMessage, type UserConversation,
} from './message-store.ts';
import type { FileMeta } from '../files/file-ref.ts';

export class WorkerStore implements RecordStore {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve(v: unknown): void; reject(e: unknown): void }>();
  private dead: Error | null = null;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (m: StoreAnswer | 'ready') => {
      if (m === 'ready') return;
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      if ('ok' in m) w.resolve(m.ok);
      else w.reject(m.error.name === 'DuplicateKeyError' ? new DuplicateKeyError(m.error.message) : new Error(m.error.message));
    });
    worker.on('error', (e) => this.fail(e));
    worker.on('exit', (code) => this.fail(new Error(`the SQLite worker exited (code ${code})`)));
  }

  /** Starts the worker, which opens and migrates the SQLite file; resolves when it is ready. */
  static async start(dataDir: string): Promise<WorkerStore> {
    // A plain-JS entry that registers the TypeScript loader in the worker, then loads sqlite-worker.ts.
    const worker = new Worker(new URL('./sqlite-worker-boot.mjs', import.meta.url), { workerData: { dataDir } });
    await new Promise<void>((resolve, reject) => {
      const onMsg = (m: unknown) => { if (m === 'ready') { cleanup(); resolve(); } };
      const onErr = (e: Error) => { cleanup(); reject(e); };
      const onExit = (code: number) => { cleanup(); reject(new Error(`the SQLite worker exited during start (code ${code})`)); };
      const cleanup = () => { worker.off('message', onMsg); worker.off('error', onErr); worker.off('exit', onExit); };
      worker.on('message', onMsg).on('error', onErr).on('exit', onExit);
    });
    return new WorkerStore(worker);
  }

  private fail(e: Error): void {
    this.dead ??= e;
    for (const w of this.waiting.values()) w.reject(e);
    this.waiting.clear();
  }

  private call<T>(method: keyof RecordStore, ...args: unknown[]): Promise<T> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ id, method, args } satisfies StoreCall);
    });
  }

  insertMessages(rows: NewMessage[]): Promise<void> { return this.call('insertMessages', rows); }
  loadConversation(conv: string): Promise<ConversationRecord | null> { return this.call('loadConversation', conv); }
  maxSeq(conv: string): Promise<number> { return this.call('maxSeq', conv); }
  ensureDm(conv: string, a: string, b: string): Promise<void> { return this.call('ensureDm', conv, a, b); }
  createGroup(conv: string, owner: string, members: string[], events?: OutboxEvent[]): Promise<void> { return this.call('createGroup', conv, owner, members, events); }
  addMembers(conv: string, users: string[], events?: OutboxEvent[]): Promise<void> { return this.call('addMembers', conv, users, events); }
  removeMembers(conv: string, users: string[], events?: OutboxEvent[]): Promise<void> { return this.call('removeMembers', conv, users, events); }
  findSent(conv: string, keys: Array<{ from: string; cmid: string }>): Promise<SentRecord[]> { return this.call('findSent', conv, keys); }
  recentSent(conv: string, limit: number): Promise<SentRecord[]> { return this.call('recentSent', conv, limit); }
  history(conv: string, after: number, limit: number): Promise<StoredMessage[]> { return this.call('history', conv, after, limit); }
  getMessage(conv: string, seq: number): Promise<StoredMessage | null> { return this.call('getMessage', conv, seq); }
  historyBefore(conv: string, before: number, limit: number): Promise<StoredMessage[]> { return this.call('historyBefore', conv, before, limit); }
  leaveGroup(conv: string, user: string): Promise<LeaveResult> { return this.call('leaveGroup', conv, user); }
  sharingUsers(user: string, others: string[]): Promise<string[]> { return this.call('sharingUsers', user, others); }
  recall(conv: string, seq: number, now: number, events?: OutboxEvent[]): Promise<boolean> { return this.call('recall', conv, seq, now, events); }
  applyCursors(moves: CursorMove[]): Promise<void> { return this.call('applyCursors', moves); }
  ping(): Promise<void> { return this.call('ping'); }
  enableEvents(node: string): Promise<void> { return this.call('enableEvents', node); }
  outboxRead(nodes: string[] | null, limit: number): Promise<OutboxRow[]> { return this.call('outboxRead', nodes, limit); }
  outboxDelete(ids: string[]): Promise<void> { return this.call('outboxDelete', ids); }
  outboxNodes(): Promise<string[]> { return this.call('outboxNodes'); }
  insertFile(meta: FileMeta): Promise<void> { return this.call('insertFile', meta); }
  readableFile(id: string, user: string): Promise<FileMeta | null> { return this.call('readableFile', id, user); }

  usersConversations(users: readonly string[]): Promise<UserConversation[][]> { return this.call('usersConversations', users); }
  private readonly conversationsOf = batchedUserConversations((users) => this.usersConversations(users));
  userConversations(user: string): Promise<UserConversation[]> { return this.conversationsOf.load(user); }

  async close(): Promise<void> {
    if (this.dead) return;
    const exited = new Promise<void>((r) => this.worker.once('exit', () => r()));
    this.worker.postMessage('close');
    await Promise.race([exited, new Promise<void>((r) => setTimeout(r, 5000).unref())]);
    if (!this.dead) await this.worker.terminate();
  }
}
