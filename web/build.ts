/**
 * Builds the web chat app into web/dist/ (index.html, app.css, app.js: web/src/app.ts and the SDK
 * it imports, bundled by esbuild) and loads it for the gateway to serve.
 *
 * `loadWebApp()` runs at node start: when web/dist is missing or older than any of its sources it
 * rebuilds it first (esbuild is a devDependency, present after `npm ci`; a few tens of ms). Where
 * esbuild is not installed (a production image built with `--omit=dev`) it serves the web/dist
 * that is there, built beforehand with `npm run build:web`, or a page saying how to build it.
 * Files are written to a temporary name and renamed, so nodes starting together never serve a
 * half-written bundle.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const WEB = dirname(fileURLToPath(import.meta.url));
const ROOT = join(WEB, '..');
export const WEB_DIST = join(WEB, 'dist');

export interface WebAsset { type: string; body: Buffer }

/** What `/` and `/web/<name>` serve. */
export interface WebApp {
  files: Map<string, WebAsset>;
  /** How web/dist came to be: `built` now, `prebuilt` (up to date or no esbuild), or `missing`. */
  source: 'built' | 'prebuilt' | 'missing';
  /** Why it was not built (esbuild missing or failed), for the start log. */
  note?: string;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.map': 'application/json', '.png': 'image/png', '.svg': 'image/svg+xml',
};

/** Source files whose change makes web/dist stale. */
function sources(): string[] {
  const out = [join(WEB, 'index.html'), join(WEB, 'app.css'), join(ROOT, 'protocol', 'ids.ts'), join(ROOT, 'protocol', 'wire.ts')];
  for (const dir of [join(WEB, 'src'), join(ROOT, 'client')]) {
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir)) if (f.endsWith('.ts') && !f.endsWith('.test.ts')) out.push(join(dir, f));
  }
  return out.filter((f) => existsSync(f));
}

function mtime(file: string): number {
  try { return statSync(file).mtimeMs; } catch { return 0; }
}

/** True when web/dist lacks a file or is older than a source. */
export function webAppStale(): boolean {
  const built = Math.min(...['index.html', 'app.css', 'app.js'].map((f) => mtime(join(WEB_DIST, f))));
  if (built === 0) return true;
  return sources().some((f) => mtime(f) > built);
}

function writeAtomic(file: string, data: string | Uint8Array): void {
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  writeFileSync(tmp, data);
  renameSync(tmp, file);
}

/** Bundles the app into web/dist synchronously. Throws when esbuild is missing or the build fails. */
export function buildWebApp(): void {
  const require = createRequire(import.meta.url);
  const esbuild = require('esbuild') as typeof import('esbuild');
  const result = esbuild.buildSync({
    entryPoints: [join(WEB, 'src', 'app.ts')], bundle: true, format: 'esm', platform: 'browser', target: 'es2022',
    minify: true, sourcemap: false, legalComments: 'none', write: false, outfile: join(WEB_DIST, 'app.js'), logLevel: 'silent',
  });
  mkdirSync(WEB_DIST, { recursive: true });
  writeAtomic(join(WEB_DIST, 'app.js'), result.outputFiles[0].contents);
  writeAtomic(join(WEB_DIST, 'app.css'), readFileSync(join(WEB, 'app.css')));
  writeAtomic(join(WEB_DIST, 'index.html'), readFileSync(join(WEB, 'index.html')));
}

const NOT_BUILT = `<!doctype html><meta charset="utf-8"><title>actor-im chat</title>
<p>The web app is not built: run <code>npm run build:web</code> (needs the devDependencies) and restart the node.</p>`;

/** Rebuilds web/dist when stale (if esbuild is there) and reads it. Never throws. */
export function loadWebApp(): WebApp {
  let source: WebApp['source'] = 'prebuilt';
  let note: string | undefined;
  if (webAppStale()) {
    try {
      buildWebApp();
      source = 'built';
    } catch (e) {
      note = `web app not rebuilt: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`;
    }
  }
  const files = new Map<string, WebAsset>();
  if (existsSync(WEB_DIST)) {
    for (const f of readdirSync(WEB_DIST)) {
      const ext = f.slice(f.lastIndexOf('.'));
      if (!TYPES[ext] || f.endsWith('.tmp')) continue;
      files.set(f, { type: TYPES[ext], body: readFileSync(join(WEB_DIST, f)) });
    }
  }
  if (!files.has('index.html') || !files.has('app.js')) {
    files.set('index.html', { type: TYPES['.html'], body: Buffer.from(NOT_BUILT) });
    source = 'missing';
  }
  return note === undefined ? { files, source } : { files, source, note };
}

// `npm run build:web`
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  buildWebApp();
  console.log(`web app built into ${WEB_DIST}`);
}
