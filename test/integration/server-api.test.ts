/**
 * The server API (docs/api.md) against real node processes over real HTTP: every call with its
 * answers and errors, the key rules (401, rotation, the development key, 404 without keys, the
 * IM_API_PORT listener), body limits (413 by content-length and by bytes received), strict
 * validation (400 naming the field), and what connected clients see (msg, recalled, kicked).
 * Answers are checked against the same zod schemas the OpenAPI document is generated from.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { startChatNode, type ChatNodeHandle } from '../harness/chat-node.ts';
import { freePort } from '../harness/servers.ts';
import { TestClient, login, type Frame } from '../harness/ws-client.ts';
import { ROUTES } from '../../api/routes.ts';
import * as s from '../../api/schemas.ts';

const KEY1 = 'first-api-key-0123456789';
const KEY2 = 'second-api-key-0123456789';
const MAX_FRAME = 4096;

let node: ChatNodeHandle;
const clients: TestClient[] = [];
const others: ChatNodeHandle[] = [];

beforeAll(async () => {
  node = await startChatNode({
    env: { IM_API_KEYS: ` ${KEY1}, ${KEY2} `, IM_MAX_FRAME_BYTES: String(MAX_FRAME), IM_RECALL_WINDOW_MS: '0' },
  });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  await Promise.all([node, ...others].map((n) => n?.stop().catch((e: unknown) => console.error(String(e)))));
});

interface Answer { status: number; body: any; headers: Headers }

async function call(method: string, path: string, body?: unknown, opts: { key?: string | null; base?: string; raw?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  const headers: Record<string, string> = { ...opts.headers };
  const key = opts.key === undefined ? KEY1 : opts.key;
  if (key !== null) headers.authorization = `Bearer ${key}`;
  if (body !== undefined || opts.raw !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(`${opts.base ?? node.httpUrl}${path}`, {
    method, headers, body: opts.raw ?? (body === undefined ? undefined : JSON.stringify(body)), signal: AbortSignal.timeout(10_000),
  });
  const text = await r.text();
  let parsed: unknown = text;
  try { parsed = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, body: parsed, headers: r.headers };
}

/** Asserts a 2xx answer that matches its schema, and returns it. */
function ok<T extends z.ZodType>(a: Answer, schema: T): z.infer<T> {
  expect(a.status, JSON.stringify(a.body)).toBe(200);
  const r = schema.safeParse(a.body);
  expect(r.success, `${JSON.stringify(a.body)}: ${JSON.stringify(r.error?.issues)}`).toBe(true);
  return r.data as z.infer<T>;
}

/** Asserts an error answer: status, code, and (optionally) a word of the message. */
function refused(a: Answer, status: number, code: string, mentions?: string): void {
  expect(a.status, JSON.stringify(a.body)).toBe(status);
  expect(s.errorAnswer.safeParse(a.body).success, JSON.stringify(a.body)).toBe(true);
  expect(a.body.error.code).toBe(code);
  if (mentions) expect(a.body.error.message).toContain(mentions);
}

async function client(user: string, device = 'd1', n: ChatNodeHandle = node): Promise<TestClient> {
  const { client: c } = await login(n.wsUrl, user, { device });
  clients.push(c);
  return c;
}

const tag = `a${process.pid}`;
const u = (name: string) => `${name}_${tag}`;
const enc = encodeURIComponent;

