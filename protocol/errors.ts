/** Error codes of docs/protocol.md, and the error type the server uses to carry one to a client. */
export const ERROR_CODES = [
  'bad_request', 'unauthorized', 'forbidden', 'not_found', 'conflict',
  'rate_limited', 'too_large', 'unavailable', 'internal',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** `stackTraceLimit` is V8's (Node, Chromium); this module is also bundled into the browser SDK. */
const V8Error = Error as ErrorConstructor & { stackTraceLimit?: number };

/**
 * An error meant for the client: its code and message go into an `error` frame as they are.
 * It is an expected answer, not a bug, so it carries no stack trace: capturing one costs ~2 µs,
 * and refusals come in floods exactly when the node can least afford it (overload, rate limits).
 */
export class ProtocolError extends Error {
  override name = 'ProtocolError';
  constructor(readonly code: ErrorCode, message: string) {
    const limit = V8Error.stackTraceLimit;
    V8Error.stackTraceLimit = 0;
    super(message);
    V8Error.stackTraceLimit = limit;
  }
}

export const isProtocolError = (e: unknown): e is ProtocolError => e instanceof ProtocolError;

/** A dependency (database, NATS, Redis) is down; clients may retry the same request later. */
export const unavailable = (what: string) => new ProtocolError('unavailable', `${what} is unavailable, retry later`);
