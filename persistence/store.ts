/**
 * Opens the record a node runs on: MySQL/MariaDB in this thread (mysql2 is asynchronous), or
 * the embedded SQLite file in a worker thread (better-sqlite3 is synchronous, and its fsyncs
 * would otherwise block every socket).
 */
import type { Dialect } from './dialect.ts';
import { openDatabase } from './database.ts';
import { MessageStore, type RecordStore } from './message-store.ts';
import { WorkerStore } from './worker-store.ts';

export interface OpenStore {
  store: RecordStore;
  dialect: Dialect;
  close(): Promise<void>;
}

export async function openStore(opts: { mysqlUrl?: string; dataDir: string }): Promise<OpenStore> {
  if (opts.mysqlUrl) {
    const db = await openDatabase({ mysqlUrl: opts.mysqlUrl, dataDir: opts.dataDir });
    return { store: new MessageStore(db), dialect: 'mysql', close: () => db.close() };
  }
  const ws = await WorkerStore.start(opts.dataDir);
  return { store: ws, dialect: 'sqlite', close: () => ws.close() };
}
