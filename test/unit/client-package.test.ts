/**
 * The client SDK as a package: `npm run build:client`, `npm pack` in client/, install the tarball
 * into a fresh project that has no TypeScript tooling, and use it there from plain `node` (import,
 * construct, connect() to a dead port) and from `tsc` (the published .d.ts, strict, no skipLibCheck).
 * Also: the bundle is browser-safe (no imports at all, so no `node:` builtins and no zod).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));
const clientDir = join(root, 'client');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
/** Child processes get a plain environment: no loaders or flags from the test runner. */
const env = { ...process.env, NODE_OPTIONS: '' };

let work: string;
let project: string;
let tarball: string;

beforeAll(async () => {
  await run(npm, ['run', 'build:client'], { cwd: root, env });
  work = mkdtempSync(join(tmpdir(), 'im-client-pkg-'));
  // --ignore-scripts: the build just ran (prepack would run it again).
  const { stdout } = await run(npm, ['pack', '--json', '--ignore-scripts', '--pack-destination', work], { cwd: clientDir, env });
  const [info] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  tarball = join(work, info.filename);
  expect(info.files.map((f) => f.path).sort()).toEqual(expect.arrayContaining([
    'README.md', 'dist/index.js', 'dist/types/client/index.d.ts', 'dist/types/protocol/wire.d.ts', 'package.json',
  ]));
  // Nothing but the bundle, its declarations, the README and package.json.
  for (const f of info.files) expect(f.path).toMatch(/^(README\.md|package\.json|dist\/index\.js|dist\/types\/.*\.d\.ts)$/);
  project = join(work, 'app');
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  // Zero dependencies: installs without a registry.
  await run(npm, ['install', '--offline', '--no-audit', '--no-fund', tarball], { cwd: project, env });
}, 180_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A ws:// URL on a loopback port that was free a moment ago and has nothing listening now. */
async function deadUrl(): Promise<string> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return `ws://127.0.0.1:${port}/ws`;
}

describe('@actor-im/client package', () => {
  it('the bundle is browser-safe: imports nothing (no node: builtins, no zod, no server code), no Node globals', () => {
    const js = readFileSync(join(clientDir, 'dist/index.js'), 'utf8');
    expect(js).not.toMatch(/\bnode:/);
    expect(js).not.toMatch(/^\s*import\s/m);
    expect(js).not.toMatch(/\bimport\s*\(/);
    expect(js).not.toMatch(/\brequire\s*\(/);
    expect(js).not.toMatch(/\bzod\b/);
    expect(js).not.toMatch(/\bprocess\.|\bBuffer\b|__dirname|import\.meta/); // Node globals / module-relative paths
    expect(js).toMatch(/export\s*\{[^}]*\bChatClient\b/);
  });

  it('package.json: ESM, exports with types and import, no dependencies, side-effect free', () => {
    const pkg = JSON.parse(readFileSync(join(project, 'node_modules/@actor-im/client/package.json'), 'utf8')) as Record<string, unknown>;
    expect(pkg).toMatchObject({
      name: '@actor-im/client', version: '0.1.0', type: 'module', sideEffects: false,
      exports: { '.': { types: './dist/types/client/index.d.ts', import: './dist/index.js' } },
    });
    expect(pkg.dependencies ?? {}).toEqual({});
  });

  it('plain node imports it, constructs a ChatClient, and connect() to a dead port rejects in time with a clear error', async () => {
    const url = await deadUrl();
    // The app has no `ws`; hand it the repository's (Node 20 has no global WebSocket).
    const wsUrl = pathToFileURL(createRequire(import.meta.url).resolve('ws')).href;
    writeFileSync(join(project, 'main.js'), `
import { ChatClient, ChatError, dmConv, groupConv } from '@actor-im/client';
const { default: WebSocket } = await import(process.argv[2]);
const out = { dm: dmConv('bob', 'alice'), group: groupConv('team') };
const idle = new ChatClient({ urls: 'ws://127.0.0.1:1/ws', token: 't', WebSocket });
out.state = idle.state;
const c = new ChatClient({ urls: [process.argv[3]], token: 't', WebSocket, connectWaitMs: 800 });
const t0 = Date.now();
try {
  await c.connect();
  out.connected = true;
} catch (e) {
  out.error = { isChatError: e instanceof ChatError, code: e.code, message: e.message };
}
out.ms = Date.now() - t0;
out.after = c.state;
console.log(JSON.stringify(out));
`);
    const { stdout } = await run(process.execPath, ['main.js', wsUrl, url], { cwd: project, env, timeout: 20_000 });
    const out = JSON.parse(stdout) as Record<string, unknown> & { ms: number; error?: { message: string } };
    expect(out).toMatchObject({ dm: 'dm:alice:bob', group: 'g:team', state: 'idle', after: 'idle' });
    expect(out.connected).toBeUndefined();
    expect(out.error).toMatchObject({ isChatError: true, code: 'unreachable' });
    expect(out.error?.message).toContain(url);
    expect(out.error?.message).toMatch(/within 800 ms/);
    expect(out.error?.message).toMatch(/ECONNREFUSED/);
    expect(out.ms).toBeGreaterThanOrEqual(750);
    expect(out.ms).toBeLessThan(3000);
  });

  it('the published .d.ts type-check a strict consumer (no skipLibCheck) and catch misuse', () => {
    const good = join(project, 'good.ts');
    const bad = join(project, 'bad.ts');
    writeFileSync(good, `
import { ChatClient, ChatError, dmConv, type MsgFrame, type SentFrame, type WebSocketConstructor } from '@actor-im/client';
declare const WebSocket: WebSocketConstructor;
const chat = new ChatClient({ urls: ['ws://localhost:9001/ws'], token: async () => 't', WebSocket, retryForever: true });
chat.on('message', (m: MsgFrame) => { const b: unknown = m.body; void b; });
chat.on('error', (e: ChatError) => { const c: string = e.code; void c; });
const s: Promise<SentFrame> = chat.send({ to: 'bob' }, { text: 'hi' });
const conv: string = dmConv('a', 'b');
export { s, conv };
`);
    writeFileSync(bad, `
import { ChatClient } from '@actor-im/client';
declare const c: ChatClient;
c.fetchEverything('dm:a:b');
const n: number = c.device;
export { n };
`);
    const options: ts.CompilerOptions = {
      strict: true, noEmit: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext, types: [], skipLibCheck: false,
    };
    const program = ts.createProgram([good, bad], options);
    const diagnostics = ts.getPreEmitDiagnostics(program);
    const text = (d: ts.Diagnostic) => `${d.file ? `${d.file.fileName}: ` : ''}${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    // Everything else (the package's own .d.ts included) must be clean.
    expect(diagnostics.filter((d) => d.file?.fileName !== bad).map(text)).toEqual([]);
    const errors = diagnostics.filter((d) => d.file?.fileName === bad).map(text);
    expect(errors.join('\n')).toMatch(/Property 'fetchEverything' does not exist/);
    expect(errors.join('\n')).toMatch(/Type 'string' is not assignable to type 'number'/);
    expect(errors).toHaveLength(2);
  });
});
