/**
 * The web chat app served at `/`: plain TypeScript + DOM on the project's own SDK (client/),
 * bundled by web/build.ts into web/dist/app.js. Sign in by user id (token from /dev/token),
 * conversations with unread counts and last message, bubbles with time and sent/delivered/read
 * marks, typing, presence dots, scroll-back through history (`sync` before), groups, and a
 * connection state; messages typed while offline wait in the SDK's outbox and go out once.
 */
import { ChatClient, dmConv, dmPeer, isValidName, parseConv } from '../../client/index.ts';
import type { ConnectionState, GroupFrame, MsgFrame, ReceiptFrame, StateChange } from '../../client/index.ts';

// ------------------------------------------------------------------ state

interface Pending { cmid: string; body: unknown; kind: string; ts: number; failed?: string }

interface Conv {
  id: string;
  group: boolean;
  title: string;
  /** Messages held, by seq. */
  msgs: Map<number, MsgFrame>;
  /** Own sends not answered yet, by cmid. */
  pending: Map<string, Pending>;
  lastSeq: number;
  /** Own read cursor. */
  readSeq: number;
  lastTs: number;
  /** The server said there is nothing older than the oldest held message. */
  exhausted: boolean;
  /** Lowest seq shown (0: not opened yet): the login backlog may hold more than one screen. */
  floor: number;
  loadingOlder: boolean;
  /** Other members' cursors (from receipts). */
  delivered: Record<string, number>;
  read: Record<string, number>;
  typing: Map<string, number>;
  owner?: string;
  members?: string[];
  /** No longer a member (left or removed). */
  gone?: boolean;
}

const PAGE = 30;
const TYPING_SHOW_MS = 3500;
const TYPING_SEND_MS = 1500;

let me = '';
let chat: ChatClient | null = null;
const convs = new Map<string, Conv>();
const presence = new Map<string, boolean | null>();
let active: string | null = null;
let lastTypingSent = 0;
let filesEnabled = false;
let presenceChain: Promise<unknown> = Promise.resolve();
let watched = '';

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing`);
  return el as T;
};

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...kids: (Node | string)[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}

function conv(id: string): Conv {
  let c = convs.get(id);
  if (!c) {
    const p = parseConv(id);
    const group = p?.kind === 'group';
    c = {
      id, group, title: group ? `# ${id.slice(2)}` : dmPeer(id, me) ?? id, msgs: new Map(), pending: new Map(),
      lastSeq: 0, readSeq: 0, lastTs: 0, exhausted: false, floor: 0, loadingOlder: false, delivered: {}, read: {}, typing: new Map(),
    };
    Object.assign(c, loadReceipts(id));
    convs.set(id, c);
  }
  return c;
}

const receiptsKey = (id: string) => `actor-im:${me}:receipts:${id}`;
function loadReceipts(id: string): Pick<Conv, 'delivered' | 'read'> {
  try {
    const v = JSON.parse(localStorage.getItem(receiptsKey(id)) ?? 'null') as Pick<Conv, 'delivered' | 'read'> | null;
    if (v && typeof v === 'object') return { delivered: v.delivered ?? {}, read: v.read ?? {} };
  } catch { /* ignore */ }
  return { delivered: {}, read: {} };
}
function saveReceipts(c: Conv): void {
  try { localStorage.setItem(receiptsKey(c.id), JSON.stringify({ delivered: c.delivered, read: c.read })); } catch { /* full or disabled */ }
}

function dmPeers(): string[] {
  const out: string[] = [];
  for (const c of convs.values()) if (!c.group) { const p = dmPeer(c.id, me); if (p && p !== me) out.push(p); }
  return out.sort();
}

// ------------------------------------------------------------------ formatting

function bodyText(m: { body?: unknown; kind?: string; recalled?: true }): string {
  if (m.recalled) return 'message recalled';
  const b = m.body;
  if (typeof b === 'string') return b;
  if (b && typeof b === 'object') {
    const o = b as { text?: unknown; name?: unknown; caption?: unknown };
    if (typeof o.text === 'string') return o.text;
    if (m.kind === 'file') return `[file] ${typeof o.name === 'string' ? o.name : 'file'}${typeof o.caption === 'string' ? ` ${o.caption}` : ''}`;
  }
  return JSON.stringify(b);
}

