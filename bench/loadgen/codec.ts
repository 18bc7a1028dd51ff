/**
 * Wire codecs for the lean load-generator client. `im` is the project's protocol (one JSON
 * object per text frame). `socketio` speaks Engine.IO v4 / Socket.IO v5 directly over a `ws`
 * socket (no socket.io-client): the event name is the frame's `t`, the payload the frame.
 */
import type { CodecName } from './types.ts';

export interface ClientFrame {
  t: string;
  [key: string]: unknown;
}

/** Fields the load generator reads from server frames. */
export interface ServerFrame {
  t: string;
  rid?: string;
  code?: string;
  conv?: string;
  seq?: number;
  cmid?: string;
  body?: { ts?: number } | null;
  heartbeat_ms?: number;
  /** `batch` answers to `sync`. */
  msgs?: { seq?: number }[];
  more?: boolean;
}

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
