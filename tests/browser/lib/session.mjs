// One test file's world: a real relay, one Chromium, and where the screenshots go.
//
// Screenshots: every visit saves one (the window, as a person first sees it) to
// SCREENSHOT_DIR, or a fresh temporary directory. With UPDATE_DOCS=1, pages whose spec says
// `docs: true` are written to docs/screenshots/ instead, to be committed.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { launch, navigate, openTab, sizeLabel } from './browser.mjs';
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
  /** Starts the relay (with `options.runbooks` beside the shipped ones) and Chromium. */
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
    const title = `${spec.name} at ${sizeLabel(size)} (${spec.path})`;
    const tab = await this.takeTab(size);
    try {
      const v = await navigate(tab, this.relay.url + spec.path);
      if (spec.act) await spec.act(v.page, this);
      const file = this.screenshotPath(spec, size);
      await v.page.screenshot({ path: file, fullPage: Boolean(spec.fullPage) });
      const problems = await inspect(v, { skip: spec.skip });
      if (spec.expect) {
        try {
          await spec.expect(v.page, this);
        } catch (error) {
          problems.unshift({ kind: 'expect', text: `expected: ${error.message}` });
        }
      }
      assert.ok(problems.length === 0, report(title, problems, file));
      return file;
    } finally {
      this.giveBack(tab);
    }
  }

  async stop() {
    await this.browser?.close().catch(() => {});
    await this.relay?.stop();
  }
}
