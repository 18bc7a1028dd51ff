/**
 * Events in a 2-node cluster on real MariaDB, NATS with JetStream and Redis: the owner of a
 * busy conversation is killed (kill -9) while messages flow. Every acknowledged message still
 * becomes exactly one `message.created` in the IM_EVENTS stream (redeliveries are dropped by
 * Nats-Msg-Id), in seq order, and the dead node's pending events are relayed by the survivor
 * before the dead node comes back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from 'nats';
import type { ChatNodeHandle } from '../harness/chat-node.ts';
import { startAll } from '../harness/servers.ts';
import { ownerOf } from '../../cluster/placement.ts';
import { dmConv } from '../../protocol/ids.ts';
import { Peer, sleep, startNodes, until, type SendOutcome, type Servers } from './helpers.ts';

let servers: Servers;
let nodes: ChatNodeHandle[] = [];
let nc: NatsConnection;
const peers: Peer[] = [];
const IDS = ['ja', 'jb'];
const tag = `js${process.pid}`;

beforeAll(async () => {
  servers = await startAll();
  nodes = await startNodes(servers, IDS);
  nc = await connect({ servers: servers.nats.url });
  await sleep(1_000);
});

afterAll(async () => {
  await nc?.close();
  await Promise.all(peers.map((p) => p.close()));
  await Promise.all(nodes.map((n) => n.stop().catch((e: unknown) => console.error(String(e)))));
  await servers?.stop();
});

interface Ev { id: string; type: string; conv?: string; seq?: number; mid?: string }

/** Every message of the IM_EVENTS stream, in stream order. */
async function streamEvents(): Promise<Ev[]> {
  const jsm = await nc.jetstreamManager();
  const info = await jsm.streams.info('IM_EVENTS');
  const out: Ev[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage('IM_EVENTS', { seq }).catch(() => null);
    if (m) out.push(JSON.parse(new TextDecoder().decode(m.data)) as Ev);
  }
  return out;
}

describe('JetStream events across kill -9', () => {
  it('every acknowledged message is one message.created in IM_EVENTS, in seq order; the survivor relays the dead node\'s events', async () => {
    // A 1:1 conversation owned by jb; the sender sits on ja, so it keeps sending after jb dies.
    let other = '';
    for (let i = 0; i < 1000 && !other; i++) if (ownerOf(dmConv(`sa_${tag}`, `sb${i}_${tag}`), IDS) === 'jb') other = `sb${i}_${tag}`;
    const conv = dmConv(`sa_${tag}`, other);
    const a = await Peer.connect(`sa_${tag}`, [nodes[0].wsUrl]);
    peers.push(a);

    const N = 120;
    const outcomes: SendOutcome[] = [];
    const sending = (async () => {
      for (let i = 0; i < N; i++) {
        outcomes.push(await a.sendReliable({ to: other }, { i }, { cmid: `m${i}`, retryDelayMs: 100, timeoutMs: 3_000, deadlineMs: 40_000 }));
      }
    })();
    await until(() => outcomes.length >= 40, '40 messages acknowledged before the kill', 30_000);
    await nodes[1].kill();
    await sending;
    expect(outcomes.map((o) => o.seq).sort((x, y) => x - y)).toEqual(Array.from({ length: N }, (_, i) => i + 1));

    // jb stays dead: whatever it had not relayed is relayed by ja.
    let created: Ev[] = [];
    await until(async () => {
      created = (await streamEvents()).filter((e) => e.type === 'message.created' && e.conv === conv);
      return created.length >= N;
    }, `${N} message.created events in IM_EVENTS`, 30_000, 250);
    expect(created.map((e) => e.seq)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    expect(new Set(created.map((e) => e.id)).size).toBe(N);
    const mids = new Map(outcomes.map((o) => [o.seq, o.mid]));
    for (const e of created) expect(e.mid).toBe(mids.get(e.seq!));

    // jb comes back: nothing is published twice (its rows were relayed and deleted).
    await nodes[1].restart();
    await sleep(2_000);
    const after = (await streamEvents()).filter((e) => e.type === 'message.created' && e.conv === conv);
    expect(after.length).toBe(N);
  }, 120_000);
});
