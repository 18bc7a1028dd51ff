/**
 * Files in a cluster of 2 real nodes (NATS with JetStream, MariaDB, Redis): the bytes live in the
 * JetStream object store `im-files`, so a file uploaded on node A downloads on node B (whole and
 * by range), and access granted by a file message sent through B holds on A. Neither node keeps
 * files in its own data directory, and an upload broken off halfway leaves no chunks in the bucket.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { connect as natsConnect } from 'nats';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatNodeHandle } from '../harness/chat-node.ts';
import { startAll } from '../harness/servers.ts';
import { login, signTestToken, type TestClient } from '../harness/ws-client.ts';
import { sleep, startNodes, type Servers } from './helpers.ts';

let servers: Servers;
let nodes: ChatNodeHandle[] = [];
const clients: TestClient[] = [];
const tag = `fc${process.pid}`;
const u = (name: string) => `${name}_${tag}`;
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  servers = await startAll();
  nodes = await startNodes(servers, ['fa', 'fb']);
  await sleep(1_000);
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  await Promise.all(nodes.map((n) => n.stop().catch((e: unknown) => console.error(String(e)))));
  await servers?.stop();
});

async function upload(node: ChatNodeHandle, user: string, bytes: Uint8Array<ArrayBuffer>, mime = 'application/octet-stream'): Promise<{ status: number; body: any }> {
  const r = await fetch(`${node.httpUrl}/files?name=data.bin`, {
    method: 'POST', headers: { authorization: `Bearer ${await signTestToken(user)}`, 'content-type': mime }, body: bytes,
  });
  const text = await r.text();
  return { status: r.status, body: r.status === 201 ? JSON.parse(text) : text };
}

async function download(node: ChatNodeHandle, user: string, id: string, range?: string): Promise<{ status: number; bytes: Buffer; headers: Headers }> {
  const headers: Record<string, string> = { authorization: `Bearer ${await signTestToken(user)}` };
  if (range) headers.range = range;
  const r = await fetch(`${node.httpUrl}/files/${id}`, { headers });
  return { status: r.status, bytes: Buffer.from(await r.arrayBuffer()), headers: r.headers };
}

describe('files in a cluster of 2 nodes', () => {
  it('uploaded on node A, downloaded on node B (whole and by range); nothing in the nodes\' data directories', async () => {
    const [a, b] = nodes;
    const alice = u('alice');
    // 12 object-store chunks (128 KiB each): more than one fetch of 8 chunks.
    const bytes = randomBytes(1_500_000);
    const up = await upload(a, alice, bytes, 'video/mp4');
    expect(up.status).toBe(201);
    expect(up.body).toMatchObject({ size: bytes.length, mime: 'video/mp4', sha256: sha256(bytes) });
    const d = await download(b, alice, up.body.file);
    expect(d.status).toBe(200);
    expect(d.headers.get('content-type')).toBe('video/mp4');
    expect(sha256(d.bytes)).toBe(sha256(bytes));
    const part = await download(b, alice, up.body.file, 'bytes=131000-262999');
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 131000-262999/${bytes.length}`);
    expect(part.bytes.equals(bytes.subarray(131_000, 263_000))).toBe(true);
    // Across the boundary of the first fetch (chunk 8 starts at 1 MiB).
    const across = await download(b, alice, up.body.file, 'bytes=1000000-1100000');
    expect(across.status).toBe(206);
    expect(across.bytes.equals(bytes.subarray(1_000_000, 1_100_001))).toBe(true);
    const tail = await download(a, alice, up.body.file, 'bytes=-7');
    expect(tail.bytes.equals(bytes.subarray(bytes.length - 7))).toBe(true);
    expect((await download(b, alice, up.body.file, `bytes=${bytes.length}-`)).status).toBe(416);
    expect((await download(b, u('stranger'), up.body.file)).status).toBe(404);
    for (const n of nodes) expect(existsSync(join(n.env.IM_DATA_DIR, 'files'))).toBe(false);
  });

  it('a file message sent through node B opens the file to the other member on node A', async () => {
    const [a, b] = nodes;
    const [alice, bob] = [u('alice2'), u('bob2')];
    const bytes = randomBytes(50_000);
    const { body: { file } } = await upload(b, alice, bytes);
    const { client: ca } = await login(b.wsUrl, alice);
    clients.push(ca);
    const { client: cb } = await login(a.wsUrl, bob);
    clients.push(cb);
    expect((await download(a, bob, file)).status).toBe(404);
    const refused = await cb.request({ t: 'send', to: alice, cmid: 'x', kind: 'file', body: { file } });
    expect(refused).toMatchObject({ t: 'error', code: 'forbidden' });
    expect(await ca.request({ t: 'send', to: bob, cmid: 'f1', kind: 'file', body: { file } })).toMatchObject({ t: 'sent', seq: 1 });
    expect(await cb.next((f) => f.t === 'msg' && f.kind === 'file', 5_000)).toMatchObject({ body: { file } });
    const d = await download(a, bob, file);
    expect(d.status).toBe(200);
    expect(d.bytes.equals(bytes)).toBe(true);
  });

  it('an upload broken off halfway leaves no chunks in the object store', async () => {
    const [a] = nodes;
    // The bucket exists (earlier uploads created it); count the messages of its stream.
    const nc = await natsConnect({ servers: servers.nats.url });
    try {
      const jsm = await nc.jetstreamManager();
      const messages = async () => (await jsm.streams.info('OBJ_im-files')).state.messages;
      const before = await messages();
      const token = await signTestToken(u('quitter'));
      const sock = tcpConnect(a.port, '127.0.0.1');
      sock.on('error', () => undefined);
      sock.write(`POST /files?name=half HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${4 * 1024 * 1024}\r\n\r\n`);
      sock.write(randomBytes(1024 * 1024));
      // Some chunks are in the bucket's stream: then the client goes away.
      const end = Date.now() + 10_000;
      while ((await messages()) <= before) {
        if (Date.now() > end) throw new Error('no chunk of the upload reached the object store');
        await sleep(20);
      }
      sock.destroy();
      const end2 = Date.now() + 10_000;
      let now = await messages();
      while (now !== before && Date.now() < end2) { await sleep(50); now = await messages(); }
      expect(now).toBe(before);
    } finally {
      await nc.close();
    }
    // The node is fine afterwards.
    expect((await upload(a, u('quitter'), randomBytes(10))).status).toBe(201);
  });
});
