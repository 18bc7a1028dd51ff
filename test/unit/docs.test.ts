/**
 * The documentation under docs/ is what people who clone the repository read: it must be
 * self-contained (nothing points outside the repository), cover every frame the server accepts or
 * sends, and its relative links (and their #anchors) must resolve.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CLIENT_FRAME_TYPES, serverFrameSchema } from '../../protocol/frames.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
/** Not part of the repository's content: dependencies, git, and the git-ignored scratch directories. */
const SKIP_DIRS = new Set(['node_modules', '.git', '.tmp', 'data', 'dist', 'coverage']);

function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (SKIP_DIRS.has(name)) continue;
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}

const rel = (p: string): string => relative(ROOT, p);
const read = (p: string): string => readFileSync(p, 'utf8');

describe('no references outside the repository', () => {
  const files = walk(ROOT).filter((p) => /\.(ts|mts|mjs|md|html)$/.test(p) && p !== SELF);

  it('no file refers to the shared directory next to the checkout', () => {
    const outside = `..${'/'}shared/`; // spelled apart so this file does not match itself
    expect(files.filter((p) => read(p).includes(outside)).map(rel)).toEqual([]);
  });

  it('no file names PROTOCOL.md, DESIGN.md or API.md (they are docs/protocol.md, docs/design.md, docs/api.md)', () => {
    const re = /\b(PROTOCOL|DESIGN|API)\.md\b/;
    const hits: string[] = [];
    for (const p of files) {
      read(p).split('\n').forEach((line, i) => {
        if (re.test(line)) hits.push(`${rel(p)}:${i + 1}: ${line.trim()}`);
      });
    }
    expect(hits).toEqual([]);
  });
});

describe('docs/protocol.md', () => {
  const doc = read(join(ROOT, 'docs/protocol.md'));

  it('documents every client frame type the server accepts', () => {
    expect(CLIENT_FRAME_TYPES.size).toBeGreaterThan(0);
    const missing = [...CLIENT_FRAME_TYPES].filter((t) => !doc.includes(`"t":"${t}"`));
    expect(missing).toEqual([]);
  });

  it('documents every frame type the server sends', () => {
    const types = serverFrameSchema.options.map((o) => o.shape.t.value);
    expect(types.length).toBeGreaterThan(0);
    const missing = types.filter((t) => !doc.includes(`"t":"${t}"`));
    expect(missing).toEqual([]);
  });
});

// ------------------------------------------------------------------ links

/** Lines outside fenced code blocks. */
function proseLines(md: string): string[] {
  const out: string[] = [];
  let fenced = false;
  for (const line of md.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) { fenced = !fenced; continue; }
    if (!fenced) out.push(line);
  }
  return out;
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchors(md: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const line of proseLines(md)) {
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const text = m[1].replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/`/g, '');
    const base = text.toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** Targets of inline links and images, outside code blocks and code spans. */
function linkTargets(md: string): string[] {
  const out: string[] = [];
  for (const line of proseLines(md)) {
    const prose = line.replace(/`[^`]*`/g, '');
    for (const m of prose.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) out.push(m[1]);
  }
  return out;
}

describe('markdown links', () => {
  const pages = ['README.md', 'client/README.md', 'bench/README.md',
    ...readdirSync(join(ROOT, 'docs')).filter((n) => n.endsWith('.md')).map((n) => `docs/${n}`)];

  it('every relative link of README.md and docs/*.md points to an existing file (and heading)', () => {
    const broken: string[] = [];
    for (const page of pages) {
      const file = join(ROOT, page);
      if (!existsSync(file)) continue;
      const md = read(file);
      for (const target of linkTargets(md)) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // http:, https:, mailto: …
        const [pathPart, fragment] = target.split('#', 2) as [string, string | undefined];
        const path = decodeURIComponent(pathPart.split('?')[0]);
        const dest = path === '' ? file : resolve(dirname(file), path);
        if (!existsSync(dest)) { broken.push(`${page}: ${target} (no such file)`); continue; }
        if (fragment && dest.endsWith('.md') && !anchors(read(dest)).has(fragment)) {
          broken.push(`${page}: ${target} (no such heading)`);
        }
      }
    }
    expect(broken).toEqual([]);
  });

  it('the README links the three docs pages', () => {
    const readme = read(join(ROOT, 'README.md'));
    for (const p of ['docs/protocol.md', 'docs/api.md', 'docs/design.md']) expect(readme).toContain(`](${p})`);
  });
});
