/**
 * The NATS connection of a node: connects (retrying forever, also on first connect), tracks
 * whether it is up, and offers JSON publish / request / subscribe. No node calls another
 * directly; every actor message between nodes goes through here.
 */
import { connect, type NatsConnection, type Msg, type Subscription } from 'nats';
import type { Logger } from '../core/logger.ts';
import { unavailable } from '../protocol/errors.ts';

const enc = new TextEncoder();
const dec = new TextDecoder();

export class NatsTransport {
  private up = false;
  private subs: Subscription[] = [];
  private readonly reconnectListeners: Array<() => void> = [];

  private constructor(private readonly nc: NatsConnection, private readonly log: Logger) {
    this.up = true;
    void this.watch();
  }

  static async connect(url: string, name: string, log: Logger): Promise<NatsTransport> {
    const nc = await connect({
      servers: url.split(','),
      name,
      reconnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      reconnectJitter: 100,
      waitOnFirstConnect: true,
      pingInterval: 2000,
      maxPingOut: 2,
    });
    return new NatsTransport(nc, log);
  }

  /** The raw connection, for JetStream clients (events/jetstream-sink.ts); messaging between nodes stays here. */
  get connection(): NatsConnection {
    return this.nc;
  }

  get connected(): boolean {
    return this.up && !this.nc.isClosed();
  }

  private async watch(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === 'disconnect') { this.up = false; this.log.warn({ data: String(s.data) }, 'NATS disconnected'); }
      if (s.type === 'reconnect') {
        this.up = true;
        this.log.info({ data: String(s.data) }, 'NATS reconnected');
        for (const l of this.reconnectListeners) l();
      }
    }
  }

  /** Called after every reconnect (subscriptions are back by then); messages sent while down were lost. */
  onReconnect(l: () => void): void {
    this.reconnectListeners.push(l);
  }

  /**
   * Fire-and-forget. While reconnecting, nats.js buffers what is published and sends it once
   * back, so pushes of commits that were in flight when NATS went away still arrive (sends are
   * refused while NATS is down, so that buffer stays small).
   */
  publish(subject: string, value: unknown): void {
    if (this.nc.isClosed()) return;
    try {
      this.nc.publish(subject, enc.encode(JSON.stringify(value)));
    } catch (e) {
      this.log.warn({ subject, err: String(e) }, 'NATS publish failed');
    }
  }

  /** Request/reply with a JSON body; `unavailable` when NATS is down, the peer is gone or it timed out. */
  async request<T>(subject: string, value: unknown, timeoutMs: number): Promise<T> {
    if (!this.connected) throw unavailable('the cluster bus (NATS)');
    try {
      const m = await this.nc.request(subject, enc.encode(JSON.stringify(value)), { timeout: timeoutMs, noMux: false });
      return JSON.parse(dec.decode(m.data)) as T;
    } catch (e) {
      throw unavailable(`the peer on ${subject} (${e instanceof Error ? e.message : String(e)})`);
    }
  }

  /** Subscribes with a JSON handler; a returned value (or promise) is sent as the reply if the message asks for one. */
  subscribe<T>(subject: string, handler: (value: T, msg: Msg) => unknown): void {
    const sub = this.nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err) { this.log.warn({ subject, err: String(err) }, 'NATS subscription error'); return; }
        let value: T;
        try {
          value = JSON.parse(dec.decode(msg.data)) as T;
        } catch {
          this.log.warn({ subject }, 'dropping malformed NATS message');
          return;
        }
        const out = handler(value, msg);
        if (!msg.reply) return;
        void Promise.resolve(out).then(
          (r) => msg.respond(enc.encode(JSON.stringify(r ?? null))),
          (e: unknown) => msg.respond(enc.encode(JSON.stringify({ error: { code: 'internal', message: String(e) } }))),
        );
      },
    });
    this.subs.push(sub);
  }

  async close(): Promise<void> {
    for (const s of this.subs) s.unsubscribe();
    await this.nc.drain().catch(() => undefined);
  }
}
