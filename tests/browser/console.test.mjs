// The on-call console as a person uses it, in real Chromium at phone and desktop size: sign
// in by a link pushed to one's phone (read from the fake ntfy), watch an incident arrive on
// the Now page without reloading (within one 2 s refresh), open it, acknowledge it (and step 2
// is never paged), silence another for an hour through a real Alertmanager, escalate one at
// once and resolve it by hand, find it in History, see a page the vendor refused among the
// Dead letters, cover someone's shift and find it on Schedules and Me; and what is refused: a
// reused or expired link, an unknown name (answered like a known one), a form from another
// site or without its token, a silence that ends in the past, anything without a session.
// Every page and state passes the harness's checks (lib/checks.mjs), in light and in dark.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';

import { SIZES, sizeLabel } from './lib/browser.mjs';
import {
  askForLink, criticalAlert, incidentNamed, LINK_TTL_MS, LOCKED, nthLink, PEOPLE, post, SECONDARY,
  signIn, signinPushes, startConsole,
} from './lib/console.mjs';
import { waitUntil } from './lib/relay.mjs';

// Each size's incidents: the one acknowledged, the one silenced.
const ALERTS = {
  phone: ['GatewayDown', 'HostDiskWillFillIn24h'],
  desktop: ['GatewayHighErrorRate', 'RelayDeliveryFailing'],
};
const CONTROL = 'HostMemoryPressure'; // left alone: step 2 must page it
const ESCALATED = 'GatewayHighLatencyP99'; // escalated at once, then resolved by hand
const DEAD = 'HostDiskAlmostFull'; // a warning: pages ntfy.locked, which refuses it
/** When the second step pages: long enough to act before it, short enough to wait past it. */
const SECOND_AFTER_S = 15;
/** The Now page refreshes every 2 s; a loopback fetch and a swap take well under half a second. */
const LIVE_MS = 2_500;

