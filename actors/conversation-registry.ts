/**
 * The conversations of this node: activates a Conversation actor on the first request for a
 * conversation, routes each request to it as a message, and passivates actors that sat idle,
 * that turned out to be about a conversation that does not exist, or whose conversation moved
 * to another node. It holds actor references and bookkeeping, never a conversation's state.
 *
 * Passivation never fails a request: an actor is destroyed only when no request holds it, and a
 * new actor of the same conversation loads only after the old one's writes are done (its
 * `predecessor`), so two actors of one conversation never write at once on this node. Actors are
 * spread over supervisor shards because comedy removes a child in O(siblings).
 */
import { fnv1a } from '../core/hash.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import { ProtocolError, isProtocolError } from '../protocol/errors.ts';
import { parseConvId } from '../protocol/ids.ts';
import type { ConvReply, ConvRequest, ConversationService } from './conversation-protocol.ts';
import { ConversationActor, type ConversationAnswer, type ConversationDeps, type ConversationParams } from './conversation.ts';
import { Supervisor, type ActorRef, type ParentActor } from './system.ts';

interface Active {
  actor: Promise<ActorRef>;
  /** Requests holding this actor: a passivated actor is destroyed only when none is left. */
  busy: number;
  lastActive: number;
  retired: boolean;
  /** Resolves when a retired actor has no request left. */
  released?: () => void;
}

export class ConversationRegistry implements ConversationService {
  private readonly active = new Map<string, Active>();
  /** Passivated actors still finishing writes: a new actor of the same conversation waits for them. */
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

  /** Answers a request with its conversation's actor; a refusal rejects with its ProtocolError. */
  async request<R extends ConvRequest>(req: R): Promise<ConvReply<R['op']>> {
    if (!parseConvId(req.conv)) throw new ProtocolError('bad_request', `"${String(req.conv).slice(0, 80)}" is not a conversation id`);
    const a = this.activate(req.conv);
    a.busy++; // taken before any await, so a passivation meanwhile cannot destroy the actor under us
    a.lastActive = Date.now();
    let vacant = false;
    let ref: ActorRef | null = null;
    try {
      ref = await a.actor;
      const answer = await ref.sendAndReceive('request', req) as ConversationAnswer<ConvReply<R['op']>>;
      vacant = answer.vacant;
      return answer.reply;
    } catch (e) {
      if (isProtocolError(e)) {
        // Refusals are how requests about unknown groups end: ask whether the actor can go.
        vacant = ref !== null && (await ref.sendAndReceive('vacant').catch(() => false)) === true;
        throw e;
      }
      this.log.error({ conv: req.conv, op: req.op, err: e instanceof Error ? e.stack : String(e) }, 'conversation request failed');
      throw new ProtocolError('internal', 'internal error');
    } finally {
      a.busy--;
      if (a.retired && a.busy === 0) a.released?.();
      // A request about a conversation that does not exist (a sync of an unknown group, a
      // stranger's typing) leaves no actor behind: a flood of them cannot grow the node.
      else if (vacant && a.busy === 0) this.passivate(req.conv);
    }
  }

  private activate(conv: string): Active {
    let a = this.active.get(conv);
    if (!a) {
      const params: ConversationParams = { id: conv, deps: this.deps, predecessor: this.draining.get(conv) ?? Promise.resolve() };
      a = { actor: this.shards[fnv1a(conv) % this.shards.length].spawn(ConversationActor, params), busy: 0, lastActive: Date.now(), retired: false };
      this.active.set(conv, a);
      this.metrics.activeConversations.set(this.active.size);
    }
    return a;
  }

  /** Drops a conversation's actor (cluster placement moved it, it sat idle, or it does not exist). */
  passivate(conv: string): void {
    const a = this.active.get(conv);
    if (!a) return;
    this.active.delete(conv);
    this.metrics.activeConversations.set(this.active.size);
    a.retired = true;
    // The actor's destroy resolves once its accepted sends are committed or answered.
    const drained = new Promise<void>((r) => { a.released = r; })
      .then(() => a.actor)
      .then((ref) => ref.destroy())
      .catch((e: unknown) => this.log.warn({ conv, err: String(e) }, 'conversation passivation failed'));
    this.draining.set(conv, drained);
    void drained.then(() => { if (this.draining.get(conv) === drained) this.draining.delete(conv); });
    if (a.busy === 0) a.released?.();
  }

  /** Passivates actors with no request for IM_CONV_IDLE_MS (a send's request lasts until its commit). */
  sweep(now = Date.now()): void {
    for (const [conv, a] of this.active) if (a.busy === 0 && now - a.lastActive > this.idleMs) this.passivate(conv);
  }

  /** Ids of the conversations with an actor on this node. */
  *conversations(): Iterable<string> {
    yield* this.active.keys();
  }

  stop(): void {
    if (this.sweeper) clearInterval(this.sweeper);
  }
}
