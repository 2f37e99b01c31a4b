// The checks themselves: each is shown a page with the one defect it exists to catch (served
// here by a throwaway server, not the relay) and must report it, and a clean page must pass.
// A check that cannot fail would pass every real page for nothing.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';

import { launch, navigate, openTab, SIZES } from './lib/browser.mjs';
import { inspect } from './lib/checks.mjs';
import { PAYLOADS } from './lib/payloads.mjs';

const page = (body, head = '') => `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>fixture</title>${head}
</head><body><main><h1>Fixture</h1>${body}</main></body></html>`;

const STRICT_CSP = "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'";

// path -> [body, headers]
const FIXTURES = {
  '/clean': [page('<p>Nothing wrong here.</p>'), { 'content-security-policy': STRICT_CSP }],
  '/overflow': [page('<h1>AVeryLongUnbreakableHeadingThatCannotWrapAtPhoneWidthAtAll</h1>')],
  // Focusable, as axe asks of a box that scrolls (scrollable-region-focusable is serious).
  '/scrolling-pre': [page(`<pre tabindex="0" style="overflow-x:auto">${'x'.repeat(300)}</pre>`)],
  '/axe': [page('<img src="/pixel.png"><input type="text">')],
  '/csp': [page('<p style="color:red">inline style</p>'), { 'content-security-policy': STRICT_CSP }],
  '/script': [page(PAYLOADS.script)],
  '/img': [page(PAYLOADS.img)],
  '/iframe': [page(PAYLOADS.iframe)],
  '/dialog': [page(PAYLOADS.dialog)],
  '/console': [page('<script>console.error("boom")</script>')],
  '/exception': [page('<script>null.boom()</script>')],
  '/missing': [page('<script src="/nowhere.js"></script>')],
  // Answered 410, as a used sign-in link is; the other with a console error of its own too.
  '/expired': [page('<p>This link has expired.</p>'), { 'content-security-policy': STRICT_CSP }],
  '/expired-and-broken': [page('<p>Expired.</p><script>console.error("boom")</script>')],
};

describe('the checks catch what they claim', () => {
  let server;
  let browser;
  let tab;
  let base;

  before(async () => {
    server = http.createServer((req, res) => {
      const [body, headers = {}] = FIXTURES[req.url] || [];
      if (req.url === '/pixel.png') {
        res.writeHead(200, { 'content-type': 'image/png' });
        res.end(Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=', 'base64'));
        return;
      }
      const status = req.url.startsWith('/expired') ? 410 : body ? 200 : 404;
      res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', ...headers });
      res.end(body || 'not found');
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${server.address().port}`;
    browser = await launch();
    tab = await openTab(browser, SIZES[0]); // the phone: where overflow shows
  });

  after(async () => {
    await browser?.close();
    server?.close();
  });

  // One tab for every fixture, as in Session: this also shows that nothing one page
  // recorded carries over to the next (the clean page comes after the dialog and the script).
  const problemsOf = async (path) => inspect(await navigate(tab, base + path));
  const kinds = (problems) => [...new Set(problems.map((p) => p.kind))].sort();

  it('a heading wider than the phone is horizontal overflow, named in the report', async () => {
    const problems = await problemsOf('/overflow');
    assert.deepEqual(kinds(problems), ['overflow']);
    assert.match(problems[0].text, /<h1> "AVeryLong/);
  });

  it('a wide block that scrolls inside its own box is not overflow', async () => {
    assert.deepEqual(await problemsOf('/scrolling-pre'), []);
  });

  it('an image without text and an unlabelled field are serious axe violations', async () => {
    const problems = await problemsOf('/axe');
    assert.deepEqual(kinds(problems), ['axe']);
    const text = problems.map((p) => p.text).join('\n');
    assert.match(text, /image-alt/);
    assert.match(text, /label/);
  });

  it('a CSP violation is recorded', async () => {
    const problems = await problemsOf('/csp');
    assert.ok(kinds(problems).includes('csp'), JSON.stringify(problems));
    assert.match(problems.find((p) => p.kind === 'csp').text, /style-src/);
  });

  for (const name of ['script', 'img', 'iframe']) {
    it(`the ${name} payload, run, sets the sentinel`, async () => {
      assert.ok(kinds(await problemsOf(`/${name}`)).includes('script-ran'));
    });
  }

  it('a dialog is recorded (and dismissed)', async () => {
    assert.ok(kinds(await problemsOf('/dialog')).includes('dialog'));
  });

  it('console errors, uncaught exceptions and failed requests are recorded', async () => {
    assert.ok(kinds(await problemsOf('/console')).includes('console'));
    assert.ok(kinds(await problemsOf('/exception')).includes('page-error'));
    assert.ok(kinds(await problemsOf('/missing')).includes('request'));
  });

  it('a page that is not there fails on its status', async () => {
    assert.ok(kinds(await problemsOf('/gone')).includes('status'));
  });

  it('a page must answer the status it is expected to, and only its own load is excused', async () => {
    const expired = await navigate(tab, `${base}/expired`);
    assert.deepEqual(await inspect(expired, { status: 410 }), [], 'the 410 it must answer passes');
    assert.deepEqual(kinds(await inspect(await navigate(tab, `${base}/expired`))), ['console', 'status'],
      'a 410 where a 200 is due fails, its failed load a console error');
    assert.deepEqual(kinds(await inspect(await navigate(tab, `${base}/clean`), { status: 410 })), ['status']);
    const broken = await inspect(await navigate(tab, `${base}/expired-and-broken`), { status: 410 });
    assert.deepEqual(kinds(broken), ['console'], 'any other console error still fails');
    assert.match(broken[0].text, /^console error: boom /);
  });

  it('a clean page under a strict CSP passes every check, axe included', async () => {
    assert.deepEqual(await problemsOf('/clean'), []);
  });
});
