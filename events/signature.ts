/** The signature of webhook and hook requests: `x-im-signature: sha256=<hex HMAC-SHA256 of the raw body>`. */
import { createHmac } from 'node:crypto';

export const SIGNATURE_HEADER = 'x-im-signature';

export function sign(body: string, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}
