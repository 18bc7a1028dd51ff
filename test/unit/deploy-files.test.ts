/**
 * compose.yaml and the Dockerfile cannot be run here (no container engine), so their promises are
 * checked statically: nodes refuse to start without a real secret, run in production mode, have
 * health checks on /healthz; the image is multi-stage, runs as a non-root user with node itself as
 * the entrypoint, and carries no compiler in its final stage.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { NODE_FLAGS } from '../../cluster.config.ts';

const root = new URL('../../', import.meta.url);
const read = (name: string): string => readFileSync(new URL(name, root), 'utf8');

type Rec = Record<string, unknown>;
const isRecord = (v: unknown): v is Rec => typeof v === 'object' && v !== null && !Array.isArray(v);

// ------------------------------------------------------------------ compose.yaml

/** `environment:` as a map, whichever of the two compose spellings (map or KEY=VALUE list) is used. */
function envOf(service: Rec): Record<string, string> {
  const env = service.environment;
  const out: Record<string, string> = {};
  if (Array.isArray(env)) {
    for (const item of env) {
      const s = String(item);
      const i = s.indexOf('=');
      if (i > 0) out[s.slice(0, i)] = s.slice(i + 1);
    }
  } else if (isRecord(env)) {
    for (const [k, v] of Object.entries(env)) out[k] = v === null ? '' : String(v);
  }
  return out;
}

function composeServices(): Record<string, Rec> {
  // merge: compose resolves `<<: *anchor` merge keys, so the test must too.
  const doc: unknown = parse(read('compose.yaml'), { merge: true });
  if (!isRecord(doc) || !isRecord(doc.services)) throw new Error('compose.yaml has no services');
  const out: Record<string, Rec> = {};
  for (const [name, s] of Object.entries(doc.services)) if (isRecord(s)) out[name] = s;
  return out;
}

/** Chat nodes are the services built from this repository's Dockerfile. */
function nodeServices(): Array<[string, Rec]> {
  return Object.entries(composeServices()).filter(([, s]) => s.build !== undefined);
}

describe('compose.yaml', () => {
  it('has chat node services', () => {
    expect(nodeServices().length).toBeGreaterThanOrEqual(1);
  });

  it('every node requires IM_JWT_SECRET (no default) and runs with NODE_ENV=production', () => {
    for (const [name, s] of nodeServices()) {
      const env = envOf(s);
      expect(env.IM_JWT_SECRET, `${name}: IM_JWT_SECRET`).toMatch(/^\$\{IM_JWT_SECRET:\?[^}]+\}$/);
      expect(env.NODE_ENV, `${name}: NODE_ENV`).toBe('production');
    }
    // No fallback to a default secret anywhere in the file.
    expect(read('compose.yaml')).not.toMatch(/IM_JWT_SECRET:?-/);
  });

  it('every node has a health check on /healthz', () => {
    for (const [name, s] of nodeServices()) {
      const hc = s.healthcheck;
      expect(isRecord(hc), `${name}: healthcheck`).toBe(true);
      if (!isRecord(hc)) continue;
      expect(hc.disable, `${name}: healthcheck disabled`).not.toBe(true);
      const test = Array.isArray(hc.test) ? hc.test.map(String) : [String(hc.test)];
      expect(test[0], `${name}: healthcheck test`).not.toBe('NONE');
      expect(test.join(' '), `${name}: healthcheck test`).toContain('/healthz');
    }
  });
});

// ------------------------------------------------------------------ Dockerfile

interface Instruction { op: string; args: string }

