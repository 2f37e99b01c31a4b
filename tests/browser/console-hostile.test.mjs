// Alerts written by whoever can emit metrics, in the console: labels and annotations carrying
// script, markup that closes an attribute, `javascript:` runbook and generator URLs, right-to-
// left and zero-width characters, backslashes and 10 KB values. They arrive on an open Now page through its
// live refresh and are opened, at phone and desktop size: everything shows as text, nothing
// runs (lib/payloads.mjs: each payload sets window.__xss if it ever does; a dialog is
// recorded), no such URL becomes a link, and nothing overflows the phone.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { SIZES, sizeLabel } from './lib/browser.mjs';
import { PEOPLE, post, signIn, startConsole } from './lib/console.mjs';
import { HOSTILE_ALERTNAME, hostileLabels, PAYLOADS } from './lib/payloads.mjs';
import { waitUntil, webhook } from './lib/relay.mjs';

const RTL = 'مرحبا \u202Eevil.exe\u202C שלום';
const ZERO_WIDTH = 'adm\u200Bin\u200D\uFEFF';
const LONG = 'x'.repeat(10 * 1024);
const JS_URL = 'javascript:alert(1)';
// Backslashes as a path, as escapes JSON and JavaScript would read, and closing a JS string.
const BACKSLASH = 'C:\\Windows\\System32 \\u003cscript\\u003e \\x3cb\\x3e \\"); window.__xss=\'backslash\'; //';

/** The hostile alert at `size`: its own name, so that each size sees one arrive. */
function hostileAlert(size) {
  const labels = {
    ...hostileLabels(`${HOSTILE_ALERTNAME} ${size.name}`),
    rtl: RTL,
    zero_width: ZERO_WIDTH,
    long: LONG,
    backslash: BACKSLASH,
  };
  const body = webhook(labels, {
    summary: `"><img src=x onerror="window.__xss='summary'"> ${PAYLOADS.script} ${RTL}`,
    description: `${LONG} ${PAYLOADS.svg}`,
    runbook_url: JS_URL,
    dashboard_url: `data:text/html,${PAYLOADS.script}`,
  });
  body.alerts[0].generatorURL = JS_URL;
  return body;
}

const NAUGHTY_LINK = 'a[href^="javascript:" i], a[href^="data:" i], a[href^="vbscript:" i]';

/** Shows as text: every payload's characters are on the page, and none made an element. */
async function showsAsText(page, pieces) {
  const text = await page.locator('main').innerText();
  for (const piece of pieces) {
    assert.ok(text.includes(piece), `shown as text: ${JSON.stringify(piece.slice(0, 60))}`);
  }
  assert.equal(await page.locator('main script, main img, main svg, main iframe, main [onerror], main [onload]').count(), 0,
    'no element made from an alert');
  assert.equal(await page.locator(NAUGHTY_LINK).count(), 0, 'no javascript:, data: or vbscript: link');
}

describe('hostile alert content in the console', { concurrency: 2 }, () => {
  let world;

  before(async () => {
    world = await startConsole();
  });

  after(async () => {
    await world?.stop();
  });

  for (const size of SIZES) {
    it(`arrives live on Now and opens as text, running nothing, at ${sizeLabel(size)}`, async () => {
      const tab = await world.session.openTab(size);
      const { page } = tab;
      const check = (name, spec) => world.session.checkTab(tab, { name, dark: true, ...spec });
      await signIn(world.session, world.ntfy, tab, PEOPLE[size.name]);
      const name = `${HOSTILE_ALERTNAME} ${size.name}`;

      await page.evaluate(() => { window.__sameDocument = true; });
      await post(world.relay, hostileAlert(size));
      const card = page.locator('a.title', { hasText: name });
      await card.waitFor({ timeout: 10_000 });
      assert.equal(await page.evaluate(() => window.__sameDocument), true, 'arrived by the live refresh');
      await check('console-now-hostile', {
        expect: async (p) => showsAsText(p, [name, PAYLOADS.script, RTL]),
      });

      await card.click();
      await page.waitForURL(/\/incidents\/\d+$/);
      const id = Number(new URL(page.url()).pathname.split('/').pop());
      await check('console-incident-hostile', {
        fullPage: true,
        // Open every alert's details, as a person reading them would.
        async act(p) {
          for (const summary of await p.locator('details:not([open]) > summary').all()) await summary.click();
        },
        expect: async (p) => {
          await showsAsText(p, [name, PAYLOADS.img, PAYLOADS.attribute, PAYLOADS.single, PAYLOADS.href,
            RTL, ZERO_WIDTH, LONG, JS_URL, BACKSLASH]);
          for (const label of ['Runbook', 'Dashboard', 'Source']) {
            assert.equal(await p.getByRole('link', { name: label, exact: true }).count(), 0, `no ${label} link`);
          }
        },
      });
      // The page was delivered too: the strict fake took the page for it (fitted to ntfy's limits).
      await waitUntil('the hostile incident\'s page', () => world.ntfy.pushes.some((m) => m.sequence_id === `relay-${id}`));
      await tab.context.close();
    });
  }

  it('the fake ntfy refused nothing the relay sent', () => {
    assert.deepEqual(world.ntfy.refused, []);
  });
});
