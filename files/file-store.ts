/**
 * Where the bytes of uploaded files live (docs/protocol.md, Files). The record holds their
 * metadata (MessageStore.insertFile); a FileStore holds the bytes under the file's id:
 *  - FsFileStore: the embedded node (and a single node on MySQL): files under IM_DATA_DIR/files,
 *    spread over subdirectories by the id's first two characters;
 *  - NatsFileStore: a cluster: the NATS JetStream object store bucket `im-files`, so every node
 *    serves every file.
 *
 * `put` is all or nothing: nothing is visible under the id until every byte is stored, and an
 * upload whose chunks fail (the client went away, the upload grew too large) leaves nothing
 * behind — the file store writes to a temporary name and renames it when complete; the object
 * store writes the object's metadata last and purges the chunks of a failed put.
 */
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { NatsConnection, ObjectStore } from 'nats';
import { StorageType } from 'nats';

/** Bytes `start` to `end`, both included (as in an HTTP Range). */
export interface ByteRange { start: number; end: number }

export interface FileStore {
  /** Stores `chunks` under `id`; visible only once complete, nothing left behind when `chunks` throws. */
  put(id: string, chunks: AsyncIterable<Uint8Array>): Promise<void>;
  /** The bytes of `id` (only `range` of them when given), or null when nothing is stored under it. */
  get(id: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array> | null>;
  /** Removes `id`; removing what is not there is no error. */
  delete(id: string): Promise<void>;
}

/** Files under a directory: `<dir>/<id[0..2]>/<id>`, uploads in progress under `<dir>/tmp`. */
export class FsFileStore implements FileStore {
  private readonly tmpDir: string;

  private constructor(readonly dir: string) {
    this.tmpDir = join(dir, 'tmp');
  }

  /** Creates the directories and removes uploads a crashed process left half-written. */
  static async open(dir: string): Promise<FsFileStore> {
    const s = new FsFileStore(dir);
    await mkdir(s.tmpDir, { recursive: true });
    for (const name of await readdir(s.tmpDir)) await rm(join(s.tmpDir, name), { force: true });
    return s;
  }

  pathOf(id: string): string {
    return join(this.dir, id.slice(0, 2), id);
  }

  async put(id: string, chunks: AsyncIterable<Uint8Array>): Promise<void> {
    const tmp = join(this.tmpDir, `${id}.${randomBytes(6).toString('hex')}.part`);
    const fh = await open(tmp, 'wx');
    let closed = false;
    try {
      // Each write is awaited: the upload is read no faster than the disk takes it.
      for await (const c of chunks) await fh.write(c);
      await fh.sync();
      await fh.close();
      closed = true;
      await mkdir(join(this.dir, id.slice(0, 2)), { recursive: true });
      await rename(tmp, this.pathOf(id));
    } catch (e) {
      if (!closed) await fh.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
  }

  async get(id: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array> | null> {
    const path = this.pathOf(id);
    try {
      await stat(path);
    } catch {
      return null;
    }
    return createReadStream(path, range ? { start: range.start, end: range.end, highWaterMark: 64 * 1024 } : { highWaterMark: 64 * 1024 });
  }

  async delete(id: string): Promise<void> {
    await unlink(this.pathOf(id)).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'ENOENT') throw e; });
  }
}

export const FILES_BUCKET = 'im-files';
/** Chunks (128 KiB each, the object store's default) fetched at a time by a download. */
const CHUNKS_PER_FETCH = 8;

/** Files in the JetStream object store bucket `im-files` (created when missing). */
export class NatsFileStore implements FileStore {
  private os: Promise<ObjectStore> | null = null;

  constructor(private readonly nc: NatsConnection, private readonly opts: { replicas?: number; timeoutMs?: number } = {}) {}

  private bucket(): Promise<ObjectStore> {
    // Several nodes may create the bucket at once; a failed attempt is retried on the next call.
    this.os ??= this.nc.jetstream({ timeout: this.opts.timeoutMs ?? 10_000 }).views
      .os(FILES_BUCKET, { storage: StorageType.File, replicas: this.opts.replicas ?? 1 })
      .catch((e: unknown) => { this.os = null; throw e; });
    return this.os;
  }

  async put(id: string, chunks: AsyncIterable<Uint8Array>): Promise<void> {
    const os = await this.bucket();
    const it = chunks[Symbol.asyncIterator]();
    // Pulled by the object store as it publishes: an error from `chunks` fails the put, which
    // then purges the chunks it had published (the object's metadata is written only at the end).
    const rs = new ReadableStream<Uint8Array>({
      async pull(c) {
        const r = await it.next();
        if (r.done) c.close();
        else c.enqueue(r.value);
      },
      async cancel() {
        await it.return?.();
      },
    });
    await os.put({ name: id }, rs, { timeout: this.opts.timeoutMs ?? 10_000 });
  }

  /**
   * Reads the object's chunks with an ordered pull consumer, CHUNKS_PER_FETCH at a time and only
   * as the caller takes them: a slow download holds about 1 MiB, not the whole object (the
   * object store's own `get` pushes every chunk at once). A range still reads the chunks before
   * it (their stream sequences are not known up front) but drops them.
   */
  async get(id: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array> | null> {
    const os = await this.bucket();
    const info = await os.info(id);
    if (!info || info.deleted || info.options?.link) return null;
    return this.read(info.nuid, info.chunks, info.size, range);
  }

  private async *read(nuid: string, chunks: number, size: number, range?: ByteRange): AsyncGenerator<Uint8Array> {
    if (size === 0 || chunks === 0) return;
    const js = this.nc.jetstream({ timeout: this.opts.timeoutMs ?? 10_000 });
    const consumer = await js.consumers.get(`OBJ_${FILES_BUCKET}`, { filterSubjects: `$O.${FILES_BUCKET}.C.${nuid}` });
    const last = range ? range.end : size - 1;
    let got = 0;
    let pos = 0;
    try {
      while (got < chunks) {
        const batch = await consumer.fetch({ max_messages: Math.min(CHUNKS_PER_FETCH, chunks - got), expires: this.opts.timeoutMs ?? 10_000 });
        let n = 0;
        for await (const m of batch) {
          n++;
          got++;
          const data = m.data;
          const from = pos;
          pos += data.length;
          const a = range ? Math.max(0, range.start - from) : 0;
          const b = Math.min(data.length, last + 1 - from);
          if (b > a) yield a === 0 && b === data.length ? data : data.subarray(a, b);
          if (pos > last) return;
        }
        if (n === 0) throw new Error(`the object store gave no chunk of ${nuid} within the timeout`);
      }
      if (pos !== size) throw new Error(`object ${nuid} has ${pos} bytes in its chunks, its info says ${size}`);
    } finally {
      await consumer.delete().catch(() => undefined);
    }
  }

  async delete(id: string): Promise<void> {
    const os = await this.bucket();
    await os.delete(id).catch(() => undefined);
  }
}
