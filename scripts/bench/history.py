#!/usr/bin/env python3
"""The console's History and Dead letters pages with a long history: a release relay on
SQLite (or PostgreSQL with --database-url) is fed N incidents through webhooks (paged,
delivered to a fake ntfy, half acknowledged through the API, all resolved) and 50 that stay
open; then each page is asked for R times, one request after the other on one kept-alive
connection, and the time to the whole answer is reported (p50, p99, max; loopback, so this
is the server's time plus ~0.1 ms). See docs/benchmarks.md.

  cargo build --release --locked -p alert-relay --bin alert-relay
  python3 scripts/bench/history.py                       # SQLite
  scripts/start-postgres -- sh -c 'python3 scripts/bench/history.py --database-url "$RELAY_TEST_DATABASE_URL"'
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import os
import re
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "release" / "alert-relay"
TOKEN = "bench-token-0123456789abcdef"
NAMES = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ntfy(http.server.BaseHTTPRequestHandler):
    """Takes every push at once."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self._answer(b'{"id":"x","event":"message"}')

    def do_GET(self):
        self._answer(b'{"healthy":true}')

    def _answer(self, body: bytes):
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


def policy(ntfy: int) -> str:
    url = f"http://127.0.0.1:{ntfy}"
    people = "".join(
        f"  {p}:\n    time_zone: {z}\n    ntfy: {{url: \"{url}\", topic: {p}, token: tk_bench}}\n"
        for p, z in [("alice", "Europe/Berlin"), ("bob", "America/New_York"), ("carol", "UTC")])
    return f"""
server:
  webhook_auth: {{bearer_token: "{TOKEN}"}}
  ack_secret: "an-ack-secret-of-sufficient-length"
  console_auth:
    proxy: {{header: X-Forwarded-Email, trusted_proxies: ["127.0.0.1"]}}
delivery: {{healthcheck_interval: 0s}}
targets: {{}}
people:
{people}policies:
  - name: critical
    matchers: ['severity="critical"']
    steps: [{{after: 0s, notify: [person.alice]}}, {{after: 1h, notify: [person.bob]}}]
  - name: warning
    matchers: ['severity="warning"']
    steps: [{{after: 0s, notify: [person.bob]}}]
  - name: info
    steps: [{{after: 0s, notify: [person.carol]}}]
"""


def webhook(i: int, status: str) -> bytes:
    name = f"Alert{i % NAMES}"
    severity = ["critical", "warning", "info"][i % 3]
    labels = {"alertname": name, "severity": severity, "instance": f"host-{i}"}
    return json.dumps({
        "version": "4", "groupKey": f"{{}}:{{n=\"{i}\"}}", "status": status, "receiver": "relay",
        "groupLabels": {"n": str(i)}, "commonLabels": labels,
        "commonAnnotations": {"summary": f"{name} on host-{i}: the gateway answers 5xx"},
        "externalURL": "http://am:9093", "truncatedAlerts": 0,
        "alerts": [{"status": status, "labels": labels, "annotations": {"summary": "bench"},
                    "startsAt": "2026-11-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus/graph", "fingerprint": f"{i:016x}"}],
    }).encode()


class Client(threading.local):
    def __init__(self, port: int):
        self.port = port
        self.conn = None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        for _ in range(3):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                answer = self.conn.getresponse()
                return answer.status, answer.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
        raise RuntimeError(f"{method} {path} failed")


def metric(c: Client, name: str) -> float:
    _, body = c.request("GET", "/metrics")
    m = re.search(rf"^{re.escape(name)} (\S+)$", body.decode(), re.M)
    return float(m.group(1)) if m else 0.0


def drained(c: Client, limit: float = 600):
    deadline = time.time() + limit
    while metric(c, "relay_outbox_depth") > 0:
        if time.time() > deadline:
            raise TimeoutError("the outbox does not drain")
        time.sleep(0.5)


def seed(port: int, n: int):
    c = Client(port)
    auth = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}

    def each(fn, items):
        with ThreadPoolExecutor(8) as pool:
            for status in pool.map(fn, items):
                assert status == 200, status

    each(lambda i: c.request("POST", "/webhook", webhook(i, "firing"), auth)[0], range(n + 50))
    drained(c)
    _, body = c.request("GET", "/api/v1/incidents?limit=1000", headers=auth)
    first = min(i["id"] for i in json.loads(body)["incidents"])
    people = ["alice", "bob (console)", "ack link", "carol@example.org"]
    each(lambda i: c.request("POST", f"/api/v1/incidents/{first + i}/ack", b"",
                             {**auth, "x-acknowledged-by": people[i % 4]})[0], range(0, n, 2))
    each(lambda i: c.request("POST", "/webhook", webhook(i, "resolved"), auth)[0], range(n))
    drained(c)


def measure(port: int, path: str, requests: int) -> dict:
    c = Client(port)
    who = {"x-forwarded-email": "alice"}
    times = []
    for k in range(requests + 10):
        start = time.perf_counter()
        status, body = c.request("GET", path, headers=who)
        took = time.perf_counter() - start
        assert status == 200, (path, status, body[:200])
        if k >= 10:
            times.append(took * 1000)
    times.sort()
    return {"page": path, "p50_ms": round(statistics.median(times), 2),
            "p99_ms": round(times[int(len(times) * 0.99) - 1], 2), "max_ms": round(times[-1], 2),
            "bytes": len(body)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--incidents", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--database-url")
    args = ap.parse_args()
    ntfy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ntfy)
    threading.Thread(target=ntfy.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "policy.yml").write_text(policy(ntfy.server_address[1]))
        port = free_port()
        argv = [BIN, "serve", "--config", Path(tmp) / "policy.yml", "--listen", f"127.0.0.1:{port}",
                "--data-dir", Path(tmp) / "data"]
        if args.database_url:
            argv += ["--database-url", args.database_url]
        relay = subprocess.Popen([str(a) for a in argv], stdout=subprocess.DEVNULL,
                                 stderr=open(Path(tmp) / "relay.log", "w"), env={**os.environ, "RUST_LOG": "warn"})
        try:
            c = Client(port)
            for _ in range(200):
                try:
                    if c.request("GET", "/ready")[0] == 200:
                        break
                except RuntimeError:
                    pass
                time.sleep(0.05)
            started = time.time()
            seed(port, args.incidents)
            seeded = round(time.time() - started, 1)
            _, first = c.request("GET", "/history", headers={"x-forwarded-email": "alice"})
            older = re.search(r'href="(/history\?[^"]*older=[^"]*)"', first.decode()).group(1).replace("&amp;", "&").replace("&#38;", "&")
            deep = older
            for _ in range(20):
                _, page = c.request("GET", deep, headers={"x-forwarded-email": "alice"})
                deep = re.search(r'href="(/history\?[^"]*older=[^"]*)"', page.decode()).group(1).replace("&amp;", "&").replace("&#38;", "&")
            pages = ["/history", "/history?days=90", older, deep, "/history?alertname=Alert7",
                     "/history?severity=warning&policy=warning", "/history?alertname=NoSuchAlert",
                     "/dead-letters", "/"]
            backend = "postgresql" if args.database_url else "sqlite"
            print(json.dumps({"backend": backend, "incidents": args.incidents, "seed_s": seeded}))
            for path in pages:
                print(json.dumps({"backend": backend, **measure(port, path, args.requests)}), flush=True)
        finally:
            relay.terminate()
            relay.wait(10)
            ntfy.shutdown()


if __name__ == "__main__":
    main()