/** Another site (another origin) serving one form per path that posts to the relay. */
async function startForeignSite() {
  const pages = new Map();
  const server = http.createServer((req, res) => {
    res.writeHead(pages.has(req.url) ? 200 : 404, { 'content-type': 'text/html; charset=utf-8' });
    res.end(pages.get(req.url) || 'not found');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    /** Serves at `path` a form posting `fields` to `action`, with one button `button`. */
    form(path, action, fields, button) {
      const inputs = Object.entries(fields)
        .map(([k, v]) => `<input type="hidden" name="${k}" value="${v}">`).join('');
      pages.set(path, `<!doctype html><html lang="en"><head><title>Another site</title></head>` +
        `<body><form method="post" action="${action}">${inputs}<button>${button}</button></form></body></html>`);
    },
    stop: () => new Promise((resolve) => server.close(resolve)),
  };
}

const text = async (page, selector = 'main') => (await page.locator(selector).innerText()).replace(/\s+/g, ' ');

const shows = (what) => async (page) => {
  const main = await text(page);
  for (const s of [what].flat()) assert.ok(main.includes(s), `the page says "${s}"; it reads: ${main.slice(0, 400)}`);
};

describe('the console', () => {
  let world;
  let foreign;
  const tabs = {}; // size name -> the signed-in person's tab
  const usedLinks = {};
  let spareLink; // bob's, asked for and never opened: it expires during the test
  let spareAskedAt;
  let control;

  before(async () => {
    world = await startConsole({ alertmanager: true, secondAfter: `${SECOND_AFTER_S}s` });
    foreign = await startForeignSite();
  });

  after(async () => {
    if (world) {
      console.log(`screenshots: ${world.session.dir}${world.session.updateDocs ? ' and docs/screenshots' : ''}`);
      await world.stop();
    }
    await foreign?.stop();
  });

  const check = (tab, name, spec = {}) => world.session.checkTab(tab, { name, dark: true, ...spec });
  const stateOf = async (id) => (await world.relay.incidents()).find((i) => i.id === id)?.state;

  it('a person signs in by push at each size and sees nothing firing', async () => {
    for (const size of SIZES) {
      const who = PEOPLE[size.name];
      const tab = await world.session.openTab(size);
      tabs[size.name] = tab;
      usedLinks[size.name] = await signIn(world.session, world.ntfy, tab, who, (name) => check(tab, name, {
        docs: name === 'console-signin',
        expect: {
          'console-signin': shows('Sign in'),
          'console-signin-sent': shows('a sign-in link is on its way'),
          'console-signin-link': shows('Sign in on this device'),
        }[name],
      }));
      await check(tab, 'console-now-empty', {
        expect: shows(['Nothing is firing', 'On call', 'primary', who.person]),
      });
    }
    await post(world.relay, criticalAlert(world.relay, CONTROL, 'Memory is short on host-3.'));
    control = await incidentNamed(world.relay, CONTROL);
  });

  it('an unknown name gets the same answer as a known one, and only the known phone a link', async () => {
    const tab = await world.session.openTab(SIZES[0]);
    const answer = async (name) => {
      await tab.page.goto(`${world.relay.url}/signin`);
      await askForLink(tab, name);
      const status = await tab.page.evaluate(() => performance.getEntriesByType('navigation')[0].responseStatus);
      return { status, text: await text(tab.page) };
    };
    const all = () => world.ntfy.pushes.filter((p) => String(p.sequence_id).startsWith('signin-')).length;
    const before = all();
    const bobs = signinPushes(world.ntfy, PEOPLE.desktop.topic).length;
    const unknown = await answer('mallory');
    spareAskedAt = Date.now();
    const known = await answer('bob');
    assert.deepEqual(unknown, known, 'the same page, the same status');
    await check(tab, 'console-signin-sent-unknown', { expect: shows('a sign-in link is on its way') });
    spareLink = await nthLink(world.ntfy, PEOPLE.desktop.topic, bobs + 1);
    assert.equal(all(), before + 1, 'one link sent: to bob, none for mallory');
    await tab.context.close();
  });

  describe('incidents arrive', { concurrency: 2 }, () => {
    for (const size of SIZES) {
      it(`shows it live, acknowledges it (no step 2), silences another for 1 h at ${sizeLabel(size)}`, async () => {
        const who = PEOPLE[size.name];
        const tab = tabs[size.name];
        const { page } = tab;
        const base = world.relay.url;
        const [acked, silenced] = ALERTS[size.name];

        // Now is open; an incident starts: the page shows it at its next refresh, not reloaded.
        await page.goto(`${base}/`);
        await page.evaluate(() => { window.__sameDocument = true; });
        await post(world.relay, criticalAlert(world.relay, acked, 'Nothing answers on the gateway.'));
        const posted = Date.now();
        const card = page.getByRole('link', { name: new RegExp(acked) });
        await card.waitFor({ timeout: 10_000 });
        const took = Date.now() - posted;
        assert.ok(took <= LIVE_MS, `shown ${took} ms after the webhook was taken (at most ${LIVE_MS})`);
        assert.equal(await page.evaluate(() => window.__sameDocument), true, 'shown without a reload');
        await check(tab, 'console-now', { docs: true, expect: shows([acked, 'Paging: step 1 of 2']) });

        await card.click();
        await page.waitForURL(/\/incidents\/\d+$/);
        const id = Number(new URL(page.url()).pathname.split('/').pop());
        const incidentUrl = page.url();
        const due = Date.parse((await world.relay.incidents()).find((i) => i.id === id).next_step.at);
        await check(tab, 'console-incident', {
          docs: true,
          expect: async (p) => {
            await shows(['Paging: step 1 of 2', 'Next: step 2 at', 'ntfy.secondary', 'Timeline', 'Paged'])(p);
            for (const name of ['Acknowledge', 'Escalate now', 'Resolve']) {
              assert.equal(await p.getByRole('button', { name, exact: true }).count(), 1, `a ${name} button`);
            }
            assert.equal(await p.getByRole('link', { name: 'Runbook' }).getAttribute('href'), `${base}/runbooks/${acked}`);
          },
        });

        // Acknowledge: the timeline says who, and nothing more is planned.
        await page.getByRole('button', { name: 'Acknowledge', exact: true }).click();
        await page.waitForURL(incidentUrl);
        assert.ok(Date.now() < due, 'acknowledged before step 2 was due (else the test proves nothing)');
        const by = `${who.person} in the console`;
        await check(tab, 'console-incident-acknowledged', {
          docs: true,
          expect: async (p) => {
            await shows(`Acknowledged by ${by}`)(p);
            assert.match(await text(p, 'ol.timeline li.ev-acknowledged'), new RegExp(`Acknowledged.*by ${by.replace(/[()]/g, '\\$&')}`));
            assert.equal(await p.getByRole('button', { name: 'Acknowledge', exact: true }).count(), 0, 'no Acknowledge button');
            assert.ok(!(await text(p)).includes('Next: step'), 'nothing more planned');
          },
        });

        // Refused, on the incident nobody acknowledges: its Acknowledge form sent from another
        // site (with a valid token, even), and sent from the console without its token.
        const controlUrl = `${base}/incidents/${control.id}`;
        await page.goto(controlUrl);
        const stateBefore = await stateOf(control.id);
        const token = await page.locator(`form[action$="/${control.id}/ack"] input[name=csrf]`).inputValue();
        foreign.form(`/${size.name}`, `${controlUrl}/ack`, { csrf: token }, 'Acknowledge');
        await page.goto(`${foreign.url}/${size.name}`);
        await page.getByRole('button', { name: 'Acknowledge' }).click();
        await page.waitForURL(`${controlUrl}/ack`);
        await check(tab, 'console-refused', { status: 403, expect: shows('not sent from the console') });
        await page.goto(controlUrl);
        await page.locator(`form[action$="/${control.id}/ack"] input[name=csrf]`).evaluate((input) => input.remove());
        await page.getByRole('button', { name: 'Acknowledge', exact: true }).click();
        await page.waitForURL(`${controlUrl}/ack`);
        await check(tab, 'console-refused-no-token', { status: 403, expect: shows('not sent from the console') });
        assert.equal(await stateOf(control.id), stateBefore, 'neither refused form acknowledged it');

        // Silence another for an hour: a silence in Alertmanager, created by the person.
        await post(world.relay, criticalAlert(world.relay, silenced, 'The disk fills within a day.'));
        await page.goto(`${base}/`);
        await page.getByRole('link', { name: new RegExp(silenced) }).click();
        await page.waitForURL(/\/incidents\/\d+$/);
        const silencedUrl = page.url();
        await page.getByText('Silence in Alertmanager').click();
        // An end in the past is refused with a page that says why; nothing is silenced.
        await page.getByLabel(/^Or until/).fill('2026-01-01T09:00');
        await page.getByRole('button', { name: 'Silence until then' }).click();
        await page.waitForURL(`${silencedUrl}/silence`);
        await check(tab, 'console-silence-refused', { status: 400, expect: shows('must be in the future') });
        await page.goto(silencedUrl);
        await page.getByText('Silence in Alertmanager').click();
        const asked = Date.now();
        await page.getByRole('button', { name: 'For 1 hour' }).click();
        await page.waitForURL(silencedUrl);
        await check(tab, 'console-incident-silenced', {
          expect: async (p) => {
            await shows([`Silenced by ${who.person} until`, 'Timeline'])(p);
            assert.doesNotMatch(await text(p), /\d{4}-\d\d-\d\dT\d\d:/, 'every time read in the viewer\'s zone');
          },
        });
        const silence = (await world.am.silences()).find((s) => s.matchers.some(
          (m) => m.name === 'alertname' && m.value === silenced && m.isEqual && !m.isRegex));
        assert.ok(silence, `a silence for ${silenced} in Alertmanager`);
        assert.equal(silence.createdBy, who.person);
        assert.equal(silence.status.state, 'active');
        const hour = Date.parse(silence.endsAt) - asked;
        assert.ok(Math.abs(hour - 3_600_000) < 60_000, `it ends in an hour (in ${hour} ms)`);

        // When step 2 would have come (the control shows it comes), nothing went to it.
        await waitUntil('step 2 to be due, and a moment', () => Date.now() > due + 3000, due - Date.now() + 10_000, 200);
        const stepTwo = world.ntfy.to(SECONDARY).filter((p) => p.sequence_id === `relay-${id}`);
        assert.deepEqual(stepTwo, [], 'step 2 paged after the acknowledgement');
      });
    }
  });

  it('the incident nobody acknowledged paged step 2 (so the test above could fail)', async () => {
    await waitUntil(`step 2 of ${CONTROL}`, () =>
      world.ntfy.to(SECONDARY).some((p) => p.sequence_id === `relay-${control.id}`), 45_000, 200);
  });

  it('Escalate now pages step 2 at once; Resolve closes the incident by hand', async () => {
    const tab = tabs.phone;
    const { page } = tab;
    const base = world.relay.url;
    await post(world.relay, criticalAlert(world.relay, ESCALATED, 'Answers take seconds.'));
    const { id } = await incidentNamed(world.relay, ESCALATED);
    const due = Date.parse((await world.relay.incidents()).find((i) => i.id === id).next_step.at);
    const incidentUrl = `${base}/incidents/${id}`;
    await page.goto(incidentUrl);
    await page.getByRole('button', { name: 'Escalate now', exact: true }).click();
    await page.waitForURL(incidentUrl);
    await waitUntil('step 2 paged by hand', () =>
      world.ntfy.to(SECONDARY).some((p) => p.sequence_id === `relay-${id}`), 10_000);
    assert.ok(Date.now() < due, 'step 2 came before it was due: at once, not on its timer');
    await check(tab, 'console-incident-escalated', {
      expect: async (p) => {
        assert.match(await text(p, 'ol.timeline li.ev-escalated'), /Escalated by hand.*alice/);
        assert.equal(await p.getByRole('button', { name: 'Escalate now', exact: true }).count(), 0,
          'no step left to escalate to');
      },
    });

    await page.getByRole('button', { name: 'Resolve', exact: true }).click();
    await page.waitForURL(incidentUrl);
    await check(tab, 'console-incident-resolved', {
      expect: async (p) => {
        await shows('Resolved at')(p);
        assert.match(await text(p, 'ol.timeline li.ev-resolved'), /Resolved.*alice/);
        for (const name of ['Acknowledge', 'Escalate now', 'Resolve']) {
          assert.equal(await p.getByRole('button', { name, exact: true }).count(), 0, `no ${name} button`);
        }
      },
    });
    assert.equal((await world.relay.incidents()).some((i) => i.id === id), false, 'no longer open');
    await page.goto(`${base}/`);
    assert.equal(await page.getByRole('link', { name: new RegExp(ESCALATED) }).count(), 0, 'gone from Now');
  });

  it('History lists the incident resolved by hand, and who carried the pager', async () => {
    for (const size of SIZES) {
      const tab = tabs[size.name];
      await tab.page.goto(`${world.relay.url}/history`);
      await check(tab, 'console-history', {
        docs: true,
        expect: async (p) => {
          await shows(['Resolved incidents', ESCALATED, 'Who carried the pager'])(p);
          assert.match(await text(p, 'table tbody'), /alice/, 'alice, paged by step 1, is counted');
        },
      });
    }
  });

  it('a page the vendor refuses is a dead letter, shown with the vendor\'s reason', async () => {
    await post(world.relay, criticalAlert(world.relay, DEAD, 'The disk is 95 % full.', { severity: 'warning' }));
    const { id } = await incidentNamed(world.relay, DEAD);
    await waitUntil(`a push to ${LOCKED}`, () => world.ntfy.denied.some((p) => p.sequence_id === `relay-${id}`));
    for (const size of SIZES) {
      const tab = tabs[size.name];
      // Given up on once the 403 is answered, a moment after the fake saw it.
      await waitUntil('the dead letter on the page', async () => {
        await tab.page.goto(`${world.relay.url}/dead-letters`);
        return (await text(tab.page)).includes(`incident ${id}`);
      });
      await check(tab, 'console-dead-letters', {
        expect: async (p) => {
          await shows(['ntfy.locked', 'forbidden', `incident ${id}`, 'given up'])(p);
        },
      });
    }
  });

  it('alice covers a shift of bob\'s and finds it on Schedules and Me; bob sees who covers him; the next page goes to whoever covers the shift now', async () => {
    const base = world.relay.url;
    const { page } = tabs.phone;
    await page.goto(`${base}/schedules`);
    await check(tabs.phone, 'console-schedules', { docs: true, expect: shows(['primary', 'Now:']) });
    await page.getByRole('link', { name: 'primary', exact: true }).click();
    await page.waitForURL(`${base}/schedules/primary`);
    const cover = page.getByRole('button', { name: /^Cover this shift of bob from/ }).first();
    const label = await cover.textContent();
    await cover.click();
    await page.waitForURL(`${base}/schedules/primary?done=covered`);
    await check(tabs.phone, 'console-schedule', {
      docs: true,
      expect: async (p) => {
        await shows(['you cover that shift', 'In place of bob, made by alice', 'Your overrides here'])(p);
        assert.equal(await p.getByRole('button', { name: /^Remove this override/ }).count(), 1, 'hers to remove');
      },
    });
    await page.goto(`${base}/me`);
    await check(tabs.phone, 'console-me', {
      expect: async (p) => {
        const starts = /from (.+)$/.exec(label.trim())[1];
        assert.ok((await text(p, 'ul.cards >> nth=0')).includes(`primary override ${starts} →`),
          `the shift covered (${label}) is among hers, marked as an override`);
      },
    });

    const bobs = tabs.desktop.page;
    await bobs.goto(`${base}/schedules`);
    await check(tabs.desktop, 'console-schedules', { docs: true, expect: shows(['primary', 'Now:']) });
    await bobs.getByRole('link', { name: 'primary', exact: true }).click();
    await bobs.waitForURL(`${base}/schedules/primary`);
    await check(tabs.desktop, 'console-schedule', {
      docs: true,
      expect: async (p) => {
        await shows('In place of bob, made by alice')(p);
        assert.equal(await p.getByRole('button', { name: /^Remove this override/ }).count(), 0, 'not his to remove');
      },
    });

    // The pager changes hands now: if alice's cover did not already take the current shift,
    // bob covers hers; either way the next page of the schedule goes to whoever covers it.
    const onCall = async () => /On call now: (\w+)/.exec(await text(bobs))?.[1];
    let coverer = 'alice';
    if (!(await text(bobs, 'ol.shifts > li >> nth=0')).includes('override')) {
      coverer = 'bob';
      await bobs.getByRole('button', { name: /^Cover this shift of alice from/ }).first().click();
      await bobs.waitForURL(`${base}/schedules/primary?done=covered`);
    }
    assert.equal(await onCall(), coverer, `${coverer} is on call now, by override`);
    const topics = { alice: PEOPLE.phone.topic, bob: PEOPLE.desktop.topic };
    const other = coverer === 'alice' ? 'bob' : 'alice';
    const before = world.ntfy.to(topics[other]).length;
    await post(world.relay, criticalAlert(world.relay, 'CoveredShiftPage', 'after the cover'));
    const paged = await incidentNamed(world.relay, 'CoveredShiftPage');
    await waitUntil(`the page of incident ${paged.id} at ${coverer}'s phone`, () =>
      world.ntfy.to(topics[coverer]).some((p) => p.sequence_id === `relay-${paged.id}`), 10_000);
    assert.equal(world.ntfy.to(topics[other]).length, before, `nothing more for ${other}, who is covered`);
  });

  it('without a session every page and form sends one to sign in', async () => {
    const base = world.relay.url;
    for (const path of ['/', '/incidents/1', '/schedules', '/me', '/history', '/dead-letters']) {
      const answer = await fetch(`${base}${path}`, { redirect: 'manual' });
      assert.equal(answer.status, 303, `GET ${path}`);
      assert.equal(answer.headers.get('location'), '/signin', `GET ${path}`);
    }
    for (const path of [`/incidents/${control.id}/ack`, `/incidents/${control.id}/resolve`, '/schedules/primary/cover']) {
      const answer = await fetch(`${base}${path}`, {
        method: 'POST', redirect: 'manual', body: new URLSearchParams({ csrf: 'x' }),
      });
      assert.equal(answer.status, 303, `POST ${path}`);
      assert.equal(answer.headers.get('location'), '/signin', `POST ${path}`);
    }
    assert.equal((await world.relay.incidents()).some((i) => i.id === control.id), true, 'still open');
  });

  it('a used or expired sign-in link, and an incident that is not there, show their page', async () => {
    const tab = tabs.phone;
    await tab.page.goto(usedLinks.phone);
    await tab.page.getByRole('button', { name: 'Sign in' }).click();
    await tab.page.waitForLoadState('load');
    await check(tab, 'console-signin-link-used', { status: 410, expect: shows('used already or has expired') });

    const fresh = await world.session.openTab(SIZES[1]);
    await waitUntil('the spare link to expire', () => Date.now() > spareAskedAt + LINK_TTL_MS + 1000, LINK_TTL_MS + 5000, 200);
    await fresh.page.goto(spareLink);
    await fresh.page.getByRole('button', { name: 'Sign in' }).click();
    await fresh.page.waitForLoadState('load');
    await check(fresh, 'console-signin-link-expired', { status: 410, expect: shows('used already or has expired') });
    await fresh.page.goto(`${world.relay.url}/`);
    assert.equal(new URL(fresh.page.url()).pathname, '/signin', 'no session from an expired link');
    await fresh.context.close();

    await tab.page.goto(`${world.relay.url}/incidents/999999`);
    await check(tab, 'console-not-found', { status: 404, expect: shows('There is no such incident') });
  });

  it('the fake ntfy refused nothing the relay sent', () => {
    assert.deepEqual(world.ntfy.refused, []);
  });
});
