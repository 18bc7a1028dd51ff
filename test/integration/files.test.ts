/**
 * Files (docs/protocol.md, Files) against a real embedded node over real HTTP and WebSockets:
 * upload and download round trip (bytes, sha256, content-type, `?token=`), byte ranges (206,
 * 416), 413 by content-length and by bytes received, 401, 404 for unknown ids and for strangers
 * (never 403), access through a `kind:"file"` message for the conversation's members and its loss
 * after a recall or a removal, `forbidden` for a file message about a file one may not read, 429
 * past IM_UPLOADS_PER_MIN, and an interrupted upload leaving nothing in IM_DATA_DIR/files.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startChatNode, type ChatNodeHandle } from '../harness/chat-node.ts';
import { login, signTestToken, type TestClient } from '../harness/ws-client.ts';

const MAX_BYTES = 1024 * 1024;
const PER_MIN = 6;

let node: ChatNodeHandle;
const clients: TestClient[] = [];
const tag = `f${process.pid}`;
const u = (name: string) => `${name}_${tag}`;

beforeAll(async () => {
  node = await startChatNode({ env: { IM_MAX_FILE_BYTES: String(MAX_BYTES), IM_UPLOADS_PER_MIN: String(PER_MIN), IM_RECALL_WINDOW_MS: '600000' } });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  await node?.stop().catch((e: unknown) => console.error(String(e)));
});

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function upload(user: string | null, bytes: Uint8Array<ArrayBuffer>, opts: { name?: string; mime?: string; token?: string } = {}): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = { 'content-type': opts.mime ?? 'application/octet-stream' };
  const token = opts.token ?? (user === null ? undefined : await signTestToken(user));
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  const r = await fetch(`${node.httpUrl}/files?name=${encodeURIComponent(opts.name ?? 'f.bin')}`, { method: 'POST', headers, body: bytes });
  const text = await r.text();
  let body: unknown = text;
  try { body = JSON.parse(text); } catch { /* plain text */ }
  return { status: r.status, body };
}

async function download(user: string | null, id: string, opts: { range?: string; query?: boolean; token?: string } = {}): Promise<{ status: number; bytes: Buffer; headers: Headers }> {
  const headers: Record<string, string> = {};
  const token = opts.token ?? (user === null ? undefined : await signTestToken(user));
  let url = `${node.httpUrl}/files/${id}`;
  if (token !== undefined) {
    if (opts.query) url += `?token=${encodeURIComponent(token)}`;
    else headers.authorization = `Bearer ${token}`;
  }
  if (opts.range) headers.range = opts.range;
  const r = await fetch(url, { headers });
  return { status: r.status, bytes: Buffer.from(await r.arrayBuffer()), headers: r.headers };
}

async function on(user: string): Promise<TestClient> {
  const { client } = await login(node.wsUrl, user);
  clients.push(client);
  return client;
}

/** Every file under IM_DATA_DIR/files (the temporary ones under tmp/ included). */
function storedFiles(): string[] {
  const root = join(node.env.IM_DATA_DIR, 'files');
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(dir, e.name));
      else out.push(join(dir, e.name).slice(root.length + 1));
    }
  };
  walk(root);
  return out.sort();
}

/** Raw HTTP over a socket: `write` sends the request; resolves with everything the node answered once it closes or `until` matches. */
function raw(write: (sock: ReturnType<typeof connect>, answered: () => boolean) => void, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(node.port, '127.0.0.1');
    let got = '';
    sock.setTimeout(timeoutMs, () => { sock.destroy(); reject(new Error(`no answer; got ${JSON.stringify(got.slice(0, 200))}`)); });
    sock.on('data', (d) => {
      got += d.toString('latin1');
      if (/\r\n\r\n/.test(got)) { sock.destroy(); resolve(got); }
    });
    sock.on('error', () => undefined); // EPIPE/ECONNRESET once the node closed: the answer is what counts
    sock.on('close', () => resolve(got));
    write(sock, () => got !== '');
  });
}

