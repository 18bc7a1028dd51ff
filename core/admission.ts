/**
 * Node-wide admission of sends. Past its capacity a node refuses new sends with `unavailable`
 * (retryable: the client's outbox sends them again later with the same cmid) instead of queueing
 * seconds of work: what it accepts keeps a bounded latency, and memory stays bounded.
 *
 * A send is refused when any of these holds:
 *  - `maxInflight` sends are already accepted and not yet answered (a hard bound on queued work);
 *  - more than `floor` sends are in flight and either the smoothed time from accepting a send to
 *    its answer is over `targetMs`, or the event loop was late by more than `targetMs` on average
 *    over the last 100 ms (the process is out of CPU: frames already wait in socket buffers
 *    before they are read). The floor keeps a slow commit or a busy machine at low load from
 *    shutting the door, and guarantees completions that bring the average down.
 *
 * Owned by the node; sessions call `tryBegin`/`end` around each send. Not an actor: two counters
 * and a histogram read on a timer, changed synchronously.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

export interface AdmissionLimits {
  /** Most sends accepted and not yet answered, node-wide. */
  maxInflight: number;
  /** Latency (ms) past which the node sheds new sends. */
  targetMs: number;
  /** Sends in flight up to which the latency rules do not refuse (default 256). */
  floor?: number;
}

/** Weight of one completed send in the smoothed latency. */
const EWMA_ALPHA = 0.05;
const SAMPLE_MS = 100;

export class SendAdmission {
  private inflight = 0;
  private ewmaMs = 0;
  private lagMs = 0;
  private readonly floor: number;
  private readonly lag: IntervalHistogram;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly limits: AdmissionLimits) {
    this.floor = limits.floor ?? 256;
    this.lag = monitorEventLoopDelay({ resolution: 10 });
    this.lag.enable();
    this.timer = setInterval(() => {
      // The histogram counts the resolution itself: a loop on time reads ~resolution.
      this.lagMs = Math.max(0, this.lag.mean / 1e6 - 10);
      this.lag.reset();
    }, SAMPLE_MS);
    this.timer.unref();
  }

  /** Why a send would be refused now, or null when it may go ahead. */
  private refusal(): string | null {
    const { maxInflight, targetMs } = this.limits;
    if (this.inflight >= maxInflight) return `${this.inflight} sends are waiting for their commit`;
    if (this.inflight <= this.floor) return null;
    if (this.ewmaMs > targetMs) return `sends take ${Math.round(this.ewmaMs)} ms`;
    if (this.lagMs > targetMs) return `the event loop is ${Math.round(this.lagMs)} ms late`;
    return null;
  }

  /** Accepts a send (returns its start time for `end`) or returns the reason it is refused. */
  tryBegin(): { start: number } | { refused: string } {
    const why = this.refusal();
    if (why !== null) return { refused: why };
    this.inflight++;
    return { start: performance.now() };
  }

  /** The send accepted at `start` was answered (committed or failed). */
  end(start: number): void {
    this.inflight--;
    this.ewmaMs += EWMA_ALPHA * (performance.now() - start - this.ewmaMs);
  }

  stop(): void {
    clearInterval(this.timer);
    this.lag.disable();
  }
}
