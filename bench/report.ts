/** Benchmark report: result types, the Markdown table and a hand-written SVG latency plot. */
import type { FanoutResult, IdleResult, LoadOptions, PairsResult, ReconnectParams, ReconnectResult, StepResult } from './loadgen/coordinator.ts';
import type { StorageCeilingResult } from './baselines/storage-ceiling.ts';

export type ScenarioName = 'idle' | 'pairs' | 'fanout' | 'reconnect';

export interface ScenarioFailure {
  scenario: ScenarioName;
  /** `unsupported`: the target cannot run this scenario (ejabberd: pairs only); not a failure. */
  status: 'failed' | 'unsupported';
  error: string;
}

export interface TargetResult {
  name: string;
  kind: 'ceiling' | 'baseline' | 'project';
  description: string;
  status: 'ok' | 'failed';
  error?: string;
  url?: string;
  /** Multi-node targets: every node's URL. */
  urls?: string[];
  /** 1-minute load average when the target started (other processes on the machine count). */
  loadAvg1?: number;
  idle?: IdleResult | ScenarioFailure;
  pairs?: PairsResult | ScenarioFailure;
  fanout?: FanoutResult | ScenarioFailure;
  reconnect?: ReconnectResult | ScenarioFailure;
}

export interface BenchReport {
  version: 1;
  startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  command: string;
  environment: {
    node: string;
    platform: string;
    cpus: number;
    cpuModel: string;
    memoryGB: number;
    loadAvgAtStart: number[];
    loadAvgAtEnd: number[];
    openFilesLimit: number;
    gitCommit: string;
  };
  settings: {
    load: Omit<LoadOptions, 'log'>;
    idle: { connections: number; restMs: number };
    pairs: { pairs: number; startRate: number; durationMs: number; p99LimitMs: number; fixedRates?: number[]; repeat?: number; seedMessages?: number };
    fanout: { members: number; startRate: number; durationMs: number; p99LimitMs: number };
    /** Absent in reports written before the reconnect scenario existed. */
    reconnect?: Omit<ReconnectParams, never>;
    cluster?: { nodes: number; scenarios: string[]; reference: string };
  };
  /** The reference target every ratio is computed against. */
  ceiling: string;
  targets: TargetResult[];
  storage?: StorageCeilingResult;
}

export function isOk<T extends object>(r: T | ScenarioFailure | undefined): r is T {
  if (r === undefined || !('status' in r)) return r !== undefined;
  const st = (r as ScenarioFailure).status;
  return st !== 'failed' && st !== 'unsupported';
}

const fmt = (n: number | null | undefined, digits = 0): string => {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
};
const ratio = (a: number | null | undefined, b: number | null | undefined): string => {
  if (a === null || a === undefined || b === null || b === undefined || b === 0 || !Number.isFinite(a)) return '–';
  const r = a / b;
  return `${r >= 10 ? r.toFixed(0) : r >= 1 ? r.toFixed(2) : r.toFixed(3)}×`;
};

function stepAt(steps: StepResult[], rate: number): StepResult | undefined {
  return steps.find((s) => s.rate === rate);
}

interface Row {
  pairsMax: number | null;
  pairsBounded: boolean;
  fanoutBounded: boolean;
  sentP99: number | null;
  deliveryP99: number | null;
  serverCpuAtMax: number | null;
  fanoutMax: number | null;
  lastP99: number | null;
  rssPerConn: number | null;
  idleCpu: number | null;
  logins: number | null;
}

function rowOf(t: TargetResult, pairsRef: number, fanoutRef: number): Row {
  const pairs = isOk(t.pairs) ? t.pairs : undefined;
  const fanout = isOk(t.fanout) ? t.fanout : undefined;
  const idle = isOk(t.idle) ? t.idle : undefined;
  const pRef = pairs ? stepAt(pairs.steps, pairsRef) : undefined;
  const fRef = fanout ? stepAt(fanout.steps, fanoutRef) : undefined;
  const pMax = pairs ? stepAt(pairs.steps, pairs.maxRate) : undefined;
  return {
    pairsMax: pairs ? pairs.maxRate : null,
    pairsBounded: pairs ? pairs.bounded : true,
    fanoutBounded: fanout ? fanout.bounded : true,
    sentP99: pRef ? pRef.sent.p99 : null,
    deliveryP99: pRef ? pRef.delivery.p99 : null,
    serverCpuAtMax: pMax?.server?.cpuPct ?? null,
    fanoutMax: fanout ? fanout.maxDeliveriesPerSec : null,
    lastP99: fRef?.lastDelivery ? fRef.lastDelivery.p99 : null,
    rssPerConn: idle ? idle.rssPerConnKB : null,
    idleCpu: idle ? idle.cpuRestPct : null,
    logins: idle ? idle.setup.loginsPerSec : null,
  };
}

function failureNote(t: TargetResult): string[] {
  const out: string[] = [];
  if (t.status === 'failed') out.push(`- **${t.name}** failed: ${oneLine(t.error ?? '?')}`);
  for (const s of [t.idle, t.pairs, t.fanout, t.reconnect]) {
    if (s && !isOk(s) && s.status !== 'unsupported') out.push(`- **${t.name}** / ${s.scenario} failed: ${oneLine(s.error)}`);
  }
  return out;
}

