/**
 * Every call of the server API (docs/api.md, Calls) as data: method, path, the schemas of its
 * path parameters, query, body and answer, and the error codes it may answer. api/http-api.ts
 * routes and validates requests with this table and api/openapi.ts describes it, so the
 * document always lists exactly what the node serves.
 */
import type { z } from 'zod';
import type { ErrorCode } from '../protocol/errors.ts';
import * as s from './schemas.ts';

export type PathParam = keyof typeof s.pathParams;

export interface RouteSpec {
  /** operationId; api/http-api.ts has one handler per id. */
  id: string;
  method: 'GET' | 'POST';
  /** OpenAPI style: `/api/v1/conversations/{conv}/messages`. */
  path: string;
  summary: string;
  query?: z.ZodObject;
  body?: z.ZodType;
  answer: z.ZodType;
  /** Codes this call answers besides the ones every call may (unauthorized, internal, unavailable). */
  errors: ErrorCode[];
}

export const ROUTES = [
  {
    id: 'createToken', method: 'POST', path: '/api/v1/tokens',
    summary: 'A login token for the wire protocol (ttl_s default 3600, at most 30 days).',
    body: s.tokenRequest, answer: s.tokenAnswer, errors: ['bad_request', 'too_large'],
  },
  {
    id: 'postMessage', method: 'POST', path: '/api/v1/messages',
    summary: 'Sends a message as `from`: same rules as a client send (membership, durable before the answer, idempotent by from + cmid); members get it as msg.',
    body: s.messageRequest, answer: s.sentAnswer, errors: ['bad_request', 'forbidden', 'not_found', 'too_large'],
  },
  {
    id: 'getHistory', method: 'GET', path: '/api/v1/conversations/{conv}/messages',
    summary: 'A page of history, ascending by seq: after=N (default 0) or before=N, limit default 50 (at most 200).',
    query: s.historyQuery, answer: s.historyAnswer, errors: ['bad_request', 'not_found'],
  },
  {
    id: 'recallMessage', method: 'POST', path: '/api/v1/conversations/{conv}/recall',
    summary: 'Recalls a message (no time window); members get recalled with by ("@api" without by).',
    body: s.recallRequest, answer: s.okAnswer, errors: ['bad_request', 'not_found', 'too_large'],
  },
  {
    id: 'createGroup', method: 'POST', path: '/api/v1/groups',
    summary: 'Creates g:<group> with owner as its owner.',
    body: s.groupCreateRequest, answer: s.groupCreatedAnswer, errors: ['bad_request', 'conflict', 'too_large'],
  },
  {
    id: 'changeMembers', method: 'POST', path: '/api/v1/groups/{conv}/members',
    summary: 'Adds, then removes members; answers every member, owner included. Removing the owner is bad_request.',
    body: s.membersChangeRequest, answer: s.membersAnswer, errors: ['bad_request', 'not_found', 'too_large'],
  },
  {
    id: 'getMembers', method: 'GET', path: '/api/v1/groups/{conv}/members',
    summary: "A group's owner and members.",
    answer: s.groupAnswer, errors: ['bad_request', 'not_found'],
  },
  {
    id: 'getUserConversations', method: 'GET', path: '/api/v1/users/{user}/conversations',
    summary: "The user's conversations with their last seq and the user's cursors.",
    answer: s.convsAnswer, errors: ['bad_request'],
  },
  {
    id: 'getPresence', method: 'GET', path: '/api/v1/users/{user}/presence',
    summary: "The user's connected devices across the cluster: node holding the socket, login time.",
    answer: s.presenceAnswer, errors: ['bad_request'],
  },
  {
    id: 'disconnectUser', method: 'POST', path: '/api/v1/users/{user}/disconnect',
    summary: "Closes the user's sockets (or one device's); each gets kicked with the reason (default admin) first.",
    body: s.disconnectRequest, answer: s.closedAnswer, errors: ['bad_request', 'too_large'],
  },
] as const satisfies readonly RouteSpec[];

export type RouteId = (typeof ROUTES)[number]['id'];
