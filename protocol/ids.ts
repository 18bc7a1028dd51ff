/** Identifiers of PROTOCOL.md: user ids, group names, conversation ids. */
export const NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;

export const isValidName = (s: string): boolean => NAME_RE.test(s);

/** `dm:<min(a,b)>:<max(a,b)>` — the same id whichever side writes first. */
export function dmConvId(a: string, b: string): string {
  return a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`;
}

export const groupConvId = (group: string): string => `g:${group}`;

export type ParsedConv = { kind: 'dm'; a: string; b: string } | { kind: 'group'; group: string };

/** Parses a conversation id, or returns null when it is not one a client could name. */
export function parseConvId(conv: string): ParsedConv | null {
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
