import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { configDocs } from '../../cluster.config.ts';

describe('README', () => {
  it('documents every configuration variable of cluster.config.ts', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const missing = Object.keys(configDocs).filter((k) => !readme.includes(`\`${k}\``));
    expect(missing).toEqual([]);
  });
});
