"""End-to-end test of the whole chain, natively on loopback (part of `scripts/test`).

Real demo gateway, exporter, alert-relay, Prometheus and Alertmanager (Debian packages) with the
shipped rules, routing and escalation policy; a recording fake ntfy. Prints `N passed, N failed`.

Shortened for the test (and only here): scrapes and evaluations every 1s, `for:` 5s,
Alertmanager group_wait 1s, escalation delays scaled down (15m → 12s).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import localstack  # noqa: E402
from localstack import ROOT, free_port, http, wait_until  # noqa: E402

ESCALATION_SCALE = 12 / 900  # 15m -> 12s
HIGH_ERROR_ALERT = "GatewayHighErrorRate"
ROLLBACK_ALERT = "DeploymentRolledBack"


class FakeNtfy:
    """Records every publish and answers as strictly as ntfy: a JSON body over 8,192 bytes or a
    message over 4,096 bytes is refused with 413 (code 41303), a priority outside 1-5 with 400;
    answers its health and account checks."""

    def __init__(self):
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                status, reply = 200, {"id": "x", "event": "message"}
                message = (parsed or {}).get("message", "") if isinstance(parsed, dict) else ""
                priority = parsed.get("priority", 3) if isinstance(parsed, dict) else 3
                if len(body) > 8192 or len(str(message).encode()) > 4096:
                    status, reply = 413, {"code": 41303, "http": 413, "error": "request entity too large"}
                elif not isinstance(priority, int) or not 1 <= priority <= 5:
                    status, reply = 400, {"code": 40007, "http": 400, "error": "invalid priority"}
                with outer.lock:
                    outer.requests.append({
                        "at": time.monotonic(),
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "json": parsed if status == 200 else None,
                        "status": status,
                    })
                reply = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_PUT = do_POST

            def do_GET(self):  # noqa: N802 (http.server's naming)
                # The relay's target healthcheck: server health, then the token's account.
                answers = {"/v1/health": {"healthy": True}, "/v1/account": {"username": "e2e"}}
                reply = json.dumps(answers.get(self.path, {})).encode()
                self.send_response(200 if self.path in answers else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def messages(self, topic: str | None = None) -> list[dict]:
        with self.lock:
            msgs = [r for r in self.requests if r["json"]]
        return [m for m in msgs if topic is None or m["json"].get("topic") == topic]

    def close(self):
        self.server.shutdown()


class Traffic:
    """Background requests to the demo gateway so rates exist."""

    def __init__(self, base: str):
        self.base = base
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        i = 0
        while not self.stop_flag.is_set():
            http("GET", f"{self.base}/api/orders/{i % 50}", timeout=2)
            i += 1
            time.sleep(0.02)

    def stop(self):
        self.stop_flag.set()
        self.thread.join(timeout=5)


def post_json(url: str, payload: dict) -> tuple[int, bytes]:
    return http("POST", url, json.dumps(payload).encode(), {"Content-Type": "application/json"})


def prom_query(stack, expr: str) -> list:
    q = urllib.parse.urlencode({"query": expr})
    status, body = http("GET", f"{stack.url('prometheus')}/api/v1/query?{q}")
    if status != 200:
        return []
    return json.loads(body)["data"]["result"]


def firing_alerts(stack) -> set[str]:
    status, body = http("GET", f"{stack.url('prometheus')}/api/v1/alerts")
    if status != 200:
        return set()
    return {a["labels"]["alertname"] for a in json.loads(body)["data"]["alerts"]
            if a["state"] == "firing"}


def run(stack, ntfy: FakeNtfy, results: list, figures: dict):
    gw = stack.url("gateway")

    def check(name, fn):
        try:
            fn()
            results.append((name, None))
            print(f"PASS {name}", flush=True)
        except Exception as err:  # noqa: BLE001 (report every failure, go on)
            results.append((name, err))
            print(f"FAIL {name}: {err}", flush=True)
            traceback.print_exc()

    traffic = Traffic(gw)
    state = {}

    def push_on_errors():
        assert post_json(f"{gw}/admin/faults", {"error_ratio": 1.0})[0] == 200
        started = time.monotonic()

        def page():
            for m in ntfy.messages("e2e-primary"):
                if HIGH_ERROR_ALERT in json.dumps(m["json"]):
                    return m
            return None

        msg = wait_until(f"a push for {HIGH_ERROR_ALERT}", page, 120, 0.2)
        figures["fault_to_push_seconds"] = round(msg["at"] - started, 1)
        body = msg["json"]
        assert body["priority"] == 5, body
        # runbook_url = RUNBOOK_BASE_URL (the relay's /runbooks by default) + the alert's name;
        # tapping the push opens the incident in the relay's console.
        runbooks = {a.get("label"): a.get("url") for a in body.get("actions", [])}
        assert runbooks.get("Runbook") == f"{stack.runbook_base()}/{HIGH_ERROR_ALERT}", body
        labels = [a.get("label") for a in body.get("actions", [])]
        assert "Acknowledge" in labels, labels
        assert msg["headers"].get("authorization") == "Bearer tk_e2e", msg["headers"]
        state["page"] = msg
        incident = relay_incident()
        assert body.get("click") == f"{stack.url('relay')}/incidents/{incident['id']}", body
        assert incident["state"] == "escalating", incident
        assert "ntfy.primary" in incident["notified"], incident  # with the log.audit trail
        assert incident["next_step"]["targets"] == ["ntfy.secondary"], incident

    def relay_incident() -> dict:
        """The relay's own view of the page's incident (GET /api/v1/incidents)."""
        status, body = http("GET", f"{stack.url('relay')}/api/v1/incidents",
                            headers={"Authorization": f"Bearer {stack.env['RELAY_WEBHOOK_TOKEN']}"})
        assert status == 200, (status, body)
        found = [i for i in json.loads(body)["incidents"]
                 if i["common_labels"].get("alertname") == HIGH_ERROR_ALERT]
        assert len(found) == 1, found
        return found[0]

    def every_link_opens():
        """Each link of the real page, followed from this machine as the phone would: the
        runbook (served by the relay), the silence form, and the alert's source in Prometheus."""
        body = state["page"]["json"]
        links = {"click": body.get("click")}
        for action in body.get("actions", []):
            if action.get("action") == "view":
                links[action["label"]] = action["url"]
        assert set(links) >= {"click", "Runbook", "Silence"}, links
        for name, url in links.items():
            page_url = url.split("#", 1)[0]  # the fragment is the browser's
            status, text = http("GET", page_url)
            text = text.decode(errors="replace")
            assert status == 200, (name, url, status)
            if name == "Runbook":
                assert f"<h1>{HIGH_ERROR_ALERT}" in text or HIGH_ERROR_ALERT in text, (name, text[:300])
            if name == "click":
                # The console's page of the incident; a phone not signed in is asked who it is.
                assert "Send me a sign-in link" in text, (name, text[:300])
        status, alerts = http("GET", f"{stack.url('alertmanager')}/api/v2/alerts?filter=alertname%3D%22{HIGH_ERROR_ALERT}%22")
        assert status == 200, status
        sources = {a.get("generatorURL") for a in json.loads(alerts)}
        assert sources and all(u and u.startswith(stack.url("prometheus")) for u in sources), sources
        for url in sources:
            assert http("GET", url)[0] == 200, url

    def ack_stops_escalation():
        page = state["page"]
        ack = next(a for a in page["json"]["actions"] if a["label"] == "Acknowledge")
        status, _ = http(ack.get("method", "POST"), ack["url"], b"")
        assert status == 200, status
        acked_at = time.monotonic()
        # The next step (secondary) was due 12s after the incident started; wait past it.
        time.sleep(max(0.0, page["at"] + 16 - acked_at))
        secondary = [m for m in ntfy.messages("e2e-secondary")
                     if HIGH_ERROR_ALERT in json.dumps(m["json"])]
        assert not secondary, f"escalated after acknowledge: {secondary}"
        incident = relay_incident()
        assert incident["state"] == "acknowledged", incident
        # The shipped policy's ack_timeout (30m, scaled here): the next step is the
        # acknowledgement running out, paging the first step again.
        nxt = incident["next_step"]
        assert nxt and nxt["targets"] == ["ntfy.primary", "log.audit"], incident

    def resolved_arrives():
        assert http("DELETE", f"{gw}/admin/faults")[0] == 200
        seq = state["page"]["json"].get("sequence_id")

        def resolved():
            for m in ntfy.messages("e2e-primary"):
                j = m["json"]
                if j.get("sequence_id") == seq and m["at"] > state["page"]["at"] and \
                        "RESOLVED" in (j.get("title") or "").upper():
                    return m
            return None

        wait_until("the resolved notification", resolved, 120, 0.5)

    def page_names_the_person_on_call():
        """The shipped policy with its first critical step paging a schedule instead of a
        topic, loaded by a reload: the page goes to the topic of the person on call now (counted
        here with zoneinfo, not by the relay's code) and names them."""
        import yaml
        from datetime import date, datetime, timedelta
        from zoneinfo import ZoneInfo

        people = ["alice", "bob", "carol"]
        policy = yaml.safe_load((stack.workdir / "config" / "escalation-policy.yml").read_text())
        policy["people"] = {p: {"ntfy": {"url": "${NTFY_URL}", "topic": f"e2e-{p}",
                                         "token": "${NTFY_TOKEN}"}} for p in people}
        policy["schedules"] = {"primary": {
            "time_zone": "Europe/Berlin", "handoff_notices": False,
            "rotations": [{"people": people, "shift": "1d", "handoff": {"time": "09:00"},
                           "start": "2026-01-01"}]}}
        critical = next(p for p in policy["policies"] if p["name"] == "critical")
        critical["steps"][0]["notify"] = ["schedule.primary" if t == "ntfy.primary" else t
                                          for t in critical["steps"][0]["notify"]]
        (stack.workdir / "config" / "escalation-policy.yml").write_text(yaml.safe_dump(policy))
        token = {"Authorization": f"Bearer {stack.env['RELAY_WEBHOOK_TOKEN']}"}
        status, body = http("POST", f"{stack.url('relay')}/-/reload", b"", headers=token)
        assert status == 200, (status, body)

        local = datetime.now(ZoneInfo("Europe/Berlin"))
        if local.hour == 8 and local.minute >= 59:  # do not straddle the 09:00 handoff
            time.sleep(70)
            local = datetime.now(ZoneInfo("Europe/Berlin"))
        day = local.date() - (timedelta(days=1) if local.hour < 9 else timedelta(0))
        person = people[(day - date(2026, 1, 1)).days % 3]
        status, body = http("GET", f"{stack.url('relay')}/api/v1/oncall", headers=token)
        assert status == 200, (status, body)
        primary = next(s for s in json.loads(body)["schedules"] if s["schedule"] == "primary")
        assert primary["on_call"]["person"] == person, (primary, person)

        assert post_json(f"{gw}/admin/faults", {"error_ratio": 1.0})[0] == 200

        def page():
            for m in ntfy.messages(f"e2e-{person}"):
                if HIGH_ERROR_ALERT in json.dumps(m["json"]):
                    return m
            return None

        msg = wait_until(f"a push to {person}'s topic", page, 120, 0.2)
        assert f"paging {person}" in msg["json"].get("message", ""), msg["json"]
        others = [m for p in people if p != person for m in ntfy.messages(f"e2e-{p}")]
        assert not others, f"someone not on call was paged: {others}"
        assert http("DELETE", f"{gw}/admin/faults")[0] == 200

    def deployment_and_rollback():
        before = prom_query(stack, "sum(deployment_changes_total)")
        base = float(before[0]["value"][1]) if before else 0.0
        assert post_json(f"{gw}/admin/version", {"version": "9.9.9"})[0] == 200
        wait_until("the deployment counter to move", lambda: any(
            float(r["value"][1]) >= base + 1
            for r in prom_query(stack, "sum(deployment_changes_total)")), 60, 0.5)
        assert post_json(f"{gw}/admin/version", {"version": "1.4.0"})[0] == 200
        wait_until("the rollback counter to move", lambda: any(
            float(r["value"][1]) >= 1
            for r in prom_query(stack, "sum(deployment_rollbacks_total)")), 60, 0.5)
        wait_until(f"{ROLLBACK_ALERT} to fire", lambda: ROLLBACK_ALERT in firing_alerts(stack),
                   90, 0.5)

    def dashboards_have_data():
        out = subprocess.run([sys.executable, str(ROOT / "scripts/monitoring/check_dashboard_queries.py"),
                              "--prometheus", stack.url("prometheus"), "--require-data"],
                             capture_output=True, text=True)
        print(out.stdout[-4000:], out.stderr[-4000:], flush=True)
        assert out.returncode == 0, "some dashboard queries returned no data"

    try:
        check("critical alert reaches the phone with runbook and Acknowledge", push_on_errors)
        if "page" in state:
            check("every link in the page opens", every_link_opens)
            check("acknowledge stops the escalation", ack_stops_escalation)
            check("resolved notification arrives", resolved_arrives)
            check("a page names the person on call (schedule)", page_names_the_person_on_call)
        check("deployment and rollback move counters and page", deployment_and_rollback)
        check("every dashboard query returns data", dashboards_have_data)
    finally:
        traffic.stop()


