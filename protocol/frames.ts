/**
 * The frames of docs/protocol.md as zod schemas: client frames (what the gateway accepts) and server
 * frames (what a node may send; for tests and tools that check server output).
 * The gateway parses every incoming frame through `parseClientFrame`; anything that does not
 * match gets `bad_request` with a message naming the field.
 *
 * The TypeScript types of the frames live in protocol/wire.ts (zod-free, so the browser SDK can
 * use them) and are re-exported here. This module checks at compile time that they and the
 * schemas describe the same frames, so the two cannot drift apart.
 */
import { z } from 'zod';
import { ERROR_CODES } from './errors.ts';
import { NAME_RE } from './ids.ts';
import type * as Wire from './wire.ts';

export type {
  AnswerFrame, BatchFrame, ClientFrame, ClientFrameOf, ClientFrameType, ConvSummary, ConvsFrame, ErrorFrame,
  GroupFrame, GroupOp, KickReason, KickedFrame, LoginOkFrame, MembersFrame, MsgFrame, OkFrame, PongFrame,
  PresenceFrame, PresenceState, PushFrame, ReceiptFrame, RecalledFrame, SentFrame, ServerFrame, ServerFrameOf,
  ServerFrameType, TypingFrame,
} from './wire.ts';

// Field bounds, shared by the schema and the hand-checked hot frames (fastClientFrame).
const RID_MAX = 128;
const CONV_MIN = 3;
const CONV_MAX = 140;
const CMID_MAX = 64;
const KIND_MAX = 32;
const rid = z.string().min(1).max(RID_MAX);
const name = z.string().regex(NAME_RE, 'must be 1-64 chars of [A-Za-z0-9_.-]');
const conv = z.string().min(CONV_MIN).max(CONV_MAX);
const seq = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const cmid = z.string().min(1).max(CMID_MAX);
const members = z.array(name).max(10_000);
/** Most users one `presence_sub` may watch (docs/protocol.md, v1.1). */
export const MAX_PRESENCE_USERS = 500;
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
      // `: boolean` keeps the inferred type `unknown` (a type predicate would narrow it to `{} | null`).
      .refine((b): boolean => b !== undefined, 'body is required')
      .refine((b) => jsonDepth(b, MAX_BODY_DEPTH) <= MAX_BODY_DEPTH, `is nested deeper than ${MAX_BODY_DEPTH} levels`),
    kind: z.string().min(1).max(KIND_MAX).optional(),
  }),
  z.object({ t: z.literal('ack'), conv, seq }),
  z.object({ t: z.literal('read'), conv, seq }),
  z.object({ t: z.literal('sync'), rid, conv, after: seq.optional(), before: seq.min(1).optional(), limit: z.number().int().min(1).max(200).optional() }),
  z.object({ t: z.literal('convs'), rid }),
  z.object({ t: z.literal('recall'), rid, conv, seq: seq.min(1) }),
  z.object({ t: z.literal('group_create'), rid, group: name, members }),
  z.object({ t: z.literal('group_add'), rid, conv, members }),
  z.object({ t: z.literal('group_remove'), rid, conv, members }),
  z.object({ t: z.literal('group_members'), rid, conv }),
  z.object({ t: z.literal('typing'), conv }),
  z.object({ t: z.literal('group_leave'), rid, conv }),
  z.object({ t: z.literal('presence_sub'), rid, users: z.array(name).max(MAX_PRESENCE_USERS) }),
]);

export const CLIENT_FRAME_TYPES = new Set<string>(clientFrameSchema.options.map((o) => o.shape.t.value));

const isStr = (v: unknown, min: number, max: number): v is string => typeof v === 'string' && v.length >= min && v.length <= max;
const isSeq = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isName = (v: unknown): v is string => typeof v === 'string' && NAME_RE.test(v);

/**
 * The frames a chatting client sends most (`send`, `ack`, `read`, `ping`), checked by hand: a
 * frame that is plainly valid is accepted without the schema (several µs per frame on the hot
 * path); anything else — missing or odd fields, both `to` and `conv` — returns null and goes
 * through the schema, which decides and explains. It never accepts what the schema refuses, and
 * builds the same frame (test/unit/protocol-module.test.ts compares the two on random frames).
 */
export function fastClientFrame(o: Record<string, unknown>): Wire.ClientFrame | null {
  switch (o.t) {
    case 'ack':
    case 'read':
      return isStr(o.conv, CONV_MIN, CONV_MAX) && isSeq(o.seq) ? { t: o.t, conv: o.conv, seq: o.seq } : null;
    case 'ping':
      if (o.rid === undefined) return { t: 'ping' };
      return isStr(o.rid, 1, RID_MAX) ? { t: 'ping', rid: o.rid } : null;
    case 'send': {
      const { rid: r, to, conv: c, cmid: m, body, kind } = o;
      if (!isStr(r, 1, RID_MAX) || !isStr(m, 1, CMID_MAX) || body === undefined) return null;
      if ((to === undefined) === (c === undefined)) return null;
      if (to !== undefined && !isName(to)) return null;
      if (c !== undefined && !isStr(c, CONV_MIN, CONV_MAX)) return null;
      if (kind !== undefined && !isStr(kind, 1, KIND_MAX)) return null;
      if (body !== null && typeof body === 'object' && jsonDepth(body, MAX_BODY_DEPTH) > MAX_BODY_DEPTH) return null;
      const f: Wire.ClientFrameOf<'send'> = to !== undefined ? { t: 'send', rid: r, to, cmid: m, body } : { t: 'send', rid: r, conv: c as string, cmid: m, body };
      if (kind !== undefined) f.kind = kind;
      return f;
    }
    default:
      return null;
  }
}

