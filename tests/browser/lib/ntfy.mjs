// A fake ntfy server in this process: records every push it accepts and refuses what ntfy
// refuses, with ntfy's own answer, so that a relay sending what a real server would turn
// down fails here too (STYLE 19). The limits are ntfy's documented ones
// (https://docs.ntfy.sh/publish/, server/errors.go), written independently of the relay's
// request builder, as in alert-relay/tests/it/fakes.rs:
// - a JSON publish body over 8,192 bytes → 413 (41303)
// - a body that is not a JSON object → 400 (40026)
// - a message over 4,096 bytes → 413 (41303)
// - no topic, or one that is not 1–64 of [-_A-Za-z0-9] → 400 (40009)
// - a priority outside 1–5 → 400 (40007); more than 3 actions → 400 (40018)
// It answers the relay's healthcheck (GET /v1/health) as a healthy server does. Topics in
// `forbidden` answer 403 (40301) as ntfy does to a publisher its access control denies.

import http from 'node:http';

const MAX_BODY_BYTES = 8192;
const MAX_MESSAGE_BYTES = 4096;
const TOPIC = /^[-_A-Za-z0-9]{1,64}$/;

/** What ntfy would answer a JSON publish `body` (a Buffer): `null` if accepted. */
export function refusal(body) {
  const no = (http, code, error) => ({ http, code, error });
  if (body.length > MAX_BODY_BYTES) return no(413, 41303, 'request entity too large');
  let message;
  try {
    message = JSON.parse(body.toString('utf8'));
  } catch {
    return no(400, 40026, 'invalid request: request body must be message JSON');
  }
  if (typeof message !== 'object' || message === null || Array.isArray(message)) {
    return no(400, 40026, 'invalid request: request body must be message JSON');
  }
  if (Buffer.byteLength(String(message.message ?? ''), 'utf8') > MAX_MESSAGE_BYTES) {
    return no(413, 41303, 'request entity too large');
  }
  if (typeof message.topic !== 'string' || !TOPIC.test(message.topic)) {
    return no(400, 40009, 'invalid request: topic invalid');
  }
  if ('priority' in message && !(Number.isInteger(message.priority) && message.priority >= 1 && message.priority <= 5)) {
    return no(400, 40007, 'invalid priority');
  }
  if (Array.isArray(message.actions) && message.actions.length > 3) {
    return no(400, 40018, 'invalid request: too many actions');
  }
  return null;
}

/**
 * Starts the fake on a free loopback port. Returns { url, pushes, refused, denied, stop() }:
 * `pushes` are the accepted messages (parsed JSON, with `at`, the time received), in order;
 * `refused` the requests refused as malformed ({ status, error, bytes }); `denied` the
 * well-formed messages to a topic of `forbidden` (answered 403).
 */
export async function startFakeNtfy({ forbidden = [] } = {}) {
  const pushes = [];
  const refused = [];
  const denied = [];
  const answer = (res, status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (req.method === 'GET' && req.url === '/v1/health') return answer(res, 200, { healthy: true });
      if (req.method !== 'POST' || req.url !== '/') {
        return answer(res, 404, { code: 40401, http: 404, error: 'page not found' });
      }
      const no = refusal(body);
      if (no) {
        refused.push({ status: no.http, error: no.error, bytes: body.length });
        return answer(res, no.http, no);
      }
      const message = JSON.parse(body.toString('utf8'));
      if (forbidden.includes(message.topic)) {
        denied.push({ ...message, at: Date.now() });
        return answer(res, 403, { code: 40301, http: 403, error: 'forbidden', link: 'https://ntfy.sh/docs/publish/#authentication' });
      }
      pushes.push({ ...message, at: Date.now() });
      answer(res, 200, { id: `m${pushes.length}`, time: Math.floor(Date.now() / 1000), event: 'message', topic: message.topic });
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    pushes,
    refused,
    denied,
    /** The pushes to `topic`. */
    to: (topic) => pushes.filter((p) => p.topic === topic),
    stop: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}
