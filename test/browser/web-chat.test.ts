/**
 * The web chat app (web/) in real Chromium, against a real node (test/harness/chat-node.ts) running
 * with the development secret so that the page gets its tokens from /dev/token.
 *
 * Chromium comes from scripts/install-deps.sh (Debian `chromium`); without it this file fails
 * rather than skips. Set IM_SCREENSHOTS=1 to (re)write docs/screenshots/*.png from these screens.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { ChatClient } from '../../client/index.ts';
import { DEFAULT_JWT_SECRET } from '../../cluster.config.ts';
import { REPO_ROOT, startChatNode, type ChatNodeHandle } from '../harness/chat-node.ts';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = process.env.IM_SCREENSHOTS === '1' ? join(REPO_ROOT, 'docs', 'screenshots') : null;

let node: ChatNodeHandle;
let ctx: BrowserContext;
let profile = '';
const clients: ChatClient[] = [];

async function token(user: string): Promise<string> {
  const r = await fetch(`${node.httpUrl}/dev/token?user=${user}`);
  return ((await r.json()) as { token: string }).token;
}

/** A Node-side SDK client (seeding and server-side checks). */
async function sdk(user: string): Promise<ChatClient> {
  const c = new ChatClient({ urls: node.wsUrl, token: () => token(user), WebSocket, device: `check-${user}`, syncOnLogin: user === 'alice' });
  clients.push(c);
  await c.connect();
  return c;
}

async function shot(page: Page, name: string): Promise<void> {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

/** Frames each page wrote on its WebSockets. */
const written = new Map<Page, string[]>();

async function signIn(user: string, viewport = { width: 1100, height: 720 }): Promise<Page> {
  const page = await ctx.newPage();
  const frames: string[] = [];
  written.set(page, frames);
  page.on('websocket', (ws) => ws.on('framesent', (f) => { if (typeof f.payload === 'string') frames.push(f.payload); }));
  await page.setViewportSize(viewport);
  page.on('pageerror', (e) => console.error(`[${user} page] ${e.message}`));
  await page.goto(node.httpUrl + '/');
  await page.getByLabel('Your user id').fill(user);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#conn[data-state="open"]').waitFor();
  return page;
}

/** expect.poll with room for a busy machine (vitest's default is 1 s). */
const poll = <T>(fn: () => T | Promise<T>) => expect.poll(fn, { timeout: 10_000, interval: 50 });
const bubbles = (page: Page, text: string) => page.locator('#messages .msg', { hasText: text });
const item = (page: Page, conv: string) => page.locator(`#conv-list [data-conv="${conv}"]`);

async function send(page: Page, text: string): Promise<void> {
  await page.getByLabel('Message', { exact: true }).fill(text);
  await page.getByLabel('Message', { exact: true }).press('Enter');
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/install-deps.sh (installs the Debian chromium package)`);
  node = await startChatNode({ env: { IM_JWT_SECRET: DEFAULT_JWT_SECRET } });
  // History to scroll back through: 120 messages from carol to alice.
  const carol = await sdk('carol');
  await Promise.all(Array.from({ length: 120 }, (_, i) => carol.send({ to: 'alice' }, `seed ${i + 1}`)));
  // alice's other device received (acked) them: the web page gets no login backlog, only what it asks for.
  const aliceElsewhere = await sdk('alice');
  for (const end = Date.now() + 15_000; aliceElsewhere.held('dm:alice:carol') < 120;) {
    if (Date.now() > end) throw new Error(`alice's SDK holds ${aliceElsewhere.held('dm:alice:carol')} of 120`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await aliceElsewhere.close();
  profile = mkdtempSync(join(tmpdir(), 'im-chromium-'));
  ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  ctx.setDefaultTimeout(15_000);
}, 90_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await ctx?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await node?.stop();
});

