// Debian's Chromium driven over the DevTools protocol (playwright-core), with the probes every
// visit carries: console errors, uncaught exceptions, dialogs, failed requests and CSP
// violations, all recorded from before the page's first script runs.

import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** The two sizes every page is checked at. */
export const SIZES = [
  { name: 'phone', width: 390, height: 844 },
  { name: 'desktop', width: 1440, height: 900 },
];

export const sizeLabel = (size) => `${size.width}x${size.height}`;

// As root on this machine: no sandbox; no GPU; and nothing that calls out to the network
// (which is closed here) on its own. Playwright adds --headless and a fresh --user-data-dir.
const ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

export async function launch() {
  return chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
}

// Runs in the page before any of its scripts: CSP violations land in a list the checks read.
function installProbes() {
  const violations = [];
  Object.defineProperty(window, '__cspViolations', { value: violations });
  document.addEventListener('securitypolicyviolation', (event) => {
    violations.push({
      directive: event.effectiveDirective || event.violatedDirective,
      blocked: event.blockedURI,
      source: `${event.sourceFile || ''}:${event.lineNumber || 0}`,
      sample: event.sample,
    });
  });
}

/**
 * A tab at `size` in a context of its own, whose events every navigation starts afresh.
 * Reusing one tab for many pages is several times cheaper than a new context per page
 * (no new renderer process); the probes are per document, so nothing carries over.
 */
export async function openTab(browser, size) {
  const context = await browser.newContext({
    viewport: { width: size.width, height: size.height },
    deviceScaleFactor: 1,
    isMobile: size.width < 600,
    hasTouch: size.width < 600,
    locale: 'en-GB',
    timezoneId: 'UTC',
  });
  await context.addInitScript(installProbes);
  const page = await context.newPage();
  const tab = { page, context, size, events: null };
  const record = (kind, text) => tab.events?.[kind].push(text);
  page.on('console', (message) => {
    const where = message.location();
    // Chromium asks every site for /favicon.ico by itself; its 404 is not the page's error.
    if (message.type() === 'error' && !where.url?.endsWith('/favicon.ico')) {
      record('console', `${message.text()}${where.url ? ` (${where.url}:${where.lineNumber})` : ''}`);
    }
  });
  page.on('pageerror', (error) => record('pageErrors', String(error.stack || error)));
  page.on('dialog', (dialog) => {
    record('dialogs', `${dialog.type()}: ${dialog.message()}`);
    dialog.dismiss().catch(() => {});
  });
  page.on('requestfailed', (request) => {
    // The live refresh's fetch, cancelled because the page went elsewhere: not a failure.
    if (request.resourceType() === 'fetch' && request.failure()?.errorText === 'net::ERR_ABORTED') return;
    record('failedRequests', `${request.method()} ${request.url()}: ${request.failure()?.errorText}`);
  });
  page.on('response', (response) => {
    const request = response.request();
    if (response.status() >= 400 && !request.isNavigationRequest()) {
      record('failedRequests', `${request.method()} ${response.url()}: ${response.status()}`);
    }
  });
  return tab;
}

/**
 * Opens `url` in `tab`. Returns a visit: { page, url, size, status, events: { console,
 * pageErrors, dialogs, failedRequests } }, which checks.mjs `inspect` reads.
 */
export async function navigate(tab, url) {
  tab.events = { console: [], pageErrors: [], dialogs: [], failedRequests: [] };
  const response = await tab.page.goto(url, { waitUntil: 'load' });
  return { page: tab.page, url, size: tab.size, status: response ? response.status() : 0, events: tab.events };
}

/**
 * The visit a tab is on now, however it got there (a link followed, a form sent): the
 * status is the one its document was answered with (after any redirects).
 */
export async function current(tab) {
  tab.events ||= { console: [], pageErrors: [], dialogs: [], failedRequests: [] };
  const status = await tab.page.evaluate(
    () => performance.getEntriesByType('navigation')[0]?.responseStatus ?? 0,
  );
  return { page: tab.page, url: tab.page.url(), size: tab.size, status, events: tab.events };
}

/** Starts the tab's event lists afresh (what a check reported is not reported again). */
export function clearEvents(tab) {
  tab.events = { console: [], pageErrors: [], dialogs: [], failedRequests: [] };
}

/** One page in a tab of its own, closed by `close()`. */
export async function visit(browser, url, size) {
  const tab = await openTab(browser, size);
  return { ...(await navigate(tab, url)), close: () => tab.context.close() };
}
