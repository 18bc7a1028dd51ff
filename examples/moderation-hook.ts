/**
 * A before-send hook (docs/api.md, Before-send hook): the node POSTs
 * `{"from","conv","kind","body"}` before a message gets its seq; this server checks every string
 * in the body against a word list and answers
 *
 *   {"action":"allow"}                               no listed word
 *   {"action":"reject","reason":"…"}                 a listed word (the sender gets `forbidden`)
 *   {"action":"replace","body":…}                    with --mask: the words masked with `*`
 *
 * Words match whole and case-insensitively ("darn" matches "Darn!" but not "darnell"). A request
 * without a valid `x-im-signature` gets 401. Mind that the node counts any non-2xx answer as a
 * failed hook, which with IM_HOOK_FAIL_OPEN=true (the default) lets the message through: a wrong
 * secret shows here as "bad signature" lines, and in the node's metrics as hook errors.
 *
 *   IM_WEBHOOK_SECRET=… npm run example:hook -- --port 8788 --words darn,heck [--words-file words.txt] [--mask]
 */
import { createServer, type Server } from 'node:http';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { answer, isMain, onShutdown, readBody, secretFrom, verified, SIGNATURE_HEADER } from './common.ts';

export type HookAnswer = { action: 'allow' } | { action: 'reject'; reason: string } | { action: 'replace'; body: unknown };

const escape = (w: string): string => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export class WordFilter {
  private readonly re: RegExp | null;

  constructor(words: readonly string[]) {
    const list = [...new Set(words.map((w) => w.trim().toLowerCase()).filter((w) => w.length > 0))];
    // Longest first, so "heck" does not shadow "heckin"; letters and digits around a word mean it is part of another.
    list.sort((a, b) => b.length - a.length);
    this.re = list.length === 0 ? null : new RegExp(`(?<![\\p{L}\\p{N}_])(?:${list.map(escape).join('|')})(?![\\p{L}\\p{N}_])`, 'giu');
  }

  /** The first listed word in any string value of `body`, or null. */
  find(body: unknown): string | null {
    if (this.re === null) return null;
    let found: string | null = null;
    walk(body, (s) => {
      if (found !== null) return s;
      this.re!.lastIndex = 0;
      const m = this.re!.exec(s);
      if (m) found = m[0];
      return s;
    });
    return found;
  }

  /** `body` with every listed word in its string values replaced by as many `*`. */
  mask(body: unknown): unknown {
    if (this.re === null) return body;
    return walk(body, (s) => s.replace(this.re!, (w) => '*'.repeat([...w].length)));
  }

  decide(body: unknown, maskMode: boolean): HookAnswer {
    const word = this.find(body);
    if (word === null) return { action: 'allow' };
    if (maskMode) return { action: 'replace', body: this.mask(body) };
    return { action: 'reject', reason: `message contains a blocked word ("${word.toLowerCase()}")` };
  }
}

/** Maps every string value of a JSON value (object keys stay as they are). */
function walk(v: unknown, f: (s: string) => string): unknown {
  if (typeof v === 'string') return f(v);
  if (Array.isArray(v)) return v.map((x) => walk(x, f));
  if (typeof v === 'object' && v !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = walk(x, f);
    return out;
  }
  return v;
}

export function hookServer(opts: { secret: string; filter: WordFilter; mask: boolean; log?: (line: string) => void }): Server {
  const log = opts.log ?? ((l: string) => console.log(l));
  return createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://hook');
    if (req.method === 'GET' && url.pathname === '/healthz') return answer(res, 200, { status: 'ok' });
    if (req.method !== 'POST') return answer(res, 404, { error: 'not found' });
    readBody(req, 8 * 1024 * 1024).then((raw) => {
      if (raw === null) return answer(res, 413, { error: 'body too large' });
      if (!verified(raw, req.headers[SIGNATURE_HEADER], opts.secret)) {
        log('bad signature: is the secret the node\'s IM_WEBHOOK_SECRET?');
        return answer(res, 401, { error: 'bad signature' });
      }
      let send: { from?: unknown; conv?: unknown; kind?: unknown; body?: unknown };
      try {
        send = JSON.parse(raw.toString('utf8')) as typeof send;
      } catch {
        return answer(res, 400, { error: 'not JSON' });
      }
      const verdict = opts.filter.decide(send.body, opts.mask);
      if (verdict.action !== 'allow') log(`${verdict.action} ${String(send.from)} -> ${String(send.conv)}${verdict.action === 'reject' ? `: ${verdict.reason}` : ''}`);
      answer(res, 200, verdict);
    }, () => answer(res, 400, { error: 'bad request' }));
  });
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '8788' },
      host: { type: 'string', default: '127.0.0.1' },
      secret: { type: 'string' },
      words: { type: 'string' },
      'words-file': { type: 'string' },
      mask: { type: 'boolean', default: false },
    },
  });
  const secret = secretFrom(values.secret);
  const words = [
    ...(values.words ?? '').split(','),
    // One word per line; empty lines and lines starting with # are skipped.
    ...(values['words-file'] ? readFileSync(values['words-file'], 'utf8').split('\n').filter((l) => !l.trim().startsWith('#')) : []),
  ].filter((w) => w.trim().length > 0);
  if (words.length === 0) {
    console.error('no words: give --words a,b,c and/or --words-file <file>');
    process.exit(2);
  }
  const server = hookServer({ secret, filter: new WordFilter(words), mask: values.mask });
  server.listen(Number(values.port), values.host, () => {
    console.log(`moderation hook on http://${values.host}:${values.port}/ (set the node's IM_HOOK_BEFORE_SEND_URL to it): ${words.length} words, ${values.mask ? 'masking' : 'rejecting'}`);
  });
  onShutdown(() => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }));
}