describe('files: upload and download', () => {
  it('round trip: bytes, sha256, name, size and content-type; Authorization header or ?token=', async () => {
    const alice = u('alice');
    const bytes = randomBytes(300_000);
    const up = await upload(alice, bytes, { name: 'cat picture.jpg', mime: 'image/jpeg' });
    expect(up.status).toBe(201);
    expect(up.body).toEqual({ file: up.body.file, name: 'cat picture.jpg', size: bytes.length, mime: 'image/jpeg', sha256: sha256(bytes) });
    expect(up.body.file).toMatch(/^[A-Za-z0-9_-]{22}$/);
    for (const query of [false, true]) {
      const d = await download(alice, up.body.file, { query });
      expect(d.status).toBe(200);
      expect(d.headers.get('content-type')).toBe('image/jpeg');
      expect(d.bytes.length).toBe(bytes.length);
      expect(sha256(d.bytes)).toBe(sha256(bytes));
      expect(d.bytes.equals(bytes)).toBe(true);
    }
    // An empty file is a file too.
    const empty = await upload(alice, new Uint8Array(0), { name: 'empty.txt', mime: 'text/plain' });
    expect(empty.status).toBe(201);
    expect(empty.body).toMatchObject({ size: 0, sha256: sha256(new Uint8Array(0)) });
    const de = await download(alice, empty.body.file);
    expect([de.status, de.bytes.length]).toEqual([200, 0]);
  });

  it('byte ranges: 206 with content-range for one range, 416 when unsatisfiable', async () => {
    const alice = u('alice');
    const bytes = randomBytes(200_000);
    const { body: { file } } = await upload(alice, bytes);
    const part = await download(alice, file, { range: 'bytes=1000-1999' });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 1000-1999/${bytes.length}`);
    expect(part.bytes.equals(bytes.subarray(1000, 2000))).toBe(true);
    const tail = await download(alice, file, { range: 'bytes=-10' });
    expect([tail.status, tail.headers.get('content-range')]).toEqual([206, `bytes ${bytes.length - 10}-${bytes.length - 1}/${bytes.length}`]);
    expect(tail.bytes.equals(bytes.subarray(bytes.length - 10))).toBe(true);
    const open = await download(alice, file, { range: 'bytes=199990-' });
    expect(open.status).toBe(206);
    expect(open.bytes.equals(bytes.subarray(199_990))).toBe(true);
    const past = await download(alice, file, { range: `bytes=${bytes.length}-` });
    expect(past.status).toBe(416);
    expect(past.headers.get('content-range')).toBe(`bytes */${bytes.length}`);
    // Several ranges are not honoured: the whole file.
    const multi = await download(alice, file, { range: 'bytes=0-1,5-6' });
    expect([multi.status, multi.bytes.length]).toEqual([200, bytes.length]);
  });

  it('413 above IM_MAX_FILE_BYTES: by content-length, and by bytes received without one; nothing is kept', async () => {
    const token = await signTestToken(u('big'));
    const before = storedFiles();
    // content-length says too much: answered before the body is read.
    const byLength = await raw((sock) => {
      sock.write(`POST /files?name=big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${MAX_BYTES + 1}\r\n\r\n`);
      sock.write(Buffer.alloc(1000));
    });
    expect(byLength).toMatch(/^HTTP\/1\.1 413/);
    // Chunked, no length: judged on the bytes as they arrive.
    const chunked = await raw((sock, answered) => {
      sock.write(`POST /files?name=big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n`);
      const chunk = Buffer.alloc(64 * 1024, 7);
      let sent = 0;
      const more = () => {
        if (sock.destroyed || answered() || sent > MAX_BYTES * 3) return;
        sock.write(`${chunk.length.toString(16)}\r\n`);
        sock.write(chunk);
        sock.write('\r\n');
        sent += chunk.length;
        setTimeout(more, 1);
      };
      more();
    });
    expect(chunked).toMatch(/^HTTP\/1\.1 413/);
    // Exactly the limit is fine.
    const atLimit = await upload(u('big'), randomBytes(MAX_BYTES));
    expect(atLimit.status).toBe(201);
    await expect.poll(() => storedFiles().filter((f) => !before.includes(f)), { timeout: 5_000 }).toEqual([`${atLimit.body.file.slice(0, 2)}/${atLimit.body.file}`]);
  });

  it('401 without a token or with a bad one (upload and download)', async () => {
    const bytes = randomBytes(100);
    expect((await upload(null, bytes)).status).toBe(401);
    expect((await upload(null, bytes, { token: 'not-a-token' })).status).toBe(401);
    expect((await upload(null, bytes, { token: await signTestToken(u('x'), 'another-secret') })).status).toBe(401);
    expect((await upload(null, bytes, { token: await signTestToken(u('x'), undefined, -10) })).status).toBe(401);
    const { body: { file } } = await upload(u('alice'), bytes);
    expect((await download(null, file)).status).toBe(401);
    expect((await download(null, file, { token: 'nope' })).status).toBe(401);
    expect((await download(null, file, { token: 'nope', query: true })).status).toBe(401);
  });

  it('404 for unknown ids and for users with no access (never 403)', async () => {
    const { body: { file } } = await upload(u('alice'), randomBytes(100));
    expect((await download(u('stranger'), file)).status).toBe(404);
    expect((await download(u('stranger'), file, { query: true })).status).toBe(404);
    expect((await download(u('alice'), 'AAAAAAAAAAAAAAAAAAAAAA')).status).toBe(404);
    expect((await download(u('alice'), 'short')).status).toBe(404);
    expect((await download(u('alice'), '..%2F..%2Fim.sqlite3')).status).toBe(404);
  });

  it('429 past IM_UPLOADS_PER_MIN uploads per user per minute; other users are not affected', async () => {
    const rater = u('rater');
    const statuses: number[] = [];
    for (let i = 0; i < PER_MIN + 1; i++) statuses.push((await upload(rater, randomBytes(10))).status);
    expect(statuses).toEqual([...Array(PER_MIN).fill(201), 429]);
    expect((await upload(u('rater2'), randomBytes(10))).status).toBe(201);
  });

  it('an interrupted upload leaves nothing in IM_DATA_DIR/files', async () => {
    const token = await signTestToken(u('quitter'));
    const before = storedFiles();
    await new Promise<void>((resolve, reject) => {
      const sock = connect(node.port, '127.0.0.1');
      sock.on('error', () => undefined);
      sock.write(`POST /files?name=half HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${MAX_BYTES}\r\n\r\n`);
      sock.write(randomBytes(400_000));
      // Wait until the upload is being written (a temporary file exists), then go away.
      const started = Date.now();
      const check = setInterval(() => {
        if (storedFiles().some((f) => f.startsWith('tmp/'))) {
          clearInterval(check);
          sock.destroy();
          resolve();
        } else if (Date.now() - started > 10_000) {
          clearInterval(check);
          sock.destroy();
          reject(new Error('the upload never reached the file store'));
        }
      }, 10);
    });
    await expect.poll(() => storedFiles(), { timeout: 5_000 }).toEqual(before);
    // The node is fine afterwards.
    expect((await upload(u('quitter'), randomBytes(10))).status).toBe(201);
  });
});

describe('files: access through messages', () => {
  it('members of a conversation with a file message may read it; a recall ends that', async () => {
    const [alice, bob, carol] = [u('alice2'), u('bob2'), u('carol2')];
    const a = await on(alice);
    const bytes = randomBytes(5000);
    const { body: { file } } = await upload(alice, bytes, { mime: 'image/png' });
    expect((await download(bob, file)).status).toBe(404);
    const sent = await a.request({ t: 'send', to: bob, cmid: 'f1', kind: 'file', body: { file, caption: 'look' } });
    expect(sent).toMatchObject({ t: 'sent', seq: 1 });
    const d = await download(bob, file);
    expect(d.status).toBe(200);
    expect(d.bytes.equals(bytes)).toBe(true);
    expect((await download(carol, file)).status).toBe(404);
    // Recalled: bob loses access; alice (the uploader) keeps it.
    expect(await a.request({ t: 'recall', conv: sent.conv, seq: 1 })).toMatchObject({ t: 'ok' });
    expect((await download(bob, file)).status).toBe(404);
    expect((await download(alice, file)).status).toBe(200);
  });

  it('only current members: removed from the group, no more access', async () => {
    const [owner, dave, erin] = [u('owner3'), u('dave3'), u('erin3')];
    const o = await on(owner);
    const group = `files_${tag}`;
    expect(await o.request({ t: 'group_create', group, members: [dave, erin] })).toMatchObject({ t: 'ok' });
    const { body: { file } } = await upload(owner, randomBytes(100));
    expect(await o.request({ t: 'send', conv: `g:${group}`, cmid: 'f1', kind: 'file', body: { file } })).toMatchObject({ t: 'sent' });
    expect((await download(dave, file)).status).toBe(200);
    expect((await download(erin, file)).status).toBe(200);
    expect(await o.request({ t: 'group_remove', conv: `g:${group}`, members: [erin] })).toMatchObject({ t: 'ok' });
    expect((await download(erin, file)).status).toBe(404);
    expect((await download(dave, file)).status).toBe(200);
  });

  it('a file message about a file the sender may not read is forbidden and stores nothing; one it may read can be passed on', async () => {
    const [alice, bob, mallory, zed] = [u('alice4'), u('bob4'), u('mallory4'), u('zed4')];
    const [a, b, m] = [await on(alice), await on(bob), await on(mallory)];
    const { body: { file } } = await upload(alice, randomBytes(100));
    const refused = await m.request({ t: 'send', to: bob, cmid: 'steal', kind: 'file', body: { file } });
    expect(refused).toMatchObject({ t: 'error', code: 'forbidden' });
    const unknown = await m.request({ t: 'send', to: bob, cmid: 'ghost', kind: 'file', body: { file: 'AAAAAAAAAAAAAAAAAAAAAA' } });
    expect(unknown).toMatchObject({ t: 'error', code: 'forbidden' });
    const shapeless = await m.request({ t: 'send', to: bob, cmid: 'nofile', kind: 'file', body: { caption: 'x' } });
    expect(shapeless).toMatchObject({ t: 'error', code: 'bad_request' });
    const conv = [bob, mallory].sort().join(':');
    const batch = await b.request({ t: 'sync', conv: `dm:${conv}`, after: 0 });
    expect(batch).toMatchObject({ t: 'batch', msgs: [] });
    expect((await download(bob, file)).status).toBe(404);
    // Shared with bob, bob may pass it on to zed.
    expect(await a.request({ t: 'send', to: bob, cmid: 'share', kind: 'file', body: { file } })).toMatchObject({ t: 'sent' });
    expect(await b.request({ t: 'send', to: zed, cmid: 'fwd', kind: 'file', body: { file, caption: 'from alice' } })).toMatchObject({ t: 'sent' });
    expect((await download(zed, file)).status).toBe(200);
    // Plain messages are not checked.
    expect(await m.request({ t: 'send', to: bob, cmid: 'hi', body: { file } })).toMatchObject({ t: 'sent' });
  });
});