const two = (n: number) => String(n).padStart(2, '0');
function timeOf(ts: number): string {
  const d = new Date(ts);
  const now = new Date();
  const hm = `${two(d.getHours())}:${two(d.getMinutes())}`;
  return d.toDateString() === now.toDateString() ? hm : `${d.getDate()}.${d.getMonth() + 1}. ${hm}`;
}

/** Mark of an own message: the furthest any other member got (1:1: the peer). */
function markOf(c: Conv, seq: number): { state: 'sent' | 'delivered' | 'read'; label: string } {
  const readers = Object.entries(c.read).filter(([u, s]) => u !== me && s >= seq).map(([u]) => u);
  if (readers.length > 0) return { state: 'read', label: c.group ? `read by ${readers.join(', ')}` : 'read' };
  const got = Object.entries(c.delivered).some(([u, s]) => u !== me && s >= seq);
  return got ? { state: 'delivered', label: 'delivered' } : { state: 'sent', label: 'sent' };
}

// ------------------------------------------------------------------ rendering

let renderQueued = false;
function render(): void {
  if (renderQueued) return;
  renderQueued = true;
  const run = () => {
    renderQueued = false;
    renderList();
    renderChat();
  };
  // Background tabs get no animation frames: keep their list and title current anyway.
  if (document.visibilityState === 'hidden') setTimeout(run, 0);
  else requestAnimationFrame(run);
}

function renderList(): void {
  const list = $('conv-list');
  let total = 0;
  for (const c of convs.values()) if (c.id !== active && !c.gone) total += Math.max(0, c.lastSeq - c.readSeq);
  document.title = total > 0 ? `(${total}) actor-im chat` : 'actor-im chat';
  const items = [...convs.values()].filter((c) => !c.gone || c.id === active).sort((a, b) => b.lastTs - a.lastTs || a.id.localeCompare(b.id));
  $('conv-empty').hidden = items.length > 0;
  list.replaceChildren(...items.map((c) => {
    const last = lastShown(c);
    const unread = c.id === active ? 0 : Math.max(0, c.lastSeq - c.readSeq);
    const peer = c.group ? null : dmPeer(c.id, me);
    const online = peer ? presence.get(peer) : undefined;
    const btn = el('button', {
      type: 'button', class: 'conv-item', 'data-conv': c.id, 'aria-current': c.id === active ? 'true' : 'false',
      'aria-label': `${c.title}${unread ? `, ${unread} unread` : ''}${online === true ? ', online' : ''}`,
    },
    el('span', { class: `presence ${online === true ? 'on' : online === false ? 'off' : 'none'}`, 'aria-hidden': 'true', 'data-user': peer ?? '' }),
    el('span', { class: 'conv-main' },
      el('span', { class: 'conv-title' }, c.title),
      el('span', { class: 'conv-last' }, last ? `${last.from === me ? 'You: ' : c.group ? `${last.from}: ` : ''}${bodyText(last)}` : c.gone ? 'left' : 'no messages yet')),
    el('span', { class: 'conv-side' },
      el('span', { class: 'conv-time' }, last ? timeOf(last.ts) : ''),
      unread ? el('span', { class: 'badge', 'aria-hidden': 'true' }, String(unread)) : ''));
    btn.addEventListener('click', () => openConv(c.id));
    return el('li', {}, btn);
  }));
}

function lastShown(c: Conv): { from: string; ts: number; body?: unknown; kind?: string; recalled?: true } | null {
  const pend = [...c.pending.values()].at(-1);
  if (pend) return { from: me, ts: pend.ts, body: pend.body, kind: pend.kind };
  let best: MsgFrame | null = null;
  for (const m of c.msgs.values()) if (!best || m.seq > best.seq) best = m;
  return best;
}

