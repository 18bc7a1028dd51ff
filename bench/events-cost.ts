/**
 * What events cost: the same 1:1 load against an embedded (or MariaDB) node with events off
 * and on (webhook sink to a receiver in this process), alternated in one run, repeated.
 * Prints per run: committed msg/s, send→sent p50/p99, node CPU µs per message, and with events
 * on the relay's throughput (events/s at the receiver) and lag p50/p99 (receipt − event ts).
 *
 *   node --import tsx bench/events-cost.ts [--rate 2000] [--seconds 10] [--pairs 50] [--repeat 2] [--mariadb]
 *
 * Same machine for node, load and receiver: compare the on/off rows of one run, not absolutes.
 */
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { startChatNode, type ChatNodeHandle } from '../test/harness/chat-node.ts';
import { startMariaDB, type ServerHandle } from '../test/harness/servers.ts';
import { signTestToken } from '../test/harness/ws-client.ts';
import { newHistogram, recordUs, summarize } from './loadgen/hist.ts';
import { sampleProc } from './loadgen/procstat.ts';

const { values: args } = parseArgs({
  options: {
    rate: { type: 'string', default: '2000' },
    seconds: { type: 'string', default: '10' },
    pairs: { type: 'string', default: '50' },
    repeat: { type: 'string', default: '2' },
    mariadb: { type: 'boolean', default: false },
  },
});
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
const PAIRS = Number(args.pairs);
const SECRET = 'bench-secret-events';
const WEBHOOK_SECRET = 'bench-webhook-secret-0123';

/** Receiver: counts events and their lag (now − ts). */
const lag = newHistogram();
let received = 0;
const receiver = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const now = Date.now();
    const { events } = JSON.parse(Buffer.concat(chunks).toString()) as { events: Array<{ type: string; ts: number }> };
    for (const e of events) {
      if (e.type !== 'message.created') continue;
      received++;
      recordUs(lag, Math.max(0, now - e.ts) * 1000);
    }
    res.end();
  });
});
await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
const receiverUrl = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/`;

async function socket(url: string, user: string): Promise<WebSocket> {
  const ws = new WebSocket(url);
  await new Promise((r, j) => { ws.once('open', r); ws.once('error', j); });
  ws.send(JSON.stringify({ t: 'login', rid: 'l', token: await signTestToken(user, SECRET) }));
  await new Promise<void>((r) => ws.once('message', () => r()));
  return ws;
}

interface RunResult { events: boolean; sentPerS: number; p50: number; p99: number; cpuUsPerMsg: number; eventsPerS: number; lagP50: number; lagP99: number }

async function run(events: boolean, maria: ServerHandle | null, round: number): Promise<RunResult> {
  const env: Record<string, string> = { IM_JWT_SECRET: SECRET, IM_LOG_LEVEL: 'warn', IM_RATE_MSGS: '1000000', IM_RATE_FRAMES: '1000000' };
  if (maria) env.IM_MYSQL_URL = maria.url;
  if (events) Object.assign(env, { IM_WEBHOOK_URL: receiverUrl, IM_WEBHOOK_SECRET: WEBHOOK_SECRET });
  const node: ChatNodeHandle = await startChatNode({ env });
  try {
    const senders: WebSocket[] = [];
    const tagged = `r${round}${events ? 'on' : 'off'}`;
    for (let i = 0; i < PAIRS; i++) {
      const s = await socket(node.wsUrl, `s${i}${tagged}`);
      const r = await socket(node.wsUrl, `r${i}${tagged}`);
      r.on('message', (d) => {
        const f = JSON.parse(d.toString()) as { t: string; conv?: string; seq?: number };
        if (f.t === 'msg') r.send(JSON.stringify({ t: 'ack', conv: f.conv, seq: f.seq }));
      });
      senders.push(s);
    }
    const sentLat = newHistogram();
    const due = new Map<string, number>();
    let sent = 0;
    for (const s of senders) {
      s.on('message', (d) => {
        const f = JSON.parse(d.toString()) as { t: string; rid?: string };
        if (f.t !== 'sent' || !f.rid) return;
        const t = due.get(f.rid);
        if (t !== undefined) { recordUs(sentLat, (performance.now() - t) * 1000); due.delete(f.rid); sent++; }
      });
    }
    received = 0;
    lag.reset();
    const before = sampleProc(node.pid)!;
    const start = performance.now();
    const total = RATE * SECONDS;
    // Open loop: message k is due at start + k/rate; latency counts from that intended time.
    for (let k = 0; k < total; k++) {
      const at = start + (k * 1000) / RATE;
      const wait = at - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      const i = k % PAIRS;
      const rid = `${k}`;
      due.set(rid, at);
      senders[i].send(JSON.stringify({ t: 'send', rid, to: `r${i}${tagged}`, cmid: rid, body: { text: 'x'.repeat(80) } }));
    }
    const deadline = performance.now() + 10_000;
    while ((sent < total || (events && received < total)) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const after = sampleProc(node.pid)!;
    const elapsed = (performance.now() - start) / 1000;
    const s = summarize(sentLat);
    const l = summarize(lag);
    return {
      events, sentPerS: Math.round(sent / elapsed), p50: s.p50, p99: s.p99,
      cpuUsPerMsg: Math.round(((after.cpuMs - before.cpuMs) * 1000) / Math.max(1, sent)),
      eventsPerS: events ? Math.round(received / elapsed) : 0, lagP50: events ? l.p50 : 0, lagP99: events ? l.p99 : 0,
    };
  } finally {
    await node.stop();
  }
}

const maria = args.mariadb ? await startMariaDB({ database: 'im_bench_events' }) : null;
const results: RunResult[] = [];
try {
  for (let i = 0; i < Number(args.repeat); i++) {
    for (const ev of [false, true]) {
      const r = await run(ev, maria, i);
      results.push(r);
      console.log(JSON.stringify(r));
    }
  }
} finally {
  await maria?.stop();
  receiver.close();
}
console.log(`\n${args.mariadb ? 'MariaDB' : 'SQLite'} node, ${PAIRS} pairs, ${RATE} msg/s offered for ${SECONDS} s`);
console.log('| events | sent/s | sent p50 / p99 ms | node CPU µs/msg | events/s | event lag p50 / p99 ms |');
console.log('|---|---:|---:|---:|---:|---:|');
for (const r of results) {
  console.log(`| ${r.events ? 'on' : 'off'} | ${r.sentPerS} | ${r.p50.toFixed(1)} / ${r.p99.toFixed(1)} | ${r.cpuUsPerMsg} | ${r.events ? r.eventsPerS : '–'} | ${r.events ? `${r.lagP50.toFixed(1)} / ${r.lagP99.toFixed(1)}` : '–'} |`);
}
process.exit(0);
