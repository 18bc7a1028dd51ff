/**
 * Small helpers shared by the examples: the `x-im-signature` check (docs/api.md, Sinks), a
 * bounded body reader, JSON answers, a bounded LRU set, and "is this file the entry point".
 * Plain node:http and node:crypto on purpose: copy them into any Node backend.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

export const SIGNATURE_HEADER = 'x-im-signature';

/** Whether `header` is `sha256=<hex HMAC-SHA256 of rawBody keyed with secret>`, compared in constant time. */
export function verified(rawBody: Buffer, header: string | string[] | undefined, secret: string): boolean {
  if (typeof header !== 'string') return false;
  const want = Buffer.from(`sha256=${createHmac('sha256', secret).update(rawBody).digest('hex')}`);
  const got = Buffer.from(header);
  return got.length === want.length && timingSafeEqual(got, want);
}

/** The request body, or null when it is larger than `max` bytes (the rest is not read). */
export function readBody(req: IncomingMessage, max: number): Promise<Buffer | null> {
  return new Promise((res, rej) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      if (over) return;
      size += c.length;
      if (size > max) {
        over = true;
        res(null);
        req.resume();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => { if (!over) res(Buffer.concat(chunks)); });
    req.on('error', rej);
  });
}

export function answer(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The webhook/hook secret: the flag, else IM_WEBHOOK_SECRET; at least 16 characters like the node's. */
export function secretFrom(flag: string | undefined): string {
  const secret = flag ?? process.env.IM_WEBHOOK_SECRET;
  if (!secret || secret.length < 16) {
    console.error('a secret of at least 16 characters is needed: --secret <s> or IM_WEBHOOK_SECRET (the same as the node\'s IM_WEBHOOK_SECRET)');
    process.exit(2);
  }
  return secret;
}

/** A set that forgets its least recently used member beyond `max` members. */
export class LruSet {
  private readonly items = new Map<string, true>();
  constructor(private readonly max: number) {}

  has(key: string): boolean {
    if (!this.items.has(key)) return false;
    this.items.delete(key);
    this.items.set(key, true);
    return true;
  }

  add(key: string): void {
    this.items.delete(key);
    this.items.set(key, true);
    if (this.items.size > this.max) this.items.delete(this.items.keys().next().value as string);
  }

  get size(): number {
    return this.items.size;
  }
}

/** A map that forgets its oldest entry beyond `max` entries. */
export class BoundedMap<V> {
  private readonly items = new Map<string, V>();
  constructor(private readonly max: number) {}

  get(key: string): V | undefined {
    return this.items.get(key);
  }

  set(key: string, value: V): void {
    this.items.delete(key);
    this.items.set(key, value);
    if (this.items.size > this.max) this.items.delete(this.items.keys().next().value as string);
  }
}

/** True when this module is the script node was started with (`node --import tsx examples/x.ts`). */
export function isMain(importMetaUrl: string): boolean {
  return process.argv[1] !== undefined && pathToFileURL(resolve(process.argv[1])).href === importMetaUrl;
}

/** Stop on SIGINT/SIGTERM: run `close`, then exit 0 (or 1 when close throws or takes over 5 s). */
export function onShutdown(close: () => Promise<void>): void {
  let closing = false;
  const stop = (): void => {
    if (closing) return;
    closing = true;
    const timer = setTimeout(() => process.exit(1), 5000);
    timer.unref();
    close().then(() => process.exit(0), (e: unknown) => {
      console.error('shutdown failed:', e);
      process.exit(1);
    });
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
