/**
 * Wire frames of PROTOCOL.md v1, as the client sees them. Kept inside client/ on purpose: the SDK
 * runs in browsers and must not import server code.
 */

export type ErrorCode =
  | 'bad_request' | 'unauthorized' | 'forbidden' | 'not_found' | 'conflict'
  | 'rate_limited' | 'too_large' | 'unavailable' | 'internal';

/** A stored message, as pushed (`msg`) or returned in a `batch`. */
export interface MsgFrame {
  t: 'msg';
  conv: string;
  seq: number;
  mid: string;
  from: string;
  cmid: string;
  ts: number;
  kind: string;
  /** Absent when the message was recalled. */
  body?: unknown;
  recalled?: boolean;
}

export interface LoginOkFrame { t: 'login_ok'; rid: string; user: string; device: string; node: string; heartbeat_ms: number }
export interface PongFrame { t: 'pong'; rid?: string; ts: number }
export interface SentFrame { t: 'sent'; rid: string; conv: string; cmid: string; seq: number; mid: string; ts: number }
export interface ErrorFrame { t: 'error'; rid?: string; code: ErrorCode | string; message: string }
export interface BatchFrame { t: 'batch'; rid: string; conv: string; msgs: MsgFrame[]; more: boolean }
export interface ConvSummary { conv: string; last_seq: number; ack_seq: number; read_seq: number }
export interface ConvsFrame { t: 'convs'; rid: string; convs: ConvSummary[] }
export interface OkFrame { t: 'ok'; rid: string; conv?: string }
export interface MembersFrame { t: 'members'; rid: string; conv: string; members: string[] }
export interface ReceiptFrame { t: 'receipt'; conv: string; user: string; delivered?: number; read?: number }
export interface RecalledFrame { t: 'recalled'; conv: string; seq: number; by: string }
export interface TypingFrame { t: 'typing'; conv: string; user: string }
export type KickReason = 'replaced' | 'shutdown' | 'auth_expired';
export interface KickedFrame { t: 'kicked'; reason: KickReason | string }

export type ServerFrame =
  | MsgFrame | LoginOkFrame | PongFrame | SentFrame | ErrorFrame | BatchFrame | ConvsFrame
  | OkFrame | MembersFrame | ReceiptFrame | RecalledFrame | TypingFrame | KickedFrame;

/** Frames that answer a request (they carry the request's `rid`). */
export type AnswerFrame = LoginOkFrame | SentFrame | ErrorFrame | BatchFrame | ConvsFrame | OkFrame | MembersFrame | PongFrame;

/** Where a message goes: a peer user (1:1) or a conversation id (`g:<group>` or `dm:a:b`). */
export type SendTarget = { to: string; conv?: undefined } | { conv: string; to?: undefined };

export type ClientFrame =
  | { t: 'login'; rid: string; token: string; device?: string }
  | { t: 'ping'; rid?: string }
  | { t: 'send'; rid: string; to?: string; conv?: string; cmid: string; body: unknown; kind?: string }
  | { t: 'ack'; conv: string; seq: number }
  | { t: 'read'; conv: string; seq: number }
  | { t: 'sync'; rid: string; conv: string; after: number; limit?: number }
  | { t: 'convs'; rid: string }
  | { t: 'recall'; rid: string; conv: string; seq: number }
  | { t: 'group_create'; rid: string; group: string; members: string[] }
  | { t: 'group_add'; rid: string; conv: string; members: string[] }
  | { t: 'group_remove'; rid: string; conv: string; members: string[] }
  | { t: 'group_members'; rid: string; conv: string }
  | { t: 'typing'; conv: string };

/**
 * The part of the standard WebSocket API the client uses. Both the browser's `WebSocket` and the
 * `ws` package's `WebSocket` class satisfy it. Handlers are declared bivariantly (method syntax)
 * so implementations with richer event types are assignable.
 */
type Handler<E> = { bivarianceHack(ev: E): void }['bivarianceHack'];

export interface WebSocketLike {
  readonly readyState: number;
  onopen: Handler<unknown> | null;
  onmessage: Handler<{ data: unknown }> | null;
  onclose: Handler<{ code: number; reason: string }> | null;
  onerror: Handler<unknown> | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Error codes the client adds for failures that are not server error frames. */
export type ClientErrorCode = ErrorCode | 'timeout' | 'closed' | 'kicked' | 'connection_lost';

/** Every rejection of the SDK is a ChatError: `code` is a PROTOCOL.md code or a client-side one. */
export class ChatError extends Error {
  override name = 'ChatError';
  constructor(readonly code: ClientErrorCode | string, message: string) {
    super(message);
  }
}
