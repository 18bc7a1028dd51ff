// Shared process plumbing for the test harness: spawn a child, keep the tail of its output,
// track its exit, and make sure it dies (by its own PID only) when the test process goes away.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, rmSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Last N lines of a child's stdout+stderr, interleaved in arrival order. */
export class LogTail {
  private lines: string[] = [];
  private partial: Record<'out' | 'err', string> = { out: '', err: '' };
  constructor(private readonly max = 200) {}

  push(stream: 'out' | 'err', chunk: Buffer | string): void {
    const text = this.partial[stream] + chunk.toString();
    const parts = text.split('\n');
    this.partial[stream] = parts.pop() ?? '';
    for (const line of parts) this.add(line);
  }

  note(line: string): void {
    this.add(`[harness] ${line}`);
  }

  private add(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.max) this.lines.splice(0, this.lines.length - this.max);
  }

  tail(n = this.max): string {
    const pending = [this.partial.out, this.partial.err].filter((s) => s.length > 0);
    return [...this.lines, ...pending].slice(-n).join('\n');
  }
}

export interface Spawned {
  child: ChildProcess;
  pid: number;
  exited: Promise<ExitInfo>;
  /** Set once the child has exited. */
  exitInfo: ExitInfo | null;
}

// Every child we started and that is still alive, by PID. Only these are ever signalled.
const live = new Map<number, ChildProcess>();
// Temp dirs that outlive stop() on purpose (so restart() finds its data); removed at exit.
const tempDirs = new Set<string>();
let hooksInstalled = false;

export function removeTempDirAtExit(dir: string): void {
  installExitHooks();
  tempDirs.add(dir);
}

function removeTempDirsSync(): void {
  for (const dir of tempDirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
  tempDirs.clear();
}

function killAllLiveSync(): void {
  for (const pid of live.keys()) {
    try {
      process.kill(pid, 'SIGCONT'); // a SIGSTOPped child would otherwise linger until SIGKILL lands
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  live.clear();
}

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    killAllLiveSync();
    removeTempDirsSync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killAllLiveSync();
      removeTempDirsSync();
      // If nobody else handles this signal, restore the default behaviour (die by it).
      if (process.listenerCount(sig) === 1) {
        process.removeListener(sig, onSignal);
        process.kill(process.pid, sig);
      }
    };
    process.on(sig, onSignal);
  }
}

/**
 * Find an executable: an explicit override, then PATH, then the sbin directories that
 * non-root users on Debian do not have on PATH (mariadbd and nats-server live in /usr/sbin).
 */
export function findBinary(name: string, envOverride?: string): string | null {
  const override = envOverride ? process.env[envOverride] : undefined;
  if (override) return isExecutable(override) ? override : null;
  const dirs = [
    ...(process.env.PATH ?? '').split(delimiter).filter(Boolean),
    '/usr/local/sbin',
    '/usr/sbin',
    '/sbin',
    '/usr/local/bin',
    '/usr/bin',
  ];
  for (const dir of dirs) {
    const p = join(dir, name);
    if (isExecutable(p)) return p;
  }
  return null;
}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Spawn a long-running child with output captured into `log`. A watchdog shell kills the
 * child by PID if this process dies without running its exit hooks (SIGKILL, OOM).
 */
export function spawnTracked(
  bin: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; log: LogTail },
): Promise<Spawned> {
  installExitHooks();
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (c: Buffer) => opts.log.push('out', c));
    child.stderr?.on('data', (c: Buffer) => opts.log.push('err', c));
    let settled = false;
    const spawned: Spawned = {
      child,
      pid: -1,
      exitInfo: null,
      exited: new Promise<ExitInfo>((res) => {
        child.once('exit', (code, signal) => {
          live.delete(child.pid ?? -1);
          spawned.exitInfo = { code, signal };
          opts.log.note(`process ${child.pid} exited (code ${code}, signal ${signal})`);
          res(spawned.exitInfo);
        });
      }),
    };
    child.once('error', (err) => {
      if (!settled) {
        settled = true;
        reject(new Error(`cannot spawn ${bin}: ${err.message}`));
      }
    });
    child.once('spawn', () => {
      settled = true;
      const pid = child.pid;
      if (pid === undefined) {
        reject(new Error(`cannot spawn ${bin}: no pid`));
        return;
      }
      spawned.pid = pid;
      live.set(pid, child);
      startWatchdog(pid);
      resolve(spawned);
    });
  });
}

function startWatchdog(childPid: number): void {
  // Checks once a second whether its own parent is still this process (a dead parent could linger
  // as an unreaped zombie, so `kill -0 parent` is not enough); exits as soon as the child is gone.
  const script =
    `while read -r _ _ _ ppid _ < /proc/$$/stat; do ` +
    `if [ "$ppid" != "${process.pid}" ]; then kill -CONT ${childPid} 2>/dev/null; kill -9 ${childPid} 2>/dev/null; exit 0; fi; ` +
    `kill -0 ${childPid} 2>/dev/null || exit 0; sleep 1; done`;
  const w = spawn('/bin/sh', ['-c', script], { stdio: 'ignore', detached: true });
  w.on('error', () => {}); // best effort only
  w.unref();
}

/** Send a signal to exactly this child; false when it has already exited. */
export function signal(s: Spawned, sig: NodeJS.Signals): boolean {
  if (s.exitInfo) return false;
  try {
    return process.kill(s.pid, sig);
  } catch {
    return false;
  }
}

/** Resolve with the exit info, or null when the child is still alive after `ms`. */
export async function waitExit(s: Spawned, ms: number): Promise<ExitInfo | null> {
  if (s.exitInfo) return s.exitInfo;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<null>((res) => {
    timer = setTimeout(() => res(null), ms);
  });
  try {
    return await Promise.race([s.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** SIGTERM, wait up to `graceMs`, then SIGKILL. Returns how it ended and whether we had to force it. */
export async function terminate(
  s: Spawned,
  graceMs: number,
): Promise<{ info: ExitInfo; forced: boolean }> {
  signal(s, 'SIGCONT'); // a paused process cannot handle SIGTERM
  signal(s, 'SIGTERM');
  const info = await waitExit(s, graceMs);
  if (info) return { info, forced: false };
  signal(s, 'SIGKILL');
  return { info: await s.exited, forced: true };
}

export async function forceKill(s: Spawned): Promise<ExitInfo> {
  signal(s, 'SIGKILL');
  return s.exited;
}

export { sleep };
