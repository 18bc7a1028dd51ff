/** Server process metrics from /proc/<pid> (Linux): resident memory and CPU time. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let clkTck = 0;
function ticksPerSecond(): number {
  if (clkTck > 0) return clkTck;
  try {
    clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    clkTck = 100;
  }
  return clkTck;
}

export interface ProcSample {
  /** Wall clock, ms. */
  at: number;
  /** VmRSS, bytes. */
  rssBytes: number;
  /** utime + stime, ms. */
  cpuMs: number;
}

/** Returns null when the process is gone or /proc is unavailable. */
export function sampleProc(pid: number): ProcSample | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start at field 3 (state).
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(rest[11]);
    const stime = Number(rest[12]);
    return {
      at: Date.now(),
      rssBytes: m ? Number(m[1]) * 1024 : 0,
      cpuMs: ((utime + stime) * 1000) / ticksPerSecond(),
    };
  } catch {
    return null;
  }
}

/** CPU use between two samples as a percentage of one core. */
export function cpuPercent(a: ProcSample, b: ProcSample): number {
  const wall = b.at - a.at;
  return wall > 0 ? Math.round(((b.cpuMs - a.cpuMs) / wall) * 1000) / 10 : 0;
}

/** Periodically samples a process and keeps the peak RSS. */
export class ProcWatcher {
  private timer: NodeJS.Timeout | null = null;
  peakRssBytes = 0;
  readonly first: ProcSample | null;

  constructor(private readonly pid: number, everyMs = 250) {
    this.first = sampleProc(pid);
    if (this.first) this.peakRssBytes = this.first.rssBytes;
    this.timer = setInterval(() => {
      const s = sampleProc(this.pid);
      if (s && s.rssBytes > this.peakRssBytes) this.peakRssBytes = s.rssBytes;
    }, everyMs);
    this.timer.unref();
  }

  stop(): { first: ProcSample | null; last: ProcSample | null; peakRssBytes: number } {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const last = sampleProc(this.pid);
    if (last && last.rssBytes > this.peakRssBytes) this.peakRssBytes = last.rssBytes;
    return { first: this.first, last, peakRssBytes: this.peakRssBytes };
  }
}

export interface MachineCpu {
  busy: number;
  total: number;
}

/** Machine-wide CPU jiffies from /proc/stat (all cores). */
export function machineCpu(): MachineCpu | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return null;
  }
}

/** Share of all cores that were busy between two samples (everything on the machine), %. */
export function machineBusyPercent(a: MachineCpu | null, b: MachineCpu | null): number | null {
  if (!a || !b || b.total <= a.total) return null;
  return Math.round(((b.busy - a.busy) / (b.total - a.total)) * 1000) / 10;
}

/** Soft limit on open files for this process (children inherit it). */
export function openFilesSoftLimit(): number {
  try {
    const limits = readFileSync('/proc/self/limits', 'utf8');
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(limits);
    if (!m || !m[1]) return 1024;
    return m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1]);
  } catch {
    return 1024;
  }
}
