/**
 * Wire codecs for the lean load-generator client. `im` is the project's protocol (one JSON
 * object per text frame). `socketio` speaks Engine.IO v4 / Socket.IO v5 directly over a `ws`
 * socket (no socket.io-client): the event name is the frame's `t`, the payload the frame.
 *
 * Frame types come from protocol/wire.ts (types only: nothing is added to the hot path); the
 * encoders stay hand-tuned here. Conversation ids: use protocol/ids.ts (re-exported below).
 */
import type { ClientFrame as WireClientFrame, ServerFrame as WireServerFrame } from '../../protocol/wire.ts';
import type { CodecName } from './types.ts';

export { dmConv, groupConv } from '../../protocol/ids.ts';

/** A client frame of the protocol. */
export type ClientFrame = WireClientFrame;
/** A client frame that is answered by `rid`, without its `rid` (the worker's request() adds one). */
export type RequestFrame = WithoutRid<Extract<WireClientFrame, { rid: string }>>;
type WithoutRid<F> = F extends unknown ? Omit<F, 'rid'> : never;

/** Every field any server frame has, with the protocol's type, all optional. */
type AnyField<U> = { [K in U extends unknown ? keyof U : never]?: U extends unknown ? (K extends keyof U ? U[K] : never) : never };

/**
 * A decoded server frame as the load generator reads it: one flat shape (no narrowing on `t`
 * needed), fields and their types derived from the protocol's server frames. `t` is any string
 * (baselines and future servers may send more), and `body` is the load generator's own payload.
 */
export type ServerFrame = Omit<AnyField<WireServerFrame>, 't' | 'body'> & {
  t: string;
  body?: { ts?: number } | null;
};

export type Decoded = { kind: 'frame'; frame: ServerFrame } | { kind: 'ready' } | { kind: 'none' } | { kind: 'fail'; reason: string };

export interface Codec {
  readonly name: CodecName;
  /** The socket may send protocol frames as soon as the WebSocket is open. */
  readonly readyOnOpen: boolean;
  url(base: string): string;
  encode(frame: ClientFrame): string;
  /** Decodes one text frame; `reply` sends a transport-level answer (Engine.IO pong, connect). */
  decode(raw: string, reply: (s: string) => void): Decoded;
}

function asFrame(v: unknown): ServerFrame | null {
  return typeof v === 'object' && v !== null && typeof (v as { t?: unknown }).t === 'string' ? (v as ServerFrame) : null;
}

export const imCodec: Codec = {
  name: 'im',
  readyOnOpen: true,
  url: (base) => base,
  encode: (frame) => JSON.stringify(frame),
  decode(raw) {
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch {
      return { kind: 'fail', reason: 'bad_json' };
    }
    const f = asFrame(v);
    return f ? { kind: 'frame', frame: f } : { kind: 'fail', reason: 'bad_frame' };
  },
};

export const socketIoCodec: Codec = {
  name: 'socketio',
  readyOnOpen: false,
  url(base) {
    const u = new URL(base);
    u.pathname = '/socket.io/';
    u.search = '?EIO=4&transport=websocket';
    return u.toString();
  },
  encode: (frame) => '42' + JSON.stringify([frame.t, frame]),
  decode(raw, reply) {
    const c0 = raw.charCodeAt(0);
    if (c0 === 0x34 /* '4' message */) {
      const c1 = raw.charCodeAt(1);
      if (c1 === 0x32 /* '2' EVENT */) {
        let v: unknown;
        try {
          v = JSON.parse(raw.slice(2));
        } catch {
          return { kind: 'fail', reason: 'bad_json' };
        }
        if (!Array.isArray(v) || typeof v[0] !== 'string') return { kind: 'fail', reason: 'bad_frame' };
        const data = asFrame(v[1]) ?? { t: v[0] };
        return { kind: 'frame', frame: data };
      }
      if (c1 === 0x30 /* '0' CONNECT */) return { kind: 'ready' };
      if (c1 === 0x34 /* '4' CONNECT_ERROR */) return { kind: 'fail', reason: 'connect_error' };
      if (c1 === 0x31 /* '1' DISCONNECT */) return { kind: 'fail', reason: 'disconnected' };
      return { kind: 'none' };
    }
    if (c0 === 0x32 /* '2' ping */) {
      reply('3');
      return { kind: 'none' };
    }
    if (c0 === 0x30 /* '0' open */) {
      reply('40');
      return { kind: 'none' };
    }
    return { kind: 'none' };
  },
};

export function codecFor(name: CodecName): Codec {
  return name === 'socketio' ? socketIoCodec : imCodec;
}