function oneLine(s: string): string {
  const line = s.split('\n').find((l) => l.trim() !== '') ?? s;
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

export function renderMarkdown(r: BenchReport, svgName: string): string {
  const L: string[] = [];
  const pairsRef = r.settings.pairs.startRate;
  const fanoutRef = r.settings.fanout.startRate;
  const ceil = r.targets.find((t) => t.name === r.ceiling);
  const c = ceil ? rowOf(ceil, pairsRef, fanoutRef) : null;
  const sio = r.targets.find((t) => t.name === 'socketio');
  const s = sio ? rowOf(sio, pairsRef, fanoutRef) : null;

  L.push(`# Benchmark ${r.startedAt}`, '');
  L.push(
    `Node ${r.environment.node}, ${r.environment.cpus} × ${r.environment.cpuModel}, ${r.environment.memoryGB} GB, load average at start ${r.environment.loadAvgAtStart.map((x) => x.toFixed(2)).join(' / ')} and at end ${r.environment.loadAvgAtEnd.map((x) => x.toFixed(2)).join(' / ')}, commit ${r.environment.gitCommit}. ` +
      `Load generator: ${r.settings.load.workers} worker processes (lean \`ws\` clients, no compression) on the same machine as the server. Run took ${fmt(r.durationSeconds)} s.`,
    '',
  );
  L.push(
    `Ratios are against **${r.ceiling}** (a bare uWebSockets.js server speaking the same frames with no logic and no storage), measured in this run. ` +
      `Throughput ratios: higher is better (1× = the ceiling). Latency / memory ratios: lower is better (1× = the ceiling).`,
    '',
  );
  L.push(
    `- **pairs**: ${r.settings.pairs.pairs} 1:1 pairs (${r.settings.pairs.pairs * 2} sockets), open-loop fixed-rate schedule, latency from the *intended* send time; max = highest offered rate with p99 send→\`sent\` < ${r.settings.pairs.p99LimitMs} ms and ≤ 0.1 % loss (step search, ${r.settings.pairs.durationMs / 1000} s per step). Latencies at the reference rate ${fmt(pairsRef)} msg/s.` +
      (r.settings.pairs.fixedRates ? ` Fixed rates ${r.settings.pairs.fixedRates.join(', ')} msg/s, ${r.settings.pairs.repeat ?? 1}× each (no search).` : '') +
      (r.settings.pairs.seedMessages ? ` The record held ${r.settings.pairs.seedMessages} seeded messages (in the pairs' conversations) before the node started.` : ''),
    `- **fanout**: one sender into a group of ${r.settings.fanout.members} online members; max = highest deliveries/s with p99 send→last member's delivery < ${r.settings.fanout.p99LimitMs} ms and ≤ 0.1 % loss. Latency at the reference rate ${fmt(fanoutRef)} msg/s (${fmt(fanoutRef * (r.settings.fanout.members - 1))} deliveries/s).`,
    `- **idle**: ${fmt(r.settings.idle.connections)} logged-in sockets pinging every heartbeat; server RSS growth per socket, server CPU over ${r.settings.idle.restMs / 1000} s at rest, logins/s while connecting.`,
    '',
  );

  L.push('| target | pairs max msg/s | × ceiling | sent p99 ms | × ceiling | delivery p99 ms | server CPU % at max | fanout max deliveries/s | × ceiling | last-delivery p99 ms | × ceiling | idle RSS KB/socket | × ceiling | idle CPU % | logins/s | load avg 1m |');
  L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const t of r.targets) {
    if (t.status === 'failed') {
      L.push(`| ${t.name} | failed | | | | | | | | | | | | | | ${fmt(t.loadAvg1, 2)} |`);
      continue;
    }
    const x = rowOf(t, pairsRef, fanoutRef);
    L.push(
      `| ${t.name} | ${x.pairsBounded ? '' : '≥ '}${fmt(x.pairsMax)} | ${ratio(x.pairsMax, c?.pairsMax)} | ${fmt(x.sentP99, 2)} | ${ratio(x.sentP99, c?.sentP99)} | ${fmt(x.deliveryP99, 2)} | ${fmt(x.serverCpuAtMax, 0)} | ${x.fanoutBounded ? '' : '≥ '}${fmt(x.fanoutMax)} | ${ratio(x.fanoutMax, c?.fanoutMax)} | ${fmt(x.lastP99, 2)} | ${ratio(x.lastP99, c?.lastP99)} | ${fmt(x.rssPerConn, 1)} | ${ratio(x.rssPerConn, c?.rssPerConn)} | ${fmt(x.idleCpu, 1)} | ${fmt(x.logins)} | ${fmt(t.loadAvg1, 2)} |`,
    );
  }
  L.push('', '"≥": no step failed, so the figure is a lower bound (the search ran out of steps; raise `--max-steps`).', '');

  if (s && sio?.status === 'ok') {
    const projects = r.targets.filter((t) => t.kind === 'project' && t.status === 'ok');
    if (projects.length > 0) {
      L.push('### Against Socket.IO (the usual choice), same run', '');
      L.push('| target | pairs max × Socket.IO | sent p99 × Socket.IO | fanout max × Socket.IO | last-delivery p99 × Socket.IO | RSS/socket × Socket.IO |');
      L.push('|---|---:|---:|---:|---:|---:|');
      for (const t of projects) {
        const x = rowOf(t, pairsRef, fanoutRef);
        L.push(`| ${t.name} | ${ratio(x.pairsMax, s.pairsMax)} | ${ratio(x.sentP99, s.sentP99)} | ${ratio(x.fanoutMax, s.fanoutMax)} | ${ratio(x.lastP99, s.lastP99)} | ${ratio(x.rssPerConn, s.rssPerConn)} |`);
      }
      L.push('');
    }
  }

  L.push(...crossNodeSection(r));
  L.push(...ejabberdSection(r));
  L.push(...reconnectSection(r));

  if (r.storage) {
    L.push('### Storage ceilings (one writer, durable settings, `message`-shaped table)', '');
    L.push('| engine | batch rows | rows/s | commits/s | commit p50 ms | commit p99 ms |');
    L.push('|---|---:|---:|---:|---:|---:|');
    for (const e of r.storage.engines) {
      if (e.status !== 'ok') {
        L.push(`| ${e.engine} | failed: ${oneLine(e.error ?? '?')} | | | | |`);
        continue;
      }
      for (const run of e.runs) {
        L.push(`| ${e.engine} | ${run.batch} | ${fmt(run.rowsPerSec)} | ${fmt(run.commitsPerSec)} | ${fmt(run.commitLatency.p50, 2)} | ${fmt(run.commitLatency.p99, 2)} |`);
      }
    }
    for (const e of r.storage.engines) {
      if (e.status === 'ok') L.push('', `${e.engine}: ${Object.entries(e.settings).filter(([k]) => k !== 'dir').map(([k, v]) => `${k}=${v}`).join(', ')}`);
    }
    L.push('');
  }

  L.push(`![p99 latency vs offered load](${svgName})`, '');

  L.push('### Steps', '');
  for (const t of r.targets) {
    for (const sc of [t.pairs, t.fanout]) {
      if (!isOk(sc)) continue;
      L.push(`**${t.name} / ${sc.scenario}**`, '');
      L.push('| offered msg/s | ok | sent/s | deliveries/s | sent p50 / p99 ms | delivery p50 / p99 ms | last-delivery p99 ms | server CPU % | server RSS MB | loadgen CPU % (max worker) | loadgen max lag ms | machine busy % | errors | result |');
      L.push('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|');
      for (const st of [...sc.steps].sort((a, b) => a.rate - b.rate)) {
        const errs = Object.entries(st.errors).map(([k, v]) => `${k}: ${v}`).concat(st.timeouts ? [`timeout: ${st.timeouts}`] : []).join(', ');
        L.push(
          `| ${fmt(st.rate)} | ${fmt(st.sentOk)} | ${fmt(st.throughput)} | ${fmt(st.deliveriesPerSec)} | ${fmt(st.sent.p50, 2)} / ${fmt(st.sent.p99, 2)} | ${fmt(st.delivery.p50, 2)} / ${fmt(st.delivery.p99, 2)} | ${st.lastDelivery ? fmt(st.lastDelivery.p99, 2) : '–'} | ${fmt(st.server?.cpuPct, 0)} | ${fmt(st.server?.peakRssMB, 1)} | ${fmt(st.loadgenCpuPct, 0)} | ${fmt(st.maxScheduleLagMs, 0)} | ${fmt(st.machineBusyPct, 0)} | ${errs || '–'} | ${st.pass ? 'pass' : `fail: ${st.reason}`} |`,
        );
      }
      L.push('');
    }
  }

  const notes = r.targets.flatMap(failureNote);
  if (notes.length) L.push('### Failures', '', ...notes, '');
  const unsupported = r.targets.flatMap((t) => {
    const names = [t.idle, t.pairs, t.fanout, t.reconnect].flatMap((s) => (s && !isOk(s) && s.status === 'unsupported' ? [s.scenario] : []));
    return names.length ? [`- **${t.name}**: ${names.join(', ')} not supported (not run)`] : [];
  });
  if (unsupported.length) L.push('### Not supported', '', ...unsupported, '');
  L.push(
    'Caveat: server and load generator share the machine. When the load generator\'s CPU column approaches 100 %, the client side, not the server, limits the figure; when "machine busy" is high while server + load generator are not, other processes disturbed the step (tail latency suffers first). "loadgen max lag" is how late the send timer of a worker fired at worst: tens of ms mean the load generator itself was stalled (descheduled or in GC) and that delay is inside the measured latencies. See bench/README.md.',
    '',
  );
  return L.join('\n');
}

