/**
 * The HTTP side of files (docs/protocol.md, Files): `POST /files?name=` uploads, `GET /files/<id>`
 * downloads. The gateway routes both here inside its `guarded` edge.
 *
 * Upload: the login token is checked before a byte of the body is kept (the response is paused
 * meanwhile), then the body streams into the FileStore with backpressure (the response is paused
 * while the store lags), hashed on the way. Too large (content-length, or bytes received when
 * there is none) → 413 and the connection closes; an aborted or refused upload fails the
 * store's put, which leaves nothing behind. The metadata goes to the record after the bytes are
 * stored, so the record never names bytes that are not there.
 *
 * Download: the token (header, or `?token=`, which is never logged) must name a user who may read
 * the file (MessageStore.readableFile); anyone else gets the same 404 as an unknown id. One byte
 * range is honoured (206, or 416); bytes go out with uWS `tryEnd`, paced by `onWritable`.
 */
import { createHash } from 'node:crypto';
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import type { Logger } from '../core/logger.ts';
import type { KeyedRateLimiter } from '../core/token-bucket.ts';
import { AuthError, verifyToken } from '../gateway/auth.ts';
import type { RecordStore } from '../persistence/message-store.ts';
import { FILE_ID_RE, newFileId, type FileMeta } from './file-ref.ts';
import type { ByteRange, FileStore } from './file-store.ts';

export interface FilesHttpDeps {
  jwtSecret: string;
  maxFileBytes: number;
  /** IM_UPLOADS_PER_MIN per user (shared by the user's requests on this node). */
  uploads: KeyedRateLimiter;
  store: Pick<RecordStore, 'insertFile' | 'readableFile'>;
  files: FileStore;
  log: Logger;
}

/** Unread upload bytes held for the store before the response is paused, and where it resumes. */
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;
const NAME_MAX = 255;
const MIME_RE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=("[^"\\\r\n]*"|[A-Za-z0-9!#$&^_.+-]+))*$/;

/** Upload chunks on their way from onData to the store: an async iterable that fails at once when the upload does. */
class ChunkQueue implements AsyncIterable<Uint8Array> {
  private chunks: Uint8Array[] = [];
  bytes = 0;
  private ended = false;
  private error: Error | null = null;
  private wake: (() => void) | null = null;

  constructor(private readonly drained: () => void) {}

  push(c: Uint8Array): void {
    this.chunks.push(c);
    this.bytes += c.length;
    this.notify();
  }

  end(): void {
    this.ended = true;
    this.notify();
  }

  fail(e: Error): void {
    this.error ??= e;
    this.chunks = [];
    this.bytes = 0;
    this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    for (;;) {
      if (this.error) throw this.error;
      const c = this.chunks.shift();
      if (c) {
        this.bytes -= c.length;
        if (this.bytes <= LOW_WATER) this.drained();
        yield c;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((r) => { this.wake = r; });
    }
  }
}

class HttpAnswer extends Error {
  constructor(readonly status: string, readonly body: string, readonly headers: Record<string, string> = {}) {
    super(status);
  }
}

export class FilesHttp {
  constructor(private readonly deps: FilesHttpDeps) {}

  // ---- upload ----