describe('server API: access', () => {
  it('refuses a missing or wrong key with 401; every configured key works (rotation)', async () => {
    refused(await call('POST', '/api/v1/tokens', { user: 'x' }, { key: null }), 401, 'unauthorized');
    const wrong = await call('GET', '/api/v1/users/x/presence', undefined, { key: 'first-api-key-012345678X' });
    refused(wrong, 401, 'unauthorized');
    expect(wrong.headers.get('www-authenticate')).toBe('Bearer');
    refused(await call('GET', '/api/v1/users/x/presence', undefined, { key: KEY1.slice(0, -1) }), 401, 'unauthorized');
    refused(await call('GET', '/api/v1/users/x/presence', undefined, { headers: { authorization: KEY1 }, key: null }), 401, 'unauthorized');
    ok(await call('GET', '/api/v1/users/x/presence', undefined, { key: KEY2 }), s.presenceAnswer);
    // Unknown calls are 404 (after the key check), never another route.
    refused(await call('GET', '/api/v1/nope'), 404, 'not_found');
    refused(await call('DELETE', '/api/v1/tokens'), 404, 'not_found');
    refused(await call('GET', '/api/v1/nope', undefined, { key: null }), 401, 'unauthorized');
  });

  it('without IM_API_KEYS: the development key on a development node, 404 elsewhere; IM_API_PORT moves the API', async () => {
    const apiPort = await freePort();
    // The development JWT secret (IM_JWT_SECRET unset) and an internal API listener.
    // And a real secret without keys: no API at all.
    const [dev, prod] = await Promise.all([startChatNode({ env: { IM_JWT_SECRET: '', IM_API_PORT: String(apiPort) } }), startChatNode({ env: {} })]);
    others.push(dev, prod);
    const apiBase = `http://127.0.0.1:${apiPort}`;
    ok(await call('POST', '/api/v1/tokens', { user: 'x' }, { base: apiBase, key: 'dev-api-key-change-me' }), s.tokenAnswer);
    refused(await call('POST', '/api/v1/tokens', { user: 'x' }, { base: apiBase, key: KEY1 }), 401, 'unauthorized');
    // Not on the client port any more.
    const onClientPort = await fetch(`${dev.httpUrl}/api/v1/tokens`, { method: 'POST', headers: { authorization: 'Bearer dev-api-key-change-me' }, body: '{"user":"x"}' });
    expect(onClientPort.status).toBe(404);
    await onClientPort.text();
    refused(await call('POST', '/api/v1/tokens', { user: 'x' }, { base: prod.httpUrl, key: 'dev-api-key-change-me' }), 404, 'not_found');
    refused(await call('GET', '/api/v1/openapi.json', undefined, { base: prod.httpUrl, key: null }), 404, 'not_found');
    await Promise.all([dev.stop(), prod.stop()]);
  }, 150_000);
});

