/** Public entry of the client SDK. Browser-safe: no Node-only imports anywhere in client/. */
export { ChatClient } from './chat-client.ts';
export type {
  ChatClientEvents, ChatClientOptions, ClientMetrics, ConnectionState, SendOptions, StateChange, TokenSource,
} from './chat-client.ts';
export { ChatError } from './types.ts';
export type {
  BatchFrame, ClientErrorCode, ConvSummary, ErrorCode, KickReason, LoginOkFrame, MsgFrame, ReceiptFrame,
  RecalledFrame, SendTarget, SentFrame, TypingFrame, WebSocketConstructor, WebSocketLike,
} from './types.ts';
export { Backoff } from './backoff.ts';
export type { BackoffOptions } from './backoff.ts';
export { ConversationState } from './conversation-state.ts';
export { Outbox } from './outbox.ts';
export { AckBatcher } from './ack-batcher.ts';
