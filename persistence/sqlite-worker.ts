/**
 * Worker-thread home of the embedded record. better-sqlite3 is synchronous: on the main thread
 * every commit's fsync (synchronous=FULL) would stall every socket of the node. Here it stalls
 * only this thread. Requests arrive as { id, method, args } and are answered in order.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openDatabase } from './database.ts';
import { DuplicateKeyError, MessageStore } from './message-store.ts';

export type StoreCall = { id: number; method: string; args: unknown[] };
export type StoreAnswer = { id: number; ok: unknown } | { id: number; error: { name: string; message: string } };

const port = parentPort;
if (!port) throw new Error('sqlite-worker.ts runs as a worker thread');
const { dataDir } = workerData as { dataDir: string };

const db = await openDatabase({ dataDir });
const store = new MessageStore(db) as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;

port.on('message', (call: StoreCall | 'close') => {
  if (call === 'close') {
    void db.close().finally(() => port.close());
    return;
  }
  const fn = store[call.method];
  const run = typeof fn === 'function' ? fn.apply(store, call.args) : Promise.reject(new Error(`no store method ${call.method}`));
  run.then(
    (ok) => port.postMessage({ id: call.id, ok } satisfies StoreAnswer),
    (e: unknown) => port.postMessage({
      id: call.id,
      error: { name: e instanceof DuplicateKeyError ? 'DuplicateKeyError' : 'Error', message: e instanceof Error ? e.message : String(e) },
    } satisfies StoreAnswer),
  );
});
port.postMessage('ready');
