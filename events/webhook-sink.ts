/**
 * The webhook sink: POST `{"events":[…]}` (a relay batch, up to 500) to IM_WEBHOOK_URL, signed
 * with `x-im-signature: sha256=<hex HMAC-SHA256 of the raw body with IM_WEBHOOK_SECRET>`. Only a
 * 2xx answer within the timeout confirms the batch; the answer's body is never read (a receiver
 * that answers garbage, slowly or not at all only delays its own events).
 */
import type { EventSink, RelayedEvent } from './event-relay.ts';
import { SIGNATURE_HEADER, sign } from './signature.ts';

export class WebhookSink implements EventSink {
  readonly name = 'webhook';

  constructor(private readonly url: string, private readonly secret: string, private readonly timeoutMs = 5000) {}

  async deliver(events: readonly RelayedEvent[]): Promise<void> {
    const body = `{"events":[${events.map((e) => e.json).join(',')}]}`;
    const res = await fetch(this.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', [SIGNATURE_HEADER]: sign(body, this.secret) },
      body,
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    await res.body?.cancel().catch(() => undefined);
    if (res.status < 200 || res.status > 299) throw new Error(`webhook answered HTTP ${res.status}`);
  }

  async close(): Promise<void> {
    // Nothing held between batches.
  }
}