def main() -> int:
    localstack.ensure_packages()
    bindir = localstack.build()
    ntfy = FakeNtfy()
    results: list = []
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="bundle-e2e-") as tmp:
        ports = {name: free_port() for name in localstack.DEFAULT_PORTS}
        env = {
            "NTFY_URL": f"http://127.0.0.1:{ntfy.port}",
            "NTFY_TOKEN": "tk_e2e",
            "NTFY_TOPIC_PRIMARY": "e2e-primary",
            "NTFY_TOPIC_SECONDARY": "e2e-secondary",
            "NTFY_TOPIC_MANAGER": "e2e-manager",
            "NTFY_TOPIC_CTO": "e2e-cto",
        }
        stack = localstack.Stack(workdir=Path(tmp), bindir=bindir, ports=ports, fast=True,
                                 escalation_scale=ESCALATION_SCALE, env=env)
        try:
            stack.start()
            run(stack, ntfy, results, figures)
        except Exception as err:  # noqa: BLE001
            results.append(("stack starts", err))
            traceback.print_exc()
        finally:
            stack.stop()
            ntfy.close()
            failed = [n for n, e in results if e]
            if failed:
                for name in ("relay", "prometheus", "alertmanager", "exporter"):
                    log = Path(tmp) / "logs" / f"{name}.log"
                    if log.exists():
                        print(f"--- last lines of {name}.log ---")
                        print("\n".join(log.read_text(errors="replace").splitlines()[-40:]))
    print("figures:", json.dumps(figures))
    passed = sum(1 for _, e in results if e is None)
    print(f"e2e: {passed} passed, {len(results) - passed} failed")
    return 0 if results and passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
