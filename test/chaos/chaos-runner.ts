/**
 * Chaos runner: a real cluster (MariaDB, NATS, Redis, N node processes) under steady SDK traffic
 * while nodes are killed with SIGKILL and each backing server is restarted once. At the end the
 * faults stop, every client reconnects and syncs, and the docs/design.md invariants are checked from
 * what the clients saw and what MariaDB holds.
 *
 * Used by `npm run chaos` (scripts/chaos.ts) and by test/chaos/chaos.test.ts (a short run).
 */
import { WebSocket } from 'ws';
import { createConnection, type RowDataPacket } from 'mysql2/promise';
import { ChatClient, type MsgFrame, type SentFrame } from '../../client/index.ts';
import { ownerOf } from '../../cluster/placement.ts';
import { startAll, type ServerHandle } from '../harness/servers.ts';
import { startChatNode, type ChatNodeHandle } from '../harness/chat-node.ts';
import { signTestToken } from '../harness/ws-client.ts';
import { dmConv as dmId } from '../../protocol/ids.ts';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ChaosOptions {
  nodes: number;
  clients: number;
  /** Length of the traffic phase. */
  durationMs: number;
  /** Average sends per second per client. */
  ratePerClient: number;
  /** A node is killed (SIGKILL) about this often. */
  killEveryMs: number;
  /** How long a killed node stays down before it is restarted. */
  nodeDownMs: number;
  /** Restart NATS, Redis and MariaDB once each during the run. */
  infraFaults: boolean;
  /** A client with this many unanswered sends skips its turn (keeps the load bounded). */
  maxPendingPerClient: number;
  /** Bound on waiting for clients to reconnect and drain their sends after the faults stop. */
  settleMs: number;
  /** Sends to a killed node's conversations must succeed again within this (invariant 6). */
  failoverLimitMs: number;
  seed: number;
  /** Extra IM_* settings for every node. */
  nodeEnv?: Record<string, string>;
  log?: (line: string) => void;
}

export const defaultChaosOptions: ChaosOptions = {
  nodes: 3,
  clients: 50,
  durationMs: 60_000,
  ratePerClient: 2,
  killEveryMs: 8_000,
  nodeDownMs: 1_500,
  infraFaults: true,
  maxPendingPerClient: 20,
  settleMs: 60_000,
  failoverLimitMs: 10_000,
  seed: 1,
};

export interface Anomalies {
  /** `sent` answered but the row is missing in MariaDB or holds another message. */
  lostAcknowledged: number;
  /** Two seqs for one (conv, sender, cmid), in MariaDB or across what clients saw. */
  duplicates: number;
  /** Conversations whose stored seqs are not exactly 1..N. */
  seqGaps: number;
  /** (conv, seq) pairs where two clients (or a client and MariaDB) disagree on mid/sender/body. */
  disagreements: number;
  /** Messages delivered to a client that is not a member of the conversation. */
  seenByNonMember: number;
  /** (client, conv, seq) stored in MariaDB but not held by a member client after the final sync. */
  missingAfterSync: number;
  /** The SDK emitted the same (conv, seq) twice. */
  duplicateDeliveries: number;
  /** Sends neither answered `sent` nor rejected when the settle phase ended. */
  stuckSends: number;
  /** Sends rejected with a final error (none is expected: every target is valid). */
  failedSends: number;
  /** Failovers slower than failoverLimitMs (invariant 6). */
  slowFailovers: number;
}

export interface ChaosReport {
  options: ChaosOptions;
  sendsAttempted: number;
  sentReceived: number;
  /** Messages received by clients from others (not their own sends), each (client, conv, seq) once. */
  delivered: number;
  /** Of those, obtained only by the final convs+sync (live push and the SDK's own gap fill missed them). */
  filledByFinalSync: number;
  /** SDK resends (same cmid) summed over clients. */
  retried: number;
  throttledTurns: number;
  storedMessages: number;
  conversations: number;
  nodeKills: number;
  infraRestarts: string[];
  reconnects: number;
  reconnectMs: Percentiles;
  failoverMs: Percentiles;
  failoversUnmeasured: number;
  anomalies: Anomalies;
  /** A few concrete examples per anomaly, for debugging. */
  examples: string[];
  faultLog: string[];
  elapsedMs: number;
}

