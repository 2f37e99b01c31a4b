"""The console's cost (imported by bench.py, `scripts/bench/run console`): server time per
page with 50 open incidents and 10,000 resolved ones in history, on SQLite and on
PostgreSQL (every incident pages alice, through a log file, so the per-person numbers have
all of them to count); the bytes of a first load of the Now page; the relay's idle memory with the
console on and off. A person is named by the trusted-proxy header, so no sign-in is timed."""

from __future__ import annotations

import http.client
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import bench
from bench import REL, TOKEN, Proc, emit, free_port, wait_http

POLICY = """server:
  public_url: http://127.0.0.1:{port}/
  webhook_auth:
    bearer_token: "{token}"
  ack_secret: "a-bench-ack-secret-of-enough-length"
  max_body_bytes: 33554432
  console: {console}
  console_auth:
    proxy: {{header: X-Forwarded-Email, trusted_proxies: [127.0.0.1]}}
delivery:
  timeout: 10s
targets:
  log:
    audit: {{path: "{log}"}}
people:
  alice:
    time_zone: Europe/Berlin
    email: alice@example.org
    log: {{path: "{alice_log}"}}
schedules:
  primary:
    time_zone: Europe/Berlin
    rotations:
      - people: [alice]
        shift: 1w
        handoff: {{weekday: monday, time: "09:00"}}
        start: "2026-01-05"
policies:
  - name: critical
    matchers: ['severity="critical"']
    steps:
      - {{after: 0s, notify: [schedule.primary]}}
      - {{after: 1h, notify: [log.audit]}}
"""


def webhook(name: str, status: str) -> bytes:
    alert = {"status": status, "labels": {"alertname": name, "severity": "critical", "instance": "host-1"},
             "annotations": {"summary": f"{name} is failing", "runbook_url": f"https://runbooks.example/{name}"},
             "startsAt": "2026-12-07T00:00:00Z", "fingerprint": f"fp-{name}"}
    return json.dumps({
        "version": "4", "groupKey": f"{{}}:{{alertname=\"{name}\"}}", "status": status, "receiver": "relay",
        "groupLabels": {"alertname": name}, "commonLabels": {"alertname": name, "severity": "critical"},
        "commonAnnotations": alert["annotations"], "externalURL": "http://am", "truncatedAlerts": 0,
        "alerts": [alert]}).encode()


class Relay:
    def __init__(self, console: bool = True, database_url: str | None = None):
        self.tmp = Path(tempfile.mkdtemp())
        self.port = free_port()
        policy = self.tmp / "policy.yml"
        policy.write_text(POLICY.format(port=self.port, token=TOKEN, console=str(console).lower(),
                                        log=self.tmp / "audit.log", alice_log=self.tmp / "alice.log"))
        database = ["--database-url", database_url] if database_url else []
        self.proc = Proc([REL / "alert-relay", "serve", "--config", policy, "--listen", f"127.0.0.1:{self.port}",
                          "--data-dir", self.tmp / "data", *database], env={"RUST_LOG": "warn"})
        wait_http(self.port, "/ready")
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        self.conn.request(method, path, body=body, headers=headers or {})
        answer = self.conn.getresponse()
        return answer.status, answer.read()

    def webhook(self, body: bytes):
        status, text = self.request("POST", "/webhook", body, {"Authorization": f"Bearer {TOKEN}",
                                                              "Content-Type": "application/json"})
        assert status == 200, (status, text)

    def close(self):
        self.conn.close()
        self.proc.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def timed(relay: Relay, path: str, n: int) -> dict:
    headers = {"X-Forwarded-Email": "alice@example.org"}
    times = []
    for _ in range(n):
        start = time.perf_counter()
        status, body = relay.request("GET", path, headers=headers)
        times.append((time.perf_counter() - start) * 1000)
        assert status == 200, (path, status, body[:200])
    times.sort()
    return {"p50_ms": round(times[len(times) // 2], 2), "p99_ms": round(times[int(len(times) * 0.99)], 2),
            "max_ms": round(times[-1], 2), "bytes": len(body)}


def bench_console(history: int = 10_000, open_: int = 50, n: int = 400):
    pg = bench.Postgres(False)
    out = {}
    try:
        for backend in ("sqlite", "postgres"):
            relay = Relay(database_url=pg.fresh() if backend == "postgres" else None)
            try:
                seeded = time.perf_counter()
                for i in range(history):
                    relay.webhook(webhook(f"Past{i}", "firing"))
                    relay.webhook(webhook(f"Past{i}", "resolved"))
                for i in range(open_):
                    relay.webhook(webhook(f"Open{i}", "firing"))
                seed_s = round(time.perf_counter() - seeded, 1)
                status, body = relay.request("GET", "/api/v1/incidents?limit=1", headers={"Authorization": f"Bearer {TOKEN}"})
                some = json.loads(body)["incidents"][0]["id"]
                pages = {"now": "/", "incident": f"/incidents/{some}", "history": "/history",
                         "schedules": "/schedules/primary", "me": "/me"}
                result = {"seeding_s": seed_s}
                for name, path in pages.items():
                    status, _ = relay.request("GET", path, headers={"X-Forwarded-Email": "alice@example.org"})
                    if status == 200:
                        timed(relay, path, 20)  # warm
                        result[name] = timed(relay, path, n)
                _, css = relay.request("GET", "/assets/console.css")
                _, js = relay.request("GET", "/assets/console.js")
                result["first_load_bytes_now"] = result["now"]["bytes"] + len(css) + len(js)
                out[backend] = result
                print(json.dumps({"console": backend, **result}), flush=True)
            finally:
                relay.close()
        rss = {}
        for console in (True, False):
            values = []
            for _ in range(3):
                relay = Relay(console=console)
                relay.request("GET", "/", headers={"X-Forwarded-Email": "alice@example.org"})
                time.sleep(2)
                values.append(relay.proc.status_kb("VmRSS"))
                relay.close()
            rss["on" if console else "off"] = statistics.median(values)
        out["idle_rss_kb"] = rss
        emit("console", out)
    finally:
        pg.stop()