describe('server API: input', () => {
  it('answers 400 bad_request naming the field for malformed JSON, wrong types, unknown fields and bad parameters', async () => {
    refused(await call('POST', '/api/v1/tokens', undefined, { raw: '{"user":' }), 400, 'bad_request', 'not valid JSON');
    refused(await call('POST', '/api/v1/tokens', undefined, { raw: '' }), 400, 'bad_request', 'not valid JSON');
    refused(await call('POST', '/api/v1/tokens', undefined, { raw: '["alice"]' }), 400, 'bad_request', 'JSON object');
    refused(await call('POST', '/api/v1/tokens', { user: 5 }), 400, 'bad_request', '"user"');
    refused(await call('POST', '/api/v1/tokens', { user: 'has space' }), 400, 'bad_request', '"user"');
    refused(await call('POST', '/api/v1/tokens', { user: 'a', ttl: 5 }), 400, 'bad_request', 'unknown field "ttl"');
    refused(await call('POST', '/api/v1/messages', { from: 'a', to: 'b', cmid: 5, body: 1 }), 400, 'bad_request', '"cmid"');
    refused(await call('POST', '/api/v1/messages', { from: 'a', to: 'b', cmid: 'c' }), 400, 'bad_request', '"body"');
    refused(await call('POST', '/api/v1/messages', { from: 'a', to: 'b', conv: 'dm:a:b', cmid: 'c', body: 1 }), 400, 'bad_request', 'exactly one');
    refused(await call('POST', '/api/v1/messages', { from: 'a', cmid: 'c', body: 1 }), 400, 'bad_request', 'exactly one');
    refused(await call('POST', '/api/v1/messages', { from: 'a', to: 'a', cmid: 'c', body: 1 }), 400, 'bad_request', '"to"');
    refused(await call('POST', '/api/v1/messages', { from: 'a', conv: 'dm:b:a', cmid: 'c', body: 1 }), 400, 'bad_request', '"conv"');
    let deep: unknown = 1;
    for (let i = 0; i < 600; i++) deep = [deep];
    refused(await call('POST', '/api/v1/messages', { from: 'a', to: 'b', cmid: 'c', body: deep }), 400, 'bad_request', 'nested');
    refused(await call('GET', `/api/v1/conversations/${enc('x:y')}/messages`), 400, 'bad_request', '"conv"');
    refused(await call('GET', '/api/v1/conversations/%zz/messages'), 400, 'bad_request', '"conv"');
    refused(await call('GET', `/api/v1/users/${enc('no/slash')}/presence`), 400, 'bad_request', '"user"');
    refused(await call('GET', `/api/v1/conversations/${enc('dm:a:b')}/messages?limit=201`), 400, 'bad_request', '"limit"');
    refused(await call('GET', `/api/v1/conversations/${enc('dm:a:b')}/messages?limit=0`), 400, 'bad_request', '"limit"');
    refused(await call('GET', `/api/v1/conversations/${enc('dm:a:b')}/messages?after=x`), 400, 'bad_request', '"after"');
    refused(await call('GET', `/api/v1/conversations/${enc('dm:a:b')}/messages?after=1&before=5`), 400, 'bad_request', 'after');
    refused(await call('GET', `/api/v1/conversations/${enc('dm:a:b')}/messages?since=1`), 400, 'bad_request', '"since"');
    refused(await call('POST', `/api/v1/groups/${enc('dm:a:b')}/members`, { add: ['c'] }), 400, 'bad_request', 'group');
    refused(await call('POST', '/api/v1/groups', { group: 'g1', owner: 'a', members: 'b' }), 400, 'bad_request', '"members"');
    refused(await call('POST', '/api/v1/users/a/disconnect', { reason: 'not a token!' }), 400, 'bad_request', '"reason"');
  });

  it('answers 413 too_large beyond IM_MAX_FRAME_BYTES, by content-length and by bytes received', async () => {
    const big = JSON.stringify({ from: 'a', to: 'b', cmid: 'c', body: 'x'.repeat(MAX_FRAME) });
    refused(await call('POST', '/api/v1/messages', undefined, { raw: big }), 413, 'too_large');
    // No content-length (a chunked body): judged on the bytes that arrive. Raw socket, since
    // the node answers (and closes) while the client is still sending.
    const answer = await new Promise<string>((resolve, reject) => {
      const sock = connect(node.port, '127.0.0.1');
      let got = '';
      sock.setTimeout(10_000, () => { sock.destroy(); reject(new Error(`no answer to a chunked body; got ${got}`)); });
      sock.on('data', (d) => { got += d.toString(); });
      sock.on('error', () => undefined); // EPIPE once the node closed: the answer is what counts
      sock.on('close', () => resolve(got));
      sock.write(`POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY1}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`);
      const chunk = 'x'.repeat(1024);
      let sent = 0;
      const more = () => {
        if (sock.destroyed || got !== '' || sent > MAX_FRAME * 4) return;
        sock.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
        sent += chunk.length;
        setTimeout(more, 2);
      };
      more();
    });
    expect(answer).toMatch(/^HTTP\/1\.1 413/);
    expect(answer).toContain('"code":"too_large"');
    // The node is fine afterwards.
    ok(await call('POST', '/api/v1/tokens', { user: 'after413' }), s.tokenAnswer);
  });
});

