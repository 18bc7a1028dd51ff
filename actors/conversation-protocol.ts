/**
 * Requests a UserSession (on any node) makes of a Conversation (on its owner node), and their
 * replies. Plain JSON so they cross NATS unchanged; errors travel as `{ error: { code, message } }`.
 */
import type { ErrorCode } from '../protocol/errors.ts';
import type { MsgFrame } from '../protocol/frames.ts';

export type ConvRequest =
  | { op: 'send'; conv: string; user: string; device: string; cmid: string; kind: string; bodyJson: string }
  /** `before` (v1.1), when present, pages backwards and `after` is ignored. */
  | { op: 'sync'; conv: string; user: string; after: number; before?: number; limit: number }
  | { op: 'recall'; conv: string; user: string; seq: number }
  /** Merged `ack`/`read` moves of one member (0 or absent = no move). */
  | { op: 'cursor'; conv: string; user: string; ack?: number; read?: number }
  | { op: 'typing'; conv: string; user: string }
  | { op: 'group_create'; conv: string; user: string; members: string[] }
  | { op: 'group_add'; conv: string; user: string; members: string[] }
  | { op: 'group_remove'; conv: string; user: string; members: string[] }
  | { op: 'group_members'; conv: string; user: string }
  /** v1.1: a member leaves a group. */
  | { op: 'group_leave'; conv: string; user: string }
  /**
   * Server API (docs/api.md; api/http-api.ts): a trusted backend acts, so no membership check;
   * `by` is the acting party ("@api" or a user id) as pushes name it.
   * History of any conversation that exists (`before`: the page just below that seq).
   */
  | { op: 'api_history'; conv: string; after?: number; before?: number; limit: number }
  /** Recall without time window or sender check. */
  | { op: 'api_recall'; conv: string; seq: number; by: string }
  /** Creates a group with an explicit owner. */
  | { op: 'api_group_create'; conv: string; owner: string; members: string[]; by: string }
  /** Adds, then removes members (never the owner); answers the resulting member list. */
  | { op: 'api_members'; conv: string; add: string[]; remove: string[]; by: string }
  /** A group's owner and members. */
  | { op: 'api_group'; conv: string };

export type ConvOp = ConvRequest['op'];

export interface SendResult { seq: number; mid: string; ts: number }

export interface ReplyOf {
  send: SendResult;
  sync: { msgs: MsgFrame[]; more: boolean };
  recall: Record<string, never>;
  cursor: Record<string, never>;
  typing: Record<string, never>;
  group_create: Record<string, never>;
  group_add: Record<string, never>;
  group_remove: Record<string, never>;
  /** `owner` (v1.1) for groups that have one. */
  group_members: { members: string[]; owner?: string };
  group_leave: Record<string, never>;
  api_history: { msgs: MsgFrame[]; more: boolean };
  api_recall: Record<string, never>;
  api_group_create: Record<string, never>;
  api_members: { members: string[] };
  api_group: { owner: string | null; members: string[] };
}

export type ConvReply<O extends ConvOp = ConvOp> = ReplyOf[O];

export type WireReply = { ok: ConvReply } | { error: { code: ErrorCode; message: string } };

/** How a session reaches the owner of a conversation, wherever it lives. */
export interface ConversationService {
  request<R extends ConvRequest>(req: R): Promise<ConvReply<R['op']>>;
}
