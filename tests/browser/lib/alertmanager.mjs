// A real Alertmanager (Debian's prometheus-alertmanager, installed by tests/browser/run) on a
// free loopback port, with a route to nowhere: the console's silences are made in it and read
// back from its API, as alert-relay/tests/it/helpers.rs `start_alertmanager` does.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { freePort, waitUntil } from './relay.mjs';

const CONFIG = 'route:\n  receiver: none\nreceivers:\n  - name: none\n';

/** Starts Alertmanager. Returns { url, silences(), stop() }. */
export async function startAlertmanager() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-browser-am-'));
  fs.writeFileSync(path.join(dir, 'am.yml'), CONFIG);
  const port = await freePort();
  const logPath = path.join(dir, 'alertmanager.log');
  const logFd = fs.openSync(logPath, 'a');
  const child = spawn('prometheus-alertmanager', [
    `--config.file=${path.join(dir, 'am.yml')}`,
    `--storage.path=${dir}`,
    `--web.listen-address=127.0.0.1:${port}`,
    '--cluster.listen-address=',
  ], { stdio: ['ignore', logFd, logFd] });
  fs.closeSync(logFd);
  let exited = null;
  child.on('error', (error) => { exited = { error: error.message }; });
  child.on('exit', (code, signal) => { exited = { code, signal }; });
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (!exited) {
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(timer);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitUntil('Alertmanager to be ready', async () => {
      if (exited) {
        throw new Error(`prometheus-alertmanager exited (${JSON.stringify(exited)}):\n` +
          fs.readFileSync(logPath, 'utf8').slice(-2000));
      }
      try {
        return (await fetch(`${url}/-/ready`)).status === 200;
      } catch {
        return false;
      }
    });
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    url,
    /** Every silence Alertmanager holds (GET /api/v2/silences). */
    async silences() {
      const response = await fetch(`${url}/api/v2/silences`);
      if (!response.ok) throw new Error(`GET /api/v2/silences answered ${response.status}`);
      return response.json();
    },
    stop,
  };
}
