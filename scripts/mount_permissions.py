#!/usr/bin/env python3
"""Can every container of the compose overlay read what it mounts? (scripts/check-mount-permissions)

With no Docker engine here, each container's view is rebuilt in a private mount and network
namespace (scripts/overlay_sandbox.py) from a copy of the bundle on which scripts/init-secrets
ran as root, exactly as an operator runs it:

1. for every service of the merged overlay (demo base + compose/monitoring.yml), every bind
   mount and secret at its in-container path, read as the uid:gid its image runs as
   (setpriv, no supplementary groups): directories listed, files read whole;
2. the real Alertmanager (Debian's 0.25), started as nobody through the overlay's own
   entrypoint and command on those files, delivers a webhook to a fake alert-relay at
   alert-relay:9465 with `Authorization: Bearer <RELAY_WEBHOOK_TOKEN>`;
3. the check can fail: with the secret at the mode init-secrets used to write (0600 root),
   the read check and Alertmanager's delivery both fail; a dashboard made 0600 fails
   Grafana's read check. Each is restored afterwards.

Prints `N passed, N failed`; exits 1 on any failure. Run as root.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overlay_sandbox as sb  # noqa: E402

results: list[tuple[str, bool, str]] = []


def record(name: str, ok: bool, detail: str = "") -> bool:
    results.append((name, ok, detail))
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""), flush=True)
    return ok


def failed_webhooks() -> float:
    status, body = sb.http("GET", "http://alertmanager:9093/metrics")
    total = 0.0
    for line in body.decode(errors="replace").splitlines():
        # Per attempt (notifications_failed_total counts only once retries are given up).
        if line.startswith("alertmanager_notification_requests_failed_total") and 'integration="webhook"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def main() -> int:
    sb.enter_namespaces()
    bundle = sb.Bundle()
    procs = sb.Processes(bundle.dir.parent / "logs")
    relay = None
    try:
        token = bundle.env["RELAY_WEBHOOK_TOKEN"]
        views = {}
        print("--- each container reads what it mounts, as its image's user")
        for name in sorted(bundle.services):
            view = views[name] = sb.ContainerView(bundle, name)
            checks = view.read_checks()
            print(f"{name}: uid {view.uid} gid {view.gid} ({view.user_source}), {len(checks)} paths")
            for kind, path, ok, error in checks:
                record(f"{name} ({view.uid}:{view.gid}) reads {kind} {path}", ok, error)
            for path, why in view.skipped:
                print(f"     {path}: not checked here ({why}); {name} runs as uid {view.uid}")
        secret = Path(bundle.config["secrets"]["relay_webhook_token"]["file"])
        st = secret.stat()
        record("init-secrets leaves relay_webhook_token root:65534 0440",
               (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 65534, 0o440),
               f"{st.st_uid}:{st.st_gid} {oct(st.st_mode & 0o777)}")

        print("--- the real Alertmanager, as nobody, delivers with the token")
        am = views["alertmanager"]
        am.expose_secrets()
        relay = sb.Recorder(9465)
        sb.start_alertmanager(bundle, am, procs)
        sb.post_alerts([{"alertname": "GatewayDown", "severity": "critical", "service": "gateway"}])
        try:
            req, _ = sb.wait_until("the webhook at the fake relay", lambda: next(
                iter(relay.alerts("/webhook")), None), 60)
            record("Alertmanager (as nobody) delivered GatewayDown to alert-relay:9465/webhook",
                   req["path"] == "/webhook", req["path"])
            record("the webhook carries Authorization: Bearer <RELAY_WEBHOOK_TOKEN>",
                   req["headers"].get("authorization") == f"Bearer {token}",
                   f"got {req['headers'].get('authorization')!r}")
        except TimeoutError as err:
            record("Alertmanager (as nobody) delivered GatewayDown to alert-relay:9465/webhook", False,
                   f"{err}\n{procs.log('alertmanager')[-2000:]}")

        print("--- the check fails where the container could not read")
        mode = secret.stat().st_mode & 0o777
        secret.chmod(0o600)
        try:
            readable = [ok for _, path, ok, _ in am.read_checks() if path == "/run/secrets/relay_webhook_token"]
            record("a 0600 root token is refused to Alertmanager's user", readable == [False], str(readable))
            before = failed_webhooks()
            sb.post_alerts([{"alertname": "HostDiskAlmostFull", "severity": "critical", "service": "host"}])
            try:
                sb.wait_until("a failed webhook", lambda: failed_webhooks() > before, 60)
                denied = re.search(r"unable to read authorization credentials file "
                                   r"/run/secrets/relay_webhook_token: .*permission denied", procs.log("alertmanager"))
                got = [a for _, a in relay.alerts("/webhook") if a == "HostDiskAlmostFull"]
                record("with it, Alertmanager's delivery fails (permission denied), nothing reaches the relay",
                       bool(denied) and not got, f"log mentions it: {bool(denied)}, relay got {got}")
            except TimeoutError as err:
                record("with it, Alertmanager's delivery fails", False, str(err))
        finally:
            secret.chmod(mode)
        dashboard = bundle.dir / "dashboards/host.json"
        mode = dashboard.stat().st_mode & 0o777
        dashboard.chmod(0o600)
        try:
            readable = [ok for _, path, ok, _ in views["grafana"].read_checks()
                        if path == "/var/lib/grafana/dashboards/host.json"]
            record("a 0600 dashboard is refused to Grafana's user (472)", readable == [False], str(readable))
        finally:
            dashboard.chmod(mode)
    except Exception as err:  # noqa: BLE001 (report, then clean up)
        traceback.print_exc()
        record("the check ran to the end", False, str(err))
    finally:
        procs.stop()
        if relay:
            relay.close()
        for name in ("alertmanager",):
            log = procs.log(name)
            if log and any(not ok for _, ok, _ in results):
                print(f"--- last lines of {name}.log\n" + "\n".join(log.splitlines()[-20:]))
        bundle.cleanup()
    passed = sum(1 for _, ok, _ in results if ok)
    print(f"mount permissions: {passed} passed, {len(results) - passed} failed")
    return 0 if results and passed == len(results) else 1


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
