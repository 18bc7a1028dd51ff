/** The demo page and its token helper, which must not exist unless the node runs with the development secret. */
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

describe('web demo', () => {
  it('serves the page and dev tokens with the development secret', async () => {
    const base = await start(DEFAULT_JWT_SECRET);
    const page = await fetch(`${base}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('actor-im demo');
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
