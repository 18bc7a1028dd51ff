/**
 * protocol/: the encoders produce exactly the frames the schemas describe, `encodeMsg` equals the
 * object path byte for byte, the conversation id helpers, and the zod-free files stay zod-free
 * (the browser SDK bundles ids.ts and imports types from wire.ts).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { encodeFrame, encodeKicked, encodeMsg, encodeReceipt, encodeRecalled, encodeTyping, msgFrame } from '../../protocol/encode.ts';
import type { MsgFields } from '../../protocol/encode.ts';
import { MAX_BODY_DEPTH, clientFrameSchema, fastClientFrame, parseClientFrame, serverFrameSchema } from '../../protocol/frames.ts';
import { prng } from '../chaos/chaos-runner.ts';
import { dmConv, dmConvId, dmPeer, groupConv, parseConv } from '../../protocol/ids.ts';

const fields: MsgFields = { conv: 'dm:alice:bob', seq: 7, mid: '123456789012345678', from: 'alice', cmid: 'c"1\\', ts: 1_700_000_000_123, kind: 'text' };

function valid(json: string): unknown {
  const r = serverFrameSchema.safeParse(JSON.parse(json));
  if (!r.success) throw new Error(`${json}: ${r.error.message}`);
  return r.data;
}

describe('protocol encoders', () => {
  it('encodeMsg equals JSON.stringify(msgFrame(...)) for any JSON body, and for recalled messages', () => {
    const bodies: unknown[] = ['hi', { text: 'héllo "quoted"\n', n: [1, 2.5, null, true] }, 0, null, [], { a: { b: { c: 'x' } } }, '\u2028'];
    for (const body of bodies) {
      const bodyJson = JSON.stringify(body);
      expect(encodeMsg(fields, bodyJson)).toBe(JSON.stringify(msgFrame(fields, bodyJson)));
      expect(valid(encodeMsg(fields, bodyJson))).toEqual({ t: 'msg', ...fields, body });
    }
    expect(encodeMsg(fields, null)).toBe(JSON.stringify(msgFrame(fields, null)));
    expect(valid(encodeMsg(fields, null))).toEqual({ t: 'msg', ...fields, recalled: true });
  });

  it('field order does not depend on the object passed in', () => {
    const shuffled: MsgFields = { kind: 'k', ts: 2, cmid: 'c', from: 'f', mid: '1', seq: 1, conv: 'g:x' };
    expect(encodeMsg(shuffled, '1')).toBe('{"t":"msg","conv":"g:x","seq":1,"mid":"1","from":"f","cmid":"c","ts":2,"kind":"k","body":1}');
    expect(encodeReceipt({ read: 3, user: 'u', conv: 'g:x' })).toBe('{"t":"receipt","conv":"g:x","user":"u","read":3}');
  });

  it('push encoders produce valid frames', () => {
    expect(valid(encodeReceipt({ conv: 'dm:a:b', user: 'a', delivered: 4 }))).toEqual({ t: 'receipt', conv: 'dm:a:b', user: 'a', delivered: 4 });
    expect(valid(encodeRecalled({ conv: 'g:t', seq: 2, by: 'a' }))).toEqual({ t: 'recalled', conv: 'g:t', seq: 2, by: 'a' });
    expect(valid(encodeTyping({ conv: 'g:t', user: 'a' }))).toEqual({ t: 'typing', conv: 'g:t', user: 'a' });
    expect(valid(encodeKicked('shutdown'))).toEqual({ t: 'kicked', reason: 'shutdown' });
    expect(valid(encodeFrame({ t: 'ok', rid: 'r1', conv: 'g:t' }))).toEqual({ t: 'ok', rid: 'r1', conv: 'g:t' });
  });

  it('the server frame schema refuses drift: unknown fields, wrong codes', () => {
    expect(serverFrameSchema.safeParse({ t: 'typing', conv: 'g:t', user: 'a', extra: 1 }).success).toBe(false);
    expect(serverFrameSchema.safeParse({ t: 'error', code: 'nope', message: 'x' }).success).toBe(false);
    // A kick reason is a token: the protocol's own, or a server API disconnect's (docs/api.md).
    expect(serverFrameSchema.safeParse({ t: 'kicked', reason: 'not a token!' }).success).toBe(false);
    expect(serverFrameSchema.safeParse({ t: 'kicked', reason: '' }).success).toBe(false);
    expect(serverFrameSchema.safeParse({ t: 'kicked', reason: 'admin' }).success).toBe(true);
  });
});

describe('hand-checked hot frames', () => {
  it('accept exactly what the schema accepts, as the same frame (20,000 random send/ack/read/ping frames)', () => {
    const rnd = prng(20261201);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
    const deep = (n: number): unknown => (n === 0 ? 1 : [deep(n - 1)]);
    const strs = ['', 'a', 'ab', 'abc', 'dm:a:b', 'g:x', 'x'.repeat(64), 'x'.repeat(65), 'x'.repeat(128), 'x'.repeat(129), 'x'.repeat(140), 'x'.repeat(141), 'bad name', 'é', 'a.b-c_d'];
    const vals = [undefined, null, 0, -1, 1, 1.5, 2 ** 53, Number.MAX_SAFE_INTEGER, '1', true, {}, [], ...strs];
    const bodies = [undefined, null, 'hi', 1, { text: 'x' }, [1, [2]], deep(MAX_BODY_DEPTH), deep(MAX_BODY_DEPTH + 1)];
    let fastHits = 0;
    for (let i = 0; i < 20_000; i++) {
      const t = pick(['send', 'ack', 'read', 'ping'] as const);
      const made: Record<string, unknown> = { t };
      for (const k of ['rid', 'to', 'conv', 'cmid', 'seq', 'kind', 'extra']) if (rnd() < 0.6) made[k] = pick(vals);
      if (t === 'send' && rnd() < 0.8) made.body = pick(bodies);
      // What a frame can be after JSON.parse (no undefined values).
      const o = JSON.parse(JSON.stringify(made)) as Record<string, unknown>;
      const fast = fastClientFrame(o);
      const slow = clientFrameSchema.safeParse(o);
      const slowOk = slow.success && !(slow.data.t === 'send' && (slow.data.to === undefined) === (slow.data.conv === undefined));
      if (fast === null) continue;
      fastHits++;
      expect(slowOk, JSON.stringify(o)).toBe(true);
      expect(fast).toEqual(slow.data);
      expect(Object.keys(fast).sort()).toEqual(Object.keys(slow.data as object).sort());
    }
    expect(fastHits).toBeGreaterThan(1000);
    // Through the parser, a frame the hot path passes on still gets the schema's explanation.
    expect(parseClientFrame('{"t":"send","rid":"1","to":"b","conv":"dm:a:b","cmid":"c","body":1}')).toEqual({ ok: false, rid: '1', message: 'send: exactly one of "to" or "conv" is required' });
    expect(parseClientFrame('{"t":"ack","conv":"dm:a:b","seq":-1}')).toMatchObject({ ok: false, message: expect.stringContaining('ack: field "seq"') });
  });
});

describe('conversation ids', () => {
  it('dmConv is symmetric and canonical; groupConv; parseConv; dmPeer', () => {
    expect(dmConv('bob', 'alice')).toBe('dm:alice:bob');
    expect(dmConv('alice', 'bob')).toBe('dm:alice:bob');
    expect(dmConv('B', 'a')).toBe('dm:B:a'); // code-unit order: uppercase sorts first
    expect(dmConvId).toBe(dmConv);
    expect(groupConv('team')).toBe('g:team');
    expect(parseConv(dmConv('x', 'w'))).toEqual({ kind: 'dm', a: 'w', b: 'x' });
    expect(parseConv('dm:bob:alice')).toBeNull();
    expect(parseConv(groupConv('team'))).toEqual({ kind: 'group', group: 'team' });
    expect(dmPeer('dm:alice:bob', 'alice')).toBe('bob');
    expect(dmPeer('dm:alice:bob', 'bob')).toBe('alice');
    expect(dmPeer('dm:alice:bob', 'carol')).toBeNull();
    expect(dmPeer('g:team', 'alice')).toBeNull();
  });
});

describe('zod-free protocol files', () => {
  const url = (f: string) => new URL(`../../protocol/${f}`, import.meta.url);
  const imports = (f: string) => [...readFileSync(url(f), 'utf8').matchAll(/^import\s+(type\s+)?.*?from\s+'([^']+)'/gms)].map((m) => ({ typeOnly: !!m[1], from: m[2] }));

  it('ids.ts imports nothing; wire.ts and encode.ts import only types from protocol/', () => {
    expect(imports('ids.ts')).toEqual([]);
    for (const f of ['wire.ts', 'encode.ts']) {
      for (const i of imports(f)) {
        expect(i.typeOnly, `${f} imports ${i.from} at runtime`).toBe(true);
        expect(i.from).toMatch(/^\.\/[a-z-]+\.ts$/);
      }
    }
  });
});