/**
 * The step both targets ran that says most about the per-message cost: the highest rate both
 * ran where the reference passed, else the lowest rate both ran.
 */
function commonStep(ref: StepResult[], other: StepResult[]): { rate: number; a: StepResult; b: StepResult } | null {
  const both = ref.map((a) => ({ a, b: other.find((s) => s.rate === a.rate) })).filter((x): x is { a: StepResult; b: StepResult } => x.b !== undefined);
  if (both.length === 0) return null;
  const passing = both.filter((x) => x.a.pass).sort((x, y) => y.a.rate - x.a.rate)[0];
  const pick = passing ?? [...both].sort((x, y) => x.a.rate - y.a.rate)[0];
  return pick ? { rate: pick.a.rate, a: pick.a, b: pick.b } : null;
}

/** Server CPU time per delivered-or-stored message, µs (all server processes of the target). */
function cpuUsPerMsg(st: StepResult, perMsg: 'sent' | 'delivery'): number | null {
  const n = perMsg === 'sent' ? st.throughput : st.deliveriesPerSec;
  if (!st.server || n <= 0) return null;
  return (st.server.cpuPct * 10_000) / n;
}

function crossNodeSection(r: BenchReport): string[] {
  const refName = r.settings.cluster?.reference ?? 'node-mariadb';
  const ref = r.targets.find((t) => t.name === refName && t.status === 'ok');
  const multi = r.targets.filter((t) => t.status === 'ok' && (t.urls?.length ?? 0) > 1);
  if (!ref || multi.length === 0) return [];
  const L: string[] = [];
  L.push(`### Cross-node: cost per message against one node (${refName}), same run`, '');
  L.push(
    `Every pair has its two sockets on different nodes, the fanout group's members alternate between the nodes, each offline conversation of the reconnect storm has its sender and its recipient on different nodes. ` +
      `Latency and CPU are compared at the same offered rate (the highest rate both ran where ${refName} passed, else the lowest both ran). ` +
      `Server CPU is summed over the node processes (MariaDB, NATS and Redis are not counted, as for ${refName}); "CPU µs/msg" = server CPU time per stored message (pairs) or per delivery (fanout).`,
    '',
  );
  L.push(`Each cell: the multi-node target / ${refName}, then the ratio.`, '');
  L.push(`| target | pairs max msg/s | × | compared at msg/s | sent p99 ms | × | delivery p99 ms | × | server CPU µs/msg | × | fanout max deliveries/s | × | compared at deliveries/s | last-delivery p99 ms | × | server CPU µs/delivery | × |`);
  L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  const refPairs = isOk(ref.pairs) ? ref.pairs : undefined;
  const refFan = isOk(ref.fanout) ? ref.fanout : undefined;
  const pair = (a: number | null | undefined, b: number | null | undefined, digits: number): string => `${fmt(a, digits)} / ${fmt(b, digits)}`;
  const maxOf = (x: { bounded: boolean } | undefined, v: number | undefined): string => (x && v !== undefined ? `${x.bounded ? '' : '≥ '}${fmt(v)}` : '–');
  for (const t of multi) {
    const pairs = isOk(t.pairs) ? t.pairs : undefined;
    const fan = isOk(t.fanout) ? t.fanout : undefined;
    const pc = refPairs && pairs ? commonStep(refPairs.steps, pairs.steps) : null;
    const fc = refFan && fan ? commonStep(refFan.steps, fan.steps) : null;
    const members = fan ? fan.members - 1 : 0;
    const pCpu = pc ? cpuUsPerMsg(pc.b, 'sent') : null;
    const pCpuRef = pc ? cpuUsPerMsg(pc.a, 'sent') : null;
    const fCpu = fc ? cpuUsPerMsg(fc.b, 'delivery') : null;
    const fCpuRef = fc ? cpuUsPerMsg(fc.a, 'delivery') : null;
    L.push(
      `| ${t.name} | ${maxOf(pairs, pairs?.maxRate)} / ${maxOf(refPairs, refPairs?.maxRate)} | ${ratio(pairs?.maxRate, refPairs?.maxRate)} | ${pc ? fmt(pc.rate) : '–'} | ${pair(pc?.b.sent.p99, pc?.a.sent.p99, 2)} | ${ratio(pc?.b.sent.p99, pc?.a.sent.p99)} | ${pair(pc?.b.delivery.p99, pc?.a.delivery.p99, 2)} | ${ratio(pc?.b.delivery.p99, pc?.a.delivery.p99)} | ${pair(pCpu, pCpuRef, 0)} | ${ratio(pCpu, pCpuRef)} | ` +
        `${maxOf(fan, fan?.maxDeliveriesPerSec)} / ${maxOf(refFan, refFan?.maxDeliveriesPerSec)} | ${ratio(fan?.maxDeliveriesPerSec, refFan?.maxDeliveriesPerSec)} | ${fc ? fmt(fc.rate * members) : '–'} | ${pair(fc?.b.lastDelivery?.p99, fc?.a.lastDelivery?.p99, 2)} | ${ratio(fc?.b.lastDelivery?.p99, fc?.a.lastDelivery?.p99)} | ${pair(fCpu, fCpuRef, 1)} | ${ratio(fCpu, fCpuRef)} |`,
    );
  }
  L.push('');
  const refRc = isOk(ref.reconnect) ? ref.reconnect : undefined;
  for (const t of multi) {
    const rc = isOk(t.reconnect) ? t.reconnect : undefined;
    if (rc && refRc) {
      L.push(
        `Reconnect storm, ${t.name} against ${refName}: all synced ${rc.allSyncedSeconds === null ? 'never' : `in ${fmt(rc.allSyncedSeconds, 2)} s`} vs ${refRc.allSyncedSeconds === null ? 'never' : `${fmt(refRc.allSyncedSeconds, 2)} s`} (${ratio(rc.allSyncedSeconds, refRc.allSyncedSeconds)}), per-client p99 ${ratio(rc.timeToSynced.p99, refRc.timeToSynced.p99)}, server CPU time ${ratio(rc.server?.cpuMs, refRc.server?.cpuMs)}.`,
        '',
      );
    }
  }
  return L;
}

