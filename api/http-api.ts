/**
 * The server API over HTTP (docs/api.md): authentication, routing, body limits, validation and
 * JSON answers for every call of api/routes.ts, on top of the same ConversationService the
 * sessions use, so a call reaches the conversation's owner wherever it lives.
 *
 * The gateway hands every request under /api/v1/ to `handle` inside its `guarded` wrapper.
 * Everything uWS gives synchronously (method, url, headers) is read first; the answer is written
 * at most once, never after the client went away. A refusal is an HTTP status plus
 * `{"error":{"code","message"}}`; an unexpected throw is answered 500 `internal` and rethrown so
 * the gateway logs and counts it.
 */
import { decodeJwt } from 'jose';
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import type { NodeConfig } from '../cluster.config.ts';
import type { ConversationService } from '../actors/conversation-protocol.ts';
import type { Logger } from '../core/logger.ts';
import { FILE_KIND, fileIdOf } from '../files/file-ref.ts';
import { signToken } from '../gateway/auth.ts';
import type { RecordStore } from '../persistence/message-store.ts';
import { ProtocolError, isProtocolError, unavailable, type ErrorCode } from '../protocol/errors.ts';
import { NAME_RE, dmConvId, groupConvId, parseConvId } from '../protocol/ids.ts';
import type { ApiKeys } from './keys.ts';
import { STATUS_OF, openApiDocument } from './openapi.ts';
import { ROUTES, type RouteId, type RouteSpec } from './routes.ts';
import * as s from './schemas.ts';
import type { UserAdmin } from './users.ts';

export interface ApiDeps {
  config: NodeConfig;
  keys: ApiKeys;
  log: Logger;
  conversations: ConversationService;
  /** Cursors read through it include moves not yet written (persistence/cursor-overlay.ts), as in the `convs` frame. */
  store: Pick<RecordStore, 'userConversations' | 'readableFile'>;
  users: UserAdmin;
}

interface Call {
  params: { conv?: string; user?: string };
  query: Record<string, number | undefined>;
  body: unknown;
}

type Handler = (c: Call) => Promise<unknown>;

const STATUS_LINE: Record<number, string> = {
  200: '200 OK', 400: '400 Bad Request', 401: '401 Unauthorized', 403: '403 Forbidden', 404: '404 Not Found',
  409: '409 Conflict', 413: '413 Payload Too Large', 429: '429 Too Many Requests', 500: '500 Internal Server Error', 503: '503 Service Unavailable',
};

const PREFIX = '/api/v1/';
const DECIMAL = /^[0-9]{1,16}$/;

const bad = (message: string) => new ProtocolError('bad_request', message);
const unique = (list: readonly string[] | undefined): string[] => [...new Set(list ?? [])];

interface Exchange { aborted: boolean; done: boolean }

export class HttpApi {
  private readonly handlers: Record<RouteId, Handler>;
  private openapi: string | null = null;

  constructor(private readonly deps: ApiDeps) {
    this.handlers = {
      createToken: (c) => this.createToken(c.body as s.TokenRequest),
      postMessage: (c) => this.postMessage(c.body as s.MessageRequest),
      getHistory: (c) => this.history(c.params.conv!, c.query),
      recallMessage: async (c) => {
        const b = c.body as { seq: number; by?: string };
        await this.deps.conversations.request({ op: 'api_recall', conv: c.params.conv!, seq: b.seq, by: b.by ?? s.API_ACTOR });
        return { ok: true };
      },
      createGroup: async (c) => {
        const b = c.body as { group: string; owner: string; members: string[]; by?: string };
        const conv = groupConvId(b.group);
        await this.deps.conversations.request({ op: 'api_group_create', conv, owner: b.owner, members: unique(b.members), by: b.by ?? s.API_ACTOR });
        return { conv };
      },
      changeMembers: (c) => {
        const b = c.body as { add?: string[]; remove?: string[]; by?: string };
        return this.deps.conversations.request({ op: 'api_members', conv: this.group(c.params.conv!), add: unique(b.add), remove: unique(b.remove), by: b.by ?? s.API_ACTOR });
      },
      getMembers: async (c) => {
        const conv = this.group(c.params.conv!);
        const r = await this.deps.conversations.request({ op: 'api_group', conv });
        return { conv, owner: r.owner, members: r.members };
      },
      getUserConversations: async (c) => {
        const user = c.params.user!;
        const list = await this.deps.store.userConversations(user).catch(() => { throw unavailable('the message store'); });
        return { convs: list.map((x) => ({ conv: x.conv, last_seq: x.lastSeq, ack_seq: x.ackSeq, read_seq: x.readSeq })) };
      },
      getPresence: (c) => {
        const user = c.params.user!;
        const devices = this.deps.users.presence(user);
        return Promise.resolve({ user, online: devices.length > 0, devices });
      },
      disconnectUser: async (c) => {
        const b = c.body as { device?: string; reason?: string };
        return { closed: await this.deps.users.disconnect(c.params.user!, b.device, b.reason ?? 'admin') };
      },
    };
  }

