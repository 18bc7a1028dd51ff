/**
 * The before-send hook (docs/api.md, Hooks): before a message gets its seq, the app's backend is
 * asked `{"from","conv","kind","body"}` and answers allow, reject (with a reason the sender sees
 * as `forbidden`) or replace (the body that is stored and pushed). The answer is untrusted
 * input: anything but one of those three shapes, a non-2xx status, a replacement body over the
 * frame limit, or no answer within IM_HOOK_TIMEOUT_MS is an error, and an error allows the send
 * when IM_HOOK_FAIL_OPEN is true, or refuses it with `unavailable` otherwise.
 *
 * This module never throws: every outcome is a verdict.
 */
import { z } from 'zod';
import type { Logger } from '../core/logger.ts';
import { SIGNATURE_HEADER, sign } from './signature.ts';

export interface SendToCheck { from: string; conv: string; kind: string; bodyJson: string }

export type Verdict =
  | { action: 'allow' }
  | { action: 'reject'; reason: string }
  | { action: 'replace'; bodyJson: string }
  | { action: 'unavailable' };

export type BeforeSend = (send: SendToCheck) => Promise<Verdict>;

export interface HookOptions {
  url: string;
  secret: string;
  timeoutMs: number;
  failOpen: boolean;
  /** Largest replacement body, as JSON text (IM_MAX_FRAME_BYTES). */
  maxBodyBytes: number;
}

export interface HookCounters { calls(outcome: 'allow' | 'reject' | 'replace' | 'error'): void }

const answerSchema = z.discriminatedUnion('action', [
  z.object({ action: z.literal('allow') }),
  z.object({ action: z.literal('reject'), reason: z.string().max(1000).optional() }),
  z.object({ action: z.literal('replace'), body: z.unknown().refine((b) => b !== undefined, 'body is required') }),
]);

/** Largest hook answer read; more is an error (the hook is trusted less than that). */
const MAX_ANSWER_BYTES = 4 * 1024 * 1024;

export function beforeSendHook(opts: HookOptions, log: Logger, counters?: HookCounters): BeforeSend {
  const failed = (why: string): Verdict => {
    counters?.calls('error');
    log.warn({ hook: 'before_send', err: why }, opts.failOpen ? 'before-send hook failed; send allowed (IM_HOOK_FAIL_OPEN)' : 'before-send hook failed; send refused');
    return opts.failOpen ? { action: 'allow' } : { action: 'unavailable' };
  };
  return async (send) => {
    const body = `{"from":${JSON.stringify(send.from)},"conv":${JSON.stringify(send.conv)},"kind":${JSON.stringify(send.kind)},"body":${send.bodyJson}}`;
    let text: string;
    try {
      const res = await fetch(opts.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', [SIGNATURE_HEADER]: sign(body, opts.secret) },
        body,
        signal: AbortSignal.timeout(opts.timeoutMs),
      });
      if (res.status < 200 || res.status > 299) {
        await res.body?.cancel().catch(() => undefined);
        return failed(`answered HTTP ${res.status}`);
      }
      const read = await readLimited(res, MAX_ANSWER_BYTES);
      if (read === null) return failed(`answer over ${MAX_ANSWER_BYTES} bytes`);
      text = read;
    } catch (e) {
      return failed(e instanceof Error ? `${e.name}: ${e.message}` : String(e));
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return failed('answer is not JSON');
    }
    const a = answerSchema.safeParse(parsed);
    if (!a.success) return failed(`answer is not allow/reject/replace: ${a.error.issues[0]?.message ?? 'invalid'}`);
    switch (a.data.action) {
      case 'allow':
        counters?.calls('allow');
        return { action: 'allow' };
      case 'reject':
        counters?.calls('reject');
        return { action: 'reject', reason: a.data.reason ?? 'rejected by the before-send hook' };
      case 'replace': {
        const bodyJson = JSON.stringify(a.data.body);
        if (Buffer.byteLength(bodyJson) > opts.maxBodyBytes) return failed(`replacement body over ${opts.maxBodyBytes} bytes`);
        counters?.calls('replace');
        return { action: 'replace', bodyJson };
      }
    }
  };
}

/** The response body as text, or null (and the rest discarded) past `max` bytes. */
async function readLimited(res: Response, max: number): Promise<string | null> {
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => undefined);
      return null;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}
