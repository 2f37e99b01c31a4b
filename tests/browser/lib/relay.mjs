// A real `alert-relay serve` (the built binary) on a free loopback port, fed by webhooks.
//
// The default policy pages only the `log` target, so no vendor is needed (a test may bring its
// own, see `startRelay`); the runbooks served are a copy of docs/runbooks plus the test's own
// extra pages.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** The binary: RELAY_BIN (set by tests/browser/run), else the default cargo target dir. */
export function relayBinary() {
  if (process.env.RELAY_BIN) return process.env.RELAY_BIN;
  const target = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
  return path.join(target, 'debug', 'alert-relay');
}

/**
 * The `server:` section every test relay starts with: its public URL is itself (or
 * `publicUrl`, a proxy in front of it), and the secrets come from the environment (never
 * written to the file). `extra` is more of the section's keys, each line indented by two
 * spaces.
 */
export function serverSection(port, extra = '', publicUrl = `http://127.0.0.1:${port}`) {
  return `server:
  public_url: ${publicUrl}
  webhook_auth:
    bearer_token: \${RELAY_WEBHOOK_TOKEN}
  ack_secret: \${RELAY_ACK_SECRET}
${extra}`;
}

// `log` pages to stdout.
function defaultPolicy(port) {
  return `${serverSection(port)}targets:
  log:
    audit: {path: "-"}
policies:
  - name: everything
    steps:
      - after: 0s
        notify: [log.audit]
`;
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Polls `check()` until it returns a truthy value; throws with `what` after `deadlineMs`. */
export async function waitUntil(what, check, deadlineMs = 20_000, intervalMs = 50) {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Starts the relay. `runbooks` maps extra runbook names to Markdown, served beside a copy of
 * docs/runbooks (a page the tests need, such as one carrying script payloads); `policy(port)`
 * writes the policy file for the port the relay will listen on (default: page `log` only).
 * Returns { url, token, workdir, post(body), incidents(), log(), stop() }.
 */
export async function startRelay({ runbooks = {}, policy = defaultPolicy } = {}) {
  const binary = relayBinary();
  if (!fs.existsSync(binary)) {
    throw new Error(`${binary} is missing: build it (cargo build -p alert-relay) or set RELAY_BIN`);
  }
  const workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-browser-'));
  const runbookDir = path.join(workdir, 'runbooks');
  fs.cpSync(path.join(ROOT, 'docs', 'runbooks'), runbookDir, { recursive: true });
  for (const [name, markdown] of Object.entries(runbooks)) {
    fs.writeFileSync(path.join(runbookDir, `${name}.md`), markdown);
  }
  const port = await freePort();
  fs.writeFileSync(path.join(workdir, 'policy.yml'), policy(port));
  const token = randomBytes(16).toString('hex');
  const logPath = path.join(workdir, 'relay.log');
  const logFd = fs.openSync(logPath, 'a');
  const child = spawn(
    binary,
    ['serve', '--config', 'policy.yml', '--listen', `127.0.0.1:${port}`, '--data-dir', 'data',
      '--runbooks', runbookDir],
    {
      cwd: workdir,
      stdio: ['ignore', logFd, logFd],
      env: {
        ...process.env,
        RELAY_WEBHOOK_TOKEN: token,
        RELAY_ACK_SECRET: randomBytes(32).toString('hex'),
        RUST_LOG: process.env.RUST_LOG || 'info',
      },
    },
  );
  fs.closeSync(logFd);
  let exited = null;
  child.on('exit', (code, signal) => { exited = { code, signal }; });
  const url = `http://127.0.0.1:${port}`;
  const log = () => fs.readFileSync(logPath, 'utf8');
  try {
    await waitUntil('the relay to be ready', async () => {
      if (exited) throw new Error(`the relay exited (${JSON.stringify(exited)}):\n${log().slice(-3000)}`);
      try {
        return (await fetch(`${url}/ready`)).status === 200;
      } catch {
        return false; // not listening yet
      }
    });
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }

  return {
    url,
    token,
    workdir,
    log,
    /** POSTs an Alertmanager webhook with the bearer token; returns { status, body }. */
    async post(body) {
      const response = await fetch(`${url}/webhook`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify(body),
      });
      return { status: response.status, body: await response.json() };
    },
    /** GET `apiPath` of the relay's API with the bearer token; its JSON. */
    async api(apiPath) {
      const response = await fetch(`${url}${apiPath}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      if (!response.ok) throw new Error(`GET ${apiPath} answered ${response.status}`);
      return response.json();
    },
    /** The relay's open incidents (GET /api/v1/incidents). */
    async incidents() {
      return (await this.api('/api/v1/incidents')).incidents;
    },
    async stop() {
      if (!exited) {
        const gone = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await gone;
        clearTimeout(timer);
      }
      if (!process.env.KEEP_RELAY_DIR) fs.rmSync(workdir, { recursive: true, force: true });
    },
  };
}

/** An Alertmanager v4 webhook with one firing alert carrying `labels` and `annotations`. */
export function webhook(labels, annotations = {}) {
  const groupLabels = { alertname: labels.alertname };
  return {
    version: '4',
    groupKey: `{}:{alertname=${JSON.stringify(labels.alertname)}}`,
    truncatedAlerts: 0,
    status: 'firing',
    receiver: 'relay',
    groupLabels,
    commonLabels: labels,
    commonAnnotations: annotations,
    externalURL: 'http://alertmanager.test:9093',
    alerts: [{
      status: 'firing',
      labels,
      annotations,
      startsAt: new Date().toISOString(),
      endsAt: '0001-01-01T00:00:00Z',
      generatorURL: 'http://prometheus.test:9090/graph',
      fingerprint: randomBytes(8).toString('hex'),
    }],
  };
}
