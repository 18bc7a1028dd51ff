/**
 * docs/protocol.md against embedded nodes: SQLite files in per-node temp data dirs (kept across
 * restarts of the same node, removed when the test process exits).
 */
import { defineProtocolSuite } from './protocol-suite.ts';

defineProtocolSuite('embedded', async () => ({
  nodeEnv: async () => ({}),
  teardown: async () => {},
}));
