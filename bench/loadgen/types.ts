/** Messages between the load-generator coordinator and its worker processes (IPC). */

/** `xmpp`: XMPP over WebSocket (RFC 7395) against ejabberd, pairs only (loadgen/xmpp.ts). */
export type CodecName = 'im' | 'socketio' | 'xmpp';

/** One connection a worker opens: logs in as `user`; in `pairs` it sends to `peer`. */
export interface ConnSpec {
  user: string;
  peer?: string;
  /** Global connection index, used for source-address rotation. */
  index: number;
  /** Index into `SetupMsg.urls` (cluster targets: which node this socket connects to). */
  node?: number;
  /** reconnect: the recipients this sender writes to while they are offline. */
  peers?: string[];
}

export interface SetupMsg {
  type: 'setup';
  workerIndex: number;
  url: string;
  /** All node URLs of the target (cluster); `ConnSpec.node` picks one. Defaults to [url]. */
  urls?: string[];
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
  /** codec `xmpp`: the XMPP domain (users are `user@domain`) and every user's password. */
  xmpp?: { domain: string; password: string };
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

/** reconnect, step 1: every connection with `peers` sends `perPeer` messages to each of them. */
export interface PrepareMsg {
  type: 'prepare';
  perPeer: number;
  /** Sends in flight per sender socket (closed loop). */
  window: number;
  bodyBytes: number;
  timeoutMs: number;
}

/** reconnect, step 2: all `conns` connect at `startAt` and wait for their offline messages. */
export interface StormMsg {
  type: 'storm';
  conns: ConnSpec[];
  /** Wall-clock start (ms since epoch). */
  startAt: number;
  /** Messages each client must end up with (distinct seqs in its conversation with `peer`). */
  expected: number;
  /** Concurrent connection attempts of this worker; 0 = all at once. */
  concurrency: number;
  /** A client whose redelivery stalls this long after login_ok (or the last msg) sends `sync`. */
  syncAfterMs: number;
  timeoutMs: number;
}

export type ToWorker = SetupMsg | GroupMsg | PhaseMsg | PrepareMsg | StormMsg | CloseMsg;

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

export interface PreparedMsg {
  type: 'prepared';
  workerIndex: number;
  attempted: number;
  sentOk: number;
  /** Sends answered `unavailable` or `rate_limited` and written again (same cmid), as a client's outbox does. */
  retried: number;
  errors: Record<string, number>;
  elapsedMs: number;
  /** Recipients that got fewer than `perPeer` messages stored: [user, stored]. */
  short: [string, number][];
}

export interface StormResultMsg {
  type: 'stormResult';
  workerIndex: number;
  clients: number;
  loggedIn: number;
  /** Clients that hold every expected message. */
  synced: number;
  /** Clients that needed a `sync` to complete. */
  usedSync: number;
  /** `msg` frames received (pushes, duplicates included) and messages taken from `batch` answers. */
  pushed: number;
  duplicates: number;
  fromSync: number;
  errors: Record<string, number>;
  /** HDR (µs from startAt): time to login_ok, time to holding every expected message. */
  loginHist: string;
  syncedHist: string;
  /** Latest login_ok / synced, ms after startAt. */
  lastLoginMs: number;
  lastSyncedMs: number;
  cpuMs: number;
  wallMs: number;
}

export type FromWorker = SetupResultMsg | GroupDoneMsg | PhaseResultMsg | PreparedMsg | StormResultMsg | ClosedMsg | WorkerErrorMsg;
