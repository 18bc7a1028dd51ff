/**
 * The server API's view of users' sockets: who is connected where (presence) and closing them
 * (disconnect). An embedded or MySQL-only node answers from its session directory; a cluster
 * node reads presence from its replica (cluster/presence.ts) and sends a disconnect to every
 * node that holds one of the devices (a NATS request, so the answer counts what was closed).
 */
import type { SessionDirectory } from '../actors/session-directory.ts';
import type { SessionManager } from '../actors/session-manager.ts';
import type { Logger } from '../core/logger.ts';
import type { NatsTransport } from '../cluster/nats-transport.ts';
import type { Presence } from '../cluster/presence.ts';
import { subjects } from '../cluster/subjects.ts';
import { NAME_RE } from '../protocol/ids.ts';

export interface DeviceInfo { device: string; node: string; since: number }

export interface UserAdmin {
  /** The user's connected devices. */
  presence(user: string): DeviceInfo[];
  /** Kicks the user's sockets (or one device's) with `reason`; resolves with how many were closed. */
  disconnect(user: string, device: string | undefined, reason: string): Promise<number>;
}

/** The sessions of this node. */
export class LocalUsers implements UserAdmin {
  constructor(private readonly nodeId: string, private readonly directory: SessionDirectory, private readonly sessions: SessionManager) {}

  presence(user: string): DeviceInfo[] {
    return [...this.directory.devices(user)].map((e) => ({ device: e.device, node: this.nodeId, since: e.since ?? 0 }));
  }

  /** Kicks the matching sessions here (each gets `kicked` with the reason, and its device goes offline). */
  kick(user: string, device: string | undefined, reason: string): number {
    let closed = 0;
    for (const e of [...this.directory.devices(user)]) {
      if (device !== undefined && e.device !== device) continue;
      this.sessions.kick(e, reason);
      closed++;
    }
    return closed;
  }

  disconnect(user: string, device: string | undefined, reason: string): Promise<number> {
    return Promise.resolve(this.kick(user, device, reason));
  }
}

interface DisconnectRequest { user: string; device?: string; reason: string }

const validRequest = (r: unknown): r is DisconnectRequest => {
  const o = r as Partial<DisconnectRequest> | null;
  return typeof o === 'object' && o !== null && typeof o.user === 'string' && NAME_RE.test(o.user) && typeof o.reason === 'string' && NAME_RE.test(o.reason)
    && (o.device === undefined || (typeof o.device === 'string' && NAME_RE.test(o.device)));
};

/** Every node's sessions, through the presence replica and NATS. */
export class ClusterUsers implements UserAdmin {
  constructor(
    private readonly self: string,
    private readonly local: LocalUsers,
    private readonly replica: Presence,
    private readonly nats: NatsTransport,
    private readonly timeoutMs: number,
    private readonly log: Logger,
  ) {}

  /** Answers other nodes' disconnects for the sessions here. */
  listen(): void {
    this.nats.subscribe<unknown>(subjects.api(this.self), (r) => {
      if (!validRequest(r)) {
        this.log.warn('dropping a malformed server API request from the cluster bus');
        return { closed: 0 };
      }
      return { closed: this.local.kick(r.user, r.device, r.reason) };
    });
  }

  presence(user: string): DeviceInfo[] {
    return this.replica.devicesOf(user);
  }

  async disconnect(user: string, device: string | undefined, reason: string): Promise<number> {
    const nodes = new Set(this.replica.devicesOf(user).filter((d) => device === undefined || d.device === device).map((d) => d.node));
    nodes.delete(this.self);
    // This node's own sessions are closed whatever the replica says.
    let closed = this.local.kick(user, device, reason);
    const req: DisconnectRequest = device === undefined ? { user, reason } : { user, device, reason };
    const answers = await Promise.all([...nodes].map((n) => this.nats.request<{ closed?: unknown }>(subjects.api(n), req, this.timeoutMs)));
    for (const a of answers) if (a && typeof a.closed === 'number') closed += a.closed;
    return closed;
  }
}