/** Server CPU time per delivered message, µs: the phase's CPU time when recorded, else from CPU %. */
function cpuUsPerDelivery(st: StepResult): number | null {
  if (!st.server || st.delivered <= 0) return null;
  if (st.server.cpuMs !== undefined) return (st.server.cpuMs * 1000) / st.delivered;
  return st.deliveriesPerSec > 0 ? (st.server.cpuPct * 10_000) / st.deliveriesPerSec : null;
}

/** CPU µs per delivered message over several runs: all runs' CPU time / all their deliveries (min–max per run). */
function pooledCpu(steps: StepResult[]): Spread | null {
  const per = spread(steps.map(cpuUsPerDelivery));
  if (!per) return null;
  const withMs = steps.filter((s) => s.server?.cpuMs !== undefined);
  const delivered = withMs.reduce((n, s) => n + s.delivered, 0);
  if (withMs.length === steps.length && delivered > 0) per.mean = (withMs.reduce((n, s) => n + (s.server?.cpuMs ?? 0), 0) * 1000) / delivered;
  return per;
}

interface Spread {
  mean: number;
  min: number;
  max: number;
  n: number;
}

function spread(values: (number | null | undefined)[]): Spread | null {
  const v = values.filter((x): x is number => x !== null && x !== undefined && Number.isFinite(x));
  if (v.length === 0) return null;
  return { mean: v.reduce((a, b) => a + b, 0) / v.length, min: Math.min(...v), max: Math.max(...v), n: v.length };
}

