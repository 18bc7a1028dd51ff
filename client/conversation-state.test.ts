import { describe, expect, it } from 'vitest';
import { ConversationState } from './conversation-state.ts';
import type { MsgFrame } from './types.ts';

const msg = (conv: string, seq: number, body: unknown = `m${seq}`): MsgFrame =>
  ({ t: 'msg', conv, seq, mid: `${conv}-${seq}`, from: 'bob', cmid: `c${seq}`, ts: seq, kind: 'text', body });
const seqs = (ms: MsgFrame[]) => ms.map((m) => m.seq);

describe('ConversationState', () => {
  it('delivers in-order messages at once and tracks the highest contiguous seq', () => {
    const s = new ConversationState();
    expect(seqs(s.offer(msg('g:a', 1)).deliver)).toEqual([1]);
    expect(seqs(s.offer(msg('g:a', 2)).deliver)).toEqual([2]);
    expect(s.held('g:a')).toBe(2);
    expect(s.held('g:other')).toBe(0);
  });

  it('drops duplicates by (conv, seq), delivered or buffered', () => {
    const s = new ConversationState();
    s.offer(msg('g:a', 1));
    expect(s.offer(msg('g:a', 1))).toEqual({ deliver: [], duplicate: true });
    s.offer(msg('g:a', 3));
    expect(s.offer(msg('g:a', 3)).duplicate).toBe(true);
    // Same seq in another conversation is a different message.
    expect(seqs(s.offer(msg('g:b', 1)).deliver)).toEqual([1]);
  });

  it('buffers out-of-order messages behind a gap and releases them in order', () => {
    const s = new ConversationState();
    s.offer(msg('g:a', 1));
    expect(s.offer(msg('g:a', 4)).deliver).toEqual([]);
    expect(s.offer(msg('g:a', 3)).deliver).toEqual([]);
    expect(s.gapAfter('g:a')).toBe(1);
    expect(s.gaps()).toEqual(['g:a']);
    expect(seqs(s.offer(msg('g:a', 2)).deliver)).toEqual([2, 3, 4]);
    expect(s.gapAfter('g:a')).toBeNull();
    expect(s.held('g:a')).toBe(4);
  });

  it('starts from known state and ignores what the app already holds', () => {
    const s = new ConversationState({ 'g:a': 10 });
    expect(s.offer(msg('g:a', 9)).duplicate).toBe(true);
    expect(s.offer(msg('g:a', 12)).deliver).toEqual([]);
    expect(s.gapAfter('g:a')).toBe(10);
    expect(s.snapshot()).toEqual({ 'g:a': 10 });
  });

  it('a fresh state sees a gap when messages start above 1', () => {
    const s = new ConversationState();
    s.offer(msg('dm:a:b', 51));
    expect(s.gapAfter('dm:a:b')).toBe(0);
  });

  it('rejects invalid seqs', () => {
    const s = new ConversationState();
    expect(s.offer(msg('g:a', 0)).duplicate).toBe(true);
    expect(s.offer(msg('g:a', 1.5)).duplicate).toBe(true);
  });

  it('applies recalls to delivered, buffered and not-yet-seen messages', () => {
    const s = new ConversationState();
    s.offer(msg('g:a', 1));
    expect(s.markRecalled('g:a', 1)).toBe('delivered');
    s.offer(msg('g:a', 3));
    expect(s.markRecalled('g:a', 3)).toBe('buffered');
    expect(s.markRecalled('g:a', 4)).toBe('pending');
    const out = s.offer(msg('g:a', 2)).deliver;
    expect(out.map((m) => [m.seq, m.recalled ?? false, 'body' in m])).toEqual([[2, false, true], [3, true, false]]);
    const [four] = s.offer(msg('g:a', 4)).deliver;
    expect(four.recalled).toBe(true);
    expect(four.body).toBeUndefined();
  });
});

describe('ConversationState.skipTo', () => {
  const m = (seq: number) => ({ t: 'msg' as const, conv: 'c', seq, mid: `m${seq}`, from: 'x', cmid: `c${seq}`, ts: seq, kind: 'text', body: seq });
  it('holds up to seq without delivering, drops older buffered ones, releases the ones right after', () => {
    const s = new ConversationState();
    s.offer(m(50));
    s.offer(m(101));
    s.offer(m(102));
    expect(s.skipTo('c', 100).map((x) => x.seq)).toEqual([101, 102]);
    expect(s.held('c')).toBe(102);
    expect(s.gapAfter('c')).toBeNull();
    expect(s.skipTo('c', 10)).toEqual([]);
    expect(s.held('c')).toBe(102);
    expect(s.offer(m(100)).duplicate).toBe(true);
  });
});
