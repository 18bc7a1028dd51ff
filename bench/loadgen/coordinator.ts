/**
 * Load-generator coordinator: forks K worker processes (`node --import tsx worker.ts`), hands
 * each a slice of the connections, runs scenario phases in lock-step (shared wall-clock start),
 * merges their encoded HDR histograms and samples the server's /proc/<pid> meanwhile.
 *
 * Scenarios:
 *   idle   — N logged-in sockets that only ping; server RSS per connection and CPU at rest
 *   pairs  — 1:1 pairs, open-loop fixed-rate schedule; send→sent and send→delivery latency;
 *            a bounded step search for the highest rate with p99 send→sent under a limit
 *   fanout — one sender into a group of M online members; deliveries/s and p99 send→last delivery
 *   reconnect — N clients with K offline messages each all connect at once; time until every
 *            client holds its messages (login redelivery, `sync` as fallback), p50/p99 per client
 *
 * Multi-node targets (`urls`): pairs put the two sockets of every pair on different nodes, fanout
 * spreads the group's members over the nodes, reconnect puts senders and recipients on
 * different nodes; server metrics are summed over `pids`.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { mergeEncoded, summarize, type LatencySummary } from './hist.ts';
import { cpuPercent, machineBusyPercent, machineCpu, ProcWatcher, sampleProc } from './procstat.ts';
import type { CodecName, ConnSpec, FromWorker, PhaseKind, PhaseResultMsg, PreparedMsg, SetupResultMsg, StormResultMsg, ToWorker } from './types.ts';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Target {
  name: string;
  /** Base WebSocket URL, e.g. ws://127.0.0.1:9001/ws */
  url: string;
  codec: CodecName;
  /** Server PID for /proc metrics (optional). */
  pid?: number;
  /** Cluster: every node's WebSocket URL (url = urls[0]); sockets are spread over them. */
  urls?: string[];
  /** Cluster: every node's PID; server CPU and RSS are summed over them. Overrides `pid`. */
  pids?: number[];
  /** codec `xmpp` (ejabberd): the XMPP domain and the password every bench user was registered with. */
  xmpp?: { domain: string; password: string };
}

function pidsOf(t: Target): number[] {
  return t.pids ?? (t.pid !== undefined ? [t.pid] : []);
}

function nodeCount(t: Target): number {
  return Math.max(1, t.urls?.length ?? 1);
}

/** RSS summed over the target's processes (null when any is gone). */
function sampleRss(t: Target): number | null {
  const pids = pidsOf(t);
  if (pids.length === 0) return null;
  let sum = 0;
  for (const pid of pids) {
    const x = sampleProc(pid);
    if (!x) return null;
    sum += x.rssBytes;
  }
  return sum;
}

/** Watches every process of a target; CPU % (of one core) and RSS are sums over them. */
class TargetWatcher {
  private readonly ws: ProcWatcher[];
  constructor(t: Target) {
    this.ws = pidsOf(t).map((pid) => new ProcWatcher(pid));
  }
  stop(): (ServerUsage & { cpuMs: number }) | null {
    if (this.ws.length === 0) return null;
    let cpuPct = 0;
    let cpuMs = 0;
    let rss = 0;
    let peak = 0;
    for (const w of this.ws) {
      const r = w.stop();
      if (!r.first || !r.last) return null;
      cpuPct += cpuPercent(r.first, r.last);
      cpuMs += r.last.cpuMs - r.first.cpuMs;
      rss += r.last.rssBytes;
      // Sum of per-process peaks: an upper bound of the simultaneous peak.
      peak += r.peakRssBytes;
    }
    return { cpuPct: round1(cpuPct), cpuMs: Math.round(cpuMs), rssMB: round1(rss / 2 ** 20), peakRssMB: round1(peak / 2 ** 20) };
  }
}

export interface LoadOptions {
  workers: number;
  jwtSecret: string;
  /** Source addresses rotated through with `localAddress` (127.0.0.1, 127.0.0.2, …). */
  sourceAddrs: string[];
  connsPerAddr: number;
  connectConcurrency: number;
  bodyBytes: number;
  /** 0 = the server's heartbeat_ms. */
  pingEveryMs: number;
  ackEveryMs: number;
  log: (line: string) => void;
}

export function defaultLoadOptions(partial: Partial<LoadOptions> = {}): LoadOptions {
  return {
    workers: 2,
    jwtSecret: process.env.IM_JWT_SECRET ?? 'bench-secret',
    sourceAddrs: ['127.0.0.1'],
    connsPerAddr: 25_000,
    connectConcurrency: 64,
    bodyBytes: 100,
    pingEveryMs: 0,
    ackEveryMs: 100,
    log: (line) => process.stderr.write(`${line}\n`),
    ...partial,
  };
}