  /** One request under /api/v1/ (called inside the gateway's `guarded`). */
  handle(res: HttpResponse, req: HttpRequest): Promise<void> | void {
    const method = req.getMethod().toUpperCase();
    const url = req.getUrl();
    const rawQuery = req.getQuery() ?? '';
    const authorization = req.getHeader('authorization');
    const contentLength = req.getHeader('content-length');
    const x: Exchange = { aborted: false, done: false };
    res.onAborted(() => { x.aborted = true; });
    return this.serve(res, x, method, url, rawQuery, authorization, contentLength);
  }

  private async serve(res: HttpResponse, x: Exchange, method: string, url: string, rawQuery: string, authorization: string, contentLength: string): Promise<void> {
    const { keys, config } = this.deps;
    try {
      if (!keys.enabled) throw new ProtocolError('not_found', 'this node serves no server API (IM_API_KEYS is unset)');
      if (!keys.accepts(authorization)) throw new ProtocolError('unauthorized', 'missing or wrong API key (Authorization: Bearer <key>)');
      if (method === 'GET' && url === `${PREFIX}openapi.json`) {
        this.openapi ??= JSON.stringify(openApiDocument('1.0.0'));
        this.answer(res, x, 200, this.openapi);
        return;
      }
      const match = this.route(method, url);
      const call: Call = { params: match.params, query: this.query(match.route, rawQuery), body: undefined };
      if (match.route.body) {
        if (contentLength !== '' && !(Number(contentLength) <= config.maxFrameBytes)) {
          throw new ProtocolError('too_large', `request body of ${contentLength} bytes exceeds the limit of ${config.maxFrameBytes}`);
        }
        const raw = await this.readBody(res, x, config.maxFrameBytes);
        if (x.aborted) return;
        call.body = this.parseBody(match.route.body, raw);
      }
      const out = await this.handlers[match.route.id as RouteId](call);
      this.answer(res, x, 200, JSON.stringify(out));
    } catch (e) {
      if (isProtocolError(e)) {
        this.answerError(res, x, e.code, e.message);
        return;
      }
      this.answerError(res, x, 'internal', 'internal error');
      throw e;
    }
  }

