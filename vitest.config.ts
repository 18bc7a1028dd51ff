import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'client/**/*.test.ts'],
    // Real servers and multi-process clusters: generous but bounded.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
    // Child processes and signals behave more predictably in forks than in worker threads.
    pool: 'forks',
    // 2-core machines; cluster/chaos files each spawn several servers and nodes.
    fileParallelism: false,
  },
});