/** "mean (min–max)" when there was more than one run. */
function fmtSpread(s: Spread | null, digits: number): string {
  if (!s) return '–';
  return s.n > 1 && s.max !== s.min ? `${fmt(s.mean, digits)} (${fmt(s.min, digits)}–${fmt(s.max, digits)})` : fmt(s.mean, digits);
}

/**
 * "What users pick instead": every project target's pairs figures at the rates ejabberd ran too
 * (the fixed `--pairs-rates`), as ratios to ejabberd's. Repeated runs of a rate are averaged;
 * the spread (min–max over the runs) is shown next to each mean.
 */
function ejabberdSection(r: BenchReport): string[] {
  const ej = r.targets.find((t) => t.name === 'ejabberd' && t.status === 'ok');
  const ejPairs = ej && isOk(ej.pairs) ? ej.pairs : undefined;
  if (!ej || !ejPairs) return [];
  const others = r.targets.filter((t) => t.kind === 'project' && t.status === 'ok' && isOk(t.pairs));
  const ejRates = [...new Set(ejPairs.steps.map((s) => s.rate))];
  const rates = (r.settings.pairs.fixedRates ?? ejRates).filter((x) => ejRates.includes(x));
  const L: string[] = [];
  L.push('### Against ejabberd (what users pick instead), pairs, same run', '');
  L.push(
    `ejabberd ${ej.description.match(/version ([\w.-]+)/)?.[1] ?? ''} (its own instance: temporary config and Mnesia spool, one \`ejabberd_http\` listener with \`/ws\` → \`ejabberd_http_ws\`, no shaper) against the same load generator speaking XMPP over WebSocket (RFC 7395): SASL PLAIN, bind, XEP-0198 stream management, initial presence; ` +
      `each message is a \`<message type="chat">\` to the partner's bare JID with the intended send time in the body, followed by \`<r/>\`. ` +
      `**ack** = send→\`sent\` for the project (after the durable commit), send→the server's XEP-0198 \`<a h/>\` covering the message for ejabberd (after routing; ejabberd stores nothing of a message delivered to an online session: no MAM, offline storage unused). ` +
      `Recipients ack the project every ${r.settings.load.ackEveryMs} ms (highest seq per conversation) and answer every XEP-0198 \`<r/>\` of ejabberd at once with \`<a h/>\`. ` +
      `**CPU µs/msg** = server CPU time (utime+stime of the server process: node for the project, beam.smp for ejabberd; MariaDB not counted) over the steps of that rate / the messages delivered in them (an overloaded run spends CPU on messages it delivers late or never, so its figure is high). ` +
      `Each cell is the mean over the runs of that rate, with (min–max) when they differed; ratios are of the means (× ejabberd: for msg/s higher is better, for latency, CPU and RSS lower is better).`,
    '',
  );
  L.push('| offered msg/s | target | runs passed | delivered msg/s | × ejabberd | delivery p50 ms | × | delivery p99 ms | × | ack p99 ms | × | server CPU µs/msg | × | peak RSS MB | × | machine busy % | loadgen max lag ms | load avg 1m at start |');
  L.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const rate of rates) {
    const agg = (t: TargetResult) => {
      const steps = isOk(t.pairs) ? t.pairs.steps.filter((s) => s.rate === rate) : [];
      return {
        steps,
        delivered: spread(steps.map((s) => s.deliveriesPerSec)),
        p50: spread(steps.map((s) => (s.delivery.count > 0 ? s.delivery.p50 : null))),
        p99: spread(steps.map((s) => (s.delivery.count > 0 ? s.delivery.p99 : null))),
        ack: spread(steps.map((s) => (s.sent.count > 0 ? s.sent.p99 : null))),
        cpu: pooledCpu(steps),
        rss: spread(steps.map((s) => s.server?.peakRssMB)),
        busy: spread(steps.map((s) => s.machineBusyPct)),
        lag: spread(steps.map((s) => s.maxScheduleLagMs)),
      };
    };
    const e = agg(ej);
    for (const t of [ej, ...others]) {
      const a = t === ej ? e : agg(t);
      if (a.steps.length === 0) continue;
      const x = (v: Spread | null, ref: Spread | null): string => (t === ej ? '1×' : ratio(v?.mean, ref?.mean));
      L.push(
        `| ${fmt(rate)} | ${t.name} | ${a.steps.filter((s) => s.pass).length}/${a.steps.length} | ${fmtSpread(a.delivered, 0)} | ${x(a.delivered, e.delivered)} | ${fmtSpread(a.p50, 2)} | ${x(a.p50, e.p50)} | ${fmtSpread(a.p99, 2)} | ${x(a.p99, e.p99)} | ${fmtSpread(a.ack, 2)} | ${x(a.ack, e.ack)} | ${fmtSpread(a.cpu, 0)} | ${x(a.cpu, e.cpu)} | ${fmtSpread(a.rss, 0)} | ${x(a.rss, e.rss)} | ${fmtSpread(a.busy, 0)} | ${a.lag ? fmt(a.lag.max, 0) : '–'} | ${fmt(t.loadAvg1, 2)} |`,
      );
    }
  }
  L.push('', 'A run fails when p99 ack ≥ the pairs limit or more than 0.1 % of the messages got no ack, an error or no delivery ("runs passed"); its figures still count in the means. "machine busy %" is all cores, every process on the machine (other agents\' work included); the load average is taken when each target started.', '');
  return L;
}

