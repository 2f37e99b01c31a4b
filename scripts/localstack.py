"""The bundle's topology run natively on loopback: demo gateway, exporter, alert-relay,
Prometheus and Alertmanager (Debian packages), configured from the shipped artefacts.

Alertmanager starts through the overlay's monitoring/alertmanager/entrypoint.sh, which fills in
the direct ntfy path's URL: NTFY_FALLBACK_URL/NTFY_FALLBACK_TOPIC (default NTFY_URL and
NTFY_TOPIC_PRIMARY) when set, else a local recorder that writes what it receives to
logs/ntfy-direct.log.

Used by `scripts/stack` (the README's main job) and by the end-to-end test. Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Compose service addresses in the shipped configs, and the names the local stack gives them.
SERVICES = {
    "gateway": "gateway:8080",
    "exporter": "exporter:9464",
    "relay": "alert-relay:9465",
    "alertmanager": "alertmanager:9093",
    "prometheus": "localhost:9090",
    "loki": "loki:3100",
}
DEFAULT_PORTS = {
    "gateway": 8080,
    "exporter": 9464,
    "relay": 9465,
    "alertmanager": 9093,
    "prometheus": 9090,
}
# The demo person the stack adds to the policy: reached through a log file (no account
# anywhere), so that the console's sign-in by push works on a laptop.
DEMO_PERSON = "demo"
# Where the overlay mounts the secret files (compose secrets); the local stack's are in config/secrets.
SECRETS_PATH_IN_CONFIG = "/run/secrets/"
ENTRYPOINT = ROOT / "monitoring" / "alertmanager" / "entrypoint.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 5.0) -> tuple[int, bytes]:
    """One HTTP request; returns (status, body) and never raises for HTTP errors."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout):
        return 0, b""


