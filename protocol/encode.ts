/**
 * Encoders of server push frames: the one place where `msg`, `receipt`, `recalled`, `typing`,
 * `kicked`, `group` and `presence` frames are turned into JSON text, so a fan-out encodes a frame once and hands the same
 * string to every device.
 *
 * Guarantees:
 * - `encodeMsg(m, bodyJson)` is byte-for-byte `JSON.stringify(msgFrame(m, bodyJson))` for a
 *   `bodyJson` produced by JSON.stringify (test/unit/protocol-module.test.ts checks it), without
 *   parsing the body: the stored JSON text is spliced in as it is.
 * - Field order is fixed (the order of docs/protocol.md), whatever object the caller passes.
 * - No imports except types and no runtime dependencies (no zod): usable from any process.
 */
import type { GroupFrame, KickReason, MsgFrame, PresenceFrame, ReceiptFrame, RecalledFrame, ServerFrame, TypingFrame } from './wire.ts';

/** The fields of a stored message that go into its `msg` frame (besides the body). */
export type MsgFields = Omit<MsgFrame, 't' | 'body' | 'recalled'>;

const q = JSON.stringify;

/**
 * The `msg` frame of a message as JSON text. `bodyJson` is the body as JSON text (spliced in
 * unchanged, so it must be valid JSON), or null for a recalled message (`"recalled":true`, no body).
 * `seq` and `ts` must be finite integers.
 */
export function encodeMsg(m: MsgFields, bodyJson: string | null): string {
  const head = `{"t":"msg","conv":${q(m.conv)},"seq":${m.seq},"mid":${q(m.mid)},"from":${q(m.from)},"cmid":${q(m.cmid)},"ts":${m.ts},"kind":${q(m.kind)}`;
  return bodyJson === null ? `${head},"recalled":true}` : `${head},"body":${bodyJson}}`;
}

/** The `msg` frame of a message as an object (for `batch` answers); parses `bodyJson`. */
export function msgFrame(m: MsgFields, bodyJson: string | null): MsgFrame {
  const f: MsgFrame = { t: 'msg', conv: m.conv, seq: m.seq, mid: m.mid, from: m.from, cmid: m.cmid, ts: m.ts, kind: m.kind };
  if (bodyJson === null) f.recalled = true;
  else f.body = JSON.parse(bodyJson) as unknown;
  return f;
}

/** `{"t":"receipt","conv","user","delivered"?,"read"?}`: `user`'s cursor in `conv` moved. */
export function encodeReceipt(r: Omit<ReceiptFrame, 't'>): string {
  const f: ReceiptFrame = { t: 'receipt', conv: r.conv, user: r.user };
  if (r.delivered !== undefined) f.delivered = r.delivered;
  if (r.read !== undefined) f.read = r.read;
  return q(f);
}

/** `{"t":"recalled","conv","seq","by"}`. */
export function encodeRecalled(r: Omit<RecalledFrame, 't'>): string {
  const f: RecalledFrame = { t: 'recalled', conv: r.conv, seq: r.seq, by: r.by };
  return q(f);
}

/** `{"t":"typing","conv","user"}`. */
export function encodeTyping(r: Omit<TypingFrame, 't'>): string {
  const f: TypingFrame = { t: 'typing', conv: r.conv, user: r.user };
  return q(f);
}

/** `{"t":"kicked","reason"}`. */
export function encodeKicked(reason: KickReason): string {
  return `{"t":"kicked","reason":${q(reason)}}`;
}

/** `{"t":"group","conv","op","members","by"}` (v1.1): a group's membership or owner changed. */
export function encodeGroup(g: Omit<GroupFrame, 't'>): string {
  const f: GroupFrame = { t: 'group', conv: g.conv, op: g.op, members: g.members, by: g.by };
  return q(f);
}

/** `{"t":"presence","user","online"}` (v1.1): a watched user came online (first device) or went offline (last device). */
export function encodePresence(user: string, online: boolean): string {
  const f: PresenceFrame = { t: 'presence', user, online };
  return q(f);
}

/** Any server frame (answers: `sent`, `ok`, `batch`, …) as JSON text; typed so only valid frames go out. */
export function encodeFrame(f: ServerFrame): string {
  return q(f);
}