function renderChat(): void {
  const c = active ? convs.get(active) : undefined;
  const main = $('chat');
  main.dataset.open = c ? 'true' : 'false';
  const text = $<HTMLInputElement>('text');
  const send = $<HTMLButtonElement>('send');
  text.disabled = send.disabled = !c || !!c.gone;
  $<HTMLButtonElement>('attach').disabled = !c || !!c.gone || !filesEnabled;
  if (!c) {
    $('chat-title').textContent = 'Pick a conversation';
    $('chat-sub').textContent = '';
    $('messages').replaceChildren();
    $('members-toggle').hidden = true;
    $('members').hidden = true;
    $('typing').textContent = '';
    return;
  }
  $('chat-title').textContent = c.title;
  const peer = c.group ? null : dmPeer(c.id, me);
  const online = peer ? presence.get(peer) : undefined;
  $('chat-presence').className = `presence ${online === true ? 'on' : online === false ? 'off' : 'none'}`;
  $('chat-sub').textContent = c.gone ? 'you are no longer a member' : c.group ? `${c.members?.length ?? '…'} members` : online === true ? 'online' : online === false ? 'offline' : '';
  $('members-toggle').hidden = !c.group || !!c.gone;
  renderMembers(c);

  const box = $('messages');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
  const oldHeight = box.scrollHeight;
  const oldTop = box.scrollTop;
  const firstBefore = box.querySelector<HTMLElement>('.msg[data-seq]')?.dataset.seq;
  const seqs = [...c.msgs.keys()].filter((q) => q >= c.floor).sort((a, b) => a - b);
  const nodes: Node[] = [];
  nodes.push(el('div', { class: 'history-edge', id: 'history-edge' },
    c.loadingOlder ? 'Loading older messages…' : hasOlder(c) ? 'Scroll up for older messages' : seqs.length || c.pending.size ? 'Beginning of the conversation' : 'No messages yet: say hi'));
  let prevDay = '';
  for (const s of seqs) {
    const m = c.msgs.get(s)!;
    const day = new Date(m.ts).toDateString();
    if (day !== prevDay) { nodes.push(el('div', { class: 'day', role: 'separator' }, new Date(m.ts).toLocaleDateString())); prevDay = day; }
    nodes.push(bubble(c, m));
  }
  for (const p of c.pending.values()) nodes.push(pendingBubble(p));
  box.replaceChildren(...nodes);
  const firstAfter = box.querySelector<HTMLElement>('.msg[data-seq]')?.dataset.seq;
  if (box.dataset.conv !== c.id || atBottom) {
    box.scrollTop = box.scrollHeight;
  } else if (firstBefore && firstAfter && firstAfter !== firstBefore) {
    // Older messages were put on top: keep what the reader looked at in place.
    box.scrollTop = oldTop + (box.scrollHeight - oldHeight);
  }
  box.dataset.conv = c.id;

  const now = Date.now();
  const typers = [...c.typing].filter(([, until]) => until > now).map(([u]) => u);
  $('typing').textContent = typers.length === 0 ? '' : `${typers.join(', ')} ${typers.length === 1 ? 'is' : 'are'} typing…`;

  markRead(c);
  // A short history does not scroll: fetch more until it does or there is no more.
  if (hasOlder(c) && !c.loadingOlder && box.scrollHeight <= box.clientHeight + 10) void loadOlder(c);
}

function bubble(c: Conv, m: MsgFrame): HTMLElement {
  const mine = m.from === me;
  const meta = el('span', { class: 'meta' }, el('time', { datetime: new Date(m.ts).toISOString() }, timeOf(m.ts)));
  if (mine) {
    const mk = markOf(c, m.seq);
    meta.append(el('span', { class: 'mark', 'data-state': mk.state, 'aria-label': mk.label, title: mk.label }, mk.state === 'sent' ? '✓' : '✓✓'));
  }
  const content = el('span', { class: 'text' });
  const fileBody = m.kind === 'file' && !m.recalled ? fileView(m.body) : null;
  if (fileBody) content.append(fileBody);
  else content.textContent = bodyText(m);
  return el('div', {
    class: `msg ${mine ? 'mine' : 'theirs'}${m.recalled ? ' recalled' : ''}`, 'data-seq': String(m.seq), 'data-cmid': m.cmid,
    role: 'article', 'aria-label': `${mine ? 'you' : m.from} at ${timeOf(m.ts)}`,
  }, c.group && !mine ? el('span', { class: 'from' }, m.from) : '', content, meta);
}

function pendingBubble(p: Pending): HTMLElement {
  const label = p.failed ? `not sent: ${p.failed}` : 'sending';
  return el('div', { class: `msg mine pending${p.failed ? ' failed' : ''}`, 'data-cmid': p.cmid, role: 'article', 'aria-label': `you, ${label}` },
    el('span', { class: 'text' }, bodyText(p)),
    el('span', { class: 'meta' }, el('time', {}, timeOf(p.ts)),
      el('span', { class: 'mark', 'data-state': p.failed ? 'failed' : 'pending', 'aria-label': label, title: label }, p.failed ? '!' : '…')));
}

