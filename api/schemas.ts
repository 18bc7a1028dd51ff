/**
 * The server API's requests and answers (docs/api.md) as zod schemas: the one definition that
 * validates every request body and query, and that api/openapi.ts turns into the OpenAPI
 * document (z.toJSONSchema), so the two cannot drift apart.
 *
 * Request bodies are strict: an unknown field is `bad_request` naming it (a misspelt `"member"`
 * must not silently mean "no members"). Answer schemas describe what the node sends; tests
 * validate real answers with them.
 */
import { z } from 'zod';
import { ERROR_CODES } from '../protocol/errors.ts';
import { MAX_BODY_DEPTH, jsonDepth } from '../protocol/frames.ts';
import { NAME_RE } from '../protocol/ids.ts';

/** The acting party of API calls that name no `by` (docs/api.md): never a valid user id. */
export const API_ACTOR = '@api';
/** Longest token lifetime a backend may ask for: 30 days. */
export const MAX_TOKEN_TTL_S = 30 * 24 * 3600;
/** Most messages one history page holds. */
export const MAX_HISTORY_LIMIT = 200;
export const DEFAULT_HISTORY_LIMIT = 50;

/** Request bodies (read as input) and answers (as output), by component name in the OpenAPI document. */
export const requests = z.registry<{ id: string }>();
export const answers = z.registry<{ id: string }>();
const request = <T extends z.ZodType>(id: string, s: T): T => { requests.add(s, { id }); return s; };
const answer = <T extends z.ZodType>(id: string, s: T): T => { answers.add(s, { id }); return s; };

const name = z.string().regex(NAME_RE, 'must be 1-64 chars of [A-Za-z0-9_.-]');
const user = name.describe('A user id: 1-64 chars of [A-Za-z0-9_.-].');
const conv = z.string().min(3).max(140).describe('A conversation id: dm:<a>:<b> (a < b) or g:<group>.');
const seq = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const users = z.array(user).max(10_000);
const by = user.describe('The user the backend acts for; without it the acting party is "@api".');

// ------------------------------------------------------------------ requests

export const tokenRequest = request('TokenRequest', z.strictObject({
  user,
  ttl_s: z.number().int().min(1).max(MAX_TOKEN_TTL_S).optional().describe('Lifetime in seconds; default 3600, at most 30 days.'),
}));

export const messageRequest = request('MessageRequest', z.strictObject({
  from: user.describe('The sender; must be a member of the conversation.'),
  to: user.optional().describe('The other user of a 1:1 conversation (exactly one of "to" and "conv").'),
  conv: conv.optional().describe('The conversation (exactly one of "to" and "conv").'),
  cmid: z.string().min(1).max(64).describe('Idempotency key: a retry with the same from + cmid answers the original seq/mid/ts.'),
  body: z.unknown()
    .refine((b): boolean => b !== undefined, 'is required')
    .refine((b) => jsonDepth(b, MAX_BODY_DEPTH) <= MAX_BODY_DEPTH, `is nested deeper than ${MAX_BODY_DEPTH} levels`)
    .describe('Any JSON value.'),
  kind: z.string().min(1).max(32).optional().describe('Default "text".'),
}));

/** Query of the history call; values arrive as decimal strings (checked before this schema). */
export const historyQuery = z.strictObject({
  after: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional().describe('Messages with seq above this (default 0).'),
  before: z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional().describe('Messages just below this seq (at most one of after and before).'),
  limit: z.coerce.number().int().min(1).max(MAX_HISTORY_LIMIT).optional().describe(`Default ${DEFAULT_HISTORY_LIMIT}, at most ${MAX_HISTORY_LIMIT}.`),
});

export const recallRequest = request('RecallRequest', z.strictObject({ seq, by: by.optional() }));

export const groupCreateRequest = request('GroupCreateRequest', z.strictObject({
  group: name.describe('The group name; the conversation is g:<group>.'),
  owner: user,
  members: users.describe('The other members (the owner may be listed too).'),
  by: by.optional(),
}));

export const membersChangeRequest = request('MembersChangeRequest', z.strictObject({
  add: users.optional(),
  remove: users.optional().describe('Applied after add; removing the owner is bad_request.'),
  by: by.optional(),
}));

export const disconnectRequest = request('DisconnectRequest', z.strictObject({
  device: name.optional().describe('Only this device; default every device of the user.'),
  reason: name.optional().describe('The reason in the kicked frame; default "admin".'),
}));

/** Path parameters. */
export const pathParams = {
  conv: conv,
  user: user,
} as const;

// ------------------------------------------------------------------ answers

const int = z.number().int();

export const msgSchema = z.strictObject({
  t: z.literal('msg'), conv: z.string(), seq: int.min(1), mid: z.string().regex(/^[0-9]+$/), from: z.string(), cmid: z.string(), ts: int,
  kind: z.string(), body: z.unknown().optional(), recalled: z.literal(true).optional(),
}).describe('A stored message as in the wire protocol; recalled ones have "recalled":true and no body.');
answers.add(msgSchema, { id: 'Msg' });

export const tokenAnswer = answer('TokenAnswer', z.strictObject({ token: z.string(), exp: int.describe('Expiry in seconds since the epoch.') }));
export const sentAnswer = answer('SentAnswer', z.strictObject({ conv: z.string(), seq: int.min(1), mid: z.string().regex(/^[0-9]+$/), ts: int }));
export const historyAnswer = answer('HistoryAnswer', z.strictObject({
  conv: z.string(), msgs: z.array(msgSchema), more: z.boolean().describe('More messages exist in the direction of paging (newer for after, older for before).'),
}));
export const okAnswer = answer('OkAnswer', z.strictObject({ ok: z.literal(true) }));
export const groupCreatedAnswer = answer('GroupCreatedAnswer', z.strictObject({ conv: z.string() }));
export const membersAnswer = answer('MembersAnswer', z.strictObject({ members: z.array(z.string()).describe('Every member, owner included.') }));
export const groupAnswer = answer('GroupAnswer', z.strictObject({ conv: z.string(), owner: z.string().nullable(), members: z.array(z.string()) }));
export const convsAnswer = answer('ConversationsAnswer', z.strictObject({
  convs: z.array(z.strictObject({ conv: z.string(), last_seq: int, ack_seq: int, read_seq: int })),
}));
export const presenceAnswer = answer('PresenceAnswer', z.strictObject({
  user: z.string(), online: z.boolean(),
  devices: z.array(z.strictObject({ device: z.string(), node: z.string(), since: int.describe('Login time, ms since the epoch.') })),
}));
export const closedAnswer = answer('DisconnectAnswer', z.strictObject({ closed: int.min(0) }));
export const errorAnswer = answer('Error', z.strictObject({
  error: z.strictObject({ code: z.enum(ERROR_CODES), message: z.string() }),
}));

export type TokenRequest = z.infer<typeof tokenRequest>;
export type MessageRequest = z.infer<typeof messageRequest>;
export type HistoryQuery = z.infer<typeof historyQuery>;
