/**
 * protocol/: the encoders produce exactly the frames the schemas describe, `encodeMsg` equals the
 * object path byte for byte, the conversation id helpers, and the zod-free files stay zod-free
 * (the browser SDK bundles ids.ts and imports types from wire.ts).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { encodeFrame, encodeKicked, encodeMsg, encodeReceipt, encodeRecalled, encodeTyping, msgFrame } from '../../protocol/encode.ts';
import type { MsgFields } from '../../protocol/encode.ts';
import { serverFrameSchema } from '../../protocol/frames.ts';
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
