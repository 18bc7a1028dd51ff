/** web/build.ts: the web app's bundle in web/dist, rebuilt when a source is newer, served as files. */
import { readFileSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { WEB_DIST, buildWebApp, loadWebApp, webAppStale } from '../../web/build.ts';

describe('web app build', () => {
  it('bundles the app with the SDK into web/dist and serves index.html, app.js and app.css', () => {
    buildWebApp();
    expect(webAppStale()).toBe(false);
    const app = loadWebApp();
    expect(app.source).toBe('prebuilt');
    expect([...app.files.keys()].sort()).toEqual(expect.arrayContaining(['app.css', 'app.js', 'index.html']));
    expect(app.files.get('app.js')!.type).toMatch(/^text\/javascript/);
    const js = app.files.get('app.js')!.body.toString();
    expect(js).toContain('presence_sub'); // the SDK is in the bundle
    expect(js.length).toBeLessThan(200_000);
    expect(app.files.get('index.html')!.body.toString()).toContain('/web/app.js');
  });

  it('rebuilds when a source is newer than the bundle', () => {
    buildWebApp();
    const bundle = join(WEB_DIST, 'app.js');
    // Older than any source file, however long ago the sources were checked out.
    const old = new Date(1000);
    utimesSync(bundle, old, old);
    expect(webAppStale()).toBe(true);
    const app = loadWebApp();
    expect(app.source).toBe('built');
    expect(webAppStale()).toBe(false);
    expect(app.files.get('app.js')!.body.equals(readFileSync(bundle))).toBe(true);
  });
});
