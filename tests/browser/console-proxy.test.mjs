// The console behind a reverse proxy that serves it under a path prefix
// (`public_url: http://127.0.0.1:<proxy>/pager/`), as docs/console.md tells to run it: signing
// in by push, every page and message page under the prefix (their stylesheet, script, links
// and redirects stay under it); and the same proxy authenticating people itself, as
// oauth2-proxy does (its own cookie in, `X-Forwarded-Email` out), the relay trusting the
// header from the proxy's address only (a request from another address that sets it is
// refused).

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';

import { SIZES, sizeLabel } from './lib/browser.mjs';
import { criticalAlert, incidentNamed, PEOPLE, post, signIn, startConsole } from './lib/console.mjs';
import { freePort } from './lib/relay.mjs';

const PREFIX = '/pager';
const HEADER = 'X-Forwarded-Email';
/** The proxy's own sign-in cookie (what oauth2-proxy keeps), naming who it authenticated. */
const PROXY_COOKIE = 'proxy_user';

/**
 * A reverse proxy on `port` serving the relay at `upstream()` under PREFIX/. It drops any
 * X-Forwarded-Email a client sends, and sets it from its own cookie when there is one; it
 * keeps the Host it was asked for (nginx's `proxy_set_header Host $host`).
 */
async function startProxy(port, upstream) {
  const server = http.createServer((req, res) => {
    if (!req.url.startsWith(`${PREFIX}/`)) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not under the prefix');
      return;
    }
    const headers = { ...req.headers };
    delete headers[HEADER.toLowerCase()];
    const user = /(?:^|;\s*)proxy_user=([^;]+)/.exec(req.headers.cookie || '')?.[1];
    if (user) headers[HEADER.toLowerCase()] = decodeURIComponent(user);
    const { hostname, port: upstreamPort } = new URL(upstream());
    const forward = http.request({
      host: hostname, port: upstreamPort, method: req.method, path: req.url.slice(PREFIX.length), headers,
    }, (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    });
    forward.on('error', () => { res.writeHead(502); res.end(); });
    req.pipe(forward);
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { stop: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }) };
}

const text = async (page) => (await page.locator('main').innerText()).replace(/\s+/g, ' ');

describe('the console behind a proxy, under a path prefix', { concurrency: 2 }, () => {
  let world;
  let proxy;
  let base;

  before(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}${PREFIX}`;
    proxy = await startProxy(port, () => world.relay.url);
    world = await startConsole({ publicUrl: `${base}/`, proxyHeader: HEADER });
    await post(world.relay, criticalAlert(world.relay, 'GatewayDown', 'Nothing answers on the gateway.'));
    await incidentNamed(world.relay, 'GatewayDown');
  });

  after(async () => {
    await world?.stop();
    await proxy?.stop();
  });

  const check = (tab, name, spec = {}) => world.session.checkTab(tab, { name: `prefix-${name}`, dark: true, ...spec });

  for (const size of SIZES) {
    it(`signs in by push and acts under the prefix at ${sizeLabel(size)}`, async () => {
      const tab = await world.session.openTab(size);
      const { page } = tab;
      await signIn(world.session, world.ntfy, tab, PEOPLE[size.name], (name) => check(tab, name), base);
      await check(tab, 'now', {
        expect: async (p) => assert.ok((await text(p)).includes('GatewayDown'), 'the incident is listed'),
      });
      await page.getByRole('link', { name: /GatewayDown/ }).click();
      await page.waitForURL(new RegExp(`^${base}/incidents/\\d+$`));
      await check(tab, 'incident');
      await page.goto(`${base}/incidents/999999`);
      await check(tab, 'not-found', {
        status: 404,
        expect: async (p) => {
          assert.equal(await p.getByRole('link', { name: 'Back to the console' }).getAttribute('href'), `${PREFIX}/`);
        },
      });
      await page.goto(`${base}/`);
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.waitForURL(`${base}/signin`);
      await tab.context.close();
    });
  }

  it('the header counts only from the trusted proxy\'s address', async () => {
    // Straight to the relay, past the proxy: from 127.0.0.1 (the trusted address) the header
    // names alice; from 127.0.0.2, another host as far as the relay can tell, it is refused.
    const from = (localAddress) => new Promise((resolve, reject) => {
      const { hostname, port } = new URL(world.relay.url);
      http.get({ host: hostname, port, path: '/', localAddress, headers: { [HEADER]: 'alice@example.org' } },
        (answer) => {
          let body = '';
          answer.setEncoding('utf8');
          answer.on('data', (chunk) => { body += chunk; });
          answer.on('end', () => resolve({ status: answer.statusCode, body }));
        }).on('error', reject);
    });
    const trusted = await from('127.0.0.1');
    assert.equal(trusted.status, 200, 'the trusted proxy names alice');
    assert.match(trusted.body, /alice/);
    const other = await from('127.0.0.2');
    assert.equal(other.status, 403, 'anyone else setting it is refused');
    assert.match(other.body, /only the trusted proxy may set/);
    assert.doesNotMatch(other.body, /Sign out|Now<\/a>/, 'and shown nothing of the console');
  });

  it('a person the proxy authenticated is signed in by its header, and acts as themselves', async () => {
    const tab = await world.session.openTab(SIZES[0]);
    const { page } = tab;
    await tab.context.addCookies([{ name: PROXY_COOKIE, value: 'alice@example.org', url: base }]);
    await page.goto(`${base}/`);
    assert.equal(page.url(), `${base}/`, 'no sign-in page: the proxy said who this is');
    await check(tab, 'now-proxy-auth', {
      expect: async (p) => {
        assert.ok((await p.locator('header').innerText()).includes('alice'));
        assert.equal(await p.getByRole('button', { name: 'Sign out' }).count(), 0,
          'nothing to sign out of here: the proxy signed them in');
      },
    });
    await page.getByRole('link', { name: /GatewayDown/ }).click();
    await page.waitForURL(new RegExp(`^${base}/incidents/\\d+$`));
    await page.getByRole('button', { name: 'Acknowledge', exact: true }).click();
    await page.waitForURL(new RegExp(`^${base}/incidents/\\d+$`));
    await check(tab, 'incident-proxy-auth', {
      expect: async (p) => assert.ok((await text(p)).includes('Acknowledged by alice in the console')),
    });

    // Someone the proxy names who is not one of the people: refused, with a page that says so.
    await tab.context.addCookies([{ name: PROXY_COOKIE, value: 'mallory@example.org', url: base }]);
    await page.goto(`${base}/`);
    await check(tab, 'proxy-unknown-person', {
      status: 403,
      expect: async (p) => assert.ok((await text(p)).includes('not one of the people')),
    });
    await tab.context.close();
  });
});