def wait_until(what: str, check, deadline_s: float, interval_s: float = 0.2):
    """Polls `check()` until it returns a truthy value or the deadline passes."""
    end = time.monotonic() + deadline_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {deadline_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def ensure_packages() -> None:
    subprocess.run(
        ["bash", "-c", "source scripts/lib.sh && ensure_pkgs prometheus:prometheus "
         "promtool:prometheus prometheus-alertmanager:prometheus-alertmanager"],
        cwd=ROOT, check=True)


def target_dir() -> Path:
    out = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return Path(json.loads(out)["target_directory"])


def build(release: bool = False) -> Path:
    cmd = ["cargo", "build", "--locked", "--workspace", "--bins"]
    if release:
        cmd.append("--release")
    print("==> building the workspace:", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    return target_dir() / ("release" if release else "debug")


def scale_durations(yaml_text: str, keys: tuple[str, ...], factor: float) -> str:
    """Shrinks `key: 15m`-style durations (for tests and the fast demo); `0m` stays 0."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

    def shrink(match: re.Match) -> str:
        total = 0.0
        for num, unit in re.findall(r"(\d+)(ms|s|m|h|d)", match.group(2)):
            total += int(num) * units[unit]
        scaled = total * factor
        value = f"{max(int(round(scaled)), 1)}s" if total > 0 else "0s"
        return f"{match.group(1)}{value}"

    pattern = r"(\b(?:%s):\s*)((?:\d+(?:ms|s|m|h|d))+)\b" % "|".join(keys)
    return re.sub(pattern, shrink, yaml_text)


# Fast mode shrinks PromQL range windows 30x (5m -> 10s, 1h -> 2m) so that alerts fire and
# resolve within seconds of a fault starting or stopping.
WINDOW_SCALE = 1 / 30


def scale_windows(promql_yaml: str, factor: float) -> str:
    """Rewrites `[5m]`-style range selectors to `[10s]` (never below 5s)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def shrink(match: re.Match) -> str:
        seconds = int(match.group(1)) * units[match.group(2)]
        return f"[{max(int(seconds * factor), 5)}s]"

    return re.sub(r"\[(\d+)([smhd])\]", shrink, promql_yaml)


class DirectNtfyRecorder:
    """Stands in for ntfy on the direct path when no ntfy topic is configured: answers 200 and
    appends each request (path, whether a token came, body) to a JSON-lines file."""

    def __init__(self, log_path: Path):
        log_path.parent.mkdir(parents=True, exist_ok=True)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                line = {"at": time.time(), "path": self.path,
                        "authorization": bool(self.headers.get("Authorization", "").strip()
                                              not in ("", "Bearer")),
                        "body": body.decode(errors="replace")}
                with open(log_path, "a") as out:
                    out.write(json.dumps(line) + "\n")
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Stack:
    workdir: Path
    bindir: Path
    ports: dict = field(default_factory=lambda: dict(DEFAULT_PORTS))
    fast: bool = False  # short scrape/eval/group timings and `for:` durations
    escalation_scale: float = 1.0  # factor applied to the policy's step delays
    env: dict = field(default_factory=dict)  # extra env for the relay (NTFY_*...)
    procs: list = field(default_factory=list)
    direct_ntfy: DirectNtfyRecorder | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def external_url(self, name: str) -> str:
        """Where a browser opens Prometheus or Alertmanager: PROMETHEUS_EXTERNAL_URL or
        ALERTMANAGER_EXTERNAL_URL if set, else its loopback address."""
        return os.environ.get(f"{name.upper()}_EXTERNAL_URL") or self.url(name)

    @property
    def demo_log(self) -> Path:
        """The demo person's "phone": the log file their pages and sign-in links go to."""
        return self.workdir / "logs" / f"{DEMO_PERSON}-phone.log"

    def runbook_base(self) -> str:
        """RUNBOOK_BASE_URL if set, else the relay's /runbooks (it serves docs/runbooks/)."""
        return os.environ.get("RUNBOOK_BASE_URL") or f"{self.url('relay')}/runbooks"

    # ---- configuration -------------------------------------------------------------------
    def _rewrite_addresses(self, text: str) -> str:
        for name, addr in SERVICES.items():
            if name in self.ports:
                text = text.replace(addr, f"127.0.0.1:{self.ports[name]}")
        return text

    def write_configs(self) -> None:
        cfg = self.workdir / "config"
        if cfg.exists():
            shutil.rmtree(cfg)
        (cfg / "secrets").mkdir(parents=True)
        token = self.env.setdefault("RELAY_WEBHOOK_TOKEN", secrets.token_hex(16))
        self.env.setdefault("RELAY_ACK_SECRET", secrets.token_hex(32))
        token_file = cfg / "secrets" / "relay_webhook_token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        # The direct ntfy path (the secrets scripts/init-secrets writes for the overlay).
        topic = self.env.get("NTFY_FALLBACK_TOPIC") or self.env.get("NTFY_TOPIC_PRIMARY")
        if topic:
            server = self.env.get("NTFY_FALLBACK_URL") or self.env.get("NTFY_URL") or "https://ntfy.sh"
            fallback_url = f"{server.rstrip('/')}/{topic}"
            fallback_token = self.env.get("NTFY_FALLBACK_TOKEN") or self.env.get("NTFY_TOKEN", "")
        else:
            if self.direct_ntfy is None:
                self.direct_ntfy = DirectNtfyRecorder(self.workdir / "logs" / "ntfy-direct.log")
            fallback_url, fallback_token = f"{self.direct_ntfy.url}/direct", ""
        for name, value in (("ntfy_fallback_url", fallback_url), ("ntfy_fallback_token", fallback_token)):
            (cfg / "secrets" / name).write_text(value + "\n")
            (cfg / "secrets" / name).chmod(0o600)

        # Prometheus: the shipped config and rules, pointed at loopback ports.
        prom_src = ROOT / "monitoring" / "prometheus"
        shutil.copytree(prom_src / "rules", cfg / "rules")
        prom = self._rewrite_addresses((prom_src / "prometheus.yml").read_text())
        # Loki and Alloy are not part of the native stack: point their scrape targets at a
        # closed port rather than fail.
        prom = prom.replace("loki:3100", "127.0.0.1:9").replace("alloy:12345", "127.0.0.1:9")
        if self.fast:
            prom = re.sub(r"(scrape_interval|evaluation_interval):\s*\S+", r"\1: 1s", prom)
            for rules in (cfg / "rules").glob("*.yml"):
                text = rules.read_text()
                text = re.sub(r"(\bfor:\s*)\S+", r"\g<1>5s", text)
                text = scale_windows(text, WINDOW_SCALE)
                rules.write_text(text)
        (cfg / "prometheus.yml").write_text(prom)

        # Alertmanager: the shipped routing, the relay on loopback, the token file here.
        am = (ROOT / "monitoring" / "alertmanager" / "alertmanager.yml").read_text()
        am = self._rewrite_addresses(am).replace(SECRETS_PATH_IN_CONFIG, str(cfg / "secrets") + "/")
        if self.fast:
            am = re.sub(r"(group_wait):\s*\S+", r"\1: 1s", am)
            am = re.sub(r"(group_interval):\s*\S+", r"\1: 2s", am)
        (cfg / "alertmanager.yml").write_text(am)
        tmpl_dir = ROOT / "monitoring" / "alertmanager" / "templates"
        if tmpl_dir.is_dir():
            shutil.copytree(tmpl_dir, cfg / "templates")

        policy = (ROOT / "monitoring" / "alert-relay" / "escalation-policy.yml").read_text()
        if self.escalation_scale != 1.0:
            policy = scale_durations(policy, ("after", "every", "ack_timeout"), self.escalation_scale)
        if re.search(r"^people:", policy, re.M):
            raise RuntimeError("the shipped policy has people now: add the demo person among them")
        policy += (f"\n# Added by the local stack: a person reached through a log file, who can sign in to\n"
                   f"# the console by push with no account anywhere (see Stack.sign_in_link).\n"
                   f"people:\n  {DEMO_PERSON}:\n    log: {{path: {json.dumps(str(self.demo_log))}}}\n")
        (cfg / "escalation-policy.yml").write_text(policy)

    # ---- processes -----------------------------------------------------------------------
    def _spawn(self, name: str, argv: list, env: dict | None = None) -> subprocess.Popen:
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        out = open(logs / f"{name}.log", "ab")
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = subprocess.Popen([str(a) for a in argv], stdout=out, stderr=subprocess.STDOUT,
                                env=full_env, cwd=self.workdir, start_new_session=True)
        out.close()
        self.procs.append((name, proc))
        return proc

    def _wait_ready(self, name: str, path: str, deadline_s: float = 60) -> None:
        def ready():
            for pname, proc in self.procs:
                if pname == name and proc.poll() is not None:
                    log = (self.workdir / "logs" / f"{name}.log").read_text(errors="replace")
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log[-3000:]}")
            return http("GET", self.url(name) + path)[0] == 200
        wait_until(f"{name} to be ready", ready, deadline_s)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_configs()
        cfg = self.workdir / "config"
        data = self.workdir / "data"
        for sub in ("prometheus", "alertmanager", "relay"):
            (data / sub).mkdir(parents=True, exist_ok=True)
        fast_probe = ["--probe-interval", "1s"] if self.fast else []

        self._spawn("gateway", [self.bindir / "demo-gateway", "--listen",
                                f"127.0.0.1:{self.ports['gateway']}", "--version", "1.4.0",
                                "--color", "blue"])
        self._wait_ready("gateway", "/health")
        self._spawn("exporter", [self.bindir / "exporter", "--listen",
                                 f"127.0.0.1:{self.ports['exporter']}", "--gateway-url",
                                 self.url("gateway"), "--state-file",
                                 data / "exporter-state.json", *fast_probe])
        relay_env = {
            "RELAY_PUBLIC_URL": self.url("relay"),
            "ALERTMANAGER_URL": self.url("alertmanager"),
            **self.env,
        }
        self._spawn("relay", [self.bindir / "alert-relay", "serve", "--config",
                              cfg / "escalation-policy.yml", "--listen",
                              f"127.0.0.1:{self.ports['relay']}", "--data-dir", data / "relay",
                              "--runbooks", ROOT / "docs" / "runbooks"],
                    env=relay_env)
        # Through the overlay's entrypoint (it fills in the direct ntfy path's URL, then execs).
        self._spawn("alertmanager", ["sh", ENTRYPOINT,
                                     f"--config.file={cfg / 'alertmanager.yml'}",
                                     f"--storage.path={data / 'alertmanager'}",
                                     f"--web.listen-address=127.0.0.1:{self.ports['alertmanager']}",
                                     f"--web.external-url={self.external_url('alertmanager')}",
                                     "--cluster.listen-address="],
                    env={"SECRETS_DIR": str(cfg / "secrets"),
                         "ALERTMANAGER_RENDERED": str(data / "alertmanager" / "alertmanager.rendered.yml"),
                         "ALERTMANAGER_BIN": "prometheus-alertmanager"})
        # expand-external-labels: runbook_base comes from RUNBOOK_BASE_URL (default in Prometheus 3).
        self._spawn("prometheus", ["prometheus", f"--config.file={cfg / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={data / 'prometheus'}",
                                   f"--web.listen-address=127.0.0.1:{self.ports['prometheus']}",
                                   f"--web.external-url={self.external_url('prometheus')}",
                                   "--enable-feature=expand-external-labels",
                                   "--rules.alert.resend-delay=1s", "--web.enable-lifecycle"],
                    env={"RUNBOOK_BASE_URL": self.runbook_base()})
        self._wait_ready("exporter", "/ready")
        self._wait_ready("relay", "/ready")
        self._wait_ready("alertmanager", "/-/ready")
        self._wait_ready("prometheus", "/-/ready")

    def sign_in_link(self, person: str = DEMO_PERSON, deadline_s: float = 15) -> str:
        """Asks the console for a sign-in link for `person`, as the sign-in page does, and
        reads it from the log file it is pushed to (their contact): a link that signs them in
        once, for `server.console_auth.link_ttl` (5 minutes unless set)."""
        def links() -> list[str]:
            if not self.demo_log.exists():
                return []
            lines = [json.loads(line) for line in self.demo_log.read_text().splitlines() if line.strip()]
            return [line["console_url"] for line in lines
                    if str(line.get("sequence_id", "")).startswith("signin-") and line.get("console_url")]

        before = len(links())
        body = urllib.parse.urlencode({"name": person}).encode()
        status, answer = http("POST", f"{self.url('relay')}/signin", body,
                              {"Content-Type": "application/x-www-form-urlencoded"})
        if status != 200:
            raise RuntimeError(f"the console's sign-in answered {status}: {answer[:300]!r}")
        return wait_until(f"the sign-in link in {self.demo_log}",
                          lambda: (links()[before:] or [None])[-1], deadline_s)

    def stop(self) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for name, proc in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()
        if self.direct_ntfy is not None:
            self.direct_ntfy.close()
            self.direct_ntfy = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def background_traffic(base: str, stopped) -> None:
    """About 10 requests a second, so that rates, ratios and latencies have data."""
    i = 0
    while not stopped():
        http("GET", f"{base}/api/orders/{i % 100}", timeout=2)
        if i % 20 == 0:
            http("GET", f"{base}/api/cheap", timeout=2)
        i += 1
        time.sleep(0.1)


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Run the bundle natively on loopback.")
    parser.add_argument("--workdir", default=str(ROOT / ".stack"),
                        help="state, logs and generated configs (default: .stack/)")
    parser.add_argument("--production-timings", action="store_true",
                        help="keep the shipped 15s scrapes and `for:` durations "
                             "(default: 1s scrapes and 5s `for:` so the demo reacts quickly)")
    parser.add_argument("--release", action="store_true", help="build and run release binaries")
    parser.add_argument("--no-traffic", action="store_true",
                        help="do not send background requests to the demo gateway")
    args = parser.parse_args()

    ensure_packages()
    bindir = build(release=args.release)
    ports = {name: int(os.environ.get(f"{name.upper()}_PORT", port))
             for name, port in DEFAULT_PORTS.items()}
    relay_env = {k: v for k, v in os.environ.items()
                 if k.startswith(("NTFY_", "RELAY_", "SLACK_", "PAGERDUTY_"))}
    stack = Stack(workdir=Path(args.workdir), bindir=bindir, ports=ports,
                  fast=not args.production_timings, env=relay_env)
    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start()
        gw = stack.url("gateway")
        try:
            console = f"to sign in as {DEMO_PERSON} (a link pushed to a log file), open\n" \
                      f"                 {stack.sign_in_link()}\n" \
                      f"                 (once, within 5 minutes; for another, give the name {DEMO_PERSON} on the\n" \
                      f"                 sign-in page: the link is written to {stack.demo_log})"
        except (RuntimeError, TimeoutError) as err:
            console = f"no sign-in link ({err}); give the name {DEMO_PERSON} on the sign-in page: the link is written to {stack.demo_log}"
        if not args.no_traffic:
            threading.Thread(target=background_traffic, args=(gw, lambda: stopping), daemon=True).start()
        print(f"""
The bundle is running on loopback (logs in {stack.workdir / 'logs'}):
  demo gateway   {gw}            (GET /api/orders/42, /health, /version, /metrics)
  exporter       {stack.url('exporter')}/metrics
  alert-relay    {stack.url('relay')}/metrics   (notifications: {stack.workdir / 'logs' / 'relay.log'})
  console        {stack.url('relay')}/   {console}
  Prometheus     {stack.url('prometheus')}/alerts
  Alertmanager   {stack.url('alertmanager')}
  runbooks       {stack.runbook_base()}/<AlertName>   (served by the relay)
  direct ntfy    {('the recorder: ' + str(stack.workdir / 'logs' / 'ntfy-direct.log')) if stack.direct_ntfy else 'NTFY_FALLBACK_* / NTFY_TOPIC_PRIMARY'}   (RelayDown & co., past the relay)

Trigger an incident:
  curl -X POST {gw}/admin/faults -H 'content-type: application/json' -d '{{"error_ratio": 0.5}}'
  (the stack sends ~10 requests/s to the gateway itself; --no-traffic turns that off)
Play a deployment, then a rollback:
  curl -X POST {gw}/admin/version -H 'content-type: application/json' -d '{{"version": "1.5.0"}}'
  curl -X POST {gw}/admin/version -H 'content-type: application/json' -d '{{"version": "1.4.0"}}'
Clear the faults:  curl -X DELETE {gw}/admin/faults
Who is paged, who is next; acknowledge:
  {stack.bindir / 'alert-relay'} incidents --url {stack.url('relay')} --token-file {stack.workdir / 'config' / 'secrets' / 'relay_webhook_token'}
  {stack.bindir / 'alert-relay'} ack ID --url {stack.url('relay')} --token-file {stack.workdir / 'config' / 'secrets' / 'relay_webhook_token'}
Phone pushes: set NTFY_TOPIC_PRIMARY (and NTFY_URL, NTFY_TOKEN) before starting.
Press Ctrl-C to stop everything.
""", flush=True)
        while not stopping:
            for name, proc in stack.procs:
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; see its log", file=sys.stderr)
                    stopping = True
            time.sleep(0.5)
    finally:
        print("\n==> stopping", flush=True)
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