  upload(res: HttpResponse, req: HttpRequest): Promise<void> {
    // Everything of the request is read now: req is gone once this returns.
    const authorization = req.getHeader('authorization');
    const lengthHeader = req.getHeader('content-length');
    const mimeHeader = req.getHeader('content-type');
    const name = new URLSearchParams(req.getQuery() ?? '').get('name');
    const { maxFileBytes } = this.deps;

    let aborted = false;
    let answered = false;
    let received = 0;
    let authPending = true;
    let full = false;
    let paused = false;
    const sha = createHash('sha256');
    const syncPause = () => {
      const want = authPending || full;
      if (aborted || answered || want === paused) return;
      paused = want;
      if (want) res.pause();
      else res.resume();
    };
    const queue = new ChunkQueue(() => { if (full) { full = false; syncPause(); } });
    /** Answers at once; a body still coming is not read any further (the connection closes). */
    const answerEarly = (a: HttpAnswer) => {
      queue.fail(new Error(`upload refused: ${a.status}`));
      if (aborted || answered) return;
      answered = true;
      res.cork(() => {
        if (paused) res.resume();
        res.writeStatus(a.status);
        for (const [k, v] of Object.entries(a.headers)) res.writeHeader(k, v);
        res.writeHeader('content-type', 'text/plain').end(a.body, true);
      });
    };
    const tooLarge = () => new HttpAnswer('413 Payload Too Large', `a file may have at most ${maxFileBytes} bytes`);

    res.onAborted(() => {
      aborted = true;
      queue.fail(new Error('upload aborted by the client'));
    });
    res.onData((ab, isLast) => {
      if (aborted || answered) return;
      received += ab.byteLength;
      if (received > maxFileBytes) return answerEarly(tooLarge());
      if (ab.byteLength > 0) {
        // uWS reuses the buffer once this returns: copy.
        const c = new Uint8Array(ab.slice(0));
        sha.update(c);
        queue.push(c);
        if (queue.bytes > HIGH_WATER && !full) { full = true; syncPause(); }
      }
      if (isLast) queue.end();
    });
    // Nothing of the body is taken in before the token is checked.
    syncPause();

    return (async () => {
      let user: string;
      try {
        user = await this.authenticate(bearerOf(authorization));
        if (name === null || name.length < 1 || name.length > NAME_MAX || /[\u0000-\u001f\u007f]/.test(name)) {
          throw new HttpAnswer('400 Bad Request', `name must be 1-${NAME_MAX} characters without control characters`);
        }
        const mime = mimeHeader.trim() === '' ? 'application/octet-stream' : mimeHeader.trim();
        if (mime.length > 255 || !MIME_RE.test(mime)) throw new HttpAnswer('400 Bad Request', 'content-type must be a media type (type/subtype)');
        if (lengthHeader !== '' && !(/^\d+$/.test(lengthHeader) && Number(lengthHeader) <= maxFileBytes)) throw tooLarge();
        if (aborted || answered) return;
        if (!this.deps.uploads.take(user)) throw new HttpAnswer('429 Too Many Requests', 'too many uploads per minute', { 'retry-after': '60' });
        authPending = false;
        syncPause();
        const id = newFileId();
        try {
          await this.deps.files.put(id, queue);
        } catch (e) {
          if (!aborted && !answered) {
            this.deps.log.warn({ err: String(e), user }, 'storing an upload failed');
            throw new HttpAnswer('503 Service Unavailable', 'the file store is unavailable, retry later');
          }
          return;
        }
        const meta: FileMeta = { id, uploader: user, name, size: received, mime, sha256: sha.digest('hex'), created: Date.now() };
        if (aborted || answered) {
          // Complete, but nobody will learn its id: it goes.
          await this.deps.files.delete(id).catch(() => undefined);
          return;
        }
        try {
          await this.deps.store.insertFile(meta);
        } catch (e) {
          this.deps.log.warn({ err: String(e), user }, 'recording an upload failed');
          await this.deps.files.delete(id).catch(() => undefined);
          throw new HttpAnswer('503 Service Unavailable', 'the record is unavailable, retry later');
        }
        if (aborted || answered) return;
        answered = true;
        res.cork(() => {
          res.writeStatus('201 Created').writeHeader('content-type', 'application/json')
            .end(JSON.stringify({ file: meta.id, name: meta.name, size: meta.size, mime: meta.mime, sha256: meta.sha256 }));
        });
      } catch (e) {
        if (e instanceof HttpAnswer) return answerEarly(e);
        queue.fail(new Error('upload failed'));
        throw e;
      }
    })();
  }

  private async authenticate(token: string | null): Promise<string> {
    if (!token) throw new HttpAnswer('401 Unauthorized', 'a login token is required', { 'www-authenticate': 'Bearer' });
    try {
      return (await verifyToken(token, this.deps.jwtSecret)).user;
    } catch (e) {
      throw new HttpAnswer('401 Unauthorized', e instanceof AuthError ? e.message : 'token rejected', { 'www-authenticate': 'Bearer' });
    }
  }

  // ---- download ----

