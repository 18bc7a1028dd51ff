/**
 * What the platform charges for the parts of a send the node cannot skip, measured on this machine
 * so the node's CPU per message can be read against them (bench/results/message-path-*.md):
 *
 *  1. Waking another thread: a `postMessage` to a worker that is asleep, as the node does once per
 *     group commit to hand the batch to the SQLite worker (and the worker once to answer). Timed
 *     against the same post to a worker that is already awake.
 *     The same round trip through a comedy actor in comedy's `threaded` mode (its own worker,
 *     marshalling and bookkeeping, bench/threaded-echo.cjs), the alternative to the hand-written
 *     worker of persistence/worker-store.ts that docs/design.md weighs.
 *  2. A durable SQLite commit of the real schema (the migrations, WAL, synchronous=FULL): the
 *     node's group commit of B rows in B different conversations, run here in this thread on the
 *     production MessageStore. Prints CPU and write syscalls per commit and bytes written per row,
 *     from /proc/self/io (the WAL writes whole pages: each row dirties a leaf of the primary key
 *     and one of the (conversation, sender, cmid) index, in different conversations).
 *
 * The third floor, the frames themselves on loopback sockets, is the `uws` target of bench/run.ts
 * (bare uWebSockets.js, the same frames, no logic).
 *
 *   node --import tsx bench/floors.ts [--commits 2000] [--rows 4] [--convs 100] [--repeat 3]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { createActorSystem } from '../actors/system.ts';
import { openDatabase } from '../persistence/database.ts';
import { MessageStore, type NewMessage } from '../persistence/message-store.ts';
import { dmConvId } from '../protocol/ids.ts';

const { values: args } = parseArgs({
  options: {
    commits: { type: 'string', default: '2000' },
    rows: { type: 'string', default: '4' },
    convs: { type: 'string', default: '100' },
    repeat: { type: 'string', default: '3' },
  },
});
const COMMITS = Number(args.commits);
const ROWS = Number(args.rows);
const CONVS = Number(args.convs);
const REPEAT = Number(args.repeat);
for (const [k, v] of Object.entries({ COMMITS, ROWS, CONVS, REPEAT })) {
  if (!Number.isInteger(v) || v < 1 || v > 1_000_000) throw new Error(`${k.toLowerCase()} must be a positive integer`);
}

const cpuUs = () => { const c = process.cpuUsage(); return c.user + c.system; };
const fmt = (n: number) => n.toFixed(1);

/** A group commit's batch: ROWS rows of 100-byte bodies. */
function commitBatch(): object[] {
  const row = { conv: 'dm:u0001:u0002', seq: 1, mid: '1234567890123456789', from: 'u0001', cmid: 'c-0001', kind: 'text', bodyJson: '{"text":"' + 'x'.repeat(100) + '"}', ts: Date.now() };
  return Array.from({ length: ROWS }, (_, i) => ({ ...row, seq: i + 1 }));
}

/** Process CPU µs that a 2 ms timer gap costs by itself (subtracted from the asleep figures). */
async function gapCpuUs(): Promise<number> {
  const gaps = 1000;
  const g0 = cpuUs();
  for (let i = 0; i < gaps; i++) await sleep(2);
  return (cpuUs() - g0) / gaps;
}