describe('server API: hostile input', () => {
  it('never answers 5xx and never stops the node: odd paths, queries, methods, bodies', async () => {
    const paths = [
      '/api/v1/', '/api/v1', '/api/v1/../healthz', '/api/v1/users//presence', '/api/v1/users/%00/presence', '/api/v1/users/%E0%A4%A/presence',
      `/api/v1/conversations/${'g%3A' + 'x'.repeat(3000)}/messages`, '/api/v1/conversations/g%3At/messages?%', '/api/v1/conversations/g%3At/messages?after=1e3',
      '/api/v1/conversations/g%3At/messages?after=99999999999999999999', '/api/v1/conversations/g%3At/messages?after=-1', '/api/v1/conversations/g%3At/messages?limit=&after=',
      '/api/v1/groups/g%3At/members/extra', '/api/v1/openapi.json?x=1', '/api/v1/tokens?user=x',
    ];
    for (const path of paths) {
      for (const method of ['GET', 'POST', 'PUT', 'DELETE', 'PATCH']) {
        const a = await call(method, path, method === 'GET' ? undefined : { user: 'x' });
        expect(a.status, `${method} ${path}: ${JSON.stringify(a.body)}`).toBeLessThan(500);
      }
    }
    const bodies = ['null', '1', '"x"', '{"user":"x","user":"y"}', '{"__proto__":{"user":"x"}}', '{"user":"x"}garbage', '\u0000', '{'.repeat(5000)];
    for (const raw of bodies) {
      for (const path of ['/api/v1/tokens', '/api/v1/messages', '/api/v1/groups', '/api/v1/users/x/disconnect', '/api/v1/groups/g%3Ax/members', '/api/v1/conversations/g%3Ax/recall']) {
        const a = await call('POST', path, undefined, { raw });
        expect(a.status, `${path} ${raw.slice(0, 40)}: ${JSON.stringify(a.body)}`).toBeLessThan(500);
      }
    }
    ok(await call('POST', '/api/v1/tokens', { user: 'still-here' }), s.tokenAnswer);
    const m = await fetch(`${node.httpUrl}/metrics`);
    expect(await m.text()).not.toMatch(/im_handler_errors_total\{where="api"\} [1-9]/);
  });
});

