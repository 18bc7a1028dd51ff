/**
 * The web chat app's files (web/dist, built at node start when stale) and its token helper, which
 * must not exist unless the node runs with the development secret. The app itself is driven in a
 * real browser by test/browser/web-chat.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_JWT_SECRET, loadConfig } from '../../cluster.config.ts';
import { verifyToken } from '../../gateway/auth.ts';
import { startNode, type ChatNode } from '../../node.ts';

const started: Array<{ node: ChatNode; dir: string }> = [];
async function start(jwtSecret: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'im-web-'));
  const node = await startNode(loadConfig({}, { port: 0, host: '127.0.0.1', dataDir: dir, jwtSecret, logLevel: 'silent' }));
  started.push({ node, dir });
  return `http://127.0.0.1:${node.port}`;
}
afterAll(async () => {
  for (const s of started) { await s.node.shutdown(); rmSync(s.dir, { recursive: true, force: true }); }
});

describe('web chat app', () => {
  it('serves the app shell, its bundle and stylesheet, and dev tokens with the development secret', async () => {
    const base = await start(DEFAULT_JWT_SECRET);
    const page = await fetch(`${base}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await page.text();
    expect(html).toContain('<title>actor-im chat</title>');
    expect(html).toContain('src="/web/app.js"');
    const js = await fetch(`${base}/web/app.js`);
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toMatch(/^text\/javascript/);
    const bundle = await js.text();
    // The SDK is bundled in (no bare imports left for the browser to resolve), and no server code.
    expect(bundle).not.toMatch(/(^|[;\n}])\s*import\s*[{*"'\w]/);
    expect(bundle).toContain('presence_sub');
    expect(bundle).not.toContain('zod');
    expect((await fetch(`${base}/web/app.css`)).headers.get('content-type')).toMatch(/^text\/css/);
    expect((await fetch(`${base}/web/nope.js`)).status).toBe(404);
    expect((await fetch(`${base}/web/..%2Fbuild.ts`)).status).toBe(404);
    const r = await fetch(`${base}/dev/token?user=alice`);
    expect(r.status).toBe(200);
    const { token } = (await r.json()) as { token: string };
    expect((await verifyToken(token, DEFAULT_JWT_SECRET)).user).toBe('alice');
    expect((await fetch(`${base}/dev/token?user=${encodeURIComponent('no spaces')}`)).status).toBe(400);
  });

  it('has no token helper when a real secret is configured', async () => {
    const base = await start('a-real-secret-for-this-node');
    expect((await fetch(`${base}/dev/token?user=alice`)).status).toBe(404);
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });
});
