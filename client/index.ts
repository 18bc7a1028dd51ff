/**
 * Public entry of the client SDK (`@actor-im/client`). Browser-safe: no Node-only imports anywhere
 * in client/, and of protocol/ only ids.ts (no dependencies) at runtime; the frame types come from
 * protocol/wire.ts as types. The package build bundles this entry into one dependency-free ESM file.
 */
export { ChatClient } from './chat-client.ts';
export type {
  ChatClientEvents, ChatClientOptions, ClientMetrics, ConnectionState, GroupInfo, HistoryOptions, PresenceChange,
  SendOptions, StateChange, TokenSource,
} from './chat-client.ts';
export { ChatError } from './types.ts';
export type {
  AnswerFrame, BatchFrame, ClientErrorCode, ClientFrame, ConvSummary, ErrorCode, ErrorFrame, GroupFrame, GroupOp, KickReason,
  KickedFrame, LoginOkFrame, MembersFrame, MsgFrame, OkFrame, PresenceFrame, PresenceState, ReceiptFrame, RecalledFrame,
  SendTarget, SentFrame, ServerFrame, TypingFrame, WebSocketConstructor, WebSocketLike,
} from './types.ts';
export { dmConv, dmPeer, groupConv, isValidName, parseConv } from '../protocol/ids.ts';
export type { ParsedConv } from '../protocol/ids.ts';
export { Backoff } from './backoff.ts';
export type { BackoffOptions } from './backoff.ts';
export { ConversationState } from './conversation-state.ts';
export { Outbox } from './outbox.ts';
export { AckBatcher } from './ack-batcher.ts';