export interface Percentiles { count: number; p50: number; p99: number; max: number }

export function percentiles(values: readonly number[]): Percentiles {
  if (values.length === 0) return { count: 0, p50: 0, p99: 0, max: 0 };
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
  return { count: s.length, p50: at(0.5), p99: at(0.99), max: s[s.length - 1] };
}

/** mulberry32: small, seedable, good enough for picking victims and targets. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}


interface SendRecord {
  user: string;
  conv: string;
  cmid: string;
  body: string;
  startedAt: number;
  sent?: SentFrame & { at: number };
  error?: string;
}

interface Seen { mid: string; from: string; cmid: string; body: string }

interface Participant {
  user: string;
  client: ChatClient;
  /** Conversations this user is a member of, and how to address a send to each. */
  targets: Array<{ conv: string; to?: string }>;
  member: Set<string>;
  /** conv → seq → what this client received. */
  seen: Map<string, Map<number, Seen>>;
  sends: number;
}

class Examples {
  private readonly perKind = new Map<string, number>();
  readonly lines: string[] = [];
  add(kind: string, text: string): void {
    const n = this.perKind.get(kind) ?? 0;
    this.perKind.set(kind, n + 1);
    if (n < 5) this.lines.push(`${kind}: ${text}`);
  }
}

export async function runChaos(partial: Partial<ChaosOptions> = {}): Promise<ChaosReport> {
  const o: ChaosOptions = { ...defaultChaosOptions, ...partial };
  const log = o.log ?? (() => undefined);
  const t0 = Date.now();
  const stamp = (): string => `${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s`;
  const say = (line: string): void => log(`[chaos ${stamp()}] ${line}`);
  const rnd = prng(o.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];

  say(`seed ${o.seed}; starting MariaDB, NATS, Redis`);
  const servers = await startAll();
  const nodes: ChatNodeHandle[] = [];
  const participants: Participant[] = [];
  try {
    const env: Record<string, string> = {
      IM_MYSQL_URL: servers.mariadb.url,
      IM_NATS_URL: servers.nats.url,
      IM_REDIS_URL: servers.redis.url,
      IM_HEARTBEAT_MS: '5000',
      IM_LOG_LEVEL: 'warn',
      ...o.nodeEnv,
    };
    // The first node creates the schema; the rest start together.
    const ids = Array.from({ length: o.nodes }, (_, i) => `chaos-n${i + 1}`);
    nodes.push(await startChatNode({ nodeId: ids[0], env: { ...env, IM_NODE_ID: ids[0] } }));
    nodes.push(...(await Promise.all(ids.slice(1).map((id) => startChatNode({ nodeId: id, env: { ...env, IM_NODE_ID: id } })))));
    const urls = nodes.map((n) => n.wsUrl);
    say(`${o.nodes} nodes up: ${nodes.map((n) => `${n.nodeId}@${n.port}`).join(' ')}`);

    // ---- users and conversations (fixed membership: no adds/removes during the run)
    const users = Array.from({ length: o.clients }, (_, i) => `u${i}`);
    const byUser = new Map<string, Participant>();
    const examples = new Examples();
    let seenByNonMember = 0;
    let duplicateDeliveries = 0;
    for (const [i, user] of users.entries()) {
      const client = new ChatClient({
        urls, token: () => signTestToken(user), WebSocket, device: 'chaos', startIndex: i % urls.length,
        backoff: { baseMs: 100, maxMs: 2000 }, sendTimeoutMs: 8000, requestTimeoutMs: 15_000,
      });
      const p: Participant = { user, client, targets: [], member: new Set(), seen: new Map(), sends: 0 };
      client.on('message', (m: MsgFrame) => {
        if (!p.member.has(m.conv)) {
          seenByNonMember++;
          examples.add('seenByNonMember', `${user} got ${m.conv}#${m.seq}`);
        }
        let conv = p.seen.get(m.conv);
        if (!conv) p.seen.set(m.conv, (conv = new Map()));
        if (conv.has(m.seq)) {
          duplicateDeliveries++;
          examples.add('duplicateDelivery', `${user} got ${m.conv}#${m.seq} twice`);
        }
        conv.set(m.seq, { mid: m.mid, from: m.from, cmid: m.cmid, body: JSON.stringify(m.body ?? null) });
      });
      participants.push(p);
      byUser.set(user, p);
    }
    const convMembers = new Map<string, string[]>();
    if (users.length >= 2) {
      for (let i = 0; i < users.length; i++) {
        const a = users[i];
        const b = users[(i + 1) % users.length];
        const conv = dmId(a, b);
        if (convMembers.has(conv)) continue;
        convMembers.set(conv, [a, b]);
        byUser.get(a)!.targets.push({ conv, to: b });
        byUser.get(b)!.targets.push({ conv, to: a });
      }
    }
    const groups: Array<{ conv: string; owner: string; members: string[] }> = [];
    const groupCount = Math.max(1, Math.floor(users.length / 4));
    for (let g = 0; g < groupCount; g++) {
      const owner = users[g % users.length];
      const size = Math.min(users.length, 3 + Math.floor(rnd() * 4));
      const members = new Set([owner]);
      for (let k = 0; members.size < size && k < 100; k++) members.add(pick(users));
      groups.push({ conv: `g:grp${g}`, owner, members: [...members] });
      convMembers.set(`g:grp${g}`, [...members]);
      for (const u of members) byUser.get(u)!.targets.push({ conv: `g:grp${g}` });
    }
    for (const [conv, ms] of convMembers) for (const u of ms) byUser.get(u)!.member.add(conv);
    const allConvs = [...convMembers.keys()];

    say(`connecting ${participants.length} clients`);
    await Promise.all(participants.map((p) => p.client.connect()));
    for (const g of groups) {
      const owner = byUser.get(g.owner)!.client;
      await owner.groupCreate(g.conv.slice(2), g.members.filter((u) => u !== g.owner));
    }
    say(`${convMembers.size - groups.length} dm + ${groups.length} group conversations`);

    // ---- failover tracking: conversations owned by a killed node, until their first `sent`
    const live = new Set(ids);
    // conv → kill time, and whether anyone wanted to send there during the outage.
    const awaitingFailover = new Map<string, { killedAt: number; demand: boolean }>();
    const pendingByConv = new Map<string, number>();
    const failovers: number[] = [];
    let failoversUnmeasured = 0;
    const onSendStart = (conv: string, startedAt: number): void => {
      pendingByConv.set(conv, (pendingByConv.get(conv) ?? 0) + 1);
      const w = awaitingFailover.get(conv);
      if (w && startedAt <= w.killedAt + 1000) w.demand = true;
    };
    const onSendEnd = (conv: string): void => { pendingByConv.set(conv, (pendingByConv.get(conv) ?? 1) - 1); };
    const onSent = (conv: string, at: number): void => {
      const w = awaitingFailover.get(conv);
      if (!w || at <= w.killedAt) return;
      awaitingFailover.delete(conv);
      // Only a conversation with a send waiting at the kill (or made within 1 s of it) measures
      // the outage; one that simply had no traffic for a while would inflate the number.
      if (w.demand) failovers.push(at - w.killedAt);
      else failoversUnmeasured++;
    };

    // ---- traffic
    const ledger: SendRecord[] = [];
    let throttledTurns = 0;
    let trafficOn = true;
    const tickMs = 50;
    const pSend = Math.min(1, o.ratePerClient * (tickMs / 1000));
    const inflight = new Set<Promise<void>>();
    const traffic = (async () => {
      while (trafficOn) {
        const tickStart = Date.now();
        for (const p of participants) {
          if (p.targets.length === 0 || rnd() >= pSend) continue;
          if (p.client.pendingSends >= o.maxPendingPerClient) { throttledTurns++; continue; }
          const target = pick(p.targets);
          const cmid = `${p.user}-${++p.sends}`;
          const body = { k: cmid, pad: 'x'.repeat(Math.floor(rnd() * 64)) };
          const rec: SendRecord = { user: p.user, conv: target.conv, cmid, body: JSON.stringify(body), startedAt: Date.now() };
          ledger.push(rec);
          onSendStart(target.conv, rec.startedAt);
          const promise = p.client
            .send(target.to !== undefined ? { to: target.to } : { conv: target.conv }, body, { cmid })
            .then(
              (s) => {
                const at = Date.now();
                rec.sent = { ...s, at };
                onSent(s.conv, at);
              },
              (e: unknown) => { rec.error = e instanceof Error ? `${(e as { code?: string }).code ?? ''} ${e.message}` : String(e); },
            )
            .finally(() => onSendEnd(target.conv));
          inflight.add(promise);
          void promise.finally(() => inflight.delete(promise));
        }
        await sleep(Math.max(1, tickMs - (Date.now() - tickStart)));
      }
    })();

    // ---- faults: one at a time, so a node restart never waits on a server that is down
    const faultLog: string[] = [];
    const infraRestarts: string[] = [];
    let nodeKills = 0;
    let faultsOn = true;
    const fault = (line: string): void => { faultLog.push(`${stamp()} ${line}`); say(line); };
    const trafficEnd = Date.now() + o.durationMs;
    const infraPlan: Array<{ at: number; server: ServerHandle }> = o.infraFaults
      ? [
          { at: 0.3, server: servers.nats },
          { at: 0.5, server: servers.redis },
          { at: 0.7, server: servers.mariadb },
        ].map((x) => ({ at: Date.now() + x.at * o.durationMs, server: x.server }))
      : [];
    const infraDue = (): boolean => infraPlan.some((x) => Date.now() >= x.at);
    // Waits between faults; cut short when a server restart is due so none is skipped.
    const pausable = async (ms: number): Promise<void> => {
      const end = Date.now() + ms;
      while (faultsOn && Date.now() < end && !infraDue()) await sleep(Math.min(200, end - Date.now()));
    };
    const faults = (async () => {
      await pausable(Math.min(3000, o.killEveryMs / 2));
      // Every planned server restart happens even if node kills ran late (traffic waits for them).
      while (faultsOn && (Date.now() < trafficEnd || infraPlan.length > 0)) {
        const due = infraPlan.findIndex((x) => Date.now() >= x.at);
        if (due >= 0) {
          const [{ server }] = infraPlan.splice(due, 1);
          fault(`kill -9 ${server.kind} (pid ${server.pid})`);
          await server.kill();
          await sleep(1000);
          const r0 = Date.now();
          await server.restart();
          fault(`${server.kind} restarted in ${Date.now() - r0} ms`);
          infraRestarts.push(server.kind);
          await pausable(2000);
          continue;
        }
        const cycleStart = Date.now();
        const victim = pick(nodes);
        const before = [...live];
        const killedAt = Date.now();
        await victim.kill();
        live.delete(victim.nodeId);
        nodeKills++;
        let owned = 0;
        for (const conv of allConvs) {
          if (ownerOf(conv, before) !== victim.nodeId) continue;
          if (awaitingFailover.has(conv)) failoversUnmeasured++;
          awaitingFailover.set(conv, { killedAt, demand: (pendingByConv.get(conv) ?? 0) > 0 });
          owned++;
        }
        fault(`kill -9 ${victim.nodeId} (owned ${owned} conversations)`);
        await sleep(o.nodeDownMs);
        const r0 = Date.now();
        await victim.restart();
        live.add(victim.nodeId);
        fault(`${victim.nodeId} restarted (healthy after ${Date.now() - r0} ms)`);
        await pausable(Math.max(500, o.killEveryMs - (Date.now() - cycleStart)));
      }
    })();

    let faultsDone = false;
    void faults.finally(() => { faultsDone = true; });
    while (Date.now() < trafficEnd || (!faultsDone && infraPlan.length > 0)) await sleep(200);
    faultsOn = false;
    trafficOn = false;
    await Promise.all([faults, traffic]);
    // Conversations a killed node owned that got no send afterwards cannot be measured.
    failoversUnmeasured += awaitingFailover.size;
    awaitingFailover.clear();
    say(`traffic stopped: ${ledger.length} sends attempted; settling (≤ ${o.settleMs} ms)`);

    // ---- settle: every client open and every send answered (bounded)
    const settleEnd = Date.now() + o.settleMs;
    while (Date.now() < settleEnd) {
      const open = participants.every((p) => p.client.state === 'open');
      if (open && inflight.size === 0) break;
      await sleep(200);
    }
    say(`settled: ${participants.filter((p) => p.client.state === 'open').length}/${participants.length} open, ${inflight.size} sends unanswered`);

    // ---- final sync, as an app would after reconnecting: convs, then sync what is missing
    const heldBefore = participants.reduce((n, p) => n + [...p.seen.values()].reduce((k, m) => k + m.size, 0), 0);
    const before = new Map(participants.map((p) => [p.user, new Map([...p.seen].map(([c, m]) => [c, new Set(m.keys())]))]));
    const syncStart = Date.now();
    await Promise.all(participants.map(async (p) => {
      try {
        const list = await p.client.convs();
        for (const c of list) {
          for (let i = 0; i < 100 && p.client.held(c.conv) < c.last_seq; i++) {
            const before = p.client.held(c.conv);
            const b = await p.client.sync(c.conv, before, 200);
            if (b.msgs.length === 0 && !b.more) break;
          }
        }
      } catch (e) {
        examples.add('finalSyncFailed', `${p.user}: ${(e as Error).message}`);
      }
    }));
    const filledByFinalSync = participants.reduce((n, p) => n + [...p.seen.values()].reduce((k, m) => k + m.size, 0), 0) - heldBefore;
    // Not an anomaly (invariant 4 allows it), but worth seeing: which messages live push missed.
    for (const p of participants) {
      for (const [conv, m] of p.seen) {
        const had = before.get(p.user)?.get(conv);
        const newSeqs = [...m.keys()].filter((q) => !had?.has(q)).sort((x, y) => x - y);
        if (newSeqs.length > 0) {
          const last = Math.max(...m.keys());
          examples.add('note: filledByFinalSync', `${p.user} ${conv} seqs ${newSeqs.slice(0, 8).join(',')}${newSeqs.length > 8 ? '…' : ''} of ${last}; newest filled was committed ${syncStart - (ledger.find((r) => r.sent?.conv === conv && r.sent.seq === newSeqs[newSeqs.length - 1])?.sent?.at ?? syncStart)} ms before the sync`);
        }
      }
    }
    say(`final sync done (${filledByFinalSync} messages filled); checking invariants against MariaDB`);

    // ---- invariants
    const db = await createConnection({ uri: servers.mariadb.url });
    let rows: RowDataPacket[];
    try {
      [rows] = await db.query<RowDataPacket[]>(
        'SELECT conversation_id, seq, mid, sender_id, cmid, body FROM message ORDER BY conversation_id, seq',
      );
    } finally {
      await db.end();
    }
    const stored = new Map<string, Map<number, Seen>>();
    for (const r of rows) {
      const conv = String(r.conversation_id);
      let m = stored.get(conv);
      if (!m) stored.set(conv, (m = new Map()));
      m.set(Number(r.seq), {
        mid: String(r.mid), from: String(r.sender_id), cmid: String(r.cmid),
        body: r.body === null ? 'null' : JSON.stringify(JSON.parse(String(r.body))),
      });
    }

    const a: Anomalies = {
      lostAcknowledged: 0, duplicates: 0, seqGaps: 0, disagreements: 0, seenByNonMember, missingAfterSync: 0,
      duplicateDeliveries, stuckSends: 0, failedSends: 0, slowFailovers: 0,
    };
    // 1. every `sent` is stored as that message
    for (const r of ledger) {
      if (r.error) { a.failedSends++; examples.add('failedSend', `${r.user} ${r.cmid} → ${r.conv} (started at ${((r.startedAt - t0) / 1000).toFixed(1)}s): ${r.error}`); continue; }
      if (!r.sent) { a.stuckSends++; examples.add('stuckSend', `${r.user} ${r.cmid} → ${r.conv}`); continue; }
      const row = stored.get(r.sent.conv)?.get(r.sent.seq);
      if (!row || row.mid !== r.sent.mid || row.cmid !== r.cmid || row.from !== r.user || row.body !== r.body) {
        a.lostAcknowledged++;
        examples.add('lostAcknowledged', `${r.user} ${r.cmid} sent as ${r.sent.conv}#${r.sent.seq} mid ${r.sent.mid}; stored: ${JSON.stringify(row ?? null)}`);
      }
    }
    // 2. stored seqs are 1..N
    for (const [conv, m] of stored) {
      const seqs = [...m.keys()].sort((x, y) => x - y);
      if (seqs.length > 0 && (seqs[0] !== 1 || seqs[seqs.length - 1] !== seqs.length)) {
        a.seqGaps++;
        examples.add('seqGap', `${conv}: ${seqs.length} rows, seqs ${seqs[0]}..${seqs[seqs.length - 1]}`);
      }
    }
    // 3. one seq per (conv, sender, cmid): MariaDB, `sent` answers and deliveries together
    const seqOf = new Map<string, Set<number>>();
    const note = (conv: string, from: string, cmid: string, seq: number): void => {
      const k = `${conv}\u0000${from}\u0000${cmid}`;
      let s = seqOf.get(k);
      if (!s) seqOf.set(k, (s = new Set()));
      s.add(seq);
    };
    for (const [conv, m] of stored) for (const [seq, v] of m) note(conv, v.from, v.cmid, seq);
    for (const r of ledger) if (r.sent) note(r.sent.conv, r.user, r.cmid, r.sent.seq);
    for (const p of participants) for (const [conv, m] of p.seen) for (const [seq, v] of m) note(conv, v.from, v.cmid, seq);
    for (const [k, s] of seqOf) {
      if (s.size > 1) { a.duplicates++; examples.add('duplicate', `${k.replaceAll('\u0000', ' ')} at seqs ${[...s].join(',')}`); }
    }
    // 4. everybody agrees on each (conv, seq); members hold everything stored
    let delivered = 0;
    for (const p of participants) {
      for (const [conv, m] of p.seen) {
        const truth = stored.get(conv);
        for (const [seq, v] of m) {
          if (v.from !== p.user) delivered++;
          const t = truth?.get(seq);
          if (!t || t.mid !== v.mid || t.from !== v.from || t.cmid !== v.cmid || t.body !== v.body) {
            a.disagreements++;
            examples.add('disagreement', `${p.user} holds ${conv}#${seq} ${JSON.stringify(v)}; stored ${JSON.stringify(t ?? null)}`);
          }
        }
      }
      for (const conv of p.member) {
        const truth = stored.get(conv);
        if (!truth) continue;
        const mine = p.seen.get(conv);
        for (const seq of truth.keys()) {
          if (!mine?.has(seq)) {
            a.missingAfterSync++;
            examples.add('missingAfterSync', `${p.user} lacks ${conv}#${seq} (holds ${p.client.held(conv)} of ${truth.size}, state ${p.client.state})`);
          }
        }
      }
    }
    // 5. nobody outside the member list wrote to a conversation
    for (const [conv, m] of stored) {
      const members = convMembers.get(conv);
      for (const [seq, v] of m) {
        if (!members?.includes(v.from)) {
          a.seenByNonMember++;
          examples.add('seenByNonMember', `stored ${conv}#${seq} from non-member ${v.from}`);
        }
      }
    }
    a.slowFailovers = failovers.filter((ms) => ms > o.failoverLimitMs).length;
    // Error-level lines the nodes logged (best effort: the harness keeps each node's last 200 lines).
    for (const n of nodes) {
      for (const line of n.logs().split('\n')) {
        if (/"level":(50|60)/.test(line)) examples.add(`note: ${n.nodeId} logged`, line.slice(0, 600));
      }
    }

    const report: ChaosReport = {
      options: o,
      sendsAttempted: ledger.length,
      sentReceived: ledger.filter((r) => r.sent).length,
      delivered,
      filledByFinalSync,
      retried: participants.reduce((n, p) => n + p.client.metrics.resends, 0),
      throttledTurns,
      storedMessages: rows.length,
      conversations: stored.size,
      nodeKills,
      infraRestarts,
      reconnects: participants.reduce((n, p) => n + p.client.metrics.reconnects, 0),
      reconnectMs: percentiles(participants.flatMap((p) => p.client.metrics.reconnectDurations)),
      failoverMs: percentiles(failovers),
      failoversUnmeasured,
      anomalies: a,
      examples: examples.lines,
      faultLog,
      elapsedMs: Date.now() - t0,
    };
    return report;
  } finally {
    say('shutting down clients, nodes and servers');
    await Promise.all(participants.map((p) => p.client.close().catch(() => undefined)));
    // SIGKILL: a graceful stop would wait for sockets and commits we no longer care about.
    await Promise.all(nodes.map((n) => n.kill().catch(() => undefined)));
    await servers.stop().catch(() => undefined);
  }
}

