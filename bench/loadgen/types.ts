/** Messages between the load-generator coordinator and its worker processes (IPC). */

export type CodecName = 'im' | 'socketio';

/** One connection a worker opens: logs in as `user`; in `pairs` it sends to `peer`. */
export interface ConnSpec {
  user: string;
  peer?: string;
  /** Global connection index, used for source-address rotation. */
  index: number;
}

export interface SetupMsg {
  type: 'setup';
  workerIndex: number;
  url: string;
  codec: CodecName;
  jwtSecret: string;
  conns: ConnSpec[];
  /** Loopback source addresses to rotate through (`localAddress`), e.g. 127.0.0.1, 127.0.0.2. */
  sourceAddrs: string[];
  /** Connections per source address before moving to the next one. */
  connsPerAddr: number;
  /** Ping interval override; 0 = use the server's `heartbeat_ms` from `login_ok`. */
  pingEveryMs: number;
  /** Concurrent connection attempts per worker. */
  connectConcurrency: number;
  /** Flush cadence for coalesced `ack` frames (ms). */
  ackEveryMs: number;
}

export interface GroupMsg {
  type: 'group';
  /** Group name (without `g:`); created by this worker's first connection. */
  group: string;
  members: string[];
}

export type PhaseKind = 'idle' | 'pairs' | 'fanout';

export interface PhaseMsg {
  type: 'phase';
  phaseId: number;
  kind: PhaseKind;
  /** Messages per second this worker sends (0 = this worker only receives). */
  rate: number;
  /** Wall-clock start time (ms since epoch, performance.timeOrigin based). */
  startAt: number;
  durationMs: number;
  /** Maximum wait after the send window for answers and deliveries. */
  graceMs: number;
  bodyBytes: number;
  /** fanout: the group conversation id (`g:<group>`) the sender sends to. */
  conv?: string;
}

export interface CloseMsg {
  type: 'close';
}

export type ToWorker = SetupMsg | GroupMsg | PhaseMsg | CloseMsg;

export interface SetupResultMsg {
  type: 'setupDone';
  workerIndex: number;
  connected: number;
  failed: number;
  errors: Record<string, number>;
  elapsedMs: number;
  heartbeatMs: number;
}

export interface GroupDoneMsg {
  type: 'groupDone';
  ok: boolean;
  conv: string;
  error?: string;
}

export interface PhaseResultMsg {
  type: 'phaseResult';
  workerIndex: number;
  phaseId: number;
  /** Sends issued by the schedule. */
  attempted: number;
  /** `sent` answers received. */
  sentOk: number;
  /** Sends that got neither `sent` nor `error` before the grace period ended. */
  timeouts: number;
  /** Error answers and local failures, by code (`rate_limited`, `closed`, …). */
  errors: Record<string, number>;
  /** `msg` frames received for this phase. */
  delivered: number;
  /** HDR histograms (µs), hdr-histogram-js compressed base64. */
  sentHist: string;
  deliveryHist: string;
  pongHist: string;
  /** fanout: per cmid [cmid, deliveries seen by this worker, max latency µs]. */
  fanout: [string, number, number][];
  /** How far the send schedule fell behind at worst (ms): > a few ms means the worker was saturated. */
  maxScheduleLagMs: number;
  /** Worker CPU time (user+system) during the phase, ms. */
  cpuMs: number;
  wallMs: number;
  openSockets: number;
}

export interface ClosedMsg {
  type: 'closed';
  workerIndex: number;
}

export interface WorkerErrorMsg {
  type: 'fatal';
  workerIndex: number;
  message: string;
}

export type FromWorker = SetupResultMsg | GroupDoneMsg | PhaseResultMsg | ClosedMsg | WorkerErrorMsg;
