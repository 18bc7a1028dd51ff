/**
 * Client frames of PROTOCOL.md as zod schemas, and the shapes of server frames.
 * The gateway parses every incoming frame through `parseClientFrame`; anything that does not
 * match gets `bad_request` with a message naming the field.
 */
import { z } from 'zod';
import { NAME_RE } from './ids.ts';

const rid = z.string().min(1).max(128);
const name = z.string().regex(NAME_RE, 'must be 1-64 chars of [A-Za-z0-9_.-]');
const conv = z.string().min(3).max(140);
const seq = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const cmid = z.string().min(1).max(64);
const members = z.array(name).max(10_000);
/**
 * Deepest nesting accepted in a message body. JSON.parse copes with any depth that fits in a
 * frame, but the recursive JSON.stringify on the way to storage overflows the stack at a few
 * thousand levels (an `internal` error); refuse such bodies up front as bad_request.
 */
export const MAX_BODY_DEPTH = 512;

/** Nesting depth of a parsed JSON value (a scalar is 0), measured without recursion; stops past `limit`. */
export function jsonDepth(value: unknown, limit = Infinity): number {
  let max = 0;
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    const depth = d + 1;
    if (depth > max) max = depth;
    if (max > limit) return max;
    for (const child of Array.isArray(v) ? v : Object.values(v as Record<string, unknown>)) {
      if (child !== null && typeof child === 'object') stack.push([child, depth]);
    }
  }
  return max;
}

export const clientFrameSchema = z.discriminatedUnion('t', [
  z.object({ t: z.literal('login'), rid, token: z.string().min(1).max(8192), device: name.optional() }),
  z.object({ t: z.literal('ping'), rid: rid.optional() }),
  z.object({
    t: z.literal('send'), rid, to: name.optional(), conv: conv.optional(), cmid,
    body: z.unknown()
      .refine((b) => b !== undefined, 'body is required')
      .refine((b) => jsonDepth(b, MAX_BODY_DEPTH) <= MAX_BODY_DEPTH, `is nested deeper than ${MAX_BODY_DEPTH} levels`),
    kind: z.string().min(1).max(32).optional(),
  }),
  z.object({ t: z.literal('ack'), conv, seq }),
  z.object({ t: z.literal('read'), conv, seq }),
  z.object({ t: z.literal('sync'), rid, conv, after: seq, limit: z.number().int().min(1).max(200).optional() }),
  z.object({ t: z.literal('convs'), rid }),
  z.object({ t: z.literal('recall'), rid, conv, seq: seq.min(1) }),
  z.object({ t: z.literal('group_create'), rid, group: name, members }),
  z.object({ t: z.literal('group_add'), rid, conv, members }),
  z.object({ t: z.literal('group_remove'), rid, conv, members }),
  z.object({ t: z.literal('group_members'), rid, conv }),
  z.object({ t: z.literal('typing'), conv }),
]);

export type ClientFrame = z.infer<typeof clientFrameSchema>;
export type ClientFrameOf<T extends ClientFrame['t']> = Extract<ClientFrame, { t: T }>;
export const CLIENT_FRAME_TYPES = new Set<string>(clientFrameSchema.options.map((o) => o.shape.t.value));

export type ParseResult =
  | { ok: true; frame: ClientFrame }
  | { ok: false; rid?: string; message: string };

/** Parses one text frame. Never throws: bad input becomes a `bad_request` description. */
export function parseClientFrame(text: string): ParseResult {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, message: 'frame is not valid JSON' };
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { ok: false, message: 'frame must be a JSON object' };
  }
  const obj = raw as Record<string, unknown>;
  const echoRid = typeof obj.rid === 'string' ? obj.rid : undefined;
  if (typeof obj.t !== 'string') return { ok: false, rid: echoRid, message: 'frame has no "t" (type)' };
  if (!CLIENT_FRAME_TYPES.has(obj.t)) return { ok: false, rid: echoRid, message: `unknown frame type "${obj.t.slice(0, 40)}"` };
  const r = clientFrameSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    const path = i?.path.join('.') || 'frame';
    return { ok: false, rid: echoRid, message: `${obj.t}: field "${path}" ${i?.message ?? 'is invalid'}` };
  }
  if (r.data.t === 'send' && (r.data.to === undefined) === (r.data.conv === undefined)) {
    return { ok: false, rid: echoRid, message: 'send: exactly one of "to" or "conv" is required' };
  }
  return { ok: true, frame: r.data };
}

/** A stored message as pushed (`msg`) and returned by `sync` (`batch`). */
export interface MsgFrame {
  t: 'msg';
  conv: string;
  seq: number;
  mid: string;
  from: string;
  cmid: string;
  ts: number;
  kind: string;
  body?: unknown;
  recalled?: true;
}

export interface SentFrame { t: 'sent'; rid: string; conv: string; cmid: string; seq: number; mid: string; ts: number }
export interface ErrorFrame { t: 'error'; rid?: string; code: string; message: string }
export interface ConvSummary { conv: string; last_seq: number; ack_seq: number; read_seq: number }
export type KickReason = 'replaced' | 'shutdown' | 'auth_expired';

/** Any frame the server sends; the gateway serializes these with JSON.stringify. */
export type ServerFrame =
  | MsgFrame | SentFrame | ErrorFrame
  | { t: 'login_ok'; rid: string; user: string; device: string; node: string; heartbeat_ms: number }
  | { t: 'pong'; rid?: string; ts: number }
  | { t: 'batch'; rid: string; conv: string; msgs: MsgFrame[]; more: boolean }
  | { t: 'convs'; rid: string; convs: ConvSummary[] }
  | { t: 'ok'; rid: string; conv?: string }
  | { t: 'members'; rid: string; conv: string; members: string[] }
  | { t: 'receipt'; conv: string; user: string; delivered?: number; read?: number }
  | { t: 'recalled'; conv: string; seq: number; by: string }
  | { t: 'typing'; conv: string; user: string }
  | { t: 'kicked'; reason: KickReason };