/** `count` loopback source addresses 127.0.0.1 … 127.0.0.count (Linux routes all of 127/8 to lo). */
export function loopbackAddrs(count: number): string[] {
  return Array.from({ length: Math.max(1, Math.min(250, count)) }, (_, i) => `127.0.0.${i + 1}`);
}

const wall = (): number => performance.timeOrigin + performance.now();
const round1 = (x: number): number => Math.round(x * 10) / 10;

type Inbox = { msgs: FromWorker[]; waiters: ((m: FromWorker) => void)[] };

/** K forked worker processes with typed, ordered message inboxes. */
class Fleet {
  private readonly procs: ChildProcess[] = [];
  private readonly inboxes: Inbox[] = [];
  private readonly exited: (string | null)[] = [];

  constructor(count: number) {
    const workerPath = fileURLToPath(new URL('./worker.ts', import.meta.url));
    const tsx = import.meta.resolve('tsx');
    for (let i = 0; i < count; i++) {
      const p = fork(workerPath, [], { execArgv: ['--import', tsx], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const inbox: Inbox = { msgs: [], waiters: [] };
      this.procs.push(p);
      this.inboxes.push(inbox);
      this.exited.push(null);
      p.on('message', (raw: unknown) => {
        const m = raw as FromWorker;
        const w = inbox.waiters.shift();
        if (w) w(m);
        else inbox.msgs.push(m);
      });
      p.on('exit', (code, sig) => {
        this.exited[i] = `worker ${i} exited (code ${code}, signal ${sig})`;
        const fatal: FromWorker = { type: 'fatal', workerIndex: i, message: this.exited[i] ?? 'exited' };
        for (const w of inbox.waiters.splice(0)) w(fatal);
      });
    }
  }

  get size(): number {
    return this.procs.length;
  }

  send(i: number, msg: ToWorker): void {
    this.procs[i]?.send(msg);
  }

  /** Next message from worker i; rejects on timeout, worker exit or a worker `fatal`. */
  next(i: number, timeoutMs: number): Promise<FromWorker> {
    const inbox = this.inboxes[i];
    if (!inbox) return Promise.reject(new Error(`no worker ${i}`));
    const queued = inbox.msgs.shift();
    const ready = queued
      ? Promise.resolve(queued)
      : this.exited[i]
        ? Promise.reject(new Error(this.exited[i] ?? 'exited'))
        : new Promise<FromWorker>((resolve, reject) => {
            const timer = setTimeout(() => {
              const k = inbox.waiters.indexOf(waiter);
              if (k >= 0) inbox.waiters.splice(k, 1);
              reject(new Error(`worker ${i}: no answer within ${timeoutMs} ms`));
            }, timeoutMs);
            const waiter = (m: FromWorker): void => {
              clearTimeout(timer);
              resolve(m);
            };
            inbox.waiters.push(waiter);
          });
    return ready.then((m) => {
      if (m.type === 'fatal') throw new Error(`worker ${i}: ${m.message}`);
      return m;
    });
  }

  async expect<T extends FromWorker['type']>(i: number, type: T, timeoutMs: number): Promise<Extract<FromWorker, { type: T }>> {
    const m = await this.next(i, timeoutMs);
    if (m.type !== type) throw new Error(`worker ${i}: expected ${type}, got ${m.type}`);
    return m as Extract<FromWorker, { type: T }>;
  }

  async close(): Promise<void> {
    for (let i = 0; i < this.procs.length; i++) if (!this.exited[i]) this.send(i, { type: 'close' });
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && this.exited.some((e) => e === null)) await sleep(50);
    this.procs.forEach((p, i) => {
      if (!this.exited[i] && p.pid !== undefined) p.kill('SIGKILL');
    });
  }
}

export interface SetupSummary {
  requested: number;
  connected: number;
  failed: number;
  errors: Record<string, number>;
  seconds: number;
  loginsPerSec: number;
  heartbeatMs: number;
}

function addCounts(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

async function setupFleet(fleet: Fleet, target: Target, o: LoadOptions, perWorker: ConnSpec[][]): Promise<SetupSummary> {
  perWorker.forEach((conns, i) =>
    fleet.send(i, {
      type: 'setup',
      workerIndex: i,
      url: target.url,
      urls: target.urls,
      codec: target.codec,
      jwtSecret: o.jwtSecret,
      conns,
      sourceAddrs: o.sourceAddrs,
      connsPerAddr: o.connsPerAddr,
      pingEveryMs: o.pingEveryMs,
      connectConcurrency: o.connectConcurrency,
      ackEveryMs: o.ackEveryMs,
      xmpp: target.xmpp,
    }),
  );
  const requested = perWorker.reduce((n, c) => n + c.length, 0);
  const results: SetupResultMsg[] = [];
  for (let i = 0; i < fleet.size; i++) results.push(await fleet.expect(i, 'setupDone', 120_000 + requested * 5));
  // Workers connect in parallel; their own clocks exclude process start-up and token signing.
  const seconds = Math.max(0.001, ...results.map((r) => r.elapsedMs / 1000));

  const errors: Record<string, number> = {};
  for (const r of results) addCounts(errors, r.errors);
  const connected = results.reduce((n, r) => n + r.connected, 0);
  return {
    requested,
    connected,
    failed: results.reduce((n, r) => n + r.failed, 0),
    errors,
    seconds: Math.round(seconds * 100) / 100,
    loginsPerSec: Math.round(connected / seconds),
    heartbeatMs: results[0]?.heartbeatMs ?? 0,
  };
}

export interface ServerUsage {
  cpuPct: number;
  rssMB: number;
  peakRssMB: number;
  /** Server CPU time (user + system) over the phase, ms (absent in reports written before it existed). */
  cpuMs?: number;
}

interface MergedPhase {
  attempted: number;
  sentOk: number;
  timeouts: number;
  errors: Record<string, number>;
  delivered: number;
  sent: LatencySummary;
  delivery: LatencySummary;
  pong: LatencySummary;
  fanout: Map<string, [number, number]>;
  maxScheduleLagMs: number;
  /** Highest worker CPU use, % of one core. */
  loadgenCpuPct: number;
  server: ServerUsage | null;
  /** All cores, everything on the machine (other processes included), % busy. */
  machineBusyPct: number | null;
  openSockets: number;
}

let phaseCounter = 0;

async function runPhase(fleet: Fleet, target: Target, kind: PhaseKind, rates: number[], durationMs: number, graceMs: number, bodyBytes: number, conv?: string): Promise<MergedPhase> {
  const phaseId = ++phaseCounter;
  const startAt = wall() + 300;
  const watcher = new TargetWatcher(target);
  const m0 = machineCpu();
  for (let i = 0; i < fleet.size; i++) {
    fleet.send(i, { type: 'phase', phaseId, kind, rate: rates[i] ?? 0, startAt, durationMs, graceMs, bodyBytes, conv });
  }
  const results: PhaseResultMsg[] = [];
  for (let i = 0; i < fleet.size; i++) results.push(await fleet.expect(i, 'phaseResult', durationMs + graceMs + 30_000));
  const usage = watcher.stop();
  const machineBusyPct = machineBusyPercent(m0, machineCpu());
  const errors: Record<string, number> = {};
  const fanout = new Map<string, [number, number]>();
  for (const r of results) {
    addCounts(errors, r.errors);
    for (const [cmid, n, lat] of r.fanout) {
      const s = fanout.get(cmid);
      if (s) {
        s[0] += n;
        if (lat > s[1]) s[1] = lat;
      } else fanout.set(cmid, [n, lat]);
    }
  }
  const sentH = mergeEncoded(results.map((r) => r.sentHist));
  const delH = mergeEncoded(results.map((r) => r.deliveryHist));
  const pongH = mergeEncoded(results.map((r) => r.pongHist));
  const out: MergedPhase = {
    attempted: results.reduce((n, r) => n + r.attempted, 0),
    sentOk: results.reduce((n, r) => n + r.sentOk, 0),
    timeouts: results.reduce((n, r) => n + r.timeouts, 0),
    errors,
    delivered: results.reduce((n, r) => n + r.delivered, 0),
    sent: summarize(sentH),
    delivery: summarize(delH),
    pong: summarize(pongH),
    fanout,
    maxScheduleLagMs: results.reduce((m, r) => Math.max(m, r.maxScheduleLagMs), 0),
    loadgenCpuPct: results.reduce((m, r) => Math.max(m, r.wallMs > 0 ? round1((r.cpuMs / r.wallMs) * 100) : 0), 0),
    server: usage ? { cpuPct: usage.cpuPct, rssMB: usage.rssMB, peakRssMB: usage.peakRssMB, cpuMs: usage.cpuMs } : null,
    machineBusyPct,
    openSockets: results.reduce((n, r) => n + r.openSockets, 0),
  };
  sentH.destroy();
  delH.destroy();
  pongH.destroy();
  return out;
}

// ------------------------------------------------------------------------------------ idle

export interface IdleParams {
  connections: number;
  restMs: number;
}

export interface IdleResult {
  scenario: 'idle';
  setup: SetupSummary;
  rssBeforeMB: number | null;
  rssAfterMB: number | null;
  /** (RSS after login − RSS before) / connected sockets. */
  rssPerConnKB: number | null;
  /** Server CPU while the sockets only ping, % of one core. */
  cpuRestPct: number | null;
  pingRtt: LatencySummary;
  restSeconds: number;
  errors: Record<string, number>;
  openAtEnd: number;
}

export async function runIdle(target: Target, o: LoadOptions, p: IdleParams): Promise<IdleResult> {
  const fleet = new Fleet(o.workers);
  try {
    const perWorker: ConnSpec[][] = Array.from({ length: fleet.size }, () => []);
    const nodes = nodeCount(target);
    for (let i = 0; i < p.connections; i++) perWorker[i % fleet.size]!.push({ user: `idle${i}`, index: i, node: i % nodes });
    const before = sampleRss(target);
    o.log(`  idle: connecting ${p.connections} sockets`);
    const setup = await setupFleet(fleet, target, o, perWorker);
    await sleep(1000);
    const after = sampleRss(target);
    o.log(`  idle: ${setup.connected} logged in (${setup.loginsPerSec}/s), resting ${p.restMs} ms`);
    const ph = await runPhase(fleet, target, 'idle', [], p.restMs, 0, 0);
    return {
      scenario: 'idle',
      setup,
      rssBeforeMB: before !== null ? round1(before / 2 ** 20) : null,
      rssAfterMB: after !== null ? round1(after / 2 ** 20) : null,
      rssPerConnKB: before !== null && after !== null && setup.connected > 0 ? round1((after - before) / 1024 / setup.connected) : null,
      cpuRestPct: ph.server?.cpuPct ?? null,
      pingRtt: ph.pong,
      restSeconds: p.restMs / 1000,
      errors: ph.errors,
      openAtEnd: ph.openSockets,
    };
  } finally {
    await fleet.close();
  }
}

// ------------------------------------------------------------------------------------ step search

export interface SearchParams {
  durationMs: number;
  graceMs: number;
  startRate: number;
  factor: number;
  maxSteps: number;
  refineSteps: number;
  /** Pass limit for p99 (send→sent for pairs, send→last delivery for fanout), ms. */
  p99LimitMs: number;
  /** Allowed share of timeouts + errors + missing deliveries. */
  maxLossRatio: number;
  /** Pause after a step (lets a saturated server drain), ms. */
  pauseMs: number;
  /** Unrecorded warm-up phase at half the start rate before the first step (JIT, caches), ms. */
  warmupMs: number;
  /**
   * Fixed offered rates instead of a search: each is run `repeat` times (all rates in turn, then
   * again), whether it passes or not; maxRate is then the highest rate that passed.
   */
  fixedRates?: number[];
  repeat?: number;
}

export interface StepResult {
  /** Offered rate, messages/s. */
  rate: number;
  attempted: number;
  sentOk: number;
  timeouts: number;
  errors: Record<string, number>;
  delivered: number;
  expectedDeliveries: number;
  /** sent answers per second of the send window. */
  throughput: number;
  deliveriesPerSec: number;
  sent: LatencySummary;
  delivery: LatencySummary;
  /** fanout: send → last member's delivery, over complete messages. */
  lastDelivery?: LatencySummary;
  incompleteMessages?: number;
  server: ServerUsage | null;
  loadgenCpuPct: number;
  /** Whole machine busy %, all cores, other processes included: high values mean a noisy measurement. */
  machineBusyPct: number | null;
  maxScheduleLagMs: number;
  pass: boolean;
  reason: string;
}

interface SearchOutcome {
  steps: StepResult[];
  maxRate: number;
  /** A step above maxRate failed: maxRate is the limit, not just a lower bound. */
  bounded: boolean;
}

/**
 * After a failed (overloaded) step: wait until the server has drained what it queued, i.e. its
 * CPU (all its processes) stays under `idlePct` % of one core for a 1 s window, at most `maxMs`.
 * Otherwise the next step (a repeat of a lower rate, say) would measure the previous step's
 * backlog. Returns the time waited, ms (0 without /proc figures).
 */
async function waitServerIdle(t: Target, maxMs = 60_000, idlePct = 10): Promise<number> {
  const pids = pidsOf(t);
  if (pids.length === 0) return 0;
  const t0 = performance.now();
  while (performance.now() - t0 < maxMs) {
    const a = pids.map((pid) => sampleProc(pid));
    await sleep(1000);
    const b = pids.map((pid) => sampleProc(pid));
    if (a.some((x) => !x) || b.some((x) => !x)) return Math.round(performance.now() - t0);
    const pct = a.reduce((sum, x, i) => sum + (x && b[i] ? cpuPercent(x, b[i]) : 0), 0);
    if (pct < idlePct) break;
  }
  return Math.round(performance.now() - t0);
}

async function stepSearch(o: LoadOptions, s: SearchParams, run: (rate: number) => Promise<StepResult>, settle?: () => Promise<number>): Promise<SearchOutcome> {
  const steps: StepResult[] = [];
  const tried = new Set<number>();
  let good = 0;
  let bad = 0;
  const attempt = async (rate: number): Promise<boolean> => {
    rate = Math.max(1, Math.round(rate));
    if (tried.has(rate)) return rate <= good;
    tried.add(rate);
    const r = await run(rate);
    steps.push(r);
    o.log(
      `    rate ${String(rate).padStart(6)}/s: ${r.pass ? 'pass' : 'FAIL'} sent p50 ${r.sent.p50} p99 ${r.sent.p99} ms, delivery p99 ${r.delivery.p99} ms` +
        (r.lastDelivery ? `, last-delivery p99 ${r.lastDelivery.p99} ms` : '') +
        `, ${r.throughput}/s ok, ${r.deliveriesPerSec} deliveries/s, server cpu ${r.server?.cpuPct ?? '?'}%, loadgen cpu ${r.loadgenCpuPct}%, machine ${r.machineBusyPct ?? '?'}% busy` +
        (r.pass ? '' : ` (${r.reason})`),
    );
    if (r.pass) good = Math.max(good, rate);
    else bad = bad === 0 ? rate : Math.min(bad, rate);
    await sleep(r.pass ? 300 : s.pauseMs);
    if (!r.pass && settle) {
      const waited = await settle();
      if (waited > 1500) o.log(`    (waited ${(waited / 1000).toFixed(1)} s for the server to drain its backlog)`);
    }
    return r.pass;
  };
  if (s.fixedRates && s.fixedRates.length > 0) {
    for (let k = 0; k < (s.repeat ?? 1); k++) {
      for (const r of s.fixedRates) {
        tried.delete(Math.max(1, Math.round(r)));
        await attempt(r);
      }
    }
    return { steps, maxRate: good, bounded: bad > good };
  }
  let rate = s.startRate;
  for (let i = 0; i < s.maxSteps; i++) {
    if (!(await attempt(rate))) break;
    rate *= s.factor;
  }
  // Nothing passed: step down (at most twice) so slow targets still get a figure.
  for (let i = 0; i < 2 && good === 0 && bad > 1; i++) await attempt(bad / (s.factor * s.factor));
  for (let i = 0; i < s.refineSteps && good > 0 && bad > 0 && bad / good > 1.15; i++) {
    await attempt(Math.sqrt(good * bad));
  }
  return { steps, maxRate: good, bounded: bad > good };
}

function lossReason(s: SearchParams, r: Omit<StepResult, 'pass' | 'reason'>, p99: number | undefined): string {
  const reasons: string[] = [];
  // Sends the server refused (shed past its capacity, or over a rate limit) are answered, not
  // lost: the client knows to send them again. They still fail the step, named as what they are.
  const refused = (r.errors.unavailable ?? 0) + (r.errors.rate_limited ?? 0);
  const errs = Object.values(r.errors).reduce((a, b) => a + b, 0) - refused;
  const lost = r.timeouts + errs + Math.max(0, r.expectedDeliveries - r.delivered);
  const denom = Math.max(1, r.attempted + r.expectedDeliveries);
  if (p99 === undefined || r.sentOk === 0) reasons.push('no answers');
  else if (p99 > s.p99LimitMs) reasons.push(`p99 ${p99} ms > ${s.p99LimitMs} ms`);
  if (refused / Math.max(1, r.attempted) > s.maxLossRatio) reasons.push(`refused ${refused} of ${r.attempted} sends (unavailable ${r.errors.unavailable ?? 0}, rate_limited ${r.errors.rate_limited ?? 0})`);
  if (lost / denom > s.maxLossRatio) reasons.push(`lost ${lost} (timeouts ${r.timeouts}, errors ${errs}, missing deliveries ${Math.max(0, r.expectedDeliveries - r.delivered)})`);
  return reasons.join('; ');
}

// ------------------------------------------------------------------------------------ pairs

export interface PairsParams extends SearchParams {
  pairs: number;
}

export interface PairsResult {
  scenario: 'pairs';
  setup: SetupSummary;
  pairs: number;
  steps: StepResult[];
  /** Highest offered rate that passed (0 = none). */
  maxRate: number;
  /** false: no step failed, so maxRate is only a lower bound (raise --max-steps). */
  bounded: boolean;
  p99LimitMs: number;
}

/** The two users of pair i (bench/seed.ts writes history into their conversation). */
export function pairUsers(i: number): [string, string] {
  return [`pa${i}a`, `pa${i}b`];
}

export async function runPairs(target: Target, o: LoadOptions, p: PairsParams): Promise<PairsResult> {
  const fleet = new Fleet(o.workers);
  try {
    const perWorker: ConnSpec[][] = Array.from({ length: fleet.size }, () => []);
    let index = 0;
    for (let i = 0; i < p.pairs; i++) {
      const [a, b] = pairUsers(i);
      const w = perWorker[i % fleet.size]!;
      // On a cluster the two sockets of a pair are on different nodes (alternating which one).
      const n = nodeCount(target);
      w.push({ user: a, peer: b, index: index++, node: i % n });
      w.push({ user: b, peer: a, index: index++, node: (i + 1) % n });
    }
    const setup = await setupFleet(fleet, target, o, perWorker);
    o.log(`  pairs: ${setup.connected}/${setup.requested} sockets logged in`);
    if (setup.connected === 0) throw new Error(`no socket logged in: ${JSON.stringify(setup.errors)}`);
    const weights = perWorker.map((c) => c.length / Math.max(1, index));
    const warmRate = (p.fixedRates?.[0] ?? p.startRate) / 2;
    if (p.warmupMs > 0) await runPhase(fleet, target, 'pairs', weights.map((w) => warmRate * w), p.warmupMs, p.graceMs, o.bodyBytes);
    const { steps, maxRate, bounded } = await stepSearch(o, p, async (rate) => {
      const ph = await runPhase(fleet, target, 'pairs', weights.map((w) => rate * w), p.durationMs, p.graceMs, o.bodyBytes);
      const secs = p.durationMs / 1000;
      const base = {
        rate,
        attempted: ph.attempted,
        sentOk: ph.sentOk,
        timeouts: ph.timeouts,
        errors: ph.errors,
        delivered: ph.delivered,
        expectedDeliveries: ph.sentOk,
        throughput: Math.round(ph.sentOk / secs),
        deliveriesPerSec: Math.round(ph.delivered / secs),
        sent: ph.sent,
        delivery: ph.delivery,
        server: ph.server,
        loadgenCpuPct: ph.loadgenCpuPct,
        machineBusyPct: ph.machineBusyPct,
        maxScheduleLagMs: ph.maxScheduleLagMs,
      };
      const reason = lossReason(p, base, ph.sentOk > 0 ? ph.sent.p99 : undefined);
      return { ...base, pass: reason === '', reason };
    }, () => waitServerIdle(target));
    return { scenario: 'pairs', setup, pairs: p.pairs, steps, maxRate, bounded, p99LimitMs: p.p99LimitMs };
  } finally {
    await fleet.close();
  }
}

// ------------------------------------------------------------------------------------ fanout

export interface FanoutParams extends SearchParams {
  members: number;
}

export interface FanoutResult {
  scenario: 'fanout';
  setup: SetupSummary;
  members: number;
  steps: StepResult[];
  /** Highest offered message rate that passed, and the deliveries/s it meant. */
  maxRate: number;
  maxDeliveriesPerSec: number;
  bounded: boolean;
  p99LimitMs: number;
}

export async function runFanout(target: Target, o: LoadOptions, p: FanoutParams): Promise<FanoutResult> {
  const fleet = new Fleet(o.workers);
  try {
    const perWorker: ConnSpec[][] = Array.from({ length: fleet.size }, () => []);
    const tag = Math.random().toString(36).slice(2, 8);
    const members: string[] = [];
    for (let i = 0; i < p.members; i++) {
      const user = `fo${tag}${i}`;
      members.push(user);
      // member 0 (the sender and group owner) is worker 0's first connection
      perWorker[i % fleet.size]!.push({ user, index: i, node: i % nodeCount(target) });
    }
    const setup = await setupFleet(fleet, target, o, perWorker);
    o.log(`  fanout: ${setup.connected}/${setup.requested} members logged in`);
    if (setup.connected < p.members) throw new Error(`only ${setup.connected}/${p.members} members logged in: ${JSON.stringify(setup.errors)}`);
    const group = `bench${tag}`;
    fleet.send(0, { type: 'group', group, members });
    const g = await fleet.expect(0, 'groupDone', 60_000);
    if (!g.ok) throw new Error(`group setup failed: ${g.error ?? '?'}`);
    await sleep(300);
    const recipients = p.members - 1;
    if (p.warmupMs > 0) await runPhase(fleet, target, 'fanout', [Math.max(1, p.startRate / 2)], p.warmupMs, p.graceMs, o.bodyBytes, g.conv);
    const { steps, maxRate, bounded } = await stepSearch(o, p, async (rate) => {
      const ph = await runPhase(fleet, target, 'fanout', [rate], p.durationMs, p.graceMs, o.bodyBytes, g.conv);
      const secs = p.durationMs / 1000;
      let complete = 0;
      const lastH: number[] = [];
      for (const [, [n, lat]] of ph.fanout) {
        if (n >= recipients) {
          complete++;
          lastH.push(lat);
        }
      }
      lastH.sort((a, b) => a - b);
      const pct = (q: number): number => (lastH.length ? Math.round(lastH[Math.min(lastH.length - 1, Math.ceil((q / 100) * lastH.length) - 1)]!) / 1000 : 0);
      const lastDelivery: LatencySummary = {
        count: lastH.length,
        p50: pct(50),
        p90: pct(90),
        p99: pct(99),
        p999: pct(99.9),
        max: pct(100),
        mean: lastH.length ? Math.round(lastH.reduce((a, b) => a + b, 0) / lastH.length) / 1000 : 0,
      };
      const base = {
        rate,
        attempted: ph.attempted,
        sentOk: ph.sentOk,
        timeouts: ph.timeouts,
        errors: ph.errors,
        delivered: ph.delivered,
        expectedDeliveries: ph.sentOk * recipients,
        throughput: Math.round(ph.sentOk / secs),
        deliveriesPerSec: Math.round(ph.delivered / secs),
        sent: ph.sent,
        delivery: ph.delivery,
        lastDelivery,
        incompleteMessages: ph.sentOk - complete,
        server: ph.server,
        loadgenCpuPct: ph.loadgenCpuPct,
        machineBusyPct: ph.machineBusyPct,
        maxScheduleLagMs: ph.maxScheduleLagMs,
      };
      const reason = lossReason(p, base, complete > 0 ? lastDelivery.p99 : undefined);
      return { ...base, pass: reason === '', reason };
    });
    return { scenario: 'fanout', setup, members: p.members, steps, maxRate, maxDeliveriesPerSec: maxRate * recipients, bounded, p99LimitMs: p.p99LimitMs };
  } finally {
    await fleet.close();
  }
}

// ------------------------------------------------------------------------------------ reconnect

export interface ReconnectParams {
  /** Recipients that are offline while their messages are written, then connect all at once. */
  clients: number;
  /** Offline messages per recipient (one 1:1 conversation each; ≤ IM_LOGIN_PUSH_MAX to be pushed at login). */
  perClient: number;
  /** Sender sockets writing the offline messages (each writes to clients/senders recipients). */
  senders: number;
  /** Concurrent connection attempts per worker during the storm; 0 = all at once. */
  concurrency: number;
  /** A client whose redelivery stalls this long sends `sync`. */
  syncAfterMs: number;
  /** Bound of the preparation and of the storm, each. */
  timeoutMs: number;
}

export interface ReconnectResult {
  scenario: 'reconnect';
  clients: number;
  perClient: number;
  senders: number;
  prepare: { attempted: number; retried: number; stored: number; seconds: number; msgsPerSec: number; errors: Record<string, number>; shortRecipients: number };
  loggedIn: number;
  /** Clients holding every one of their offline messages before the timeout. */
  synced: number;
  /** Seconds from the storm start until the last client held all its messages (null: not all did). */
  allSyncedSeconds: number | null;
  /** The latest client that did sync, even when some never did, s. */
  lastSyncedSeconds: number;
  lastLoginSeconds: number;
  /** Per-client time from the storm start to login_ok / to holding all messages, ms. */
  login: LatencySummary;
  timeToSynced: LatencySummary;
  usedSync: number;
  pushed: number;
  duplicates: number;
  fromSync: number;
  /** Offline messages delivered per second of the storm (all clients' expected messages / all-synced time). */
  msgsPerSec: number | null;
  errors: Record<string, number>;
  server: (ServerUsage & { cpuMs: number; rssBeforeMB: number | null; rssGrowthMB: number | null }) | null;
  machineBusyPct: number | null;
  loadgenCpuPct: number;
  timeoutMs: number;
}

export async function runReconnect(target: Target, o: LoadOptions, p: ReconnectParams): Promise<ReconnectResult> {
  const fleet = new Fleet(o.workers);
  try {
    const nodes = nodeCount(target);
    const tag = Math.random().toString(36).slice(2, 8);
    const senders = Math.max(1, Math.min(p.senders, p.clients));
    const recipients = Array.from({ length: p.clients }, (_, i) => `rc${tag}r${i}`);
    // Recipient i gets its messages from sender s = i % senders. On a cluster the sender sits on
    // node (s + 1) % nodes and its recipients on node s % nodes: every conversation crosses nodes.
    const senderSpecs: ConnSpec[] = Array.from({ length: senders }, (_, sIdx) => ({
      user: `rc${tag}s${sIdx}`,
      index: sIdx,
      node: (sIdx + 1) % nodes,
      peers: recipients.filter((_, i) => i % senders === sIdx),
    }));
    const perWorker: ConnSpec[][] = Array.from({ length: fleet.size }, () => []);
    senderSpecs.forEach((c, i) => perWorker[i % fleet.size]!.push(c));
    const setup = await setupFleet(fleet, target, o, perWorker);
    if (setup.connected < senders) throw new Error(`only ${setup.connected}/${senders} senders logged in: ${JSON.stringify(setup.errors)}`);

    o.log(`  reconnect: writing ${p.perClient} messages to each of ${p.clients} offline clients`);
    for (let i = 0; i < fleet.size; i++) fleet.send(i, { type: 'prepare', perPeer: p.perClient, window: 16, bodyBytes: o.bodyBytes, timeoutMs: p.timeoutMs });
    const prepared: PreparedMsg[] = [];
    for (let i = 0; i < fleet.size; i++) prepared.push(await fleet.expect(i, 'prepared', p.timeoutMs + 30_000));
    const prepErrors: Record<string, number> = {};
    for (const r of prepared) addCounts(prepErrors, r.errors);
    const stored = prepared.reduce((n, r) => n + r.sentOk, 0);
    const prepSecs = Math.max(0.001, ...prepared.map((r) => r.elapsedMs / 1000));
    const shortRecipients = prepared.reduce((n, r) => n + r.short.length, 0);
    const retried = prepared.reduce((n, r) => n + r.retried, 0);
    o.log(`  reconnect: ${stored} stored in ${prepSecs.toFixed(1)} s${retried ? ` (${retried} sends shed and written again)` : ''}${shortRecipients ? `, ${shortRecipients} recipients short` : ''}`);
    if (stored === 0) throw new Error(`no offline message stored: ${JSON.stringify(prepErrors)}`);
    // Let the write path settle (group commits, cursor flushes) before the storm.
    await sleep(1000);

    const stormPer: ConnSpec[][] = Array.from({ length: fleet.size }, () => []);
    recipients.forEach((user, i) => stormPer[i % fleet.size]!.push({ user, peer: `rc${tag}s${i % senders}`, index: senders + i, node: (i % senders) % nodes }));
    const rssBefore = sampleRss(target);
    const watcher = new TargetWatcher(target);
    const m0 = machineCpu();
    const startAt = wall() + 1000;
    o.log(`  reconnect: ${p.clients} clients connect at once`);
    for (let i = 0; i < fleet.size; i++) {
      fleet.send(i, { type: 'storm', conns: stormPer[i] ?? [], startAt, expected: p.perClient, concurrency: p.concurrency, syncAfterMs: p.syncAfterMs, timeoutMs: p.timeoutMs });
    }
    const res: StormResultMsg[] = [];
    for (let i = 0; i < fleet.size; i++) res.push(await fleet.expect(i, 'stormResult', p.timeoutMs + 60_000));
    const usage = watcher.stop();
    const machineBusyPct = machineBusyPercent(m0, machineCpu());
    const errors: Record<string, number> = {};
    for (const r of res) addCounts(errors, r.errors);
    const loginH = mergeEncoded(res.map((r) => r.loginHist));
    const syncedH = mergeEncoded(res.map((r) => r.syncedHist));
    const sum = (f: (r: StormResultMsg) => number): number => res.reduce((n, r) => n + f(r), 0);
    const synced = sum((r) => r.synced);
    const lastSynced = Math.max(0, ...res.map((r) => r.lastSyncedMs)) / 1000;
    const all = synced === p.clients;
    const out: ReconnectResult = {
      scenario: 'reconnect',
      clients: p.clients,
      perClient: p.perClient,
      senders,
      prepare: { attempted: prepared.reduce((n, r) => n + r.attempted, 0), retried, stored, seconds: Math.round(prepSecs * 100) / 100, msgsPerSec: Math.round(stored / prepSecs), errors: prepErrors, shortRecipients },
      loggedIn: sum((r) => r.loggedIn),
      synced,
      allSyncedSeconds: all ? Math.round(lastSynced * 1000) / 1000 : null,
      lastSyncedSeconds: Math.round(lastSynced * 1000) / 1000,
      lastLoginSeconds: Math.round(Math.max(0, ...res.map((r) => r.lastLoginMs))) / 1000,
      login: summarize(loginH),
      timeToSynced: summarize(syncedH),
      usedSync: sum((r) => r.usedSync),
      pushed: sum((r) => r.pushed),
      duplicates: sum((r) => r.duplicates),
      fromSync: sum((r) => r.fromSync),
      msgsPerSec: all && lastSynced > 0 ? Math.round((p.clients * p.perClient) / lastSynced) : null,
      errors,
      server: usage ? { ...usage, rssBeforeMB: rssBefore !== null ? round1(rssBefore / 2 ** 20) : null, rssGrowthMB: rssBefore !== null ? round1(usage.rssMB - rssBefore / 2 ** 20) : null } : null,
      machineBusyPct,
      loadgenCpuPct: res.reduce((m, r) => Math.max(m, r.wallMs > 0 ? round1((r.cpuMs / r.wallMs) * 100) : 0), 0),
      timeoutMs: p.timeoutMs,
    };
    loginH.destroy();
    syncedH.destroy();
    o.log(
      `  reconnect: ${synced}/${p.clients} synced, all in ${out.allSyncedSeconds ?? `– (last ${out.lastSyncedSeconds})`} s, p50 ${out.timeToSynced.p50} p99 ${out.timeToSynced.p99} ms, login p99 ${out.login.p99} ms, sync used ${out.usedSync}, errors ${JSON.stringify(errors)}, server cpu ${usage?.cpuPct ?? '?'}%`,
    );
    return out;
  } finally {
    await fleet.close();
  }
}