  download(res: HttpResponse, req: HttpRequest): Promise<void> {
    const id = req.getParameter(0) ?? '';
    const token = bearerOf(req.getHeader('authorization')) ?? new URLSearchParams(req.getQuery() ?? '').get('token');
    const rangeHeader = req.getHeader('range');
    const state: DownloadState = { aborted: false, onAbort: null };
    res.onAborted(() => {
      state.aborted = true;
      state.onAbort?.();
    });
    const answer = (a: HttpAnswer) => {
      if (state.aborted) return;
      res.cork(() => {
        res.writeStatus(a.status);
        for (const [k, v] of Object.entries(a.headers)) res.writeHeader(k, v);
        res.writeHeader('content-type', 'text/plain').end(a.body);
      });
    };
    return (async () => {
      try {
        const user = await this.authenticate(token);
        // Unknown, malformed and not-yours all answer alike: ids cannot be probed.
        const notFound = new HttpAnswer('404 Not Found', 'not found');
        if (!FILE_ID_RE.test(id)) throw notFound;
        let meta: FileMeta | null;
        try {
          meta = await this.deps.store.readableFile(id, user);
        } catch (e) {
          this.deps.log.warn({ err: String(e) }, 'reading file metadata failed');
          throw new HttpAnswer('503 Service Unavailable', 'the record is unavailable, retry later');
        }
        if (!meta) throw notFound;
        const range = parseRange(rangeHeader, meta.size);
        if (range === 'unsatisfiable') throw new HttpAnswer('416 Range Not Satisfiable', 'range not satisfiable', { 'content-range': `bytes */${meta.size}` });
        if (state.aborted) return;
        let body: AsyncIterable<Uint8Array> | null;
        try {
          body = meta.size === 0 ? emptyBody() : await this.deps.files.get(id, range ?? undefined);
        } catch (e) {
          this.deps.log.warn({ err: String(e), file: id }, 'reading a file failed');
          throw new HttpAnswer('503 Service Unavailable', 'the file store is unavailable, retry later');
        }
        if (!body) {
          this.deps.log.warn({ file: id }, 'a recorded file has no bytes in the file store');
          throw notFound;
        }
        const headers: Record<string, string> = {
          'content-type': meta.mime,
          'accept-ranges': 'bytes',
          etag: `"${meta.sha256}"`,
          'cache-control': 'private, max-age=86400',
          'content-disposition': `inline; filename*=UTF-8''${rfc5987(meta.name)}`,
          // Uploaded bytes are the uploader's: never sniffed, never run as a page of this origin.
          'x-content-type-options': 'nosniff',
          'content-security-policy': "default-src 'none'; sandbox",
        };
        if (range) headers['content-range'] = `bytes ${range.start}-${range.end}/${meta.size}`;
        const total = range ? range.end - range.start + 1 : meta.size;
        try {
          await sendBody(res, range ? '206 Partial Content' : '200 OK', headers, body, total, state);
        } catch (e) {
          this.deps.log.warn({ err: String(e), file: id }, 'reading a file failed');
          if (state.aborted) return;
          if (!(e instanceof BodyStarted)) throw new HttpAnswer('503 Service Unavailable', 'the file store is unavailable, retry later');
          // Headers (maybe bytes) are out: no other status can follow. The cut connection tells
          // the client, whose content-length is not met.
          res.close();
        }
      } catch (e) {
        if (e instanceof HttpAnswer) return answer(e);
        throw e;
      }
    })();
  }
}

async function* emptyBody(): AsyncGenerator<Uint8Array> {
  // no bytes
}

/** A file name as an RFC 5987 ext-value (after `UTF-8''`): percent-encoded UTF-8, attr-chars kept. */
function rfc5987(name: string): string {
  return encodeURIComponent(name).replace(/['()*!]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The token of an `Authorization: Bearer <token>` header, or null. */
function bearerOf(header: string): string | null {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? m[1] : null;
}

/**
 * One byte range of a `Range` header (RFC 9110): null to send the whole file (no header, or one
 * this server does not honour: several ranges, another unit, bad syntax), 'unsatisfiable' for a
 * well-formed range outside the file.
 */
export function parseRange(header: string, size: number): ByteRange | null | 'unsatisfiable' {
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return null;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (m[2] !== '' && Number(m[2]) < start) return null;
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

/** A download's response: aborted by the client, and what to wake when it is (the wait for a writable socket). */
interface DownloadState { aborted: boolean; onAbort: (() => void) | null }

/** A body failed after its status line and headers were sent. */
class BodyStarted extends Error {}

/** Writes status, headers and `total` bytes from `body`, paced by the socket (tryEnd/onWritable). */
async function sendBody(res: HttpResponse, status: string, headers: Record<string, string>, body: AsyncIterable<Uint8Array>, total: number,
  state: DownloadState): Promise<void> {
  let first = true;
  const head = () => {
    if (!first) return;
    first = false;
    res.writeStatus(status);
    for (const [k, v] of Object.entries(headers)) res.writeHeader(k, v);
  };
  if (total === 0) {
    res.cork(() => { head(); res.end(); });
    return;
  }
  const it = body[Symbol.asyncIterator]();
  try {
    for (;;) {
      let r: IteratorResult<Uint8Array>;
      try {
        r = await it.next();
      } catch (e) {
        throw first ? e : new BodyStarted(String(e));
      }
      if (state.aborted) return;
      if (r.done) break;
      const chunk = r.value;
      const offset = res.getWriteOffset();
      let tried: [boolean, boolean] = [false, false];
      res.cork(() => { head(); tried = res.tryEnd(chunk, total); });
      const [ok, done] = tried;
      if (done) return;
      if (!ok) {
        // The socket is full: the rest of this chunk goes out when it drains.
        const finished = await new Promise<boolean>((resolve) => {
          state.onAbort = () => resolve(false);
          res.onWritable((at) => {
            const [ok2, done2] = res.tryEnd(chunk.subarray(at - offset), total);
            if (done2) resolve(true);
            else if (ok2) resolve(false);
            return ok2;
          });
        });
        state.onAbort = null;
        if (state.aborted) return;
        if (finished) return;
      }
    }
  } finally {
    await it.return?.(undefined);
  }
  // The store gave fewer bytes than the record says: cut the connection rather than end short.
  if (!state.aborted) res.close();
}
