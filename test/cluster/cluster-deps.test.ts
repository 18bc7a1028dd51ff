/**
 * Dependencies going away under light traffic: NATS, then Redis, then MariaDB are killed and
 * started again while two members on different nodes keep sending. Each node stays up, answers
 * `unavailable` (and /healthz 503 for NATS and MariaDB) while a dependency is down, recovers
 * by itself, and nothing acknowledged is lost.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatNodeHandle } from '../harness/chat-node.ts';
import { startAll, type ServerHandle } from '../harness/servers.ts';
import { ownerOf } from '../../cluster/placement.ts';
import { Peer, checkStored, dbMessages, gapless, healthz, sleep, startNodes, until, waitHealth, type SendOutcome, type Servers } from './helpers.ts';

let servers: Servers;
let nodes: ChatNodeHandle[] = [];
const peers: Peer[] = [];
const tag = `d${process.pid}`;

beforeAll(async () => {
  servers = await startAll();
  nodes = await startNodes(servers, ['na', 'nb']);
  await sleep(1_000);
});

afterAll(async () => {
  await Promise.all(peers.map((p) => p.close()));
  await Promise.all(nodes.map((n) => n.stop().catch((e: unknown) => console.error(String(e)))));
  await servers?.stop();
});

/** Sends in a loop (one at a time, resending with the same cmid) until stopped. */
function traffic(p: Peer, to: string) {
  let stop = false;
  const out: SendOutcome[] = [];
  const done = (async () => {
    for (let i = 0; !stop; i++) {
      out.push(await p.sendReliable({ to }, { i }, { cmid: `${p.user}-${i}`, retryDelayMs: 200, timeoutMs: 3_000, deadlineMs: 60_000 }));
      await sleep(80);
    }
  })();
  return { out, stop: () => { stop = true; return done; } };
}

describe('dependency restarts under light traffic', () => {
  it('NATS, Redis and MariaDB restart: nodes stay up, refuse while down, resume, lose nothing', async () => {
    const alice = await Peer.connect(`da_${tag}`, [nodes[0].wsUrl]);
    const bob = await Peer.connect(`db_${tag}`, [nodes[1].wsUrl]);
    peers.push(alice, bob);
    const ta = traffic(alice, bob.user);
    const tb = traffic(bob, alice.user);
    const flowing = async (what: string) => {
      const [na, nb] = [ta.out.length, tb.out.length];
      await until(() => ta.out.length >= na + 3 && tb.out.length >= nb + 3, `messages flowing again ${what}`, 30_000);
      // ...and pushed live to the other side (no sync), whichever node owns the conversation.
      const [la, lb] = [ta.out[ta.out.length - 1], tb.out[tb.out.length - 1]];
      await until(() => bob.list(la.conv).some((m) => m.seq === la.seq) && alice.list(lb.conv).some((m) => m.seq === lb.seq), `live pushes ${what}`, 5_000);
    };
    const up = async () => {
      for (const n of nodes) expect(await healthz(n), `${n.nodeId} answers HTTP`).not.toBe(0);
    };
    await flowing('at start');

    const outage = async (server: ServerHandle, name: string, expect503: boolean) => {
      const t0 = Date.now();
      const unavailableBefore = alice.unavailableCount + bob.unavailableCount;
      await server.kill();
      if (expect503) await waitHealth(nodes, 503, 10_000);
      // A fresh request while it is down: `unavailable`, not a hang or a crash.
      if (name !== 'redis') {
        await until(() => alice.unavailableCount + bob.unavailableCount > unavailableBefore, `an unavailable answer while ${name} is down`, 10_000);
        const probe = await alice.client.request({ t: 'send', to: bob.user, cmid: `probe-${name}`, body: 'probe' }, 8_000);
        expect(probe, `send while ${name} is down`).toMatchObject({ t: 'error', code: 'unavailable' });
      }
      // Stay down past the node TTL, so membership, pools and clients all see a real outage.
      await sleep(Math.max(0, t0 + 2_500 - Date.now()));
      await up();
      await server.restart();
      const restarted = Date.now();
      await waitHealth(nodes, 200, 30_000);
      await flowing(`after ${name} restart`);
      console.log(`[deps] ${name}: down ${restarted - t0} ms, traffic flowing again ${Date.now() - restarted} ms after restart; unavailable answers so far ${alice.unavailableCount + bob.unavailableCount}`);
    };

    await outage(servers.nats, 'nats', true);
    await outage(servers.redis, 'redis', false);
    // A login after Redis lost its data (no persistence) still works, on either node.
    const late = await Peer.connect(`dc_${tag}`, [nodes[1].wsUrl]);
    peers.push(late);
    const hello = await late.sendReliable({ to: alice.user }, { text: 'after redis' });
    await until(() => alice.list(hello.conv).some((m) => m.seq === hello.seq), 'alice got a message from a login after the Redis restart');
    // A node that joins after Redis lost its data still learns who is online where: its pushes
    // reach alice, who logged in before the restart. The conversation is placed on the new node.
    nodes.push(...(await startNodes(servers, ['nd'])));
    await sleep(1_000);
    let newcomer = '';
    for (let i = 0; i < 1000 && !newcomer; i++) {
      const name = `dn${i}_${tag}`;
      const conv = name < alice.user ? `dm:${name}:${alice.user}` : `dm:${alice.user}:${name}`;
      if (ownerOf(conv, ['na', 'nb', 'nd']) === 'nd') newcomer = name;
    }
    const fresh = await Peer.connect(newcomer, [nodes[2].wsUrl]);
    peers.push(fresh);
    const viaNew = await fresh.sendReliable({ to: alice.user }, { text: 'from the new node' });
    await until(() => alice.list(viaNew.conv).some((m) => m.seq === viaNew.seq), 'alice got a live push from a conversation owned by the node started after the Redis restart', 5_000);

    await outage(servers.mariadb, 'mariadb', true);

    await Promise.all([ta.stop(), tb.stop()]);
    await up();
    const conv = ta.out[0].conv;
    for (const p of [alice, bob]) await p.syncAll(conv);
    const [va, vb] = [alice.list(conv), bob.list(conv)];
    const acked = [...ta.out.map((o) => ({ user: alice.user, ...o })), ...tb.out.map((o) => ({ user: bob.user, ...o }))];
    for (const v of [va, vb]) {
      const g = gapless(v);
      expect(g.ok, g.detail).toBe(true);
    }
    expect(vb.map((m) => `${String(m.seq)}:${String(m.mid)}`)).toEqual(va.map((m) => `${String(m.seq)}:${String(m.mid)}`));
    const rows = await dbMessages(servers.mariadb.url, conv);
    expect(checkStored(rows, acked)).toEqual([]);
    // Only probes that were refused may be missing from the acknowledged list; nothing else is stored.
    const ackedKeys = new Set(acked.map((a) => `${a.user}/${a.cmid}`));
    expect(rows.filter((r) => !ackedKeys.has(`${r.sender_id}/${r.cmid}`)).map((r) => r.cmid)).toEqual([]);
    console.log(`[deps] ${acked.length} acknowledged messages, all stored once, gapless on both clients`);
  });
});
