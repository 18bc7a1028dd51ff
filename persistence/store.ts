/**
 * Opens the record a node runs on: MySQL/MariaDB in this thread (mysql2 is asynchronous), or
 * the embedded SQLite file in a worker thread (better-sqlite3 is synchronous, and its fsyncs
 * would otherwise block every socket). Either way the node gets it behind the same
 * pending-cursor overlay (cursor-overlay.ts), so cursor reads behave the same on both.
 */
import { CursorOverlayStore } from './cursor-overlay.ts';
import type { Dialect } from './dialect.ts';
import { openDatabase } from './database.ts';
import { MessageStore } from './message-store.ts';
import { WorkerStore } from './worker-store.ts';

export interface OpenStore {
  store: CursorOverlayStore;
  dialect: Dialect;
  close(): Promise<void>;
}

export async function openStore(opts: { mysqlUrl?: string; dataDir: string }): Promise<OpenStore> {
  if (opts.mysqlUrl) {
    const db = await openDatabase({ mysqlUrl: opts.mysqlUrl, dataDir: opts.dataDir });
    return { store: new CursorOverlayStore(new MessageStore(db)), dialect: 'mysql', close: () => db.close() };
  }
  const ws = await WorkerStore.start(opts.dataDir);
  return { store: new CursorOverlayStore(ws), dialect: 'sqlite', close: () => ws.close() };
}
