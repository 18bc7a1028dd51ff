/**
 * `npm run chaos -- --nodes 3 --clients 50 --duration 60`: a chaos run against a real local
 * cluster (see test/chaos/chaos-runner.ts). Prints the report; exits 1 on any anomaly.
 * Options: --nodes N --clients N --duration S --rate SENDS_PER_CLIENT_PER_S --kill-every S
 *          --down S --settle S --seed N --no-infra --node-env IM_NAME=value (repeatable)
 */
import { anomalyCount, defaultChaosOptions, formatReport, runChaos, type ChaosOptions } from '../test/chaos/chaos-runner.ts';

function parseArgs(argv: string[]): Partial<ChaosOptions> {
  const o: Partial<ChaosOptions> = {};
  const num = (flag: string, v: string | undefined): number => {
    const n = Number(v);
    if (v === undefined || !Number.isFinite(n) || n < 0) throw new Error(`${flag} needs a non-negative number, got ${v ?? 'nothing'}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const next = (): number => num(flag, argv[++i]);
    switch (flag) {
      case '--nodes': o.nodes = Math.max(1, Math.floor(next())); break;
      case '--clients': o.clients = Math.max(2, Math.floor(next())); break;
      case '--duration': o.durationMs = next() * 1000; break;
      case '--rate': o.ratePerClient = next(); break;
      case '--kill-every': o.killEveryMs = next() * 1000; break;
      case '--down': o.nodeDownMs = next() * 1000; break;
      case '--settle': o.settleMs = next() * 1000; break;
      case '--seed': o.seed = Math.floor(next()); break;
      case '--no-infra': o.infraFaults = false; break;
      case '--node-env': {
        const kv = argv[++i] ?? '';
        const eq = kv.indexOf('=');
        if (!kv.startsWith('IM_') || eq < 0) throw new Error(`--node-env needs IM_NAME=value, got ${kv || 'nothing'}`);
        o.nodeEnv = { ...o.nodeEnv, [kv.slice(0, eq)]: kv.slice(eq + 1) };
        break;
      }
      case '--help':
        process.stdout.write('usage: npm run chaos -- [--nodes 3] [--clients 50] [--duration 60] [--rate 2] [--kill-every 8] [--down 1.5] [--settle 60] [--seed N] [--no-infra] [--node-env IM_X=v ...]\n');
        process.exit(0);
        break;
      default:
        throw new Error(`unknown option ${flag} (try --help)`);
    }
  }
  return o;
}

async function main(): Promise<void> {
  let opts: Partial<ChaosOptions>;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`chaos: ${(e as Error).message}\n`);
    process.exit(2);
  }
  const seed = opts.seed ?? (Date.now() % 1_000_000);
  const report = await runChaos({ ...defaultChaosOptions, ...opts, seed, log: (l) => process.stderr.write(`${l}\n`) });
  process.stdout.write(`${formatReport(report)}\n`);
  process.exit(anomalyCount(report) === 0 ? 0 : 1);
}

main().catch((e: unknown) => {
  process.stderr.write(`chaos: run failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
