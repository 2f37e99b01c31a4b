// One test file's world: a real relay, one Chromium, and where the screenshots go.
//
// Screenshots: every visit saves one (the window, as a person first sees it) to
// SCREENSHOT_DIR, or a fresh temporary directory. With UPDATE_DOCS=1, pages whose spec says
// `docs: true` are written to docs/screenshots/ instead, to be committed.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { clearEvents, current, launch, navigate, openTab, sizeLabel } from './browser.mjs';
import { inspect, report } from './checks.mjs';
import { ROOT, startRelay } from './relay.mjs';

const DOCS_DIR = path.join(ROOT, 'docs', 'screenshots');

function screenshotDir() {
  if (process.env.SCREENSHOT_DIR) {
    fs.mkdirSync(process.env.SCREENSHOT_DIR, { recursive: true });
    return process.env.SCREENSHOT_DIR;
  }
  return fs.mkdtempSync(path.join(os.tmpdir(), 'relay-screenshots-'));
}

export class Session {
  /**
   * Starts the relay (with `options.runbooks` beside the shipped ones, and `options.policy`,
   * see relay.mjs `startRelay`) and Chromium.
   */
  static async start(options = {}) {
    const relay = await startRelay(options);
    try {
      return new Session(relay, await launch());
    } catch (error) {
      await relay.stop();
      throw error;
    }
  }

  constructor(relay, browser) {
    this.relay = relay;
    this.browser = browser;
    this.dir = screenshotDir();
    this.updateDocs = process.env.UPDATE_DOCS === '1';
    this.idle = new Map(); // size label -> tabs free for the next check (closed with the browser)
  }

  // A free tab at `size`: tests that run at once (describe's concurrency) each get their own.
  async takeTab(size) {
    const free = this.idle.get(sizeLabel(size)) || [];
    this.idle.set(sizeLabel(size), free);
    return free.pop() || openTab(this.browser, size);
  }

  giveBack(tab) {
    this.idle.get(sizeLabel(tab.size)).push(tab);
  }

  screenshotPath(spec, size) {
    const dir = this.updateDocs && spec.docs ? DOCS_DIR : this.dir;
    fs.mkdirSync(dir, { recursive: true });
    return path.join(dir, `${spec.name}-${sizeLabel(size)}.png`);
  }

  /**
   * Opens `spec.path` at `size`, runs `spec.act(page)` (what a person does there) and
   * `spec.expect(page)` (what they should see), saves a screenshot, then runs every check
   * of checks.mjs but those named in `spec.skip`; fails with one readable report.
   */
  async check(spec, size) {
    const tab = await this.takeTab(size);
    try {
      await navigate(tab, this.relay.url + spec.path);
      return await this.checkTab(tab, spec);
    } finally {
      this.giveBack(tab);
    }
  }

  /**
   * A tab in a browser context of its own (its own cookies: a person signed in), at `size`;
   * closed with the browser, or by `tab.context.close()`.
   */
  async openTab(size) {
    return openTab(this.browser, size);
  }

  /**
   * Checks the page `tab` is on now, however a person got there (signed in, a button
   * pressed): `spec` as for `check`, without `path`; `spec.status` is the status the page
   * must answer when it is not 200. What the tab recorded is then cleared, so that the next
   * check of the same tab reports only what happened after this one. With `spec.dark`, the
   * page is then checked in dark too (`checkDark`).
   */
  async checkTab(tab, spec) {
    const v = await current(tab);
    const title = `${spec.name} at ${sizeLabel(tab.size)} (${new URL(v.url).pathname})`;
    if (spec.act) await spec.act(v.page, this);
    const file = this.screenshotPath(spec, tab.size);
    await v.page.screenshot({ path: file, fullPage: Boolean(spec.fullPage) });
    const problems = await inspect(await current(tab), { skip: spec.skip, status: spec.status });
    if (spec.expect) {
      try {
        await spec.expect(v.page, this);
      } catch (error) {
        problems.unshift({ kind: 'expect', text: `expected: ${error.message}` });
      }
    }
    clearEvents(tab);
    if (spec.dark) problems.push(...await this.checkDark(tab, spec));
    assert.ok(problems.length === 0, report(title, problems, file));
    return file;
  }

  /**
   * The same page again as a person whose system asks for dark (`prefers-color-scheme:
   * dark`): its own screenshot (`<name>-dark-<size>.png`, never kept in the docs) and every
   * check but the spec's own assertions, axe's contrast included. Each problem says "dark:".
   */
  async checkDark(tab, spec) {
    const { page } = tab;
    await page.emulateMedia({ colorScheme: 'dark' });
    try {
      const dark = await page.evaluate(() => matchMedia('(prefers-color-scheme: dark)').matches);
      assert.ok(dark, 'the page is shown dark');
      const file = this.screenshotPath({ name: `${spec.name}-dark`, docs: false }, tab.size);
      await page.screenshot({ path: file, fullPage: Boolean(spec.fullPage) });
      const problems = await inspect(await current(tab), { skip: spec.skip, status: spec.status });
      clearEvents(tab);
      return problems.map((p) => ({ kind: p.kind, text: `dark: ${p.text} (${file})` }));
    } finally {
      await page.emulateMedia({ colorScheme: null });
    }
  }

  async stop() {
    await this.browser?.close().catch(() => {});
    await this.relay?.stop();
  }
}