function fileView(body: unknown): HTMLElement | null {
  const b = body as { file?: unknown; name?: unknown; mime?: unknown; caption?: unknown } | null;
  if (!b || typeof b.file !== 'string') return null;
  const url = `/files/${encodeURIComponent(b.file)}?token=${encodeURIComponent(currentToken)}`;
  const name = typeof b.name === 'string' ? b.name : 'file';
  const box = el('span', { class: 'file' });
  if (typeof b.mime === 'string' && b.mime.startsWith('image/')) box.append(el('img', { src: url, alt: name, loading: 'lazy' }));
  box.append(el('a', { href: url, download: name }, name));
  if (typeof b.caption === 'string' && b.caption) box.append(el('span', {}, b.caption));
  return box;
}

function renderMembers(c: Conv): void {
  const panel = $('members');
  const toggle = $('members-toggle');
  const open = toggle.getAttribute('aria-expanded') === 'true' && c.group && !c.gone;
  panel.hidden = !open;
  if (!open) return;
  const isOwner = c.owner === me;
  $('members-list').replaceChildren(...(c.members ?? []).map((u) => el('li', {},
    el('span', { class: `presence ${presence.get(u) === true ? 'on' : presence.get(u) === false ? 'off' : 'none'}`, 'aria-hidden': 'true' }),
    el('span', {}, `${u}${u === me ? ' (you)' : ''}${u === c.owner ? ' · owner' : ''}`),
    isOwner && u !== me ? (() => {
      const b = el('button', { type: 'button', class: 'small', 'aria-label': `Remove ${u} from the group` }, 'Remove');
      b.addEventListener('click', () => void act(() => chat!.groupRemove(c.id, [u])));
      return b;
    })() : '')));
  $('members-add').hidden = !isOwner;
}

// ------------------------------------------------------------------ actions

async function act(fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    toast(e instanceof Error ? e.message : String(e));
  }
}

function toast(text: string): void {
  const t = el('div', { class: 'toast', role: 'alert' }, text);
  document.body.append(t);
  setTimeout(() => t.remove(), 4000);
}

function openConv(id: string): void {
  if (picked && picked.conv !== id) clearPicked();
  active = id;
  const c = conv(id);
  c.typing.clear();
  $('members-toggle').setAttribute('aria-expanded', 'false');
  $('messages').dataset.conv = '';
  if (c.group && !c.gone) void refreshMembers(c);
  const held = [...c.msgs.keys()];
  if (c.floor === 0) c.floor = held.length ? Math.max(1, Math.max(...held) - PAGE + 1) : 1;
  render();
  $('text').focus();
}

function markRead(c: Conv): void {
  if (!chat || document.visibilityState === 'hidden' || active !== c.id) return;
  if (c.lastSeq > c.readSeq) {
    c.readSeq = c.lastSeq;
    chat.read(c.id, c.lastSeq);
    renderList();
  }
}

function minHeld(c: Conv): number {
  let min = c.lastSeq + 1;
  for (const q of c.msgs.keys()) if (q < min) min = q;
  return min;
}

/** Older messages exist: held but not shown yet, or on the server. */
function hasOlder(c: Conv): boolean {
  const min = minHeld(c);
  return c.floor > min || (!c.exhausted && min > 1);
}

