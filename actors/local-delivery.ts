/**
 * Delivery to the sessions of this node: one message to each device's UserSession actor. A push
 * to a session that closed meanwhile is dropped (the message stays in the record; the device
 * gets it on its next login).
 */
import type { Delivery, DeviceKey, MessagePush } from './delivery.ts';
import type { SessionDirectory } from './session-directory.ts';

const dropped = (): void => undefined;

export class LocalDelivery implements Delivery {
  constructor(private readonly sessions: SessionDirectory) {}

  message(users: readonly string[], push: MessagePush, skip?: DeviceKey): void {
    for (const u of users) {
      for (const e of this.sessions.devices(u)) {
        if (skip && skip.user === u && skip.device === e.device) continue;
        e.actor.send('push', push).catch(dropped);
      }
    }
  }

  event(users: readonly string[], json: string, skipUser?: string): void {
    for (const u of users) {
      if (u === skipUser) continue;
      for (const e of this.sessions.devices(u)) e.actor.send('event', json).catch(dropped);
    }
  }
}
