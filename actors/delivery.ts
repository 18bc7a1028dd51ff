/**
 * How a Conversation reaches member devices after a commit. The local implementation hands
 * pushes to UserSessions of this node; the cluster one also sends one NATS message per other
 * node that has devices of the members (the device list rides in that one message).
 */

/** A stored message, serialized once and shared by every recipient. */
export interface MessagePush {
  conv: string;
  seq: number;
  /** The complete `msg` frame as JSON text. */
  json: string;
}

export interface DeviceKey { user: string; device: string }

export interface Delivery {
  /** Pushes a message to every online device of `users`, except the device that sent it. */
  message(users: readonly string[], push: MessagePush, skip?: DeviceKey): void;
  /** Pushes an unstored event (receipt, recalled, typing) to every online device of `users`, except those of `skipUser`. */
  event(users: readonly string[], json: string, skipUser?: string): void;
}
