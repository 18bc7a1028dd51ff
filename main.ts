/**
 * Entry point: `npm start` (or `node --max-semi-space-size=8 --import tsx main.ts`: the flags are
 * cluster.config.ts NODE_FLAGS). Reads cluster.config.ts from the
 * environment, starts one node, and shuts it down gracefully on SIGTERM/SIGINT (exit 0).
 */
import { ConfigError, loadConfig } from './cluster.config.ts';
import { createLogger } from './core/logger.ts';
import { startNode } from './node.ts';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`actor-im: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  const log = createLogger(config.logLevel, config.nodeId);
  const node = await startNode(config, log).catch((e: unknown) => {
    log.fatal({ err: e instanceof Error ? e.message : String(e) }, 'node failed to start');
    process.exit(1);
  });
  const stop = (signal: string) => {
    log.info({ signal }, 'signal received');
    node.shutdown().then(() => process.exit(0), (e: unknown) => {
      log.error({ err: String(e) }, 'shutdown failed');
      process.exit(1);
    });
  };
  // Handlers catch their own errors at the edge (gateway/server.ts); this is the last net for a
  // promise chain that slipped through: logged loudly, never a reason to drop every socket.
  process.on('unhandledRejection', (e: unknown) => {
    log.error({ err: e instanceof Error ? e.stack : String(e) }, 'unhandled promise rejection');
  });
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

void main();