describe('web chat app in Chromium', () => {
  let alice: Page;
  let bob: Page;

  it('two users chat both ways, with unread count, read marks and typing', async () => {
    if (SHOTS) {
      const p = await ctx.newPage();
      await p.setViewportSize({ width: 1100, height: 720 });
      await p.goto(node.httpUrl + '/');
      await shot(p, 'sign-in');
      await p.close();
    }
    alice = await signIn('alice');
    bob = await signIn('bob');
    await alice.getByLabel('Start a chat with user id').fill('bob');
    await alice.getByRole('button', { name: 'Open chat' }).click();
    await send(alice, 'hi bob');
    await bubbles(alice, 'hi bob').locator('.mark[data-state="sent"], .mark[data-state="delivered"]').waitFor();

    // bob: the conversation shows up with its last message and one unread.
    await item(bob, 'dm:alice:bob').waitFor();
    await poll(() => item(bob, 'dm:alice:bob').textContent()).toContain('hi bob');
    await poll(() => item(bob, 'dm:alice:bob').locator('.badge').textContent()).toBe('1');
    await poll(() => bob.title()).toBe('(1) actor-im chat');
    await item(bob, 'dm:alice:bob').click();
    await bubbles(bob, 'hi bob').waitFor();
    expect(await item(bob, 'dm:alice:bob').locator('.badge').count()).toBe(0);
    await poll(() => bob.title()).toBe('actor-im chat');

    // alice sees it read, and bob online.
    await bubbles(alice, 'hi bob').locator('.mark[data-state="read"]').waitFor();
    await alice.locator('#conv-list [data-conv="dm:alice:bob"] .presence.on').waitFor();

    // bob types: alice sees it; bob answers.
    await bob.getByLabel('Message', { exact: true }).pressSequentially('hey al', { delay: 20 });
    await poll(() => alice.locator('#typing').textContent()).toContain('bob is typing');
    await bob.getByLabel('Message', { exact: true }).press('Enter');
    await bubbles(alice, 'hey al').waitFor();
    expect(await bubbles(alice, 'hey al').getAttribute('class')).toContain('theirs');
    await bubbles(bob, 'hey al').locator('.mark[data-state="read"]').waitFor();
    await shot(alice, 'chat');
  });

  it('reload keeps the history and the read marks', async () => {
    await bob.reload();
    await bob.locator('#conn[data-state="open"]').waitFor();
    await item(bob, 'dm:alice:bob').click();
    await bubbles(bob, 'hi bob').waitFor();
    await bubbles(bob, 'hey al').locator('.mark[data-state="read"]').waitFor();
    const texts = await bob.locator('#messages .msg .text').allTextContents();
    expect(texts).toEqual(['hi bob', 'hey al']);
  });

  it('shows the newest of 120 messages, and scrolling up loads the older ones', async () => {
    await poll(() => item(alice, 'dm:alice:carol').locator('.badge').textContent()).toBe('120');
    await alice.bringToFront();
    await item(alice, 'dm:alice:carol').click();
    await bubbles(alice, 'seed 120').waitFor();
    const first = await alice.locator('#messages .msg[data-seq]').count();
    expect(first).toBeGreaterThan(0);
    expect(first).toBeLessThanOrEqual(30);
    expect(await alice.locator('#messages .msg[data-seq="1"]').count()).toBe(0);
    // The newest message is in view.
    const box = alice.locator('#messages');
    expect(await box.evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight)).toBeLessThan(60);
    const shown = alice.locator('#messages .msg[data-seq]');
    for (let i = 0; i < 20 && (await alice.locator('#messages .msg[data-seq="1"]').count()) === 0; i++) {
      const n = await shown.count();
      await box.evaluate((el) => { el.scrollTop = 0; });
      await poll(() => shown.count()).toBeGreaterThan(n);
    }
    await alice.locator('#messages .msg[data-seq="1"]').waitFor();
    // The older pages came from the server, paging backwards (sync with before).
    const pages = written.get(alice)!.map((f) => JSON.parse(f) as { t: string; conv?: string; before?: number })
      .filter((f) => f.t === 'sync' && f.conv === 'dm:alice:carol' && f.before !== undefined);
    expect(pages.length).toBeGreaterThanOrEqual(3);
    const seqs = (await alice.locator('#messages .msg[data-seq]').evaluateAll((els) => els.map((e) => Number((e as HTMLElement).dataset.seq))));
    expect(seqs).toEqual(Array.from({ length: 120 }, (_, i) => i + 1));
    await poll(() => alice.locator('#messages .history-edge').textContent()).toContain('Beginning');
  });

  it('groups: create, members with owner, add, leave', async () => {
    await alice.getByText('New group').click();
    await alice.getByLabel('Group name').fill('team');
    await alice.getByLabel('Members, comma separated', { exact: true }).fill('bob');
    await alice.getByRole('button', { name: 'Create group' }).click();
    await alice.locator('#chat-title', { hasText: '# team' }).waitFor();
    await item(bob, 'g:team').waitFor();
    await send(alice, 'welcome to team');
    await alice.getByRole('button', { name: 'Members' }).click();
    await poll(() => alice.locator('#members-list').textContent()).toMatch(/alice \(you\) · owner.*bob/);
    await alice.getByLabel('Add members, comma separated').fill('carol');
    await alice.getByRole('button', { name: 'Add', exact: true }).click();
    await poll(() => alice.locator('#members-list').textContent()).toContain('carol');
    await shot(alice, 'group');
    await item(bob, 'g:team').click();
    await bubbles(bob, 'welcome to team').waitFor();
    bob.once('dialog', (d) => void d.accept());
    await bob.getByRole('button', { name: 'Members' }).click();
    await bob.getByRole('button', { name: 'Leave group' }).click();
    await poll(() => bob.locator('#chat-sub').textContent()).toContain('no longer a member');
    await poll(() => alice.locator('#members-list').textContent()).not.toContain('bob');
    expect(await bob.getByLabel('Message', { exact: true }).isDisabled()).toBe(true);
  });

  it('attaches an image (POST /files) and shows it as a preview on both sides', async () => {
    await item(alice, 'dm:alice:bob').click();
    await item(bob, 'dm:alice:bob').click();
    const attach = alice.getByRole('button', { name: 'Attach a file', exact: true });
    await poll(() => attach.isEnabled()).toBe(true);
    // A 2×2 red PNG.
    const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP4z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==', 'base64');
    const [chooser] = await Promise.all([alice.waitForEvent('filechooser'), attach.click()]);
    await chooser.setFiles({ name: 'red.png', mimeType: 'image/png', buffer: png });
    // Previewed before it goes out, with the typed text as caption.
    await alice.locator('#attach-preview img[alt="preview of red.png"]').waitFor();
    await alice.getByLabel('Message', { exact: true }).fill('a red dot');
    await shot(alice, 'file-preview');
    await alice.getByRole('button', { name: 'Send the file' }).click();
    await bubbles(bob, 'a red dot').waitFor();
    for (const p of [alice, bob]) {
      const img = p.locator('#messages .msg .file img[alt="red.png"]');
      await img.waitFor();
      await poll(() => img.evaluate((e) => (e as HTMLImageElement).naturalWidth)).toBe(2);
    }
  });

  it('a message typed while the node restarts is sent once after reconnecting', async () => {
    await item(alice, 'dm:alice:bob').click();
    await item(bob, 'dm:alice:bob').click();
    const stopped = node.stop();
    await alice.locator('#conn[data-state="reconnecting"]').waitFor();
    await stopped;
    await send(alice, 'typed during the outage');
    await bubbles(alice, 'typed during the outage').locator('.mark[data-state="pending"]').waitFor();
    await shot(alice, 'offline');
    await node.restart();
    await alice.locator('#conn[data-state="open"]').waitFor({ timeout: 30_000 });
    await bubbles(alice, 'typed during the outage').and(alice.locator('[data-seq]')).waitFor({ timeout: 30_000 });
    await bubbles(bob, 'typed during the outage').waitFor({ timeout: 30_000 });
    await alice.waitForTimeout(1500);
    expect(await bubbles(alice, 'typed during the outage').count()).toBe(1);
    expect(await bubbles(bob, 'typed during the outage').count()).toBe(1);
    // And the server stored it once.
    const check = await sdk('bob');
    const page = await check.history('dm:alice:bob', { limit: 200 });
    expect(page.msgs.filter((m) => m.body === 'typed during the outage')).toHaveLength(1);
  });

  it('fits a phone-sized viewport: list first, then the conversation with a back button', async () => {
    const phone = await signIn('carol', { width: 390, height: 800 });
    await item(phone, 'dm:alice:carol').waitFor();
    expect(await phone.locator('#chat').isVisible()).toBe(false);
    await item(phone, 'dm:alice:carol').click();
    await bubbles(phone, 'seed 120').waitFor();
    expect(await phone.locator('#sidebar').isVisible()).toBe(false);
    await shot(phone, 'phone-chat');
    await phone.getByRole('button', { name: 'Back to conversations' }).click();
    await item(phone, 'dm:alice:carol').waitFor();
    const width = await phone.evaluate(() => document.documentElement.scrollWidth);
    expect(width).toBeLessThanOrEqual(390);
  });
});