/** Dockerfile instructions with line continuations joined and comments dropped. */
function dockerInstructions(src: string): Instruction[] {
  const out: Instruction[] = [];
  let current = '';
  for (const raw of src.split('\n')) {
    const line = raw.trim();
    if (current === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.startsWith('#')) continue; // a comment inside a continued instruction
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1)} `;
      continue;
    }
    current += line;
    const m = /^(\S+)\s*(.*)$/s.exec(current);
    if (m) out.push({ op: m[1].toUpperCase(), args: m[2].trim() });
    current = '';
  }
  return out;
}

/** The instructions grouped by stage (each starts at a FROM). */
function dockerStages(): Instruction[][] {
  const stages: Instruction[][] = [];
  for (const ins of dockerInstructions(read('Dockerfile'))) {
    if (ins.op === 'FROM') stages.push([]);
    stages.at(-1)?.push(ins);
  }
  return stages;
}

/** The words of an exec-form (JSON array) instruction, or the shell-form text split on spaces. */
function words(args: string): string[] {
  if (args.startsWith('[')) {
    const v: unknown = JSON.parse(args);
    if (Array.isArray(v)) return v.map(String);
  }
  return args.split(/\s+/);
}

describe('Dockerfile', () => {
  it('is multi-stage, on a current Node LTS (22 or 24, Debian bookworm slim)', () => {
    const stages = dockerStages();
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const s of stages) expect(s[0].args).toMatch(/^node:(22|24)(\.[0-9.]+)?-bookworm-slim(\s+AS\s+\S+)?$/i);
  });

  it('compiles native modules in a build stage with npm ci', () => {
    const build = dockerStages().slice(0, -1).flat();
    expect(build.some((i) => i.op === 'RUN' && /\bnpm ci\b/.test(i.args))).toBe(true);
  });

  it('has no compiler toolchain in the final stage, which copies node_modules from the build', () => {
    const final = dockerStages().at(-1) ?? [];
    for (const i of final.filter((x) => x.op === 'RUN')) {
      expect(i.args, i.args).not.toMatch(/build-essential|python|g\+\+|\bgcc\b|\bmake\b|apt-get install|apk add|npm (ci|install)/);
    }
    expect(final.some((i) => i.op === 'COPY' && /--from=\S+/.test(i.args) && i.args.includes('node_modules'))).toBe(true);
  });

  it('runs as a non-root user', () => {
    const users = (dockerStages().at(-1) ?? []).filter((i) => i.op === 'USER');
    expect(users.length).toBeGreaterThan(0);
    const last = users.at(-1)!.args.split(':')[0];
    expect(['root', '0']).not.toContain(last);
  });

  it('has a HEALTHCHECK on /healthz', () => {
    const hc = (dockerStages().at(-1) ?? []).filter((i) => i.op === 'HEALTHCHECK');
    expect(hc.length).toBe(1);
    expect(hc[0].args).not.toMatch(/^NONE\b/i);
    expect(hc[0].args).toContain('/healthz');
  });

  it('starts node directly (exec form, no npm or shell in between) on main.ts', () => {
    const final = dockerStages().at(-1) ?? [];
    const entry = final.filter((i) => i.op === 'ENTRYPOINT').at(-1);
    const cmd = final.filter((i) => i.op === 'CMD').at(-1);
    for (const i of [entry, cmd]) if (i) expect(i.args.startsWith('['), `${i.op} must be exec form`).toBe(true);
    const argv = [...(entry ? words(entry.args) : []), ...(cmd ? words(cmd.args) : [])];
    expect(argv[0]).toBe('node');
    expect(argv).toContain('tsx');
    expect(argv).toContain('main.ts');
    expect(argv).not.toContain('npm');
  });

  it('passes the node flags of cluster.config.ts (NODE_FLAGS) before the entry, as npm start does', () => {
    const final = dockerStages().at(-1) ?? [];
    const entry = final.filter((i) => i.op === 'ENTRYPOINT').at(-1);
    const argv = entry ? words(entry.args) : [];
    const start = (JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { scripts: Record<string, string> }).scripts.start.split(/\s+/);
    for (const f of NODE_FLAGS) {
      expect(argv.slice(0, argv.indexOf('tsx')), 'Dockerfile ENTRYPOINT').toContain(f);
      expect(start.slice(0, start.indexOf('main.ts')), 'npm start').toContain(f);
    }
  });
});