/** µs per postMessage (wall, in the caller) and process CPU µs per round trip, with the worker asleep or awake between posts. */
async function threadWake(): Promise<void> {
  const worker = new Worker(
    "const { parentPort } = require('node:worker_threads'); parentPort.on('message', (m) => parentPort.postMessage(m.id));",
    { eval: true },
  );
  let answered = 0;
  worker.on('message', () => { answered++; });
  await sleep(100);
  const batch = commitBatch();
  // The 2 ms gaps cost timer wake-ups of their own: measured alone first, and subtracted.
  const gapCpu = await gapCpuUs();
  for (const [label, gapMs] of [['asleep (2 ms between posts)', 2], ['awake (back to back)', 0]] as const) {
    const n = gapMs ? 1000 : 20_000;
    answered = 0;
    let inPost = 0n;
    const c0 = cpuUs();
    for (let i = 0; i < n; i++) {
      const t0 = process.hrtime.bigint();
      worker.postMessage({ id: i, method: 'insertMessages', args: [batch] });
      inPost += process.hrtime.bigint() - t0;
      if (gapMs) await sleep(gapMs);
      else if (i % 200 === 199) await new Promise((r) => setImmediate(r));
    }
    while (answered < n) await sleep(1);
    const cpu = (cpuUs() - c0) / n - (gapMs ? gapCpu : 0);
    console.log(`thread wake, worker ${label}: ${fmt(Number(inPost / BigInt(n)) / 1000)} µs in postMessage, ${fmt(cpu)} µs of process CPU per round trip (${n} posts${gapMs ? `; the gap's own ${fmt(gapCpu)} µs taken out` : ''})`);
  }
  await worker.terminate();
}

/**
 * The same round trip as a comedy `sendAndReceive` to a `threaded` actor. The batch goes wrapped
 * in an object: comedy 2.1.7 cannot pass a single array argument to a threaded or forked actor
 * (its marshalling takes the array for the argument list and fails on the other side).
 */
async function comedyThreaded(): Promise<void> {
  const system = await createActorSystem();
  const ref = await system.root.createChild('/bench/threaded-echo.cjs', { mode: 'threaded' });
  const message = { rows: commitBatch() };
  if ((await ref.sendAndReceive('insertMessages', message)) !== ROWS) throw new Error('the threaded actor answered wrong');
  const gapCpu = await gapCpuUs();
  for (const [label, gapMs] of [['asleep (2 ms between calls)', 2], ['awake (200 calls at a time)', 0]] as const) {
    const n = gapMs ? 1000 : 20_000;
    const c0 = cpuUs();
    const w0 = performance.now();
    if (gapMs) {
      const answers: Promise<unknown>[] = [];
      for (let i = 0; i < n; i++) {
        answers.push(ref.sendAndReceive('insertMessages', message));
        await sleep(gapMs);
      }
      await Promise.all(answers);
    } else {
      for (let i = 0; i < n; i += 200) await Promise.all(Array.from({ length: 200 }, () => ref.sendAndReceive('insertMessages', message)));
    }
    const cpu = (cpuUs() - c0) / n - (gapMs ? gapCpu : 0);
    const wall = gapMs ? '' : `, ${fmt(((performance.now() - w0) * 1000) / n)} µs wall`;
    console.log(`thread wake, comedy threaded actor ${label}: ${fmt(cpu)} µs of process CPU per round trip${wall} (${n} calls${gapMs ? `; the gap's own ${fmt(gapCpu)} µs taken out` : ''})`);
  }
  await ref.destroy();
  await system.destroy();
}

function procIo(): { syscw: number; writeBytes: number } {
  const text = readFileSync('/proc/self/io', 'utf8');
  const get = (k: string) => Number(new RegExp(`^${k}: (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
  return { syscw: get('syscw'), writeBytes: get('write_bytes') };
}

/** The node's group commit, in this thread: CPU, write syscalls and bytes per commit of ROWS rows. */
async function durableCommit(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'im-floors-'));
  const db = await openDatabase({ dataDir: dir });
  const store = new MessageStore(db);
  const pairs = Array.from({ length: CONVS }, (_, i) => [`f${i}a`, `f${i}b`] as const);
  const convs = pairs.map(([a, b]) => dmConvId(a, b));
  for (let i = 0; i < CONVS; i++) await store.ensureDm(convs[i]!, pairs[i]![0], pairs[i]![1]);
  const sender = new Map(convs.map((c, i) => [c, pairs[i]![0]]));
  const seq = new Map<string, number>();
  let mid = 10n ** 17n;
  let next = 0;
  const batch = (): NewMessage[] => Array.from({ length: ROWS }, () => {
    const conv = convs[next++ % convs.length]!;
    const s = (seq.get(conv) ?? 0) + 1;
    seq.set(conv, s);
    return { conv, seq: s, mid: String(mid++), from: sender.get(conv)!, cmid: `c${mid}`, kind: 'text', bodyJson: '{"text":"' + 'x'.repeat(100) + '"}', ts: Date.now() };
  });
  for (let i = 0; i < 200; i++) await store.insertMessages(batch()); // warm: statements prepared, pages cached
  const io0 = procIo();
  const c0 = cpuUs();
  const t0 = performance.now();
  for (let i = 0; i < COMMITS; i++) await store.insertMessages(batch());
  const wallMs = performance.now() - t0;
  const cpu = cpuUs() - c0;
  const io1 = procIo();
  const rows = COMMITS * ROWS;
  console.log(
    `durable SQLite commit, ${ROWS} rows in ${ROWS} conversations (of ${CONVS}): ${fmt(cpu / COMMITS)} µs CPU and ${fmt((wallMs * 1000) / COMMITS)} µs wall per commit, ` +
    `${fmt((io1.syscw - io0.syscw) / COMMITS)} write syscalls per commit, ${fmt((io1.writeBytes - io0.writeBytes) / rows / 1024)} KiB written to disk per row ` +
    `(${COMMITS} commits; checkpoints included)`,
  );
  await db.close();
  rmSync(dir, { recursive: true, force: true });
}

for (let r = 1; r <= REPEAT; r++) {
  console.log(`-- run ${r} of ${REPEAT}`);
  await threadWake();
  await comedyThreaded();
  await durableCommit();
}
