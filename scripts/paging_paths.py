#!/usr/bin/env python3
"""Who pages when the pager is down, and does every link in an alert open? (scripts/check-paging-paths)

The real Prometheus (Debian's 2.42) and Alertmanager (0.25) run with the overlay's own
configuration, rules, entrypoint, command-line flags, secrets and service names, as their
images' user (nobody), rebuilt natively in private namespaces (scripts/overlay_sandbox.py)
from a bundle copy set up with scripts/init-secrets. Fakes: alert-relay (alert-relay:9465) and
an ntfy server (ntfy.test:2586) that answers like ntfy: 401 for a wrong token, 400 for an
unknown template.

1. Links: Prometheus' Watchdog reaches the relay's heartbeat webhook with generatorURL under
   PROMETHEUS_EXTERNAL_URL, runbook_url = RUNBOOK_BASE_URL/Watchdog (the external label
   runbook_base, itself not sent as a label) and externalURL = ALERTMANAGER_EXTERNAL_URL.
2. Both paths: with the relay up, AlertmanagerNotificationsFailing reaches the relay and ntfy
   directly (POST /<topic>?template=alertmanager, the ntfy token); GatewayDown reaches the
   relay only.
3. Relay down: the fake relay is killed; a RelayDown alert POSTed to Alertmanager's
   /api/v2/alerts reaches ntfy directly, while the relay's webhook fails.

Prints `N passed, N failed`; exits 1 on any failure. Run as root.
"""

from __future__ import annotations

import os
import sys
import traceback
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overlay_sandbox as sb  # noqa: E402

TOPIC = "pager-fallback-sandbox"
NTFY_TOKEN = "tk_sandbox_fallback"
ENV = {
    "NTFY_URL": "http://ntfy.test:2586",
    "NTFY_TOPIC_PRIMARY": "oncall-primary-sandbox",
    "NTFY_FALLBACK_TOPIC": TOPIC,
    "NTFY_TOKEN": NTFY_TOKEN,
    "PROMETHEUS_EXTERNAL_URL": "https://prometheus.example.test",
    "ALERTMANAGER_EXTERNAL_URL": "https://alertmanager.example.test",
    "RUNBOOK_BASE_URL": "https://relay.example.test/runbooks",
}
results: list[tuple[str, bool, str]] = []


def record(name: str, ok: bool, detail: str = "") -> bool:
    results.append((name, ok, detail))
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""), flush=True)
    return ok


def ntfy_answer(path: str, headers: dict) -> tuple[int, dict]:
    """What ntfy answers: 401 for a token it does not know (a bare `Bearer`, an empty token, is
    anonymous), 400 for an unknown template, else the message."""
    auth = headers.get("authorization", "").strip()
    if auth.lower().startswith("bearer ") and auth != f"Bearer {NTFY_TOKEN}":
        return 401, {"code": 40101, "http": 401, "error": "unauthorized"}
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    if query.get("template", ["alertmanager"])[0] != "alertmanager":
        return 400, {"code": 40044, "http": 400, "error": "invalid template"}
    return 200, {"id": "sandbox", "event": "message", "topic": urllib.parse.urlsplit(path).path.strip("/")}


def start_prometheus(bundle: sb.Bundle, view: sb.ContainerView, procs: sb.Processes) -> None:
    """Prometheus as the overlay runs it: its command and environment, as nobody, on the files
    in `view`; native additions: expand-external-labels (the default in Prometheus 3, a flag in
    2.42) and a 1s resend delay (the first alert is often sent before Alertmanager is known)."""
    service = bundle.services["prometheus"]
    data = view.path("/prometheus")
    data.mkdir(parents=True, exist_ok=True)
    os.chown(data, view.uid, view.gid)
    args = []
    for arg in service["command"]:
        key, _, value = arg.partition("=")
        if key == "--config.file":
            arg = f"{key}={view.path(value)}"
        elif key == "--storage.tsdb.path":
            arg = f"{key}={data}"
        args.append(arg)
    args += ["--enable-feature=expand-external-labels", "--rules.alert.resend-delay=1s"]
    procs.start("prometheus", sb.as_user(view.uid, view.gid) + ["prometheus"] + args,
                {str(k): str(v) for k, v in (service.get("environment") or {}).items()})
    sb.wait_until("Prometheus to be ready", lambda: procs.alive("prometheus") and
                  sb.http("GET", "http://prometheus:9090/-/ready")[0] == 200, 60)


