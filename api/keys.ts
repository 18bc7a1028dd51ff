/**
 * Who may call the server API (docs/api.md, Access): `Authorization: Bearer <key>` with one of
 * IM_API_KEYS, compared in constant time. Without IM_API_KEYS, a node running with the
 * development JWT secret takes the development key, and any other node has no API at all
 * (404 under /api/v1/).
 */
import { timingSafeEqual } from 'node:crypto';
import { DEFAULT_API_KEY, DEFAULT_JWT_SECRET, type NodeConfig } from '../cluster.config.ts';

export interface ApiKeys {
  /** False: the node serves no API (404). */
  readonly enabled: boolean;
  /** Whether an `Authorization` header carries one of the keys. */
  accepts(authorization: string): boolean;
}

export function apiKeysOf(config: Pick<NodeConfig, 'apiKeys' | 'jwtSecret'>): ApiKeys {
  const keys = config.apiKeys ?? (config.jwtSecret === DEFAULT_JWT_SECRET ? [DEFAULT_API_KEY] : []);
  const wanted = keys.map((k) => Buffer.from(k));
  return {
    enabled: wanted.length > 0,
    accepts: (authorization) => {
      const given = Buffer.from(authorization.startsWith('Bearer ') ? authorization.slice(7) : '');
      // Every key is compared (no early exit), each in constant time for its length.
      let ok = false;
      for (const want of wanted) {
        const same = timingSafeEqual(given.length === want.length ? given : want, want) && given.length === want.length;
        ok = same || ok;
      }
      return ok;
    },
  };
}