/** Shows one more page of older messages: from memory when held, else `history` (sync before). */
async function loadOlder(c: Conv): Promise<void> {
  if (!chat || c.loadingOlder || !hasOlder(c)) return;
  const min = minHeld(c);
  if (c.floor > min) {
    c.floor = Math.max(min, c.floor - PAGE);
    render();
    return;
  }
  c.loadingOlder = true;
  render();
  try {
    const page = await chat.history(c.id, { before: Math.max(1, min), limit: PAGE });
    for (const m of page.msgs) if (!c.msgs.has(m.seq)) c.msgs.set(m.seq, m);
    if (page.msgs.length > 0) c.floor = Math.min(c.floor, page.msgs[0].seq);
    if (!page.more || page.msgs.length === 0) c.exhausted = true;
  } catch (e) {
    toast(`could not load older messages: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    c.loadingOlder = false;
    render();
  }
}

async function refreshMembers(c: Conv): Promise<void> {
  if (!chat) return;
  try {
    const info = await chat.groupInfo(c.id);
    c.members = info.members;
    c.owner = info.owner;
    watchPresence();
    render();
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'forbidden' || code === 'not_found') { c.gone = true; render(); }
  }
}

/** Watches the 1:1 peers and the open group's members (one subscription per socket). */
function watchPresence(): void {
  const users = new Set(dmPeers());
  const c = active ? convs.get(active) : undefined;
  for (const u of c?.members ?? []) if (u !== me) users.add(u);
  const list = [...users].sort().slice(0, 500);
  const key = list.join(',');
  if (!chat || key === watched) return;
  watched = key;
  const client = chat;
  presenceChain = presenceChain.then(async () => {
    try {
      for (const p of await client.presenceSub(list)) presence.set(p.user, p.online);
      render();
    } catch {
      watched = ''; // try again on the next change
    }
  });
}

function sendText(text: string): void {
  if (!chat || !active) return;
  const c = conv(active);
  const cmid = crypto.randomUUID();
  const p: Pending = { cmid, body: text, kind: 'text', ts: Date.now() };
  c.pending.set(cmid, p);
  c.lastTs = p.ts;
  $('messages').dataset.conv = ''; // scroll to the bottom
  render();
  chat.send({ conv: c.id }, text, { cmid }).then(() => {
    c.pending.delete(cmid);
    render();
  }, (e: unknown) => {
    p.failed = (e as { code?: string }).code ?? 'error';
    render();
  });
}

// ------------------------------------------------------------------ client events

function onMessage(m: MsgFrame): void {
  const c = conv(m.conv);
  c.msgs.set(m.seq, m);
  if (m.from === me) { c.pending.delete(m.cmid); c.readSeq = Math.max(c.readSeq, m.seq); }
  else {
    c.typing.delete(m.from);
    // Sending moves the sender's own cursors to its message (docs/protocol.md): it has read up to here.
    c.read[m.from] = Math.max(c.read[m.from] ?? 0, m.seq);
    c.delivered[m.from] = Math.max(c.delivered[m.from] ?? 0, m.seq);
  }
  c.lastSeq = Math.max(c.lastSeq, m.seq);
  c.lastTs = Math.max(c.lastTs, m.ts);
  if (!c.group) watchPresence();
  render();
}

function onReceipt(r: ReceiptFrame): void {
  const c = conv(r.conv);
  if (r.delivered !== undefined) c.delivered[r.user] = Math.max(c.delivered[r.user] ?? 0, r.delivered);
  if (r.read !== undefined) {
    c.read[r.user] = Math.max(c.read[r.user] ?? 0, r.read);
    c.delivered[r.user] = Math.max(c.delivered[r.user] ?? 0, r.read);
  }
  saveReceipts(c);
  render();
}

function onGroup(g: GroupFrame): void {
  const c = conv(g.conv);
  const aboutMe = g.members.includes(me);
  if ((g.op === 'left' || g.op === 'removed') && aboutMe) {
    c.gone = true;
    if (active === g.conv) toast(g.op === 'left' ? `you left ${c.title}` : `${g.by} removed you from ${c.title}`);
  } else if ((g.op === 'created' || g.op === 'added') && aboutMe) {
    c.gone = false;
    c.lastTs = Math.max(c.lastTs, Date.now());
  }
  if (g.op === 'owner') c.owner = g.members[0];
  if (!c.gone) void refreshMembers(c);
  render();
}

const STATE_TEXT: Record<ConnectionState, string> = {
  idle: 'Offline', connecting: 'Connecting…', open: 'Connected', reconnecting: 'Reconnecting… messages you write will be sent when back',
  closed: 'Signed out', kicked: 'Signed in elsewhere on this device',
};

function onState(s: StateChange): void {
  const conn = $('conn');
  conn.dataset.state = s.state;
  // Presence is only known while connected; the next login subscribes again.
  if (s.state !== 'open' && presence.size > 0) { presence.clear(); render(); }
  $('conn-text').textContent = s.state === 'open' && s.node ? `Connected · ${s.node}` : STATE_TEXT[s.state];
  conn.title = s.reason ?? '';
}

let currentToken = '';
async function fetchToken(user: string): Promise<string> {
  const r = await fetch(`/dev/token?user=${encodeURIComponent(user)}`);
  if (r.status === 404) throw new Error('this node has no /dev/token (it runs with a real secret): the demo sign-in needs the development secret');
  if (!r.ok) throw new Error(`token: HTTP ${r.status}`);
  currentToken = ((await r.json()) as { token: string }).token;
  return currentToken;
}

async function signIn(user: string): Promise<void> {
  await fetchToken(user); // fail early with a readable message
  me = user;
  sessionStorage.setItem('actor-im:user', user);
  // A device per page load: two tabs of one user (or a duplicated tab) never replace each other.
  const device = `web-${crypto.randomUUID().slice(0, 8)}`;
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  const client = new ChatClient({
    urls: url, token: () => fetchToken(user), device, initialHistory: PAGE, connectWaitMs: Infinity, retryForever: true,
    backoff: { baseMs: 200, maxMs: 3000 },
  });
  chat = client;
  client.on('state', onState);
  client.on('message', onMessage);
  client.on('receipt', onReceipt);
  client.on('group', onGroup);
  client.on('recalled', (r) => {
    const m = convs.get(r.conv)?.msgs.get(r.seq);
    if (m) { const { body: _b, ...rest } = m; convs.get(r.conv)!.msgs.set(r.seq, { ...rest, recalled: true }); render(); }
  });
  client.on('typing', (t) => {
    const c = conv(t.conv);
    c.typing.set(t.user, Date.now() + TYPING_SHOW_MS);
    render();
    setTimeout(render, TYPING_SHOW_MS + 50);
  });
  client.on('presence', (p) => { presence.set(p.user, p.online); render(); });
  client.on('login', () => {
    watched = '';
    void client.convs().then((list) => {
      for (const s of list) {
        const c = conv(s.conv);
        c.lastSeq = Math.max(c.lastSeq, s.last_seq);
        c.readSeq = Math.max(c.readSeq, s.read_seq);
        c.gone = false;
      }
      watchPresence();
      for (const c of convs.values()) if (c.group && c.id === active) void refreshMembers(c);
      render();
    }, () => undefined);
  });
  $('signin').hidden = true;
  $('app').hidden = false;
  $('me').textContent = user;
  void client.connect().catch(() => undefined);
  void probeFiles();
}

async function probeFiles(): Promise<void> {
  // POST /files answers 401 without a token where uploads exist, 404 where they do not.
  try {
    const r = await fetch('/files?name=probe', { method: 'POST', body: '' });
    filesEnabled = r.status === 401;
  } catch {
    filesEnabled = false;
  }
  const attach = $<HTMLButtonElement>('attach');
  attach.setAttribute('aria-disabled', String(!filesEnabled));
  attach.setAttribute('aria-label', filesEnabled ? 'Attach a file' : 'Attach a file (not available: this server has no file upload yet)');
  attach.title = filesEnabled ? 'Attach a file or an image' : 'File transfer is not available on this server (POST /files answers 404)';
  render();
}

async function signOut(): Promise<void> {
  const c = chat;
  chat = null;
  sessionStorage.removeItem('actor-im:user');
  await c?.close();
  location.reload();
}

// ------------------------------------------------------------------ wiring

function wire(): void {
  $('signin-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const user = $<HTMLInputElement>('signin-user').value.trim();
    const err = $('signin-error');
    if (!isValidName(user)) { err.textContent = 'A user id is 1–64 of A–Z a–z 0–9 _ . -'; return; }
    err.textContent = '';
    signIn(user).catch((x: unknown) => { err.textContent = x instanceof Error ? x.message : String(x); });
  });
  $('signout').addEventListener('click', () => void signOut());
  $('new-chat').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = $<HTMLInputElement>('new-chat-user');
    const peer = input.value.trim();
    if (!isValidName(peer) || peer === me) { toast('enter another user id'); return; }
    input.value = '';
    const c = conv(dmConv(me, peer));
    c.lastTs = Math.max(c.lastTs, Date.now());
    openConv(c.id);
  });
  $('new-group-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = $<HTMLInputElement>('new-group-name').value.trim();
    const members = $<HTMLInputElement>('new-group-members').value.split(/[\s,]+/).filter(Boolean);
    if (!isValidName(name)) { toast('a group name is 1–64 of A–Z a–z 0–9 _ . -'); return; }
    void act(async () => {
      const id = await chat!.groupCreate(name, members);
      const c = conv(id);
      c.gone = false;
      c.lastTs = Date.now();
      $<HTMLInputElement>('new-group-name').value = '';
      $<HTMLInputElement>('new-group-members').value = '';
      ($('new-group') as HTMLDetailsElement).open = false;
      openConv(id);
    });
  });
  $('members-toggle').addEventListener('click', () => {
    const t = $('members-toggle');
    t.setAttribute('aria-expanded', String(t.getAttribute('aria-expanded') !== 'true'));
    const c = active ? convs.get(active) : undefined;
    if (c) void refreshMembers(c);
    render();
  });
  $('members-add').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = $<HTMLInputElement>('members-add-users');
    const users = input.value.split(/[\s,]+/).filter(Boolean);
    if (!active || users.length === 0) return;
    const id = active;
    void act(async () => { await chat!.groupAdd(id, users); input.value = ''; });
  });
  $('group-leave').addEventListener('click', () => {
    if (!active) return;
    const id = active;
    if (!confirm(`Leave ${conv(id).title}?`)) return;
    void act(() => chat!.groupLeave(id));
  });
  $('back').addEventListener('click', () => { active = null; render(); });
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = $<HTMLInputElement>('text');
    const text = input.value.trim();
    if (!text) return;
    input.value = '';
    sendText(text);
  });
  $('text').addEventListener('input', () => {
    if (!chat || !active || Date.now() - lastTypingSent < TYPING_SEND_MS) return;
    if (chat.typing(active)) lastTypingSent = Date.now();
  });
  $('messages').addEventListener('scroll', () => {
    const c = active ? convs.get(active) : undefined;
    if (c && $('messages').scrollTop < 80) void loadOlder(c);
  });
  $('attach').addEventListener('click', () => { if (filesEnabled) pickFile(); });
  $('attach-send').addEventListener('click', () => void act(sendPicked));
  $('attach-cancel').addEventListener('click', clearPicked);
  document.addEventListener('visibilitychange', () => { const c = active ? convs.get(active) : undefined; if (c) markRead(c); });

  const saved = sessionStorage.getItem('actor-im:user');
  if (saved && isValidName(saved)) {
    $<HTMLInputElement>('signin-user').value = saved;
    signIn(saved).catch((x: unknown) => { $('signin-error').textContent = x instanceof Error ? x.message : String(x); });
  }
}

/** The file picked for sending, shown with a preview until sent or cancelled. */
let picked: { file: File; url: string; conv: string } | null = null;

function clearPicked(): void {
  if (picked) URL.revokeObjectURL(picked.url);
  picked = null;
  $('attach-preview').hidden = true;
  $<HTMLImageElement>('attach-img').removeAttribute('src');
}

function fmtSize(n: number): string {
  return n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** Picks a file and previews it; `Send file` uploads it (POST /files) and sends a `file` message. */
function pickFile(): void {
  const input = el('input', { type: 'file' });
  input.addEventListener('change', () => {
    const f = input.files?.[0];
    if (!f || !active) return;
    clearPicked();
    picked = { file: f, url: URL.createObjectURL(f), conv: active };
    const img = $<HTMLImageElement>('attach-img');
    img.hidden = !f.type.startsWith('image/');
    if (!img.hidden) { img.src = picked.url; img.alt = `preview of ${f.name}`; }
    $('attach-name').textContent = `${f.name} · ${fmtSize(f.size)}`;
    $('attach-preview').hidden = false;
    $('attach-send').focus();
  });
  input.click();
}

async function sendPicked(): Promise<void> {
  const p = picked;
  if (!p || !chat) return;
  clearPicked();
  const caption = $<HTMLInputElement>('text').value.trim();
  $<HTMLInputElement>('text').value = '';
  const token = await fetchToken(me);
  const r = await fetch(`/files?name=${encodeURIComponent(p.file.name)}`, {
    method: 'POST', body: p.file, headers: { authorization: `Bearer ${token}`, 'content-type': p.file.type || 'application/octet-stream' },
  });
  if (r.status === 413) throw new Error(`${p.file.name} is too large for this server`);
  if (!r.ok) throw new Error(`upload failed: HTTP ${r.status}`);
  const up = (await r.json()) as { file: string; name: string; size: number; mime: string };
  const body: Record<string, unknown> = { file: up.file, name: up.name, size: up.size, mime: up.mime };
  if (caption) body.caption = caption;
  await chat.send({ conv: p.conv }, body, { kind: 'file' });
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', wire);
else wire();