def main() -> int:
    sb.enter_namespaces()
    bundle = sb.Bundle(env_overrides=ENV)
    procs = sb.Processes(bundle.dir.parent / "logs")
    relay = ntfy = None
    try:
        relay_token = bundle.env["RELAY_WEBHOOK_TOKEN"]
        relay = sb.Recorder(9465)
        ntfy = sb.Recorder(2586, ntfy_answer)
        am = sb.ContainerView(bundle, "alertmanager")
        am.expose_secrets()
        sb.start_alertmanager(bundle, am, procs)
        start_prometheus(bundle, sb.ContainerView(bundle, "prometheus"), procs)

        print("--- 1. links in the alerts the relay receives")
        try:
            req, _ = sb.wait_until("Watchdog at the relay's heartbeat webhook", lambda: next(
                iter(r for r in relay.alerts("/webhook/heartbeat") if r[1] == "Watchdog"), None), 90)
            payload = req["json"]
            alert = next(a for a in payload["alerts"] if a["labels"]["alertname"] == "Watchdog")
            record("the heartbeat webhook carries the relay's token",
                   req["headers"].get("authorization") == f"Bearer {relay_token}")
            record("generatorURL opens Prometheus at PROMETHEUS_EXTERNAL_URL",
                   alert["generatorURL"].startswith(ENV["PROMETHEUS_EXTERNAL_URL"] + "/graph?"),
                   alert["generatorURL"])
            record("runbook_url is RUNBOOK_BASE_URL/Watchdog",
                   alert["annotations"].get("runbook_url") == ENV["RUNBOOK_BASE_URL"] + "/Watchdog",
                   repr(alert["annotations"].get("runbook_url")))
            record("the runbook_base external label is not sent as an alert label",
                   "runbook_base" not in alert["labels"], str(alert["labels"]))
            record("externalURL (Alertmanager's silence links) is ALERTMANAGER_EXTERNAL_URL",
                   payload.get("externalURL") == ENV["ALERTMANAGER_EXTERNAL_URL"], payload.get("externalURL"))
        except TimeoutError as err:
            record("Watchdog reaches the relay", False, f"{err}\n{procs.log('prometheus')[-1500:]}")

        print("--- 2. with the relay up: the pager's own failure goes both ways, others to the relay")
        sb.post_alerts([
            {"alertname": "AlertmanagerNotificationsFailing", "severity": "critical", "service": "monitoring",
             "integration": "webhook"},
            {"alertname": "GatewayDown", "severity": "critical", "service": "gateway"},
        ])
        try:
            sb.wait_until("both alerts at the relay", lambda: {"AlertmanagerNotificationsFailing", "GatewayDown"}
                          <= {a for _, a in relay.alerts("/webhook")}, 60)
            record("the relay gets AlertmanagerNotificationsFailing and GatewayDown", True)
        except TimeoutError as err:
            record("the relay gets AlertmanagerNotificationsFailing and GatewayDown", False, str(err))
        try:
            req, _ = sb.wait_until("the direct ntfy post", lambda: next(iter(
                r for r in ntfy.alerts() if r[1] == "AlertmanagerNotificationsFailing"), None), 60)
            record("ntfy gets AlertmanagerNotificationsFailing directly", True)
        except TimeoutError as err:
            record("ntfy gets AlertmanagerNotificationsFailing directly", False, str(err))
        record("GatewayDown does not take the direct path",
               "GatewayDown" not in {a for _, a in ntfy.alerts()}, str({a for _, a in ntfy.alerts()}))

        print("--- 3. the relay is killed: RelayDown still reaches ntfy")
        relay.close()
        sb.post_alerts([{"alertname": "RelayDown", "severity": "critical", "service": "monitoring",
                         "job": "alert-relay", "instance": "alert-relay:9465"}])
        try:
            req, _ = sb.wait_until("RelayDown at ntfy", lambda: next(iter(
                r for r in ntfy.alerts() if r[1] == "RelayDown"), None), 60)
            url = urllib.parse.urlsplit(req["path"])
            query = urllib.parse.parse_qs(url.query)
            record("RelayDown is posted to the fallback topic", url.path == f"/{TOPIC}", url.path)
            record("with ?template=alertmanager (ntfy formats the webhook itself)",
                   query.get("template") == ["alertmanager"], url.query)
            record("with the ntfy token", req["headers"].get("authorization") == f"Bearer {NTFY_TOKEN}",
                   repr(req["headers"].get("authorization")))
            record("ntfy's webhook body is Alertmanager's (receiver ntfy-direct, firing)",
                   req["json"].get("receiver") == "ntfy-direct" and req["json"].get("status") == "firing",
                   str({k: req["json"].get(k) for k in ("receiver", "status")}))
        except TimeoutError as err:
            record("RelayDown reaches ntfy with the relay dead", False, f"{err}\n{procs.log('alertmanager')[-1500:]}")
        try:
            sb.wait_until("Alertmanager's failed attempt at the dead relay",
                          lambda: "connection refused" in procs.log("alertmanager")
                          and 'receiver=relay ' in procs.log("alertmanager"), 60)
            record("meanwhile the relay's webhook fails (connection refused)", True)
        except TimeoutError as err:
            record("meanwhile the relay's webhook fails (connection refused)", False, str(err))
    except Exception as err:  # noqa: BLE001 (report, then clean up)
        traceback.print_exc()
        record("the check ran to the end", False, str(err))
    finally:
        procs.stop()
        for fake in (relay, ntfy):
            if fake:
                try:
                    fake.close()
                except OSError:
                    pass
        if any(not ok for _, ok, _ in results):
            for name in ("alertmanager", "prometheus"):
                print(f"--- last lines of {name}.log\n" + "\n".join(procs.log(name).splitlines()[-20:]))
        bundle.cleanup()
    passed = sum(1 for _, ok, _ in results if ok)
    print(f"paging paths: {passed} passed, {len(results) - passed} failed")
    return 0 if results and passed == len(results) else 1


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
