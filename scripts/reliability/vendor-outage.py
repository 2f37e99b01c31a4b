"""A vendor outage of minutes, with the relay killed (SIGKILL) in the middle of it.

The real alert-relay binary with the shipped escalation policy pages a fake ntfy that is
first unreachable (connection refused), then up but answering 503, then healthy. Incidents
arrive while it is down. Passes when, after recovery, every incident's page arrived exactly
once (by ntfy sequence id), retried with backoff rather than hammering the vendor.

    python3 scripts/reliability/vendor-outage.py [--outage 180] [--incidents 40] [--no-kill]

Prints one JSON line of figures (used in docs/benchmarks.md); exit 1 when a page was lost or
sent twice. `scripts/test` runs a short version (--outage 20).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from localstack import ROOT, free_port, http, target_dir, wait_until  # noqa: E402

TOKEN = "reliability-webhook-token-0123456789"


class FlakyNtfy:
    """Listens only while `up`; answers 503 while `failing`, else 200. Records every request."""

    def __init__(self, port: int):
        self.port = port
        self.failing = True
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def start(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = 503 if outer.failing else 200
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = {}
                with outer.lock:
                    outer.requests.append({"at": time.monotonic(), "status": status,
                                           "sequence_id": parsed.get("sequence_id"),
                                           "title": parsed.get("title", "")})
                reply = b'{"id":"x","event":"message"}' if status == 200 else b'{"error":"down"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.requests)


class Relay:
    def __init__(self, binary: Path, data: Path, ntfy_port: int, log: Path):
        self.binary, self.data, self.log = binary, data, log
        self.port = free_port()
        self.env = {**os.environ, "RELAY_WEBHOOK_TOKEN": TOKEN, "NTFY_URL": f"http://127.0.0.1:{ntfy_port}",
                    "NTFY_TOPIC_PRIMARY": "oncall-primary", "LOG_FORMAT": "json", "RUST_LOG": "info",
                    "RELAY_AUDIT_LOG": str(data.parent / "audit.log")}
        self.proc: subprocess.Popen | None = None

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--config", ROOT / "monitoring/alert-relay/escalation-policy.yml",
             "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data],
            env=self.env, stdout=subprocess.DEVNULL, stderr=self.log.open("ab"))
        wait_until("relay ready", lambda: http("GET", f"http://127.0.0.1:{self.port}/ready")[0] == 200, 20)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def webhook(self, n: int) -> int:
        name = f"Outage{n}"
        body = {
            "version": "4", "groupKey": f'{{}}:{{alertname="{name}"}}', "status": "firing",
            "receiver": "relay", "groupLabels": {"alertname": name},
            "commonLabels": {"alertname": name, "severity": "critical"},
            "commonAnnotations": {"summary": f"outage test {n}"}, "externalURL": "http://am:9093",
            "truncatedAlerts": 0,
            "alerts": [{"status": "firing", "labels": {"alertname": name, "severity": "critical"},
                        "annotations": {"summary": f"outage test {n}"},
                        "startsAt": "2026-11-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "http://prometheus/graph", "fingerprint": f"{n:016x}"}],
        }
        status, _ = http("POST", f"http://127.0.0.1:{self.port}/webhook", json.dumps(body).encode(),
                         {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        return status

    def metric(self, prefix: str) -> float:
        _, body = http("GET", f"http://127.0.0.1:{self.port}/metrics")
        return sum(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
                   if line.startswith(prefix))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outage", type=float, default=180, help="seconds the vendor is down")
    parser.add_argument("--incidents", type=int, default=40)
    parser.add_argument("--no-kill", action="store_true", help="do not SIGKILL the relay mid-outage")
    parser.add_argument("--release", action="store_true", help="build and run the release binary")
    args = parser.parse_args()

    cmd = ["cargo", "build", "--locked", "-p", "alert-relay", "--bin", "alert-relay"] + (["--release"] if args.release else [])
    subprocess.run(cmd, cwd=ROOT, check=True)
    binary = target_dir() / ("release" if args.release else "debug") / "alert-relay"

    tmp = Path(tempfile.mkdtemp(prefix="vendor-outage-"))
    ntfy = FlakyNtfy(free_port())
    relay = Relay(binary, tmp / "data", ntfy.port, tmp / "relay.log")
    try:
        relay.start()
        began = time.monotonic()
        # Phase 1 (first half): nothing listens on the vendor's port.
        answers = [relay.webhook(n) for n in range(args.incidents)]
        if any(a != 200 for a in answers):
            print(f"FAIL intake answered {sorted(set(answers))} while the vendor was down")
            return 1
        time.sleep(args.outage / 2)
        killed = False
        if not args.no_kill:
            relay.kill9()  # mid-outage, with every page still in the outbox
            killed = True
            relay.start()
        # Phase 2 (second half): the vendor is back but answers 503.
        ntfy.start()
        time.sleep(max(0.0, began + args.outage - time.monotonic()))
        ntfy.failing = False
        recovered = time.monotonic()
        failed_attempts = sum(1 for r in ntfy.snapshot() if r["status"] == 503)

        def all_delivered():
            ok = {r["sequence_id"] for r in ntfy.snapshot() if r["status"] == 200}
            return len(ok) >= args.incidents

        # The backoff is capped at 60 s (shipped policy), so all should land within it.
        try:
            wait_until("every page delivered after recovery", all_delivered, 60 + 30, 0.1)
        except TimeoutError as err:
            print(f"FAIL {err}")
        time.sleep(3)  # anything sent twice would show up now
        delivered = [r for r in ntfy.snapshot() if r["status"] == 200]
        by_sequence: dict[str, int] = {}
        for r in delivered:
            by_sequence[r["sequence_id"]] = by_sequence.get(r["sequence_id"], 0) + 1
        titles = {r["title"] for r in delivered}
        lost = [n for n in range(args.incidents) if not any(re.search(rf"\bOutage{n}\b", t) for t in titles)]
        duplicates = {k: v for k, v in by_sequence.items() if v > 1}
        figures = {
            "bench": "vendor_outage", "outage_s": args.outage, "incidents": args.incidents,
            "killed_mid_outage": killed,
            "failed_attempts_during_503": failed_attempts,
            "failed_attempts_per_incident": round(failed_attempts / args.incidents, 1),
            "delivered": len(by_sequence), "lost": len(lost), "duplicates": len(duplicates),
            "recovery_to_last_page_s": round(max((r["at"] for r in delivered), default=recovered) - recovered, 1),
            "outbox_depth_after": relay.metric("relay_outbox_depth"),
        }
        print(json.dumps(figures))
        if lost or duplicates or len(by_sequence) != args.incidents:
            print(f"FAIL lost {lost[:10]}, duplicates {list(duplicates.items())[:5]}")
            return 1
        print("PASS every page delivered once after the outage")
        return 0
    finally:
        relay.stop()
        ntfy.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