describe('server API: calls', () => {
  it('tokens: default ttl 3600, exp in seconds, at most 30 days; the token logs in', async () => {
    const before = Math.floor(Date.now() / 1000);
    const t = ok(await call('POST', '/api/v1/tokens', { user: u('tok') }), s.tokenAnswer);
    expect(t.exp).toBeGreaterThanOrEqual(before + 3600);
    expect(t.exp).toBeLessThanOrEqual(Math.floor(Date.now() / 1000) + 3600);
    const long = ok(await call('POST', '/api/v1/tokens', { user: u('tok'), ttl_s: 30 * 24 * 3600 }), s.tokenAnswer);
    expect(long.exp).toBeGreaterThanOrEqual(before + 30 * 24 * 3600);
    refused(await call('POST', '/api/v1/tokens', { user: u('tok'), ttl_s: 30 * 24 * 3600 + 1 }), 400, 'bad_request', '"ttl_s"');
    refused(await call('POST', '/api/v1/tokens', { user: u('tok'), ttl_s: 0 }), 400, 'bad_request', '"ttl_s"');
    const c = await TestClient.connect(node.wsUrl);
    clients.push(c);
    const r = await c.request({ t: 'login', token: t.token, device: 'web' });
    expect(r.t).toBe('login_ok');
    expect(r.user).toBe(u('tok'));
  });

  it('messages: stored and pushed as msg to every device of both users, idempotent by from + cmid, forbidden for non-members', async () => {
    const alice = await client(u('alice'));
    const support = await client(u('support'));
    const sent = ok(await call('POST', '/api/v1/messages', { from: u('support'), to: u('alice'), cmid: 'ticket-1', body: { text: 'answered' } }), s.sentAnswer);
    const conv = [u('alice'), u('support')].sort().join(':');
    expect(sent.conv).toBe(`dm:${conv}`);
    expect(sent.seq).toBe(1);
    for (const c of [alice, support]) {
      const m = await c.next((f) => f.t === 'msg' && f.conv === sent.conv);
      expect(m).toMatchObject({ seq: 1, mid: sent.mid, from: u('support'), cmid: 'ticket-1', kind: 'text', body: { text: 'answered' }, ts: sent.ts });
    }
    const again = ok(await call('POST', '/api/v1/messages', { from: u('support'), to: u('alice'), cmid: 'ticket-1', body: { text: 'other' } }), s.sentAnswer);
    expect(again).toEqual(sent);
    const next = ok(await call('POST', '/api/v1/messages', { from: u('alice'), conv: sent.conv, cmid: 'ticket-1', body: 'reply', kind: 'note' }), s.sentAnswer);
    expect(next.seq).toBe(2);
    expect(await support.next((f) => f.t === 'msg' && f.seq === 2)).toMatchObject({ kind: 'note', body: 'reply', from: u('alice') });
    refused(await call('POST', '/api/v1/messages', { from: u('mallory'), conv: sent.conv, cmid: 'x', body: 1 }), 403, 'forbidden');
    refused(await call('POST', '/api/v1/messages', { from: u('mallory'), conv: `g:nogroup_${tag}`, cmid: 'x', body: 1 }), 404, 'not_found');
    // A "file" message must name a file the sender may read, as for a client send.
    refused(await call('POST', '/api/v1/messages', { from: u('support'), to: u('alice'), cmid: 'f1', kind: 'file', body: { text: 'no file' } }), 400, 'bad_request', '"file"');
    refused(await call('POST', '/api/v1/messages', { from: u('support'), to: u('alice'), cmid: 'f2', kind: 'file', body: { file: 'A'.repeat(22) } }), 403, 'forbidden');
    // History holds exactly the two.
    const h = ok(await call('GET', `/api/v1/conversations/${enc(sent.conv)}/messages`), s.historyAnswer);
    expect(h.msgs.map((m) => m.seq)).toEqual([1, 2]);
  });

  it('history: after, before, limit, more, recalled messages; unknown conversations are not_found', async () => {
    const from = u('hist1');
    const to = u('hist2');
    let conv = '';
    for (let i = 1; i <= 7; i++) conv = ok(await call('POST', '/api/v1/messages', { from, to, cmid: `h${i}`, body: { i } }), s.sentAnswer).conv;
    const path = `/api/v1/conversations/${enc(conv)}/messages`;
    const all = ok(await call('GET', path), s.historyAnswer);
    expect(all.conv).toBe(conv);
    expect(all.msgs.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(all.more).toBe(false);
    const page = ok(await call('GET', `${path}?after=2&limit=3`), s.historyAnswer);
    expect(page.msgs.map((m) => m.seq)).toEqual([3, 4, 5]);
    expect(page.more).toBe(true);
    const back = ok(await call('GET', `${path}?before=6&limit=2`), s.historyAnswer);
    expect(back.msgs.map((m) => m.seq)).toEqual([4, 5]);
    expect(back.more).toBe(true);
    const first = ok(await call('GET', `${path}?before=3&limit=5`), s.historyAnswer);
    expect(first.msgs.map((m) => m.seq)).toEqual([1, 2]);
    expect(first.more).toBe(false);
    const newest = ok(await call('GET', `${path}?before=1000000&limit=2`), s.historyAnswer);
    expect(newest.msgs.map((m) => m.seq)).toEqual([6, 7]);
    expect(newest.more).toBe(true);
    // conv unencoded in the path works too.
    expect(ok(await call('GET', `/api/v1/conversations/${conv}/messages?after=6`), s.historyAnswer).msgs.map((m) => m.seq)).toEqual([7]);
    ok(await call('POST', `${path.replace('/messages', '/recall')}`, { seq: 3 }), s.okAnswer);
    const m3 = ok(await call('GET', `${path}?after=2&limit=1`), s.historyAnswer).msgs[0];
    expect(m3).toMatchObject({ seq: 3, recalled: true });
    expect('body' in m3).toBe(false);
    refused(await call('GET', `/api/v1/conversations/${enc(`g:none_${tag}`)}/messages`), 404, 'not_found');
    refused(await call('GET', `/api/v1/conversations/${enc(`dm:${u('never1')}:${u('never2')}`)}/messages`), 404, 'not_found');
  });

  it('recall: no time window, members get recalled with by ("@api" without by); unknown seq not_found', async () => {
    const bob = await client(u('rbob'));
    const sent = ok(await call('POST', '/api/v1/messages', { from: u('ralice'), to: u('rbob'), cmid: 'r1', body: 'oops' }), s.sentAnswer);
    await bob.next((f) => f.t === 'msg' && f.conv === sent.conv);
    // The sender itself may not recall it any more (IM_RECALL_WINDOW_MS=0 here) ...
    const alice = await client(u('ralice'));
    const own = await alice.request({ t: 'recall', conv: sent.conv, seq: 1 });
    expect(own).toMatchObject({ t: 'error', code: 'forbidden' });
    // ... the API may.
    const recallPath = `/api/v1/conversations/${enc(sent.conv)}/recall`;
    ok(await call('POST', recallPath, { seq: 1 }), s.okAnswer);
    expect(await bob.next((f) => f.t === 'recalled')).toEqual({ t: 'recalled', conv: sent.conv, seq: 1, by: '@api' });
    ok(await call('POST', '/api/v1/messages', { from: u('ralice'), to: u('rbob'), cmid: 'r2', body: 'again' }), s.sentAnswer);
    ok(await call('POST', recallPath, { seq: 2, by: u('moderator') }), s.okAnswer);
    expect(await bob.next((f) => f.t === 'recalled' && f.seq === 2)).toMatchObject({ by: u('moderator') });
    // Recalling again is fine and pushes nothing new.
    ok(await call('POST', recallPath, { seq: 2 }), s.okAnswer);
    refused(await call('POST', recallPath, { seq: 99 }), 404, 'not_found');
    refused(await call('POST', recallPath, { seq: 0 }), 400, 'bad_request', '"seq"');
    refused(await call('POST', `/api/v1/conversations/${enc(`g:none_${tag}`)}/recall`, { seq: 1 }), 404, 'not_found');
  });

  it('groups: create with an explicit owner, conflict, add then remove, owner kept, member list', async () => {
    const group = `team_${tag}`;
    const conv = `g:${group}`;
    const gb = await client(u('gb'));
    const created = ok(await call('POST', '/api/v1/groups', { group, owner: u('gowner'), members: [u('gb'), u('gc'), u('gb')] }), s.groupCreatedAnswer);
    expect(created).toEqual({ conv });
    refused(await call('POST', '/api/v1/groups', { group, owner: u('gx'), members: [] }), 409, 'conflict');
    // v1.1 group pushes name the acting party: "@api" without `by`.
    expect(await gb.next((f) => f.t === 'group' && f.conv === conv)).toMatchObject({ op: 'created', by: '@api' });
    const info = ok(await call('GET', `/api/v1/groups/${enc(conv)}/members`), s.groupAnswer);
    expect(info).toEqual({ conv, owner: u('gowner'), members: [u('gb'), u('gc'), u('gowner')].sort() });
    // The owner can chat in it at once.
    const gc = await client(u('gc'));
    ok(await call('POST', '/api/v1/messages', { from: u('gowner'), conv, cmid: 'g1', body: 'welcome' }), s.sentAnswer);
    await gc.next((f) => f.t === 'msg' && f.conv === conv);
    const changed = ok(await call('POST', `/api/v1/groups/${enc(conv)}/members`, { add: [u('gd'), u('ge')], remove: [u('gc'), u('ge')] }), s.membersAnswer);
    expect(changed.members).toEqual([u('gb'), u('gd'), u('gowner')].sort());
    expect(await gb.next((f) => f.t === 'group' && f.op === 'added')).toMatchObject({ conv, members: [u('gd'), u('ge')], by: '@api' });
    expect(await gb.next((f) => f.t === 'group' && f.op === 'removed')).toMatchObject({ conv, by: '@api' });
    ok(await call('POST', `/api/v1/groups/${enc(conv)}/members`, { add: [u('gf')], by: u('gowner') }), s.membersAnswer);
    expect(await gb.next((f) => f.t === 'group' && f.op === 'added' && (f.members as string[]).includes(u('gf')))).toMatchObject({ by: u('gowner') });
    ok(await call('POST', `/api/v1/groups/${enc(conv)}/members`, { remove: [u('gf')] }), s.membersAnswer);
    refused(await call('POST', `/api/v1/groups/${enc(conv)}/members`, { remove: [u('gowner')] }), 400, 'bad_request', 'owner');
    // Nothing changed by the refused call; an empty change answers the list.
    expect(ok(await call('POST', `/api/v1/groups/${enc(conv)}/members`, {}), s.membersAnswer).members).toEqual(changed.members);
    // The removed member may no longer post.
    refused(await call('POST', '/api/v1/messages', { from: u('gc'), conv, cmid: 'g2', body: 'hi' }), 403, 'forbidden');
    refused(await call('GET', `/api/v1/groups/${enc(`g:none_${tag}`)}/members`), 404, 'not_found');
    refused(await call('POST', `/api/v1/groups/${enc(`g:none_${tag}`)}/members`, { add: ['x'] }), 404, 'not_found');
  });

  it("users: conversations with cursors, presence of each device, disconnect kicks with the reason", async () => {
    const user = u('carol');
    const before = Date.now();
    const phone = await client(user, 'phone');
    const web = await client(user, 'web');
    const after = Date.now();
    const sent = ok(await call('POST', '/api/v1/messages', { from: u('dave'), to: user, cmid: 'c1', body: 'hi' }), s.sentAnswer);
    const convs = ok(await call('GET', `/api/v1/users/${user}/conversations`), s.convsAnswer);
    expect(convs.convs).toEqual([{ conv: sent.conv, last_seq: 1, ack_seq: 0, read_seq: 0 }]);
    expect(ok(await call('GET', `/api/v1/users/${u('nobody')}/conversations`), s.convsAnswer)).toEqual({ convs: [] });

    const p = ok(await call('GET', `/api/v1/users/${user}/presence`), s.presenceAnswer);
    expect(p.user).toBe(user);
    expect(p.online).toBe(true);
    expect(p.devices.map((d) => d.device).sort()).toEqual(['phone', 'web']);
    for (const d of p.devices) {
      expect(d.node).toBe(node.nodeId);
      expect(d.since).toBeGreaterThanOrEqual(before - 5);
      expect(d.since).toBeLessThanOrEqual(after + 5);
    }
    expect(ok(await call('GET', `/api/v1/users/${u('nobody')}/presence`), s.presenceAnswer)).toEqual({ user: u('nobody'), online: false, devices: [] });

    const one = ok(await call('POST', `/api/v1/users/${user}/disconnect`, { device: 'phone', reason: 'maintenance' }), s.closedAnswer);
    expect(one.closed).toBe(1);
    expect(await phone.next((f) => f.t === 'kicked')).toEqual({ t: 'kicked', reason: 'maintenance' });
    expect((await phone.closed).code).toBe(4000);
    expect(web.isOpen()).toBe(true);
    expect(ok(await call('GET', `/api/v1/users/${user}/presence`), s.presenceAnswer).devices.map((d) => d.device)).toEqual(['web']);
    const rest = ok(await call('POST', `/api/v1/users/${user}/disconnect`, {}), s.closedAnswer);
    expect(rest.closed).toBe(1);
    expect(await web.next((f: Frame) => f.t === 'kicked')).toEqual({ t: 'kicked', reason: 'admin' });
    await web.closed;
    expect(ok(await call('GET', `/api/v1/users/${user}/presence`), s.presenceAnswer).online).toBe(false);
    expect(ok(await call('POST', `/api/v1/users/${user}/disconnect`, {}), s.closedAnswer).closed).toBe(0);
  });
});

describe('server API: OpenAPI document', () => {
  it('is OpenAPI 3.1 JSON describing every call, and every $ref resolves', async () => {
    const a = await call('GET', '/api/v1/openapi.json');
    expect(a.status).toBe(200);
    expect(a.headers.get('content-type')).toContain('application/json');
    const doc = a.body as { openapi: string; paths: Record<string, Record<string, { operationId: string; responses: Record<string, unknown> }>>; components: { schemas: Record<string, unknown> } };
    expect(doc.openapi).toBe('3.1.0');
    for (const r of ROUTES) {
      const op = doc.paths[r.path]?.[r.method.toLowerCase()];
      expect(op, `${r.method} ${r.path}`).toBeDefined();
      expect(op.operationId).toBe(r.id);
      expect(op.responses['200']).toBeDefined();
      expect(op.responses['401']).toBeDefined();
    }
    expect(doc.paths['/api/v1/openapi.json']?.get).toBeDefined();
    const refs = JSON.stringify(doc).match(/"\$ref":"[^"]+"/g) ?? [];
    expect(refs.length).toBeGreaterThan(10);
    for (const ref of refs) {
      const id = ref.slice('"$ref":"#/components/schemas/'.length, -1);
      expect(doc.components.schemas[id], ref).toBeDefined();
    }
    // The request schemas are the validating ones: strict bodies say so.
    expect(doc.components.schemas.MessageRequest).toMatchObject({ type: 'object', additionalProperties: false, required: expect.arrayContaining(['from', 'cmid', 'body']) });
    expect(JSON.stringify(doc.paths['/api/v1/conversations/{conv}/messages'].get)).toContain('"maximum":200');
  });
});
