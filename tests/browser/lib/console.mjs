// The world of the console's browser tests: a real relay whose people are reached through a
// fake ntfy run here (lib/ntfy.mjs), optionally a real Alertmanager, and how a person signs
// in: asks for a link by name, reads it from the push their phone got, opens it, presses
// Sign in.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';

import { startAlertmanager } from './alertmanager.mjs';
import { startFakeNtfy } from './ntfy.mjs';
import { serverSection, waitUntil, webhook } from './relay.mjs';
import { Session } from './session.mjs';

/** Who signs in at each size (lib/browser.mjs SIZES), and how they give their name. */
export const PEOPLE = {
  phone: { person: 'alice', asks: 'alice@example.org', topic: 'alice-phone' },
  desktop: { person: 'bob', asks: 'bob', topic: 'bob-phone' },
};

/** The ntfy topic of the second step (whoever is on call gets the first). */
export const SECONDARY = 'oncall-secondary';

/** The ntfy topic the fake refuses (403, as ntfy's access control does): its pages are dead letters. */
export const LOCKED = 'locked-topic';

/** How long a pushed sign-in link works here: the shortest the relay allows. */
export const LINK_TTL_MS = 30_000;

/**
 * The policy: alice and bob, each with an ntfy topic on the fake, take turns on the schedule
 * `primary`; a critical alert pages whoever is on call at once and `ntfy.secondary` after
 * `secondAfter` — soon enough that a test sees step 2 come when nobody acknowledges; a
 * warning pages `ntfy.locked` only, a topic the fake refuses, so that it becomes a dead letter.
 */
export function consolePolicy({ ntfy, alertmanager, secondAfter, publicUrl, proxyHeader }) {
  const topic = (t) => `{url: "${ntfy}", topic: ${t}}`;
  const proxy = proxyHeader ? `    proxy: {header: ${proxyHeader}, trusted_proxies: ["127.0.0.1"]}\n` : '';
  const extra = `${alertmanager ? `  alertmanager_url: ${alertmanager}\n` : ''}  console_auth:
    link_ttl: ${LINK_TTL_MS / 1000}s
${proxy}`;
  return (port) => `${serverSection(port, extra, publicUrl)}delivery:
  timeout: 2s
  initial_backoff: 100ms
  max_backoff: 400ms
  give_up_after: 1h
targets:
  ntfy:
    secondary: ${topic(SECONDARY)}
    locked: ${topic(LOCKED)}
people:
  alice:
    time_zone: Europe/Berlin
    email: alice@example.org
    ntfy: ${topic(PEOPLE.phone.topic)}
  bob:
    ntfy: ${topic(PEOPLE.desktop.topic)}
schedules:
  primary:
    time_zone: Europe/Berlin
    rotations:
      - people: [alice, bob]
        shift: 1w
        handoff: {weekday: monday, time: "09:00"}
        start: "2026-01-05"
policies:
  - name: critical
    matchers: ['severity="critical"']
    steps:
      - after: 0s
        notify: [schedule.primary]
      - after: ${secondAfter}
        notify: [ntfy.secondary]
  - name: warning
    matchers: ['severity="warning"']
    steps:
      - after: 0s
        notify: [ntfy.locked]
`;
}

/**
 * Starts the fake ntfy, Alertmanager when `alertmanager` is true, and a Session (relay and
 * Chromium) on the console policy; `publicUrl` and `proxyHeader` put it behind a proxy
 * (`server.public_url`, `server.console_auth.proxy.header` trusted from 127.0.0.1).
 * Returns { session, relay, ntfy, am, stop() }.
 */
export async function startConsole({
  alertmanager = false, secondAfter = '30s', publicUrl, proxyHeader,
} = {}) {
  const ntfy = await startFakeNtfy({ forbidden: [LOCKED] });
  let am = null;
  let session = null;
  const stop = async () => {
    await session?.stop();
    await am?.stop();
    await ntfy.stop();
  };
  try {
    if (alertmanager) am = await startAlertmanager();
    session = await Session.start({
      policy: consolePolicy({ ntfy: ntfy.url, alertmanager: am?.url, secondAfter, publicUrl, proxyHeader }),
    });
  } catch (error) {
    await stop();
    throw error;
  }
  return { session, relay: session.relay, ntfy, am, stop };
}

/** The sign-in pushes `topic` received, oldest first. */
export const signinPushes = (ntfy, topic) =>
  ntfy.to(topic).filter((p) => String(p.sequence_id).startsWith('signin-'));

/** Waits for the `n`th sign-in push to `topic` (counting from 1); its link. */
export async function nthLink(ntfy, topic, n) {
  const push = await waitUntil(`sign-in push ${n} to ${topic}`, () => signinPushes(ntfy, topic)[n - 1], 10_000);
  return push.click;
}

/** Asks for a sign-in link as a person would, on the sign-in page `tab` is on. */
export async function askForLink(tab, name) {
  const { page } = tab;
  await page.getByLabel('Your name or e-mail address').fill(name);
  await page.getByRole('button', { name: 'Send me a sign-in link' }).click();
  await page.waitForLoadState('load');
}

/**
 * Signs `who` (an entry of PEOPLE) in on `tab` by push, from a signed-out start, at the
 * console's `base` (the relay's URL unless behind a proxy); `check(name)` is called on each
 * page along the way (the sign-in page, the answer, the link's page). Returns the link (used
 * now).
 */
export async function signIn(session, ntfy, tab, who, check = async () => {}, base = session.relay.url) {
  const { page } = tab;
  await page.goto(`${base}/`);
  assert.equal(page.url(), `${base}/signin`, 'signed out, the console asks who you are');
  await check('console-signin');
  const before = signinPushes(ntfy, who.topic).length;
  await askForLink(tab, who.asks);
  await check('console-signin-sent');
  const link = await nthLink(ntfy, who.topic, before + 1);
  assert.ok(link.startsWith(`${base}/signin/`), `the push links to the console's sign-in page: ${link}`);
  await page.goto(link);
  await check('console-signin-link');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/`);
  return link;
}

/** A critical alert named `name`, with a summary and a runbook the relay serves. */
export function criticalAlert(relay, name, summary, labels = {}) {
  return webhook(
    { alertname: name, severity: 'critical', service: 'gateway', instance: `gw-${randomBytes(2).toString('hex')}`, ...labels },
    { summary, runbook_url: `${relay.url}/runbooks/${name}` },
  );
}

/** Posts `body` to the relay's webhook; fails unless it is taken. */
export async function post(relay, body) {
  const answer = await relay.post(body);
  assert.equal(answer.status, 200, `webhook refused: ${JSON.stringify(answer.body)}`);
}

/** The open incident whose alert name is `name`, once the relay has it. */
export async function incidentNamed(relay, name) {
  return waitUntil(`an incident for ${name}`,
    async () => (await relay.incidents()).find((i) => i.common_labels.alertname === name));
}