export type ParseResult =
  | { ok: true; frame: Wire.ClientFrame }
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
  const fast = fastClientFrame(obj);
  if (fast) return { ok: true, frame: fast };
  const r = clientFrameSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    const path = i?.path.join('.') || 'frame';
    return { ok: false, rid: echoRid, message: `${obj.t}: field "${path}" ${i?.message ?? 'is invalid'}` };
  }
  if (r.data.t === 'send' && (r.data.to === undefined) === (r.data.conv === undefined)) {
    return { ok: false, rid: echoRid, message: 'send: exactly one of "to" or "conv" is required' };
  }
  if (r.data.t === 'sync' && (r.data.after === undefined) === (r.data.before === undefined)) {
    return { ok: false, rid: echoRid, message: 'sync: exactly one of "after" or "before" is required' };
  }
  return { ok: true, frame: r.data };
}

// ------------------------------------------------------------------ server frames

const str = z.string();
const int = z.number().int();
const msgFrameSchema = z.strictObject({
  t: z.literal('msg'), conv: str, seq: int.min(1), mid: z.string().regex(/^[0-9]+$/), from: str, cmid: str, ts: int, kind: str,
  body: z.unknown().optional(), recalled: z.literal(true).optional(),
});

/**
 * Every frame a node may send, strict (an unknown field fails). Not used on the hot path: the
 * server builds its frames from the types in wire.ts; tests validate what it sent with this.
 */
export const serverFrameSchema = z.discriminatedUnion('t', [
  msgFrameSchema,
  z.strictObject({ t: z.literal('login_ok'), rid: str, user: str, device: str, node: str, heartbeat_ms: int }),
  z.strictObject({ t: z.literal('pong'), rid: str.optional(), ts: int }),
  z.strictObject({ t: z.literal('sent'), rid: str, conv: str, cmid: str, seq: int.min(1), mid: z.string().regex(/^[0-9]+$/), ts: int }),
  z.strictObject({ t: z.literal('error'), rid: str.optional(), code: z.enum(ERROR_CODES), message: str }),
  z.strictObject({ t: z.literal('batch'), rid: str, conv: str, msgs: z.array(msgFrameSchema), more: z.boolean() }),
  z.strictObject({
    t: z.literal('convs'), rid: str,
    convs: z.array(z.strictObject({ conv: str, last_seq: int, ack_seq: int, read_seq: int })),
  }),
  z.strictObject({ t: z.literal('ok'), rid: str, conv: str.optional() }),
  z.strictObject({ t: z.literal('members'), rid: str, conv: str, owner: str.optional(), members: z.array(str) }),
  z.strictObject({ t: z.literal('receipt'), conv: str, user: str, delivered: int.optional(), read: int.optional() }),
  z.strictObject({ t: z.literal('recalled'), conv: str, seq: int.min(1), by: str }),
  z.strictObject({ t: z.literal('typing'), conv: str, user: str }),
  z.strictObject({ t: z.literal('kicked'), reason: z.string().regex(NAME_RE) }),
  z.strictObject({ t: z.literal('group'), conv: str, op: z.enum(['created', 'added', 'removed', 'left', 'owner']), members: z.array(str), by: str }),
  // Two shapes under one type: the answer to presence_sub (rid, users) and the push (user, online).
  z.strictObject({
    t: z.literal('presence'), rid: str.optional(),
    users: z.array(z.strictObject({ user: str, online: z.boolean().nullable() })).optional(),
    user: str.optional(), online: z.boolean().optional(),
  }),
]);

// ------------------------------------------------------------------ compile-time checks

/** True when A and B are the same type (not just mutually assignable). */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false;
/** The frame types (`t`) whose wire.ts type differs from the schema's inferred type; never when all match. */
type Mismatched<W extends { t: string }, S extends { t: string }> = {
  [T in W['t'] | S['t']]: Equal<Extract<W, { t: T }>, Extract<S, { t: T }>> extends true ? never : T;
}[W['t'] | S['t']];
/** Fails to compile (naming the frame type) unless T is never. */
type NoMismatch<T extends never> = T;

// If one of these lines fails, protocol/wire.ts and the schemas above disagree about a frame.
export type ClientFramesMatchSchema = NoMismatch<Mismatched<Wire.ClientFrame, z.infer<typeof clientFrameSchema>>>;
export type ServerFramesMatchSchema = NoMismatch<Mismatched<Wire.ServerFrame, z.infer<typeof serverFrameSchema>>>;
