/**
 * The v1.1 frames (docs/protocol.md, Additions in v1.1) at the protocol module: sync `before`,
 * group_leave, presence_sub parse and refuse as documented; the `group` and `presence` encoders
 * produce frames the strict server schema accepts; and the presence watchers stay bounded.
 */
import { describe, expect, it } from 'vitest';
import { MAX_PRESENCE_USERS, parseClientFrame, serverFrameSchema } from '../../protocol/frames.ts';
import { encodeGroup, encodePresence } from '../../protocol/encode.ts';
import { PresenceWatchers } from '../../actors/presence-watch.ts';
import type { SessionEntry } from '../../actors/session-directory.ts';
import type { ActorRef } from '../../actors/system.ts';

const parse = (f: unknown) => parseClientFrame(JSON.stringify(f));

describe('v1.1 client frames', () => {
  it('sync takes exactly one of after and before; before ≥ 1', () => {
    expect(parse({ t: 'sync', rid: '1', conv: 'g:t', before: 5 })).toMatchObject({ ok: true, frame: { before: 5 } });
    expect(parse({ t: 'sync', rid: '1', conv: 'g:t', after: 0 })).toMatchObject({ ok: true });
    expect(parse({ t: 'sync', rid: '1', conv: 'g:t', after: 0, before: 5 })).toMatchObject({ ok: false, rid: '1' });
    expect(parse({ t: 'sync', rid: '1', conv: 'g:t' })).toMatchObject({ ok: false, rid: '1' });
    for (const before of [0, -1, 1.5, '5', null]) expect(parse({ t: 'sync', rid: '1', conv: 'g:t', before }).ok).toBe(false);
  });

  it('group_leave needs rid and conv', () => {
    expect(parse({ t: 'group_leave', rid: '1', conv: 'g:t' }).ok).toBe(true);
    expect(parse({ t: 'group_leave', rid: '1' }).ok).toBe(false);
    expect(parse({ t: 'group_leave', conv: 'g:t' }).ok).toBe(false);
  });

  it(`presence_sub takes at most ${MAX_PRESENCE_USERS} valid user ids`, () => {
    const users = Array.from({ length: MAX_PRESENCE_USERS + 1 }, (_, i) => `u${i}`);
    expect(parse({ t: 'presence_sub', rid: '1', users: users.slice(0, MAX_PRESENCE_USERS) }).ok).toBe(true);
    expect(parse({ t: 'presence_sub', rid: '1', users })).toMatchObject({ ok: false, rid: '1' });
    for (const bad of ['bob', [1], ['no spaces'], [''], null]) expect(parse({ t: 'presence_sub', rid: '1', users: bad }).ok).toBe(false);
  });
});

describe('v1.1 server frames', () => {
  it('encodeGroup and encodePresence produce valid frames, fields in documented order', () => {
    const g = encodeGroup({ conv: 'g:t', op: 'owner', members: ['bob'], by: 'alice' });
    expect(g).toBe('{"t":"group","conv":"g:t","op":"owner","members":["bob"],"by":"alice"}');
    expect(serverFrameSchema.safeParse(JSON.parse(g)).success).toBe(true);
    const p = encodePresence('bob', false);
    expect(p).toBe('{"t":"presence","user":"bob","online":false}');
    expect(serverFrameSchema.safeParse(JSON.parse(p)).success).toBe(true);
    expect(serverFrameSchema.safeParse({ t: 'presence', rid: '1', users: [{ user: 'a', online: null }, { user: 'b', online: true }] }).success).toBe(true);
    expect(serverFrameSchema.safeParse({ t: 'group', conv: 'g:t', op: 'joined', members: [], by: 'a' }).success).toBe(false);
    expect(serverFrameSchema.safeParse({ t: 'members', rid: '1', conv: 'g:t', owner: 'a', members: ['a'] }).success).toBe(true);
  });
});

describe('PresenceWatchers', () => {
  const entry = (user: string, sent: string[]): SessionEntry => ({
    user, device: 'd', actor: { send: (_m: string, json: string) => { sent.push(json); return Promise.resolve(); } } as unknown as ActorRef,
  });

  it('pushes to the subscribers of a user; a new list replaces the old; drop forgets everything', () => {
    const w = new PresenceWatchers();
    const got1: string[] = [];
    const got2: string[] = [];
    const s1 = entry('s1', got1);
    const s2 = entry('s2', got2);
    w.set(s1, ['bob', 'carol']);
    w.set(s2, ['bob']);
    w.notify('bob', true);
    w.notify('dave', true);
    expect(got1).toEqual(['{"t":"presence","user":"bob","online":true}']);
    expect(got2).toEqual(['{"t":"presence","user":"bob","online":true}']);
    w.set(s1, ['carol']);
    w.notify('bob', false);
    w.notify('carol', false);
    expect(got1).toEqual(['{"t":"presence","user":"bob","online":true}', '{"t":"presence","user":"carol","online":false}']);
    expect(got2).toHaveLength(2);
    w.drop(s1);
    w.drop(s2);
    expect(w.subscribers).toBe(0);
    w.notify('bob', true);
    w.notify('carol', true);
    expect(got1).toHaveLength(2);
    expect(got2).toHaveLength(2);
    // Internal maps are empty again: nothing is kept for users nobody watches.
    expect((w as unknown as { byWatched: Map<string, unknown> }).byWatched.size).toBe(0);
  });
});
