/**
 * Fan-out across nodes: local devices are pushed directly; for every other node that holds
 * devices of the members, one NATS message carries the push and that node's user list.
 * NATS keeps order per publisher and subscriber, so pushes arrive in seq order per conversation.
 */
import type { Delivery, DeviceKey, MessagePush } from '../actors/delivery.ts';
import type { LocalDelivery } from '../actors/local-delivery.ts';
import type { NatsTransport } from './nats-transport.ts';
import type { Presence } from './presence.ts';
import { subjects } from './subjects.ts';

type Envelope =
  | { k: 'm'; users: string[]; push: MessagePush; skip?: DeviceKey }
  | { k: 'e'; users: string[]; json: string; skipUser?: string };

export class ClusterDelivery implements Delivery {
  constructor(private readonly self: string, private readonly local: LocalDelivery, private readonly presence: Presence, private readonly nats: NatsTransport) {}

  /** Delivers what other nodes send to this node's sessions. */
  listen(): void {
    this.nats.subscribe<Envelope>(subjects.deliver(this.self), (env) => {
      if (env.k === 'm') this.local.message(env.users, env.push, env.skip);
      else this.local.event(env.users, env.json, env.skipUser);
    });
  }

  message(users: readonly string[], push: MessagePush, skip?: DeviceKey): void {
    this.local.message(users, push, skip);
    for (const [node, list] of this.presence.nodesOf(users)) {
      if (node !== this.self) this.nats.publish(subjects.deliver(node), { k: 'm', users: list, push, skip } satisfies Envelope);
    }
  }

  event(users: readonly string[], json: string, skipUser?: string): void {
    this.local.event(users, json, skipUser);
    for (const [node, list] of this.presence.nodesOf(users)) {
      if (node !== this.self) this.nats.publish(subjects.deliver(node), { k: 'e', users: list, json, skipUser } satisfies Envelope);
    }
  }
}