  /** The route of a method and path, with its decoded path parameters; not_found otherwise. */
  private route(method: string, url: string): { route: RouteSpec; params: Call['params'] } {
    const segs = url.split('/');
    let pathMatched = false;
    for (const r of ROUTES as readonly RouteSpec[]) {
      const want = r.path.split('/');
      if (want.length !== segs.length) continue;
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < want.length && ok; i++) {
        const w = want[i];
        if (w.startsWith('{')) params[w.slice(1, -1)] = segs[i];
        else ok = w === segs[i];
      }
      if (!ok) continue;
      pathMatched = true;
      if (r.method !== method) continue;
      return { route: r, params: this.params(params) };
    }
    throw new ProtocolError('not_found', pathMatched ? `${method} is not a method of ${url.slice(0, 200)}` : `no such call: ${method} ${url.slice(0, 200)}`);
  }

  private params(raw: Record<string, string>): Call['params'] {
    const out: Call['params'] = {};
    for (const [k, v] of Object.entries(raw)) {
      let value: string;
      try {
        value = decodeURIComponent(v);
      } catch {
        throw bad(`path parameter "${k}" is not validly URL-encoded`);
      }
      if (k === 'conv') {
        if (!parseConvId(value)) throw bad(`path parameter "conv": "${value.slice(0, 80)}" is not a conversation id (dm:<a>:<b> with a < b, or g:<group>)`);
        out.conv = value;
      } else if (k === 'user') {
        if (!NAME_RE.test(value)) throw bad(`path parameter "user" must be 1-64 chars of [A-Za-z0-9_.-]`);
        out.user = value;
      }
    }
    return out;
  }

  /** Query parameters: only the route's, each once, each a decimal integer within its schema. */
  private query(route: RouteSpec, raw: string): Call['query'] {
    const params = new URLSearchParams(raw);
    const shape = route.query?.shape ?? {};
    const obj: Record<string, string> = {};
    for (const [k, v] of params) {
      if (!(k in shape)) throw bad(`unknown query parameter "${k.slice(0, 40)}"`);
      if (k in obj) throw bad(`query parameter "${k}" given twice`);
      if (!DECIMAL.test(v)) throw bad(`query parameter "${k}" must be a non-negative integer`);
      obj[k] = v;
    }
    if (!route.query) return {};
    const r = route.query.safeParse(obj);
    if (!r.success) throw bad(describeIssue(r.error.issues[0], 'query parameter'));
    return r.data as Call['query'];
  }

  private parseBody(schema: NonNullable<RouteSpec['body']>, raw: Buffer): unknown {
    let value: unknown;
    try {
      value = JSON.parse(raw.toString('utf8'));
    } catch {
      throw bad('request body is not valid JSON');
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad('request body must be a JSON object');
    const r = schema.safeParse(value);
    if (!r.success) throw bad(describeIssue(r.error.issues[0], 'field'));
    return r.data;
  }

  /** Reads the whole body; too_large as soon as more than `max` bytes arrived. */
  private readBody(res: HttpResponse, x: Exchange, max: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let failed = false;
      res.onData((chunk, isLast) => {
        if (failed || x.aborted) return;
        size += chunk.byteLength;
        if (size > max) {
          failed = true;
          reject(new ProtocolError('too_large', `request body exceeds the limit of ${max} bytes`));
          return;
        }
        chunks.push(Buffer.from(chunk.slice(0))); // uWS neuters the chunk after this callback
        if (isLast) resolve(Buffer.concat(chunks));
      });
    });
  }

  // ---- calls ----

  private async createToken(b: s.TokenRequest): Promise<{ token: string; exp: number }> {
    const token = await signToken(b.user, this.deps.config.jwtSecret, b.ttl_s ?? 3600);
    const exp = decodeJwt(token).exp;
    if (typeof exp !== 'number') throw new Error('signed token has no exp');
    return { token, exp };
  }

  private async postMessage(b: s.MessageRequest): Promise<{ conv: string; seq: number; mid: string; ts: number }> {
    if ((b.to === undefined) === (b.conv === undefined)) throw bad('exactly one of "to" or "conv" is required');
    let conv: string;
    if (b.to !== undefined) {
      if (b.to === b.from) throw bad('"to" must be another user than "from"');
      conv = dmConvId(b.from, b.to);
    } else {
      if (!parseConvId(b.conv!)) throw bad(`field "conv": "${b.conv!.slice(0, 80)}" is not a conversation id (dm:<a>:<b> with a < b, or g:<group>)`);
      conv = b.conv!;
    }
    const kind = b.kind ?? 'text';
    if (kind === FILE_KIND) await this.checkFileRef(b.from, b.body);
    // "@api" is no device: every device of `from` gets the message.
    const r = await this.deps.conversations.request({ op: 'send', conv, user: b.from, device: s.API_ACTOR, cmid: b.cmid, kind, bodyJson: JSON.stringify(b.body) });
    return { conv, seq: r.seq, mid: r.mid, ts: r.ts };
  }

  /** As for a client send (docs/protocol.md, Files): a "file" message names a file `from` may read. */
  private async checkFileRef(from: string, body: unknown): Promise<void> {
    const id = fileIdOf(body);
    if (id === null) throw bad('field "body": a "file" message needs a body object with "file": the id of an uploaded file');
    const meta = await this.deps.store.readableFile(id, from).catch(() => { throw unavailable('the message store'); });
    if (!meta) throw new ProtocolError('forbidden', `file ${id} does not exist or may not be read by ${from}`);
  }

  private async history(conv: string, q: Call['query']): Promise<unknown> {
    if (q.after !== undefined && q.before !== undefined) throw bad('at most one of the query parameters "after" and "before"');
    const limit = q.limit ?? s.DEFAULT_HISTORY_LIMIT;
    const r = await this.deps.conversations.request(q.before !== undefined
      ? { op: 'api_history', conv, before: q.before, limit }
      : { op: 'api_history', conv, after: q.after ?? 0, limit });
    return { conv, msgs: r.msgs, more: r.more };
  }

  private group(conv: string): string {
    if (parseConvId(conv)?.kind !== 'group') throw bad(`path parameter "conv": ${conv.slice(0, 80)} is not a group (g:<group>)`);
    return conv;
  }

  // ---- answers ----

  private answer(res: HttpResponse, x: Exchange, status: number, json: string, close = false, extra?: [string, string]): void {
    if (x.aborted || x.done) return;
    x.done = true;
    res.cork(() => {
      res.writeStatus(STATUS_LINE[status] ?? `${status} Error`).writeHeader('content-type', 'application/json');
      if (extra) res.writeHeader(extra[0], extra[1]);
      res.end(json, close);
    });
  }

  private answerError(res: HttpResponse, x: Exchange, code: ErrorCode, message: string): void {
    // A body refused for its size may still be arriving: close the connection rather than read it.
    this.answer(res, x, STATUS_OF[code], JSON.stringify({ error: { code, message } }), code === 'too_large',
      code === 'unauthorized' ? ['www-authenticate', 'Bearer'] : undefined);
  }
}

function describeIssue(i: { path: PropertyKey[]; message: string; code?: string; keys?: string[] } | undefined, what: string): string {
  if (!i) return 'invalid request';
  if (i.code === 'unrecognized_keys' && i.keys && i.keys.length > 0) return `unknown ${what} "${String(i.keys[0]).slice(0, 40)}"`;
  const path = i.path.map(String).join('.');
  return path ? `${what} "${path}" ${i.message}` : i.message;
}
