/**
 * Routes conversation requests to the owner node (rendezvous hashing over live nodes): local
 * ones to this node's Conversation actors, others as NATS requests. While NATS is down, or
 * just back and the live set not yet settled, requests get `unavailable` instead of risking
 * two owners; the (conversation_id, seq) key still fences a stale owner if it happens anyway.
 *
 * This is the NATS edge of the conversation protocol: only here does a refusal (a thrown
 * ProtocolError) travel as a value (WireReply), and become a thrown ProtocolError again.
 */
import type { ConvReply, ConvRequest, ConversationService, WireReply } from '../actors/conversation-protocol.ts';
import type { ConversationRegistry } from '../actors/conversation-registry.ts';
import type { Logger } from '../core/logger.ts';
import { ProtocolError, isProtocolError, unavailable } from '../protocol/errors.ts';
import type { Membership } from './membership.ts';
import type { NatsTransport } from './nats-transport.ts';
import { ownerOf } from './placement.ts';
import { subjects } from './subjects.ts';

export class ClusterConversations implements ConversationService {
  constructor(
    private readonly self: string,
    private readonly local: ConversationRegistry,
    private readonly membership: Membership,
    private readonly nats: NatsTransport,
    private readonly timeoutMs: number,
    private readonly log: Logger,
  ) {}

  listen(): void {
    this.nats.subscribe<ConvRequest>(subjects.conv(this.self), (req) => this.answer(req));
    // Conversations this node no longer owns are dropped, so a later return reloads their seq.
    this.membership.onChange((live) => {
      for (const conv of [...this.local.conversations()]) if (ownerOf(conv, live) !== this.self) this.local.passivate(conv);
    });
  }

  async request<R extends ConvRequest>(req: R): Promise<ConvReply<R['op']>> {
    if (!this.nats.connected || !this.membership.settled) throw unavailable('the cluster bus (NATS)');
    const owner = ownerOf(req.conv, this.membership.liveNodes()) ?? this.self;
    if (owner === this.self) return this.local.request(req);
    const reply = await this.nats.request<WireReply>(subjects.conv(owner), req, this.timeoutMs);
    if ('error' in reply) throw new ProtocolError(reply.error.code, reply.error.message);
    return reply.ok as ConvReply<R['op']>;
  }

  /** A request from another node, answered by the local actor; its refusal becomes a value. */
  private async answer(req: ConvRequest): Promise<WireReply> {
    try {
      return { ok: await this.local.request(req) };
    } catch (e) {
      if (isProtocolError(e)) return { error: { code: e.code, message: e.message } };
      this.log.error({ conv: req?.conv, err: e instanceof Error ? e.stack : String(e) }, 'remote conversation request failed');
      return { error: { code: 'internal', message: 'internal error' } };
    }
  }
}
