/**
 * Delivery to the sessions of this node. Pushes call the UserSession directly rather than
 * through its mailbox: fan-out is the hottest path, the session lives in this process, and a
 * push only appends to the socket and to the session's unacked map, synchronously.
 */
import type { Delivery, DeviceKey, MessagePush } from './delivery.ts';
import type { SessionDirectory } from './session-directory.ts';

export class LocalDelivery implements Delivery {
  constructor(private readonly sessions: SessionDirectory) {}

  message(users: readonly string[], push: MessagePush, skip?: DeviceKey): void {
    for (const u of users) {
      for (const e of this.sessions.devices(u)) {
        if (skip && skip.user === u && skip.device === e.session.device) continue;
        e.session.push(push);
      }
    }
  }

  event(users: readonly string[], json: string, skipUser?: string): void {
    for (const u of users) {
      if (u === skipUser) continue;
      for (const e of this.sessions.devices(u)) e.session.event(json);
    }
  }
}