export function anomalyCount(r: ChaosReport): number {
  return Object.values(r.anomalies).reduce((n, v) => n + v, 0);
}

export function formatReport(r: ChaosReport): string {
  const o = r.options;
  const ms = (p: Percentiles): string => `p50 ${p.p50} ms, p99 ${p.p99} ms, max ${p.max} ms (n=${p.count})`;
  const lines = [
    `chaos report — ${o.nodes} nodes, ${o.clients} clients, ${Math.round(o.durationMs / 1000)} s traffic, seed ${o.seed}`,
    `  node env               ${Object.entries(o.nodeEnv ?? {}).map(([k, v]) => `${k}=${v}`).join(' ') || '(defaults)'}`,
    `  sends attempted        ${r.sendsAttempted}`,
    `  sent received          ${r.sentReceived}`,
    `  delivered (to others)  ${r.delivered}`,
    `  filled by final sync   ${r.filledByFinalSync}`,
    `  retried (SDK resends)  ${r.retried}`,
    `  throttled turns        ${r.throttledTurns}`,
    `  stored messages        ${r.storedMessages} in ${r.conversations} conversations`,
    `  node kills             ${r.nodeKills}`,
    `  server restarts        ${r.infraRestarts.join(', ') || 'none'}`,
    `  reconnects             ${r.reconnects}; reconnect time ${ms(r.reconnectMs)}`,
    `  conversation failover  p50 ${r.failoverMs.p50} ms, max ${r.failoverMs.max} ms (n=${r.failoverMs.count}, unmeasured ${r.failoversUnmeasured})`,
    '  anomalies:',
    ...Object.entries(r.anomalies).map(([k, v]) => `    ${k.padEnd(22)} ${v}${v > 0 ? '   <-- ANOMALY' : ''}`),
  ];
  if (r.examples.length > 0) lines.push('  examples:', ...r.examples.map((e) => `    ${e}`));
  lines.push('  faults:', ...r.faultLog.map((f) => `    ${f}`));
  lines.push(`  total ${(r.elapsedMs / 1000).toFixed(1)} s; ${anomalyCount(r) === 0 ? 'OK: no anomalies' : `FAILED: ${anomalyCount(r)} anomalies`}`);
  return lines.join('\n');
}
