/** Prometheus metrics of one node (prom-client), exposed at GET /metrics. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { AdmissionState } from './admission.ts';

export class Metrics {
  readonly registry = new Registry();
  readonly connections = new Gauge({ name: 'im_connections', help: 'Open WebSocket connections', registers: [this.registry] });
  readonly sessions = new Gauge({ name: 'im_sessions', help: 'Logged-in device sessions', registers: [this.registry] });
  readonly framesIn = new Counter({ name: 'im_frames_in_total', help: 'Frames received from clients', labelNames: ['t'] as const, registers: [this.registry] });
  readonly framesOut = new Counter({ name: 'im_frames_out_total', help: 'Frames sent to clients', registers: [this.registry] });
  readonly errors = new Counter({ name: 'im_errors_total', help: 'Error frames sent, by code', labelNames: ['code'] as const, registers: [this.registry] });
  readonly committed = new Counter({ name: 'im_messages_committed_total', help: 'Messages durably committed', registers: [this.registry] });
  readonly commitBatch = new Histogram({
    name: 'im_commit_batch_size', help: 'Messages per group commit', registers: [this.registry],
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
  });
  readonly commitLatency = new Histogram({
    name: 'im_commit_seconds', help: 'Duration of one group commit', registers: [this.registry],
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1],
  });
  readonly pushes = new Counter({ name: 'im_pushes_total', help: 'msg frames pushed to devices', labelNames: ['kind'] as const, registers: [this.registry] });
  readonly pushesDeferred = new Counter({ name: 'im_pushes_deferred_total', help: 'Live messages not held for a session whose login backlog was under way, its bound reached: read back from the record after the backlog', registers: [this.registry] });
  readonly handlerErrors = new Counter({ name: 'im_handler_errors_total', help: 'Exceptions caught at the edge of an HTTP or WebSocket handler (answered 500 or socket closed 1011)', labelNames: ['where'] as const, registers: [this.registry] });
  readonly eventsRelayed = new Counter({ name: 'im_events_relayed_total', help: 'Events a sink confirmed', labelNames: ['sink'] as const, registers: [this.registry] });
  readonly eventsFailures = new Counter({ name: 'im_events_sink_failures_total', help: 'Event batches a sink failed to take', labelNames: ['sink'] as const, registers: [this.registry] });
  readonly eventsRetries = new Counter({ name: 'im_events_sink_retries_total', help: 'Event batches sent to a sink again after a failure', labelNames: ['sink'] as const, registers: [this.registry] });
  readonly eventsLag = new Gauge({ name: 'im_events_lag_seconds', help: 'Age of the oldest event not yet relayed (0 when none waits)', registers: [this.registry] });
  readonly hookCalls = new Counter({ name: 'im_hook_calls_total', help: 'Before-send hook calls by outcome', labelNames: ['outcome'] as const, registers: [this.registry] });
  readonly sendsShed = new Counter({ name: 'im_sends_shed_total', help: 'Sends refused with unavailable because the node was past its capacity (IM_MAX_INFLIGHT_SENDS, IM_OVERLOAD_MS)', registers: [this.registry] });
  /** Reads the node's send admission (core/admission.ts) when /metrics is scraped; set once it exists. */
  admission: (() => AdmissionState) | null = null;
  readonly sendsInProgress = new Gauge({
    name: 'im_sends_in_progress', help: 'Sends accepted and not yet answered on this node', registers: [this.registry],
    collect: () => { const a = this.admission?.(); if (a) this.sendsInProgress.set(a.inProgress); },
  });
  readonly sendAdmissionLimit = new Gauge({
    name: 'im_send_admission_limit', help: 'Sends in progress past which new sends are refused while sends run slow (IM_OVERLOAD_MS): what the node answers in half of IM_OVERLOAD_MS at its recent best rate, at least 128',
    registers: [this.registry],
    collect: () => { const a = this.admission?.(); if (a) this.sendAdmissionLimit.set(a.limit); },
  });
  readonly sendSeconds = new Gauge({
    name: 'im_send_smoothed_seconds', help: 'Smoothed time from accepting a send to answering it (committed or failed)', registers: [this.registry],
    collect: () => { const a = this.admission?.(); if (a) this.sendSeconds.set(a.smoothedMs / 1000); },
  });
  readonly activeConversations = new Gauge({ name: 'im_conversations_active', help: 'Conversation actors alive on this node', registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'im_process_' });
  }
}
