/**
 * Activates Conversation actors on demand on this node and passivates idle ones. Actors are
 * spread over supervisor shards because comedy removes a child in O(siblings).
 * Requests and replies cross the actor boundary as WireReply, the same shape NATS carries.
 */
import { fnv1a } from '../core/hash.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import { ProtocolError, isProtocolError } from '../protocol/errors.ts';
import { parseConvId } from '../protocol/ids.ts';
import type { ConvReply, ConvRequest, ConversationService, WireReply } from './conversation-protocol.ts';
import { ConversationCore, type ConversationDeps } from './conversation.ts';
import { Supervisor, spawn, type ActorRef, type ParentActor, type SelfActor } from './system.ts';

class ConversationActor {
  private core!: ConversationCore;

  initialize(self: SelfActor): void {
    this.core = (self.getCustomParameters() as { core: ConversationCore }).core;
  }

  async request(req: ConvRequest): Promise<WireReply> {
    try {
      return { ok: await this.core.handle(req) };
    } catch (e) {
      if (isProtocolError(e)) return { error: { code: e.code, message: e.message } };
      return { error: { code: 'internal', message: e instanceof Error ? e.message : String(e) } };
    }
  }
}

interface Active {
  core: ConversationCore;
  actor: Promise<ActorRef>;
  /** Requests holding this actor: a passivated actor is destroyed only when none is left. */
  busy: number;
  retired: boolean;
  /** Resolves when a retired actor has no request left (each send's request ends after its write). */
  released?: () => void;
}

export function unwrap<T>(r: WireReply): T {
  if ('error' in r) throw new ProtocolError(r.error.code, r.error.message);
  return r.ok as T;
}

export class ConversationRegistry implements ConversationService {
  private readonly active = new Map<string, Active>();
  /** Passivated cores still finishing writes: a new core of the same conversation waits for them. */
  private readonly draining = new Map<string, Promise<void>>();
  private readonly shards: Supervisor[] = [];
  private sweeper: NodeJS.Timeout | null = null;

  private constructor(private readonly deps: ConversationDeps, private readonly idleMs: number, private readonly metrics: Metrics, private readonly log: Logger) {}

  static async start(parent: ParentActor, deps: ConversationDeps, idleMs: number, metrics: Metrics, log: Logger, shards = 16): Promise<ConversationRegistry> {
    const reg = new ConversationRegistry(deps, idleMs, metrics, log);
    for (let i = 0; i < shards; i++) reg.shards.push(await Supervisor.start(parent, `conversations-${i}`));
    reg.sweeper = setInterval(() => reg.sweep(), Math.min(idleMs, 30_000));
    reg.sweeper.unref();
    return reg;
  }

  async request<R extends ConvRequest>(req: R): Promise<ConvReply<R['op']>> {
    return unwrap(await this.requestWire(req));
  }

  /** The request as the actor answers it: what another node gets back over NATS. */
  async requestWire(req: ConvRequest): Promise<WireReply> {
    if (!parseConvId(req.conv)) return { error: { code: 'bad_request', message: `"${String(req.conv).slice(0, 80)}" is not a conversation id` } };
    const a = this.activate(req.conv);
    a.busy++; // taken before any await, so a passivation meanwhile cannot destroy the actor under us
    try {
      const ref = await a.actor;
      return await ref.sendAndReceive('request', req) as WireReply;
    } catch (e) {
      this.log.error({ conv: req.conv, op: req.op, err: e instanceof Error ? e.stack : String(e) }, 'conversation request failed');
      return { error: { code: 'internal', message: 'internal error' } };
    } finally {
      a.busy--;
      if (a.retired && a.busy === 0) this.destroy(req.conv, a);
      // A request about a conversation that does not exist (a sync of an unknown group, a
      // stranger's typing) leaves no actor behind: a flood of them cannot grow the node.
      else if (!a.retired && a.busy === 0 && a.core.vacant) this.passivate(req.conv);
    }
  }

  /** The live core of a conversation on this node, creating its actor if needed. */
  activate(conv: string): Active {
    let a = this.active.get(conv);
    if (!a) {
      const core = new ConversationCore(conv, this.deps, this.draining.get(conv));
      a = { core, actor: this.shards[fnv1a(conv) % this.shards.length].spawn(ConversationActor, { core }), busy: 0, retired: false };
      this.active.set(conv, a);
      this.metrics.activeConversations.set(this.active.size);
    }
    return a;
  }

  /** Drops conversations this node no longer owns (cluster placement moved them) or that sat idle. */
  passivate(conv: string): void {
    const a = this.active.get(conv);
    if (!a) return;
    this.active.delete(conv);
    this.metrics.activeConversations.set(this.active.size);
    a.retired = true;
    const drained = new Promise<void>((r) => { a.released = r; }).then(() => a.core.whenDrained());
    this.draining.set(conv, drained);
    void drained.then(() => { if (this.draining.get(conv) === drained) this.draining.delete(conv); });
    if (a.busy === 0) this.destroy(conv, a);
  }

  private destroy(conv: string, a: Active): void {
    a.released?.();
    void a.actor.then((r) => r.destroy()).catch((e) => this.log.warn({ conv, err: String(e) }, 'conversation passivation failed'));
  }

  sweep(now = Date.now()): void {
    for (const [conv, a] of this.active) if (a.core.idle && now - a.core.lastActive > this.idleMs) this.passivate(conv);
  }

  *entries(): Iterable<[string, ConversationCore]> {
    for (const [c, a] of this.active) yield [c, a.core];
  }

  stop(): void {
    if (this.sweeper) clearInterval(this.sweeper);
  }
}
