/**
 * Per-conversation delivery state: the highest contiguous seq handed to the application, messages
 * that arrived ahead of a gap, and recalls seen before their message. Pure (no timers, no I/O) so
 * the ordering rules are unit-testable; ChatClient decides when to sync.
 */
import type { MsgFrame } from './types.ts';

interface Conv {
  /** Highest seq such that 1..held were all delivered (or were known at start). */
  held: number;
  /** Messages with seq > held + 1, waiting for the gap to close. */
  ahead: Map<number, MsgFrame>;
  /** Recalls for seqs not delivered yet: applied when the message is delivered. */
  recalls: Set<number>;
}

export interface OfferResult {
  /** Messages now deliverable, ascending and contiguous (possibly empty). */
  deliver: MsgFrame[];
  /** True when (conv, seq) was already delivered or is already buffered. */
  duplicate: boolean;
}

export class ConversationState {
  private readonly convs = new Map<string, Conv>();

  /** `initial` maps conv → highest seq the application already holds (for apps that persist). */
  constructor(initial: Record<string, number> = {}) {
    for (const [conv, seq] of Object.entries(initial)) this.get(conv).held = Math.max(0, Math.floor(seq));
  }

  private get(conv: string): Conv {
    let c = this.convs.get(conv);
    if (!c) {
      c = { held: 0, ahead: new Map(), recalls: new Set() };
      this.convs.set(conv, c);
    }
    return c;
  }

  /** Highest contiguous seq delivered in `conv` (0 if none). */
  held(conv: string): number {
    return this.convs.get(conv)?.held ?? 0;
  }

  /** Conversations this state knows about. */
  conversations(): string[] {
    return [...this.convs.keys()];
  }

  /** conv → highest contiguous seq; what an app persists and passes back as `initial`. */
  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [conv, c] of this.convs) out[conv] = c.held;
    return out;
  }

  /**
   * Takes one message from the wire (push, sync batch or our own `sent`). Drops duplicates by
   * (conv, seq); releases it and every buffered successor once there is no gap before it.
   */
  offer(msg: MsgFrame): OfferResult {
    if (!Number.isSafeInteger(msg.seq) || msg.seq < 1) return { deliver: [], duplicate: true };
    const c = this.get(msg.conv);
    if (msg.seq <= c.held || c.ahead.has(msg.seq)) return { deliver: [], duplicate: true };
    if (msg.seq > c.held + 1) {
      c.ahead.set(msg.seq, msg);
      return { deliver: [], duplicate: false };
    }
    const deliver: MsgFrame[] = [];
    let next: MsgFrame | undefined = msg;
    while (next) {
      deliver.push(this.applyRecall(c, next));
      c.held = next.seq;
      next = c.ahead.get(c.held + 1);
      if (next) c.ahead.delete(next.seq);
    }
    return { deliver, duplicate: false };
  }

  /**
   * Treats 1..seq of `conv` as held without delivering them (an app that starts a conversation at
   * its newest messages and pages back with `history`). Buffered messages up to `seq` are dropped;
   * those right after it are released and returned, in order. Never moves backwards.
   */
  skipTo(conv: string, seq: number): MsgFrame[] {
    const c = this.get(conv);
    if (!Number.isSafeInteger(seq) || seq <= c.held) return [];
    c.held = seq;
    for (const s of [...c.ahead.keys()]) if (s <= seq) c.ahead.delete(s);
    for (const s of [...c.recalls]) if (s <= seq) c.recalls.delete(s);
    const deliver: MsgFrame[] = [];
    let next = c.ahead.get(c.held + 1);
    while (next) {
      c.ahead.delete(next.seq);
      deliver.push(this.applyRecall(c, next));
      c.held = next.seq;
      next = c.ahead.get(c.held + 1);
    }
    return deliver;
  }

  /** The `after` to sync from when messages are waiting behind a gap, else null. */
  gapAfter(conv: string): number | null {
    const c = this.convs.get(conv);
    return c && c.ahead.size > 0 ? c.held : null;
  }

  /** Conversations that currently have a gap. */
  gaps(): string[] {
    return [...this.convs].filter(([, c]) => c.ahead.size > 0).map(([conv]) => conv);
  }

  /**
   * Records a recall. Returns 'delivered' if the app already has the message (the app must update
   * it), 'buffered' if it was waiting behind a gap (now stripped), 'pending' if not seen yet.
   */
  markRecalled(conv: string, seq: number): 'delivered' | 'buffered' | 'pending' {
    const c = this.get(conv);
    if (seq <= c.held) return 'delivered';
    const m = c.ahead.get(seq);
    if (m) {
      c.ahead.set(seq, recalledCopy(m));
      return 'buffered';
    }
    c.recalls.add(seq);
    return 'pending';
  }

  private applyRecall(c: Conv, m: MsgFrame): MsgFrame {
    if (!c.recalls.delete(m.seq)) return m;
    return recalledCopy(m);
  }
}

function recalledCopy(m: MsgFrame): MsgFrame {
  const { body: _body, ...rest } = m;
  return { ...rest, recalled: true };
}
