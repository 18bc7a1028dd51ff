/**
 * Every frame of docs/protocol.md v1 as plain TypeScript types: what clients send (`ClientFrame`) and
 * what servers send (`ServerFrame`). The single definition of the wire shapes for the server, the
 * client SDK and the load generator.
 *
 * Guarantees:
 * - Types only: no runtime code and no imports except `import type`, so the browser SDK can
 *   `import type` from here without pulling zod (or anything) into its bundle, and the SDK's
 *   published `.d.ts` files are self-contained.
 * - Checked at compile time against the zod schemas in protocol/frames.ts (both directions, per
 *   frame type): a field added to a schema but not here, or the other way round, fails `tsc`.
 *
 * v1 frames and the v1.1 frames the server implements (sync `before`, group_leave, presence_sub,
 * the `group` and `presence` pushes, `owner` in members); v1.1 files are not here yet.
 */
import type { ErrorCode } from './errors.ts';

export type { ErrorCode };

// ------------------------------------------------------------------ client → server

/** Every frame a client may send. `rid` is a client-chosen string the answer repeats. */
export type ClientFrame =
  | { t: 'login'; rid: string; token: string; device?: string }
  | { t: 'ping'; rid?: string }
  /** Exactly one of `to` (1:1, a user id) and `conv` (a conversation id). */
  | { t: 'send'; rid: string; to?: string; conv?: string; cmid: string; body: unknown; kind?: string }
  | { t: 'ack'; conv: string; seq: number }
  | { t: 'read'; conv: string; seq: number }
  /** Exactly one of `after` and `before` (v1.1: `before` pages backwards). */
  | { t: 'sync'; rid: string; conv: string; after?: number; before?: number; limit?: number }
  | { t: 'convs'; rid: string }
  | { t: 'recall'; rid: string; conv: string; seq: number }
  | { t: 'group_create'; rid: string; group: string; members: string[] }
  | { t: 'group_add'; rid: string; conv: string; members: string[] }
  | { t: 'group_remove'; rid: string; conv: string; members: string[] }
  | { t: 'group_members'; rid: string; conv: string }
  | { t: 'typing'; conv: string }
  /** v1.1 */
  | { t: 'group_leave'; rid: string; conv: string }
  /** v1.1: at most 500 users; replaces the previous subscription. */
  | { t: 'presence_sub'; rid: string; users: string[] };

export type ClientFrameType = ClientFrame['t'];
export type ClientFrameOf<T extends ClientFrameType> = Extract<ClientFrame, { t: T }>;

// ------------------------------------------------------------------ server → client

/** A stored message, as pushed (`msg`) and as returned in a `batch`. */
export interface MsgFrame {
  t: 'msg';
  conv: string;
  seq: number;
  /** Cluster-unique id, a decimal string. */
  mid: string;
  from: string;
  cmid: string;
  ts: number;
  /** `"text"` unless the sender gave another kind. */
  kind: string;
  /** Any JSON value; absent when the message was recalled. */
  body?: unknown;
  recalled?: true;
}

export interface LoginOkFrame { t: 'login_ok'; rid: string; user: string; device: string; node: string; heartbeat_ms: number }
export interface PongFrame { t: 'pong'; rid?: string; ts: number }
export interface SentFrame { t: 'sent'; rid: string; conv: string; cmid: string; seq: number; mid: string; ts: number }
export interface ErrorFrame { t: 'error'; rid?: string; code: ErrorCode; message: string }
export interface BatchFrame { t: 'batch'; rid: string; conv: string; msgs: MsgFrame[]; more: boolean }
export interface ConvSummary { conv: string; last_seq: number; ack_seq: number; read_seq: number }
export interface ConvsFrame { t: 'convs'; rid: string; convs: ConvSummary[] }
/** Answer to recall / group_*; `conv` only for group_create. */
export interface OkFrame { t: 'ok'; rid: string; conv?: string }
/** `owner` (v1.1) for groups. */
export interface MembersFrame { t: 'members'; rid: string; conv: string; owner?: string; members: string[] }
/** Another member's cursor moved; the values are that member's new cursor (a seq). */
export interface ReceiptFrame { t: 'receipt'; conv: string; user: string; delivered?: number; read?: number }
export interface RecalledFrame { t: 'recalled'; conv: string; seq: number; by: string }
export interface TypingFrame { t: 'typing'; conv: string; user: string }
/**
 * Why the server closes a socket: `replaced`, `shutdown`, `auth_expired`, or the reason an app's
 * backend gave a server API disconnect (docs/api.md; default `admin`, 1-64 chars of [A-Za-z0-9_.-]).
 */
export type KickReason = string;
export interface KickedFrame { t: 'kicked'; reason: KickReason }
/** v1.1: how a group's membership or owner changed; `members` are the users the change is about. */
export type GroupOp = 'created' | 'added' | 'removed' | 'left' | 'owner';
export interface GroupFrame { t: 'group'; conv: string; op: GroupOp; members: string[]; by: string }
/** v1.1: one watched user's state; `online` is null for a user who may not be watched. */
export interface PresenceState { user: string; online: boolean | null }
/**
 * v1.1 `presence`, two shapes under one type: the answer to `presence_sub`
 * (`{"t":"presence","rid","users":[…]}`) and the push (`{"t":"presence","user","online"}`).
 */
export interface PresenceFrame { t: 'presence'; rid?: string; users?: PresenceState[]; user?: string; online?: boolean }

/** Every frame a server sends. */
export type ServerFrame =
  | MsgFrame | LoginOkFrame | PongFrame | SentFrame | ErrorFrame | BatchFrame | ConvsFrame
  | OkFrame | MembersFrame | ReceiptFrame | RecalledFrame | TypingFrame | KickedFrame | GroupFrame | PresenceFrame;

export type ServerFrameType = ServerFrame['t'];
export type ServerFrameOf<T extends ServerFrameType> = Extract<ServerFrame, { t: T }>;

/** Frames that answer a request (they repeat its `rid`). */
export type AnswerFrame = LoginOkFrame | SentFrame | ErrorFrame | BatchFrame | ConvsFrame | OkFrame | MembersFrame | PongFrame | PresenceFrame;

/** Frames the server sends unasked. */
export type PushFrame = MsgFrame | ReceiptFrame | RecalledFrame | TypingFrame | KickedFrame | GroupFrame | PresenceFrame;
