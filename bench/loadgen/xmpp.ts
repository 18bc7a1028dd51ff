/**
 * XMPP over WebSocket (RFC 7395) for the lean load generator, just enough for the pairs scenario
 * against ejabberd: string templates for the few stanzas a client sends, and a regex classifier
 * for the few it reads. One WebSocket text message = one top-level element (RFC 7395 §3.3), so
 * each frame is classified by its first tag; nothing is parsed into a tree.
 *
 * Session: <open/> → SASL PLAIN → <open/> (stream restart) → resource bind → XEP-0198 <enable/>
 * (stream management, no resumption) → <presence/>. After that a message is
 * `<message to=peer type=chat id=…><body>TS pad</body></message>` followed by `<r/>`: the server
 * answers `<a h=N/>` (N = stanzas it has handled from this client), which stands for the
 * project's `sent`. The recipient answers every `<r/>` of the server with `<a h=received/>`,
 * which stands for the project's `ack`.
 */

export const SM_NS = 'urn:xmpp:sm:3';

/** WebSocket subprotocol of RFC 7395. */
export const XMPP_SUBPROTOCOL = 'xmpp';

export const xmppOpen = (domain: string): string => `<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="${domain}" version="1.0"/>`;

export const xmppAuthPlain = (user: string, password: string): string =>
  `<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">${Buffer.from(`\0${user}\0${password}`).toString('base64')}</auth>`;

export const xmppBind = (id: string, resource: string): string =>
  `<iq xmlns="jabber:client" type="set" id="${id}"><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"><resource>${resource}</resource></bind></iq>`;

/** XEP-0198 without resumption: acks only (a closed bench socket needs no resumable session). */
export const XMPP_ENABLE = `<enable xmlns="${SM_NS}"/>`;
export const XMPP_PRESENCE = '<presence xmlns="jabber:client"/>';
export const XMPP_R = `<r xmlns="${SM_NS}"/>`;
export const xmppA = (h: number): string => `<a xmlns="${SM_NS}" h="${h >>> 0}"/>`;

/** A chat message whose body starts with the intended send time (ms since epoch). */
export const xmppMessage = (to: string, id: string, ts: number, pad: string): string =>
  `<message xmlns="jabber:client" to="${to}" type="chat" id="${id}"><body>${ts} ${pad}</body></message>`;

export type XmppIn =
  | { kind: 'open' }
  | { kind: 'features'; mechanisms: boolean; bind: boolean; sm: boolean }
  | { kind: 'success' }
  | { kind: 'failure'; reason: string }
  | { kind: 'iq'; id: string; type: string }
  | { kind: 'enabled' }
  | { kind: 'message'; ts: number | null; error: boolean }
  | { kind: 'presence' }
  | { kind: 'a'; h: number }
  | { kind: 'r' }
  | { kind: 'stream_error'; reason: string }
  | { kind: 'close' }
  | { kind: 'other'; tag: string };

const TAG = /^<([A-Za-z][\w:.-]*)/;
const ATTR = (name: string): RegExp => new RegExp(`\\s${name}=['"]([^'"]*)['"]`);
const H = ATTR('h');
const ID = ATTR('id');
const TYPE = ATTR('type');
const BODY_TS = /<body>(\d+(?:\.\d+)?)[ <]/;
/** The first child element's name (a SASL failure's or stream error's condition). */
const FIRST_CHILD = /^<[^>]*[^/]>\s*<([A-Za-z][\w-]*)/;

/** Classifies one frame (one top-level element) by its first tag. */
export function parseXmpp(raw: string): XmppIn {
  const tag = TAG.exec(raw)?.[1] ?? '';
  switch (tag) {
    case 'message': {
      // The start tag ends at the first '>' (our attribute values never contain one).
      const end = raw.indexOf('>');
      const head = end >= 0 ? raw.slice(0, end) : raw;
      const ts = BODY_TS.exec(raw)?.[1];
      return { kind: 'message', ts: ts !== undefined ? Number(ts) : null, error: TYPE.exec(head)?.[1] === 'error' };
    }
    case 'a':
      return { kind: 'a', h: Number(H.exec(raw)?.[1] ?? Number.NaN) };
    case 'r':
      return { kind: 'r' };
    case 'presence':
      return { kind: 'presence' };
    case 'iq': {
      const end = raw.indexOf('>');
      const head = end >= 0 ? raw.slice(0, end) : raw;
      return { kind: 'iq', id: ID.exec(head)?.[1] ?? '', type: TYPE.exec(head)?.[1] ?? '' };
    }
    case 'open':
      return { kind: 'open' };
    case 'stream:features':
      return { kind: 'features', mechanisms: raw.includes('<mechanism>PLAIN<'), bind: raw.includes('urn:ietf:params:xml:ns:xmpp-bind'), sm: raw.includes(SM_NS) };
    case 'success':
      return { kind: 'success' };
    case 'failure':
      return { kind: 'failure', reason: FIRST_CHILD.exec(raw)?.[1] ?? 'failure' };
    case 'enabled':
      return { kind: 'enabled' };
    case 'stream:error':
      return { kind: 'stream_error', reason: FIRST_CHILD.exec(raw)?.[1] ?? 'stream_error' };
    case 'close':
      return { kind: 'close' };
    default:
      return { kind: 'other', tag };
  }
}

/** XEP-0198 counters of one bench socket (both start when `<enabled/>` arrives). */
export interface XmppConnState {
  /** Bare JID of the partner (pairs). */
  to: string;
  /** Stanzas this client sent since <enabled/> (the server's `h` for us counts the same ones). */
  out: number;
  /** Stanzas received since <enabled/> (our `h` when the server sends <r/>). */
  in: number;
  /** Sent messages not yet covered by an <a h/>: [stanza number, rid in the worker's `pending`]. */
  unacked: [number, string][];
  /** Index of the first live entry of `unacked` (a moving head instead of shift()). */
  head: number;
}
