/**
 * The client's view of the wire: the frame types come from protocol/wire.ts (the single source
 * the server is checked against), imported with `import type` only, so nothing of the server and
 * no zod reaches the browser bundle. This file adds what only the client has: the WebSocket
 * subset it needs, send targets and its error type.
 */
import type { ErrorCode } from '../protocol/wire.ts';

export type {
  AnswerFrame, BatchFrame, ClientFrame, ClientFrameOf, ConvSummary, ConvsFrame, ErrorCode, ErrorFrame, GroupFrame, GroupOp,
  KickReason, KickedFrame, LoginOkFrame, MembersFrame, MsgFrame, OkFrame, PongFrame, PresenceFrame, PresenceState,
  PushFrame, ReceiptFrame, RecalledFrame, SentFrame, ServerFrame, TypingFrame,
} from '../protocol/wire.ts';

/** Where a message goes: a peer user (1:1) or a conversation id (`g:<group>` or `dm:a:b`). */
export type SendTarget = { to: string; conv?: undefined } | { conv: string; to?: undefined };

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

/**
 * Error codes the client adds for failures that are not server error frames. `unreachable`: the
 * first connect() found no node within its timeout; `listener`: an event listener threw.
 */
export type ClientErrorCode = ErrorCode | 'timeout' | 'closed' | 'kicked' | 'connection_lost' | 'unreachable' | 'listener';

/** Every rejection of the SDK is a ChatError: `code` is a docs/protocol.md code or a client-side one. */
export class ChatError extends Error {
  override name = 'ChatError';
  constructor(readonly code: ClientErrorCode | string, message: string) {
    super(message);
  }
}