function reconnectSection(r: BenchReport): string[] {
  const rs = r.targets.flatMap((t) => (isOk(t.reconnect) ? [{ t, rc: t.reconnect }] : []));
  if (rs.length === 0) return [];
  const c = r.targets.find((t) => t.name === r.ceiling);
  const crc = c && isOk(c.reconnect) ? c.reconnect : undefined;
  const set = r.settings.reconnect;
  const L: string[] = [];
  L.push('### Reconnect storm (login redelivery of offline messages)', '');
  if (set) {
    L.push(
      `${fmt(set.clients)} clients, each with ${set.perClient} messages written to it by ${set.senders} sender sockets while it was offline (one 1:1 conversation each), connect ${set.concurrency > 0 ? `${set.concurrency} at a time per load-generator worker` : 'all at once'}. ` +
        `A client is synced when it holds every one of its messages (distinct seqs), from the redelivery after \`login_ok\` or, when that stalls ${fmt(set.syncAfterMs / 1000, 1)} s, from \`sync\`; it then acks. Times are from the common start instant; bound ${fmt(set.timeoutMs / 1000)} s. ` +
        `The ceiling (${r.ceiling}) keeps offline \`msg\` frames in memory and pushes them right after \`login_ok\`. Socket.IO has no offline store and is not run.`,
      '',
    );
  }
  L.push(`| target | synced / clients | all synced s | × ceiling | time-to-synced p50 / p99 ms | p99 × ceiling | login_ok p50 / p99 ms | msgs/s redelivered | via sync | duplicates | errors | server CPU % avg | server CPU s | peak RSS MB | RSS growth MB | machine busy % | loadgen CPU % | prepare stored msg/s |`);
  L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const { t, rc } of rs) {
    const errs = Object.entries(rc.errors).map(([k, v]) => `${k}: ${v}`).join(', ');
    L.push(
      `| ${t.name} | ${fmt(rc.synced)} / ${fmt(rc.clients)} | ${rc.allSyncedSeconds === null ? `– (last ${fmt(rc.lastSyncedSeconds, 2)})` : fmt(rc.allSyncedSeconds, 2)} | ${ratio(rc.allSyncedSeconds, crc?.allSyncedSeconds)} | ${fmt(rc.timeToSynced.p50, 0)} / ${fmt(rc.timeToSynced.p99, 0)} | ${ratio(rc.timeToSynced.p99, crc?.timeToSynced.p99)} | ${fmt(rc.login.p50, 0)} / ${fmt(rc.login.p99, 0)} | ${fmt(rc.msgsPerSec)} | ${fmt(rc.usedSync)} | ${fmt(rc.duplicates)} | ${errs || '–'} | ${fmt(rc.server?.cpuPct, 0)} | ${fmt(rc.server ? rc.server.cpuMs / 1000 : null, 1)} | ${fmt(rc.server?.peakRssMB, 1)} | ${fmt(rc.server?.rssGrowthMB, 1)} | ${fmt(rc.machineBusyPct, 0)} | ${fmt(rc.loadgenCpuPct, 0)} | ${fmt(rc.prepare.msgsPerSec)}${rc.prepare.shortRecipients ? ` (${rc.prepare.shortRecipients} short)` : ''} |`,
    );
  }
  L.push('');
  return L;
}

