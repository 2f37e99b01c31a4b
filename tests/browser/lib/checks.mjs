// What every page must satisfy, measured in the browser: axe-core reports no serious or
// critical violation, nothing is wider than the window, no CSP violation, no console error,
// no uncaught exception, no dialog, no failed request and no injected script ran.

import fs from 'node:fs';
import { createRequire } from 'node:module';

import { SENTINEL } from './payloads.mjs';

const require = createRequire(import.meta.url);
// axe-core from tests/browser/node_modules (pinned in package-lock.json); the relay never
// serves it: it is evaluated in the page over DevTools, which no CSP blocks.
const AXE_SOURCE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export const FAILING_IMPACTS = ['serious', 'critical'];

/** axe-core's violations of impact serious or critical on the page as it is now. */
export async function axeViolations(page) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) {
    await page.evaluate(AXE_SOURCE);
  }
  const violations = await page.evaluate(async () => {
    const results = await window.axe.run(document, { resultTypes: ['violations'] });
    return results.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      helpUrl: v.helpUrl,
      nodes: v.nodes.map((n) => ({ target: n.target.join(' '), html: n.html, summary: n.failureSummary })),
    }));
  });
  return violations.filter((v) => FAILING_IMPACTS.includes(v.impact));
}

/**
 * null when the page fits its window; else how wide it is and the innermost elements that
 * stick out (not counting those inside a box that scrolls or clips them, such as `pre`).
 *
 * The window is the layout viewport (`documentElement.clientWidth`), not `innerWidth` alone:
 * on a phone (`isMobile`), a page wider than the screen widens `innerWidth` to its own width,
 * as a phone zooms out to show it, so `scrollWidth > innerWidth` would never be true there.
 */
export async function horizontalOverflow(page) {
  return page.evaluate(() => {
    const width = Math.min(window.innerWidth, document.documentElement.clientWidth);
    const scrollWidth = document.scrollingElement.scrollWidth;
    if (scrollWidth <= width) return null;
    const clippedByAncestor = (el) => {
      for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
        if (getComputedStyle(a).overflowX !== 'visible') return true;
      }
      return false;
    };
    const sticksOut = (el) => {
      const r = el.getBoundingClientRect();
      const visibleOverflow = getComputedStyle(el).overflowX === 'visible';
      const right = Math.max(r.right, visibleOverflow ? r.left + el.scrollWidth : r.right);
      return right > width + 0.5 ? Math.round(right) : 0;
    };
    const offenders = [];
    for (const el of document.body.querySelectorAll('*')) {
      const right = sticksOut(el);
      if (!right || clippedByAncestor(el)) continue;
      if ([...el.children].some((child) => sticksOut(child))) continue; // report the innermost
      const text = (el.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 60);
      offenders.push(`<${el.tagName.toLowerCase()}> "${text}" reaches ${right} px`);
    }
    return { scrollWidth, width, offenders };
  });
}

/** Every frame's sentinel that an injected payload would have set. */
async function sentinels(page) {
  const found = [];
  for (const frame of page.frames()) {
    const value = await frame.evaluate((name) => window[name], SENTINEL).catch(() => undefined);
    if (value === undefined) continue;
    const where = frame === page.mainFrame() ? 'the page' : `a frame (${frame.url()})`;
    found.push(`in ${where}: window.${SENTINEL} = ${JSON.stringify(value)}, set by the ${value} payload`);
  }
  return found;
}

/** Lets late handlers (focus, image errors, animation frames) run before the checks read. */
async function settle(page) {
  await page.evaluate(() => new Promise((resolve) => {
    requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(resolve, 0)));
  }));
}

/**
 * Runs every check on an open visit (see browser.mjs). Returns a list of problems, each
 * { kind, text }; empty means the page passes. `options.skip` names kinds not to check;
 * `options.status` is the status the page must answer (200 unless said: a page that says
 * "this link has expired" answers 410, and is checked like any other).
 */
export async function inspect(visit, options = {}) {
  const skip = new Set(options.skip || []);
  const { page, events } = visit;
  const problems = [];
  const add = (kind, text) => { if (!skip.has(kind)) problems.push({ kind, text }); };

  const status = options.status ?? 200;
  if (visit.status !== status) add('status', `the page answered HTTP ${visit.status}, not ${status}`);
  await settle(page);

  const overflow = await horizontalOverflow(page);
  if (overflow) {
    add('overflow', `horizontal overflow: the page is ${overflow.scrollWidth} px wide in a ` +
      `${overflow.width} px window${overflow.offenders.length ? '; sticking out:' : ''}` +
      overflow.offenders.slice(0, 5).map((o) => `\n      ${o}`).join('') +
      (overflow.offenders.length > 5 ? `\n      … and ${overflow.offenders.length - 5} more` : ''));
  }

  const csp = await page.evaluate(() => window.__cspViolations || []);
  for (const v of csp) {
    add('csp', `CSP violation: ${v.directive} blocked ${v.blocked || '(inline)'} at ${v.source}` +
      (v.sample ? ` — ${v.sample}` : ''));
  }
  for (const found of await sentinels(page)) add('script-ran', `an injected script ran ${found}`);
  for (const d of events.dialogs) add('dialog', `a dialog opened: ${d}`);
  for (const e of events.pageErrors) add('page-error', `uncaught exception: ${e}`);
  for (const r of events.failedRequests) add('request', `request failed: ${r}`);

  if (!skip.has('axe')) {
    for (const v of await axeViolations(page)) {
      const html = (n) => n.html.replace(/\s+/g, ' ').slice(0, 120);
      const nodes = v.nodes.slice(0, 3).map((n) => `\n      at ${n.target}: ${html(n)}`).join('');
      const more = v.nodes.length > 3 ? `\n      … and ${v.nodes.length - 3} more` : '';
      add('axe', `axe ${v.impact} ${v.id}: ${v.help} (${v.helpUrl})${nodes}${more}`);
    }
  }
  // Read last: axe itself must not log errors either. A page answered with the status it
  // must answer (a 410 for a used link) is logged by Chromium as a failed load of the page
  // itself: that line says what the status check has checked, nothing more.
  const ownStatus = status !== 200 && visit.status === status
    ? `Failed to load resource: the server responded with a status of ${status} `
    : null;
  const isOwnStatus = (c) => ownStatus && c.startsWith(ownStatus) && c.endsWith(`(${visit.url}:0)`);
  for (const c of events.console) if (!isOwnStatus(c)) add('console', `console error: ${c}`);
  return problems;
}

/** A readable report of a page's problems, one per line, for an assertion message. */
export function report(title, problems, screenshot) {
  const lines = problems.map((p) => `  - ${p.text}`);
  if (screenshot) lines.push(`  screenshot: ${screenshot}`);
  return `${title}:\n${lines.join('\n')}`;
}
