/**
 * A short chaos run as part of the normal test command: 3 node processes on MariaDB/NATS/Redis,
 * SDK clients chatting in 1:1 and group conversations, nodes killed with SIGKILL and each server
 * restarted once; afterwards no invariant of docs/design.md may be broken.
 * The long version is `npm run chaos -- --nodes 3 --clients 50 --duration 60`.
 */
import { describe, expect, it } from 'vitest';
import { anomalyCount, formatReport, runChaos } from './chaos-runner.ts';

const SEED = Number(process.env.IM_CHAOS_SEED ?? Date.now() % 1_000_000);

describe('chaos', () => {
  it('keeps every invariant through node kills and server restarts', { timeout: 180_000 }, async () => {
    const report = await runChaos({
      nodes: 3,
      clients: 12,
      durationMs: 40_000,
      ratePerClient: 2,
      killEveryMs: 9_000,
      nodeDownMs: 1_000,
      infraFaults: true,
      settleMs: 30_000,
      seed: SEED,
      log: (l) => console.log(l),
    });
    const text = formatReport(report);
    console.log(text);
    expect(anomalyCount(report), `anomalies (seed ${SEED}; rerun with IM_CHAOS_SEED=${SEED}):\n${text}`).toBe(0);
    expect(report.nodeKills).toBeGreaterThanOrEqual(1);
    expect(report.infraRestarts.sort()).toEqual(['mariadb', 'nats', 'redis']);
    // 12 clients × 2/s × 40 s ≈ 960 attempts; allow for outages and a slow shared machine.
    expect(report.sentReceived).toBeGreaterThan(200);
    expect(report.delivered).toBeGreaterThan(100);
  });
});
