/** IM_API_KEYS / IM_API_PORT / IM_API_HOST (cluster.config.ts) and the key rules of api/keys.ts (docs/api.md, Access). */
import { describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_API_KEY, DEFAULT_JWT_SECRET, loadConfig } from '../../cluster.config.ts';
import { apiKeysOf } from '../../api/keys.ts';

const SECRET = 'a-real-secret-of-some-length';

describe('server API configuration', () => {
  it('parses IM_API_KEYS as a comma-separated list; port and host', () => {
    const c = loadConfig({ IM_API_KEYS: ' key-one-0123456789 ,key-two-0123456789,', IM_API_PORT: '9100', IM_API_HOST: '10.0.0.5' });
    expect(c.apiKeys).toEqual(['key-one-0123456789', 'key-two-0123456789']);
    expect(c.apiPort).toBe(9100);
    expect(c.apiHost).toBe('10.0.0.5');
    const d = loadConfig({});
    expect(d.apiKeys).toBeUndefined();
    expect(d.apiPort).toBeUndefined();
    expect(d.apiHost).toBe('127.0.0.1');
  });

  it('refuses short keys, an empty list, and the development key in production', () => {
    expect(() => loadConfig({ IM_API_KEYS: 'short' })).toThrow(/IM_API_KEYS/);
    expect(() => loadConfig({ IM_API_KEYS: ' , ' })).toThrow(/IM_API_KEYS/);
    expect(() => loadConfig({ IM_API_PORT: 'x' })).toThrow(/IM_API_PORT/);
    expect(() => loadConfig({ NODE_ENV: 'production', IM_JWT_SECRET: SECRET, IM_API_KEYS: `good-key-0123456789,${DEFAULT_API_KEY}` })).toThrow(ConfigError);
    expect(() => loadConfig({ NODE_ENV: 'production', IM_JWT_SECRET: SECRET, IM_API_KEYS: DEFAULT_API_KEY })).toThrow(/development key/);
    expect(loadConfig({ NODE_ENV: 'production', IM_JWT_SECRET: SECRET, IM_API_KEYS: 'good-key-0123456789' }).apiKeys).toEqual(['good-key-0123456789']);
    // Outside production the development key may be configured explicitly.
    expect(loadConfig({ IM_API_KEYS: DEFAULT_API_KEY }).apiKeys).toEqual([DEFAULT_API_KEY]);
  });

  it('keys: any configured key, exact bearer match only; the development key only with the development secret', () => {
    const k = apiKeysOf({ apiKeys: ['key-one-0123456789', 'key-two-0123456789'], jwtSecret: SECRET });
    expect(k.enabled).toBe(true);
    expect(k.accepts('Bearer key-one-0123456789')).toBe(true);
    expect(k.accepts('Bearer key-two-0123456789')).toBe(true);
    for (const bad of ['', 'key-one-0123456789', 'Bearer key-one-012345678', 'Bearer key-one-01234567890', 'bearer key-one-0123456789', 'Bearer  key-one-0123456789', `Bearer ${DEFAULT_API_KEY}`]) {
      expect(k.accepts(bad), bad).toBe(false);
    }
    const dev = apiKeysOf({ apiKeys: undefined, jwtSecret: DEFAULT_JWT_SECRET });
    expect(dev.enabled).toBe(true);
    expect(dev.accepts(`Bearer ${DEFAULT_API_KEY}`)).toBe(true);
    const none = apiKeysOf({ apiKeys: undefined, jwtSecret: SECRET });
    expect(none.enabled).toBe(false);
    expect(none.accepts(`Bearer ${DEFAULT_API_KEY}`)).toBe(false);
  });
});
