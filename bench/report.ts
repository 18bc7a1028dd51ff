/** Benchmark report: result types, the Markdown table and a hand-written SVG latency plot. */
import type { FanoutResult, IdleResult, LoadOptions, PairsResult, StepResult } from './loadgen/coordinator.ts';
import type { StorageCeilingResult } from './baselines/storage-ceiling.ts';

export type ScenarioName = 'idle' | 'pairs' | 'fanout';

export interface ScenarioFailure {
  scenario: ScenarioName;
  status: 'failed';
  error: string;
}

export interface TargetResult {
  name: string;
  kind: 'ceiling' | 'baseline' | 'project';
  description: string;
  status: 'ok' | 'failed';
  error?: string;
  url?: string;
  /** 1-minute load average when the target started (other processes on the machine count). */
  loadAvg1?: number;
  idle?: IdleResult | ScenarioFailure;
  pairs?: PairsResult | ScenarioFailure;
  fanout?: FanoutResult | ScenarioFailure;
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
    pairs: { pairs: number; startRate: number; durationMs: number; p99LimitMs: number };
    fanout: { members: number; startRate: number; durationMs: number; p99LimitMs: number };
  };
  /** The reference target every ratio is computed against. */
  ceiling: string;
  targets: TargetResult[];
  storage?: StorageCeilingResult;
}

export function isOk<T extends object>(r: T | ScenarioFailure | undefined): r is T {
  return r !== undefined && !('status' in r && (r as ScenarioFailure).status === 'failed');
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
  for (const s of [t.idle, t.pairs, t.fanout]) {
    if (s && !isOk(s)) out.push(`- **${t.name}** / ${s.scenario} failed: ${oneLine(s.error)}`);
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
    `- **pairs**: ${r.settings.pairs.pairs} 1:1 pairs (${r.settings.pairs.pairs * 2} sockets), open-loop fixed-rate schedule, latency from the *intended* send time; max = highest offered rate with p99 send→\`sent\` < ${r.settings.pairs.p99LimitMs} ms and ≤ 0.1 % loss (step search, ${r.settings.pairs.durationMs / 1000} s per step). Latencies at the reference rate ${fmt(pairsRef)} msg/s.`,
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
  L.push(
    'Caveat: server and load generator share the machine. When the load generator\'s CPU column approaches 100 %, the client side, not the server, limits the figure; when "machine busy" is high while server + load generator are not, other processes disturbed the step (tail latency suffers first). "loadgen max lag" is how late the send timer of a worker fired at worst: tens of ms mean the load generator itself was stalled (descheduled or in GC) and that delay is inside the measured latencies. See bench/README.md.',
    '',
  );
  return L.join('\n');
}

// ------------------------------------------------------------------------------------ SVG

const COLORS: Record<string, string> = {
  uws: '#2b8a3e',
  socketio: '#c92a2a',
  'node-sqlite': '#1864ab',
  'node-mariadb': '#e67700',
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
  const H = 440;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">Benchmark ${esc(r.startedAt)} — filled = pass, hollow = fail</text>`,
    panel(80, 70, 380, 300, 'pairs: p99 send→sent', 'offered messages/s (log)', pairs, r.settings.pairs.p99LimitMs),
    panel(580, 70, 380, 300, `fanout (${r.settings.fanout.members} members): p99 send→last delivery`, 'offered deliveries/s (log)', fanout, r.settings.fanout.p99LimitMs),
    '</svg>',
    '',
  ].join('\n');
}