// ------------------------------------------------------------------------------------ SVG

const COLORS: Record<string, string> = {
  uws: '#2b8a3e',
  socketio: '#c92a2a',
  'node-sqlite': '#1864ab',
  'node-mariadb': '#e67700',
  'node-cluster2': '#862e9c',
  ejabberd: '#0b7285',
};
const FALLBACK = ['#5f3dc4', '#0b7285', '#862e9c', '#495057'];

interface Series {
  name: string;
  color: string;
  points: { x: number; y: number; pass: boolean }[];
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function logTicks(min: number, max: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= min && v <= max) out.push(v);
    }
  }
  return out;
}

function tickLabel(v: number): string {
  if (v >= 1_000_000) return `${v / 1_000_000}M`;
  if (v >= 1000) return `${v / 1000}k`;
  return String(v);
}

function panel(x0: number, y0: number, w: number, h: number, title: string, xLabel: string, series: Series[], limit: number): string {
  const pts = series.flatMap((s) => s.points);
  const P: string[] = [];
  P.push(`<text x="${x0 + w / 2}" y="${y0 - 12}" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>`);
  P.push(`<rect x="${x0}" y="${y0}" width="${w}" height="${h}" fill="none" stroke="#868e96"/>`);
  if (pts.length === 0) {
    P.push(`<text x="${x0 + w / 2}" y="${y0 + h / 2}" text-anchor="middle" fill="#868e96">no data</text>`);
    return P.join('\n');
  }
  const xmin = Math.min(...pts.map((p) => p.x)) / 1.3;
  const xmax = Math.max(...pts.map((p) => p.x)) * 1.3;
  const ymin = Math.max(0.01, Math.min(limit / 10, ...pts.map((p) => p.y)) / 1.5);
  const ymax = Math.max(limit * 2, ...pts.map((p) => p.y)) * 1.5;
  const sx = (v: number): number => x0 + ((Math.log10(v) - Math.log10(xmin)) / (Math.log10(xmax) - Math.log10(xmin))) * w;
  const sy = (v: number): number => y0 + h - ((Math.log10(Math.max(v, ymin)) - Math.log10(ymin)) / (Math.log10(ymax) - Math.log10(ymin))) * h;
  for (const t of logTicks(xmin, xmax)) {
    P.push(`<line x1="${sx(t)}" y1="${y0}" x2="${sx(t)}" y2="${y0 + h}" stroke="#e9ecef"/>`);
    P.push(`<text x="${sx(t)}" y="${y0 + h + 16}" text-anchor="middle" font-size="11">${tickLabel(t)}</text>`);
  }
  for (const t of logTicks(ymin, ymax)) {
    P.push(`<line x1="${x0}" y1="${sy(t)}" x2="${x0 + w}" y2="${sy(t)}" stroke="#e9ecef"/>`);
    P.push(`<text x="${x0 - 6}" y="${sy(t) + 4}" text-anchor="end" font-size="11">${t < 1 ? t : tickLabel(t)}</text>`);
  }
  P.push(`<line x1="${x0}" y1="${sy(limit)}" x2="${x0 + w}" y2="${sy(limit)}" stroke="#495057" stroke-dasharray="6 4"/>`);
  P.push(`<text x="${x0 + w - 4}" y="${sy(limit) - 4}" text-anchor="end" font-size="11" fill="#495057">limit ${limit} ms</text>`);
  P.push(`<text x="${x0 + w / 2}" y="${y0 + h + 34}" text-anchor="middle" font-size="12">${esc(xLabel)}</text>`);
  P.push(`<text x="${x0 - 44}" y="${y0 + h / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 ${x0 - 44} ${y0 + h / 2})">p99 latency, ms (log)</text>`);
  for (const s of series) {
    const sorted = [...s.points].sort((a, b) => a.x - b.x);
    if (sorted.length > 1) P.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${sorted.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ')}"/>`);
    for (const p of sorted) {
      P.push(`<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="4" fill="${p.pass ? s.color : '#fff'}" stroke="${s.color}" stroke-width="2"><title>${esc(s.name)}: ${p.x} → ${p.y} ms${p.pass ? '' : ' (fail)'}</title></circle>`);
    }
  }
  series.forEach((s, i) => {
    const ly = y0 + 16 + i * 18;
    P.push(`<line x1="${x0 + 10}" y1="${ly - 4}" x2="${x0 + 30}" y2="${ly - 4}" stroke="${s.color}" stroke-width="3"/>`);
    P.push(`<text x="${x0 + 36}" y="${ly}" font-size="12">${esc(s.name)}</text>`);
  });
  return P.join('\n');
}

/** Reconnect storm: per target, bars for per-client p50 / p99 time-to-synced and the all-synced time. */
function reconnectPanel(x0: number, y0: number, w: number, h: number, r: BenchReport): string {
  const P: string[] = [];
  const rows = r.targets.flatMap((t, i) => (isOk(t.reconnect) ? [{ t, rc: t.reconnect, color: COLORS[t.name] ?? FALLBACK[i % FALLBACK.length] ?? '#000' }] : []));
  const set = r.settings.reconnect;
  P.push(`<text x="${x0 + w / 2}" y="${y0 - 12}" text-anchor="middle" font-size="14" font-weight="bold">${esc(`reconnect storm${set ? ` (${set.clients} clients × ${set.perClient} offline msgs)` : ''}: time to synced, from the storm start`)}</text>`);
  P.push(`<rect x="${x0}" y="${y0}" width="${w}" height="${h}" fill="none" stroke="#868e96"/>`);
  if (rows.length === 0) {
    P.push(`<text x="${x0 + w / 2}" y="${y0 + h / 2}" text-anchor="middle" fill="#868e96">no data</text>`);
    return P.join('\n');
  }
  const vals = rows.flatMap(({ rc }) => [rc.timeToSynced.p50, rc.timeToSynced.p99, (rc.allSyncedSeconds ?? rc.lastSyncedSeconds) * 1000]).filter((v) => v > 0);
  const ymin = Math.max(0.1, Math.min(...vals, 1) / 2);
  const ymax = Math.max(...vals, 10) * 2;
  const sy = (v: number): number => y0 + h - ((Math.log10(Math.max(v, ymin)) - Math.log10(ymin)) / (Math.log10(ymax) - Math.log10(ymin))) * h;
  for (const t of logTicks(ymin, ymax)) {
    P.push(`<line x1="${x0}" y1="${sy(t)}" x2="${x0 + w}" y2="${sy(t)}" stroke="#e9ecef"/>`);
    P.push(`<text x="${x0 - 6}" y="${sy(t) + 4}" text-anchor="end" font-size="11">${t < 1 ? t : tickLabel(t)}</text>`);
  }
  P.push(`<text x="${x0 - 44}" y="${y0 + h / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 ${x0 - 44} ${y0 + h / 2})">ms (log)</text>`);
  const group = w / rows.length;
  const bw = Math.min(40, group / 4);
  const kinds = [
    { label: 'p50', opacity: 0.35 },
    { label: 'p99', opacity: 0.65 },
    { label: 'all synced', opacity: 1 },
  ];
  rows.forEach(({ t, rc, color }, gi) => {
    const gx = x0 + gi * group + (group - bw * 3) / 2;
    const v = [rc.timeToSynced.p50, rc.timeToSynced.p99, (rc.allSyncedSeconds ?? rc.lastSyncedSeconds) * 1000];
    v.forEach((val, k) => {
      const top = sy(val);
      const kind = kinds[k];
      const incomplete = k === 2 && rc.allSyncedSeconds === null;
      P.push(
        `<rect x="${(gx + k * bw).toFixed(1)}" y="${top.toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${Math.max(0, y0 + h - top).toFixed(1)}" fill="${incomplete ? '#fff' : color}" fill-opacity="${kind?.opacity ?? 1}" stroke="${color}"><title>${esc(`${t.name} ${kind?.label ?? ''}: ${val} ms${incomplete ? ' (not every client synced)' : ''}`)}</title></rect>`,
      );
    });
    P.push(`<text x="${(gx + bw * 1.5).toFixed(1)}" y="${y0 + h + 16}" text-anchor="middle" font-size="12">${esc(t.name)}</text>`);
    P.push(`<text x="${(gx + bw * 1.5).toFixed(1)}" y="${y0 + h + 30}" text-anchor="middle" font-size="10" fill="#495057">${esc(`${rc.synced}/${rc.clients} synced`)}</text>`);
  });
  P.push(`<text x="${x0 + w - 6}" y="${y0 + 16}" text-anchor="end" font-size="11" fill="#495057">bars per target: per-client p50, p99, time until every client synced (hollow: not all did)</text>`);
  return P.join('\n');
}

export function renderSvg(r: BenchReport): string {
  const pairs: Series[] = [];
  const fanout: Series[] = [];
  r.targets.forEach((t, i) => {
    const color = COLORS[t.name] ?? FALLBACK[i % FALLBACK.length] ?? '#000';
    if (isOk(t.pairs) && t.pairs.steps.length) {
      pairs.push({ name: t.name, color, points: t.pairs.steps.filter((s) => s.sentOk > 0).map((s) => ({ x: s.rate, y: Math.max(0.01, s.sent.p99), pass: s.pass })) });
    }
    if (isOk(t.fanout) && t.fanout.steps.length) {
      const members = t.fanout.members - 1;
      fanout.push({
        name: t.name,
        color,
        points: t.fanout.steps.filter((s) => s.lastDelivery && s.lastDelivery.count > 0).map((s) => ({ x: s.rate * members, y: Math.max(0.01, s.lastDelivery?.p99 ?? 0), pass: s.pass })),
      });
    }
  });
  const W = 1000;
  const H = 820;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">Benchmark ${esc(r.startedAt)} — filled = pass, hollow = fail</text>`,
    panel(80, 70, 380, 300, 'pairs: p99 send→sent', 'offered messages/s (log)', pairs, r.settings.pairs.p99LimitMs),
    panel(580, 70, 380, 300, `fanout (${r.settings.fanout.members} members): p99 send→last delivery`, 'offered deliveries/s (log)', fanout, r.settings.fanout.p99LimitMs),
    reconnectPanel(80, 470, 880, 280, r),
    '</svg>',
    '',
  ].join('\n');
}
