import { describe, expect, it } from 'vitest';
import { ownerOf } from '../../cluster/placement.ts';
import { Snowflake } from '../../core/snowflake.ts';
import { TokenBucket } from '../../core/token-bucket.ts';
import { ConfigError, loadConfig } from '../../cluster.config.ts';
import { dmConvId, parseConvId } from '../../protocol/ids.ts';
import { parseClientFrame } from '../../protocol/frames.ts';
import { SessionDirectory, type SessionEntry } from '../../actors/session-directory.ts';
import type { ActorRef } from '../../actors/system.ts';

describe('rendezvous placement', () => {
  const convs = Array.from({ length: 3000 }, (_, i) => `g:conv${i}`);
  it('spreads conversations roughly evenly and agrees regardless of node order', () => {
    const nodes = ['n1', 'n2', 'n3'];
    const counts = new Map<string, number>();
    for (const c of convs) {
      const o = ownerOf(c, nodes)!;
      expect(ownerOf(c, [...nodes].reverse())).toBe(o);
      counts.set(o, (counts.get(o) ?? 0) + 1);
    }
    for (const n of nodes) expect(counts.get(n)).toBeGreaterThan(800);
  });
  it('moves only the dead node\'s conversations when a node leaves', () => {
    let moved = 0;
    for (const c of convs) {
      const before = ownerOf(c, ['n1', 'n2', 'n3']);
      const after = ownerOf(c, ['n1', 'n3']);
      if (before !== 'n2') expect(after).toBe(before);
      else moved++;
    }
    expect(moved).toBeGreaterThan(800);
  });
});

describe('Snowflake', () => {
  it('yields unique, increasing decimal ids, also past 4096 in one millisecond', () => {
    const s = new Snowflake(7);
    const ids = Array.from({ length: 10_000 }, () => s.next(1_800_000_000_000));
    expect(new Set(ids).size).toBe(ids.length);
    for (let i = 1; i < ids.length; i++) expect(BigInt(ids[i]) > BigInt(ids[i - 1])).toBe(true);
    expect(ids[0]).toMatch(/^\d+$/);
  });
  it('differs between workers at the same instant', () => {
    expect(new Snowflake(1).next(1_800_000_000_000)).not.toBe(new Snowflake(2).next(1_800_000_000_000));
  });
});

describe('TokenBucket', () => {
  it('allows the burst, then the rate', () => {
    const b = new TokenBucket(10, 20, 0);
    let ok = 0;
    for (let i = 0; i < 30; i++) if (b.take(0)) ok++;
    expect(ok).toBe(20);
    expect(b.take(50)).toBe(false); // half a token after 50 ms
    expect(b.take(100)).toBe(true);
  });
});

describe('configuration', () => {
  it('defaults to an embedded node on 9001', () => {
    const c = loadConfig({});
    expect(c.port).toBe(9001);
    expect(c.dataDir).toBe('./data');
    expect(c.mysqlUrl).toBeUndefined();
  });
  it('names the variable that is wrong', () => {
    expect(() => loadConfig({ IM_PORT: 'abc' })).toThrow(/IM_PORT/);
    expect(() => loadConfig({ IM_RATE_MSGS: '0' })).toThrow(/IM_RATE_MSGS/);
    expect(() => loadConfig({ IM_NODE_TTL_MS: '900', IM_NODE_HEARTBEAT_MS: '500' })).toThrow(/IM_NODE_TTL_MS/);
  });
  it('refuses the default secret in production and half a cluster config', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(ConfigError);
    expect(() => loadConfig({ IM_NATS_URL: 'nats://127.0.0.1:4222' })).toThrow(/IM_MYSQL_URL/);
  });
});

describe('protocol ids and frames', () => {
  it('builds canonical 1:1 ids and rejects non-canonical ones', () => {
    expect(dmConvId('bob', 'alice')).toBe('dm:alice:bob');
    expect(parseConvId('dm:alice:bob')).toEqual({ kind: 'dm', a: 'alice', b: 'bob' });
    expect(parseConvId('dm:bob:alice')).toBeNull();
    expect(parseConvId('g:team')).toEqual({ kind: 'group', group: 'team' });
    expect(parseConvId('g:')).toBeNull();
    expect(parseConvId('x:1')).toBeNull();
  });
  it('describes what is wrong with a frame', () => {
    expect(parseClientFrame('{')).toMatchObject({ ok: false, message: 'frame is not valid JSON' });
    expect(parseClientFrame('[]')).toMatchObject({ ok: false });
    expect(parseClientFrame('{"t":"nope","rid":"1"}')).toMatchObject({ ok: false, rid: '1', message: expect.stringContaining('unknown') });
    expect(parseClientFrame('{"t":"send","rid":"1","to":"bob","cmid":5,"body":1}')).toMatchObject({ ok: false, message: expect.stringContaining('cmid') });
    expect(parseClientFrame('{"t":"send","rid":"1","to":"bob","conv":"g:x","cmid":"c","body":1}')).toMatchObject({ ok: false, message: expect.stringContaining('exactly one') });
    expect(parseClientFrame('{"t":"sync","rid":"1","conv":"g:x","after":0,"limit":201}')).toMatchObject({ ok: false });
    expect(parseClientFrame('{"t":"send","rid":"1","to":"bob","cmid":"c","body":null}')).toMatchObject({ ok: true });
  });
});

describe('SessionDirectory', () => {
  const entry = (user: string, device: string): SessionEntry => ({ user, device, actor: {} as ActorRef });
  it('keeps users, devices, replacements and online transitions through one and several devices', () => {
    const d = new SessionDirectory();
    const changes: string[] = [];
    d.onUserChange((u, on) => changes.push(`${u}:${on}`));
    const a1 = entry('a', 'phone');
    const a2 = entry('a', 'laptop');
    const a1b = entry('a', 'phone');
    expect(d.add(a1)).toBeUndefined();
    expect(d.get('a', 'phone')).toBe(a1);
    expect(d.get('a', 'laptop')).toBeUndefined();
    expect(d.add(a2)).toBeUndefined();
    expect([...d.devices('a')]).toEqual([a1, a2]);
    expect(d.add(a1b)).toBe(a1); // same device: replaced, not counted twice
    expect(d.size).toBe(2);
    expect(d.remove(a1)).toBe(false); // no longer the registered one
    expect(d.isCurrent(a1b)).toBe(true);
    expect(d.remove(a2)).toBe(true);
    expect([...d.devices('a')]).toEqual([a1b]);
    expect(d.isOnline('a')).toBe(true);
    expect(d.add(a2)).toBeUndefined();
    expect(d.remove(a1b)).toBe(true);
    expect(d.remove(a2)).toBe(true);
    expect(d.isOnline('a')).toBe(false);
    expect(d.size).toBe(0);
    expect([...d.devices('a')]).toEqual([]);
    expect(changes).toEqual(['a:true', 'a:false']);
    d.add(entry('b', 'x'));
    d.add(entry('c', 'x'));
    d.add(entry('c', 'y'));
    expect([...d.all()].map((e) => `${e.user}/${e.device}`)).toEqual(['b/x', 'c/x', 'c/y']);
  });
});
