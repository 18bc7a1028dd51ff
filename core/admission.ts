/**
 * Node-wide admission of sends. Past its capacity a node refuses new sends with `unavailable`
 * (retryable: the client's outbox sends them again later with the same cmid) instead of queueing
 * seconds of work: what it accepts keeps a bounded latency, and memory stays bounded.
 *
 * A send is refused when either holds:
 *  - `maxInflight` sends are already accepted and not yet answered (a hard bound on queued work);
 *  - the node is slow and its queue is longer than it drains in the latency budget: the smoothed
 *    time from accepting a send to its answer is over a quarter of `targetMs`, and more sends are
 *    in progress than the node answered, at its best rate of the last half second, in half of
 *    `targetMs` less the event loop's current lateness (frames wait that long before they are
 *    read). By Little's law the sends it keeps then spend about half the target in the node on
 *    average, so their tail stays near the target, and the limit follows the node's real
 *    capacity: a stalled store brings it down to `floor`, a faster machine raises it.
 * Both conditions are needed: a burst at a node that answers fast is accepted whole, and a slow
 * node with a short queue (a slow commit, a busy machine at low load) is not shut.
 *
 * Owned by the node; sessions call `tryBegin`/`end` around each send. Not an actor: counters
 * changed synchronously, and a limit recomputed on a 100 ms timer (`sample`).
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

export interface AdmissionLimits {
  /** Most sends accepted and not yet answered, node-wide. */
  maxInflight: number;
  /** Latency (ms) the node keeps the sends it accepts under; past it, it sheds new ones. */
  targetMs: number;
  /** Sends in progress up to which the latency rule does not refuse (default 128). */
  floor?: number;
}

/** What /metrics shows of the admission (core/metrics.ts). */
export interface AdmissionState {
  /** Sends accepted and not yet answered. */
  inProgress: number;
  /** Sends in progress past which the latency rule refuses (Infinity before the first sample). */
  limit: number;
  /** Smoothed time from accepting a send to its answer. */
  smoothedMs: number;
}

/** Weight of one answered send in the smoothed latency. */
const EWMA_ALPHA = 0.05;
/** How often the limit is recomputed. */
const SAMPLE_MS = 100;
/** Samples whose best answer rate sets the limit: one slow commit does not lower it. */
const RATE_SAMPLES = 5;
/** The share of the target the mean time in the node is kept to. */
const BUDGET_SHARE = 0.5;
/** The share of the target past which the node counts as slow. */
const SLOW_SHARE = 0.25;
/** The loop delay histogram's resolution (ms): a loop on time reads about this much. */
const LAG_RESOLUTION_MS = 10;

export class SendAdmission {
  private inflight = 0;
  private ewmaMs = 0;
  private answered = 0;
  private lastSample = performance.now();
  private readonly rates: number[] = [];
  private limit = Infinity;
  private lagMs = 0;
  private readonly floor: number;
  private readonly lag: IntervalHistogram;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly limits: AdmissionLimits) {
    this.floor = limits.floor ?? 128;
    this.lag = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
    this.lag.enable();
    this.timer = setInterval(() => {
      const lagMs = Math.max(0, this.lag.mean / 1e6 - LAG_RESOLUTION_MS);
      this.lag.reset();
      this.sample(performance.now(), lagMs);
    }, SAMPLE_MS);
    this.timer.unref();
  }

  /**
   * Recomputes the limit from the sends answered since the last sample (the node's timer calls
   * this every SAMPLE_MS; `lagMs` is how late the event loop ran meanwhile).
   */
  sample(now: number, lagMs: number): void {
    const elapsed = now - this.lastSample;
    if (elapsed <= 0) return;
    this.rates.push(this.answered / elapsed);
    if (this.rates.length > RATE_SAMPLES) this.rates.shift();
    this.answered = 0;
    this.lastSample = now;
    this.lagMs = lagMs;
    const budget = Math.max(this.limits.targetMs * BUDGET_SHARE - lagMs, (this.limits.targetMs * BUDGET_SHARE) / 5);
    this.limit = Math.max(this.floor, Math.max(...this.rates) * budget);
  }

  /** For /metrics: sends in progress, the limit of the latency rule, and the smoothed time to answer. */
  state(): AdmissionState {
    return { inProgress: this.inflight, limit: this.limit, smoothedMs: this.ewmaMs };
  }

  /** Why a send would be refused now, or null when it may go ahead. */
  private refusal(): string | null {
    const { maxInflight, targetMs } = this.limits;
    if (this.inflight >= maxInflight) return `${this.inflight} sends are waiting for their commit`;
    if (this.inflight >= this.limit && this.ewmaMs > targetMs * SLOW_SHARE) {
      const late = this.lagMs >= 1 ? `, the event loop runs ${Math.round(this.lagMs)} ms late` : '';
      return `${this.inflight} sends in progress take ${Math.round(this.ewmaMs)} ms${late}`;
    }
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
    this.answered++;
    this.ewmaMs += EWMA_ALPHA * (performance.now() - start - this.ewmaMs);
  }

  stop(): void {
    clearInterval(this.timer);
    this.lag.disable();
  }
}
