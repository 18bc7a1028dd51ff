/**
 * The NATS JetStream sink: stream IM_EVENTS (file storage, limits retention), one message per
 * event on `im.events.<type>`, with header `Nats-Msg-Id` = the event id so the stream drops a
 * redelivered event within its duplicate window. A batch is confirmed when JetStream acked every
 * message of it. The stream is created when missing, with IM_EVENTS_MAX_AGE_S,
 * IM_EVENTS_REPLICAS and IM_EVENTS_DUPLICATE_WINDOW_S.
 */
import { RetentionPolicy, StorageType, nanos, type JetStreamClient, type NatsConnection } from 'nats';
import type { EventSink, RelayedEvent } from './event-relay.ts';

export const EVENTS_STREAM = 'IM_EVENTS';
export const EVENTS_SUBJECT_PREFIX = 'im.events.';

export interface JetStreamSinkOptions { maxAgeS: number; replicas: number; duplicateWindowS: number; timeoutMs?: number }

const enc = new TextEncoder();

export class JetStreamSink implements EventSink {
  readonly name = 'jetstream';
  private js: JetStreamClient | null = null;

  constructor(private readonly nc: NatsConnection, private readonly opts: JetStreamSinkOptions) {}

  /** Creates the stream if it is missing (several nodes may race: an existing stream is fine). */
  private async ready(): Promise<JetStreamClient> {
    if (this.js) return this.js;
    const jsm = await this.nc.jetstreamManager({ timeout: this.opts.timeoutMs ?? 5000 });
    try {
      await jsm.streams.info(EVENTS_STREAM);
    } catch {
      try {
        await jsm.streams.add({
          name: EVENTS_STREAM,
          subjects: [`${EVENTS_SUBJECT_PREFIX}>`],
          storage: StorageType.File,
          retention: RetentionPolicy.Limits,
          max_age: nanos(this.opts.maxAgeS * 1000),
          num_replicas: this.opts.replicas,
          duplicate_window: nanos(this.opts.duplicateWindowS * 1000),
        });
      } catch (e) {
        // Another node created it meanwhile.
        await jsm.streams.info(EVENTS_STREAM).catch(() => { throw e; });
      }
    }
    this.js = this.nc.jetstream({ timeout: this.opts.timeoutMs ?? 5000 });
    return this.js;
  }

  async deliver(events: readonly RelayedEvent[]): Promise<void> {
    const js = await this.ready();
    // Published in order on one connection; acked together.
    await Promise.all(events.map((e) => js.publish(`${EVENTS_SUBJECT_PREFIX}${e.type}`, enc.encode(e.json), { msgID: e.id })));
  }

  async close(): Promise<void> {
    this.js = null;
  }
}
