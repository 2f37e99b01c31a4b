// The pages the browser tests open, each at every size of lib/browser.mjs SIZES. To check a
// new page, add a spec here (see README.md): { name, path, docs?, act?, expect?, skip?,
// fullPage? }. `name` names the screenshot; `docs: true` keeps it in docs/screenshots/.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { hostileRunbook, PAYLOADS } from './lib/payloads.mjs';
import { ROOT } from './lib/relay.mjs';

/** Runbooks the relay serves beside docs/runbooks for these tests only. */
export const TEST_RUNBOOKS = {
  ScriptInRunbook: hostileRunbook('ScriptInRunbook'),
};

const shipped = fs.readdirSync(path.join(ROOT, 'docs', 'runbooks'))
  .filter((f) => f.endsWith('.md') && f !== 'README.md')
  .map((f) => f.slice(0, -3))
  .sort();

/** The heading a person sees first. */
const heading = (text) => async (page) => {
  const h1 = (await page.locator('h1').first().textContent())?.trim();
  assert.ok(h1?.includes(text), `the first heading names ${text} (it reads "${h1}")`);
};

export const RUNBOOK_PAGES = [
  {
    name: 'runbooks-index',
    path: '/runbooks/',
    docs: true,
    async expect(page) {
      // Each runbook the index links to opens (relative links resolve under /runbooks/).
      const hrefs = await page.locator('a[href]').evaluateAll((as) => as.map((a) => a.href));
      const local = hrefs.filter((h) => new URL(h).pathname.startsWith('/runbooks/'));
      assert.ok(local.length >= shipped.length, `the index links every runbook (${local.length} links)`);
      for (const href of new Set(local)) {
        const response = await page.request.get(href);
        assert.equal(response.status(), 200, `${href} opens`);
      }
    },
  },
  ...shipped.map((name) => ({
    name: `runbook-${name}`,
    path: `/runbooks/${name}`,
    // The runbook a page's Runbook button opens in the end-to-end test.
    docs: name === 'GatewayHighErrorRate',
    expect: heading(name),
  })),
  {
    name: 'runbook-with-script',
    path: '/runbooks/ScriptInRunbook',
    // A person clicks the runbook's links: one that stays on the page (javascript:, data:)
    // must not run anything either (the sentinel check reads what it did).
    async act(page) {
      for (const link of await page.locator('a[href]').all()) {
        const href = (await link.evaluate((a) => a.href)).toLowerCase();
        if (!href.startsWith('http:') && !href.startsWith('https:')) await link.click();
      }
    },
    async expect(page) {
      const text = await page.locator('body').innerText();
      for (const [kind, payload] of Object.entries(PAYLOADS)) {
        assert.ok(text.includes(payload), `the ${kind} payload shows as text`);
      }
      assert.equal(await page.locator('body script, body img, body svg, body iframe').count(), 0,
        'no element made from the payloads');
    },
  },
];
