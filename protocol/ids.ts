/**
 * Identifiers of docs/protocol.md: user ids, group names, conversation ids. The one place that writes
 * the conversation id rules (`dm:<min(a,b)>:<max(a,b)>`, `g:<group>`); everything else calls these.
 *
 * No imports and no runtime dependencies: the browser client SDK bundles this file.
 */
export const NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;

/** A valid user id, device name or group name: 1–64 chars of `[A-Za-z0-9_.-]`. */
export const isValidName = (s: string): boolean => NAME_RE.test(s);

/**
 * The 1:1 conversation of users `a` and `b`: `dm:<min(a,b)>:<max(a,b)>`, the same id whichever
 * side writes first. Ids are compared as JavaScript strings (UTF-16 code units), which for the
 * allowed ASCII characters is byte order.
 */
export function dmConv(a: string, b: string): string {
  return a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`;
}

/** The conversation of group `group`: `g:<group>`. */
export const groupConv = (group: string): string => `g:${group}`;

export type ParsedConv = { kind: 'dm'; a: string; b: string } | { kind: 'group'; group: string };

/** Parses a conversation id, or returns null when it is not one a client could name. */
export function parseConv(conv: string): ParsedConv | null {
  if (conv.startsWith('g:')) {
    const group = conv.slice(2);
    return isValidName(group) ? { kind: 'group', group } : null;
  }
  if (conv.startsWith('dm:')) {
    const rest = conv.slice(3);
    const i = rest.indexOf(':');
    if (i < 0) return null;
    const a = rest.slice(0, i);
    const b = rest.slice(i + 1);
    // Canonical form only: a < b, so one pair of users has exactly one id.
    if (!isValidName(a) || !isValidName(b) || !(a < b)) return null;
    return { kind: 'dm', a, b };
  }
  return null;
}

/** In a 1:1 conversation id, the member who is not `me`; null for groups, bad ids and non-members. */
export function dmPeer(conv: string, me: string): string | null {
  const p = parseConv(conv);
  if (!p || p.kind !== 'dm') return null;
  return p.a === me ? p.b : p.b === me ? p.a : null;
}

// The names the server code has used since v1; same functions.
export const dmConvId = dmConv;
export const groupConvId = groupConv;
export const parseConvId = parseConv;
