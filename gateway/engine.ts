/**
 * Loads uWebSockets.js. The package we use (an npm build of uWS.js v20.30) silently falls back
 * to a `ws`-based implementation on Node versions it ships no binary for, so we say which
 * engine runs: the fallback works but is several times slower.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type * as UWS from 'uWebSockets.js';

const require = createRequire(import.meta.url);

export type Uws = typeof UWS;
export type Engine = 'uWebSockets.js native' | 'uWebSockets.js ws-fallback';

export function loadUws(): { uws: Uws; engine: Engine } {
  const dir = dirname(require.resolve('uWebSockets.js/package.json'));
  const binary = join(dir, 'binaries', `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`);
  const native = existsSync(binary) && process.env.UWS_USE_FALLBACK === undefined;
  const uws = require('uWebSockets.js') as Uws;
  return { uws, engine: native ? 'uWebSockets.js native' : 'uWebSockets.js ws-fallback' };
}
