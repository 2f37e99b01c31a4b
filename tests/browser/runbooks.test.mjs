// The runbook pages the relay serves today, in real Chromium at phone and desktop size, on a
// relay fed webhooks whose labels carry script.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { SIZES, sizeLabel } from './lib/browser.mjs';
import { HOSTILE_ALERTNAME, hostileAnnotations, hostileLabels } from './lib/payloads.mjs';
import { webhook } from './lib/relay.mjs';
import { Session } from './lib/session.mjs';
import { RUNBOOK_PAGES, TEST_RUNBOOKS } from './pages.mjs';

const WEBHOOKS = [
  webhook({ alertname: 'GatewayHighErrorRate', severity: 'critical', service: 'gateway' },
    { summary: 'The gateway answers too many requests with 5xx.' }),
  webhook(hostileLabels(HOSTILE_ALERTNAME), hostileAnnotations()),
];

// Two checks at a time: one per core, and the phone and desktop tabs of a page side by side.
describe('runbook pages', { concurrency: 2 }, () => {
  let session;

  before(async () => {
    session = await Session.start({ runbooks: TEST_RUNBOOKS });
    for (const body of WEBHOOKS) {
      const answer = await session.relay.post(body);
      assert.equal(answer.status, 200, `webhook refused: ${JSON.stringify(answer.body)}`);
    }
  });

  after(async () => {
    if (session) {
      console.log(`screenshots: ${session.dir}${session.updateDocs ? ' and docs/screenshots' : ''}`);
      await session.stop();
    }
  });

  it('the relay holds the incidents, labels with script and all', async () => {
    const names = (await session.relay.incidents()).map((i) => i.common_labels.alertname);
    assert.ok(names.includes('GatewayHighErrorRate') && names.includes(HOSTILE_ALERTNAME),
      `incidents: ${JSON.stringify(names)}`);
  });

  for (const spec of RUNBOOK_PAGES) {
    for (const size of SIZES) {
      it(`${spec.name} at ${sizeLabel(size)}`, () => session.check(spec, size));
    }
  }
});
