"""The compose overlay's containers reproduced natively, as closely as a machine without a Docker
engine allows. Used by scripts/check-mount-permissions and scripts/check-paging-paths.

- `Bundle`: a copy of the bundle's deployable files (modes and owners kept) with a `.env` made
  from `.env.example` and `scripts/init-secrets` run on it as an operator does; the overlay
  merged with the demo base by docker-compose 1.29 (`MONITORING_BUNDLE_DIR` = the copy).
- `enter_namespaces()`: re-runs the calling script (as root) in new mount and network
  namespaces: a private loopback, `/run` on a tmpfs, and an `/etc/hosts` that resolves every
  compose service name (and the test's fake vendors) to 127.0.0.1. So the overlay's own
  addresses (`alert-relay:9465`, `alertmanager:9093`) and secret paths (`/run/secrets/...`)
  work unchanged, and nothing on the host is touched or reachable.
- `ContainerView`: what one service's container sees: each bind mount (read-only) at its
  in-container path under a root directory, its secrets at /run/secrets/<name> (a bind mount
  of the host file, with the host file's owner and mode, as compose does outside swarm), and
  the uid:gid its image runs as.

Standard library only, apart from PyYAML (the merged compose file).
"""

from __future__ import annotations

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
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

# The user each pulled image runs as (image repository -> uid, gid, where that comes from).
IMAGE_USERS = {
    "prom/prometheus": (65534, 65534, "USER nobody (prometheus' Dockerfile)"),
    "prom/alertmanager": (65534, 65534, "USER nobody (alertmanager's Dockerfile)"),
    "grafana/grafana": (472, 0, "USER 472, primary group 0 (GF_UID/GF_GID in grafana's Dockerfile)"),
    "grafana/loki": (10001, 10001, "USER 10001 (loki's Dockerfile)"),
    "grafana/alloy": (0, 0, "root: the image creates an alloy user but does not switch to it"),
}
# Named users of the base images this repo's Dockerfiles use.
NAMED_USERS = {"nonroot": (65532, 65532), "nobody": (65534, 65534), "root": (0, 0)}
# Host paths that exist only on a Docker host.
HOST_RUNTIME_PATHS = {"/var/run/docker.sock": "the Docker engine's socket (root:docker 0660 on a Docker host)"}
# Names the sandbox resolves to 127.0.0.1 besides the compose services.
EXTRA_HOSTS = ["ntfy.test"]
SANDBOX_ENV = "BUNDLE_OVERLAY_SANDBOX"


# ---- small helpers ---------------------------------------------------------------------------
def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0, b""


def wait_until(what: str, check, deadline_s: float, interval_s: float = 0.2):
    end = time.monotonic() + deadline_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {deadline_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def run(argv: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], check=True, **kwargs)


def as_user(uid: int, gid: int) -> list[str]:
    """The setpriv prefix that runs a command as uid:gid with no supplementary groups, like a
    container's process (no CAP_DAC_OVERRIDE either: setpriv drops root's capabilities with the uid)."""
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]


# ---- namespaces ------------------------------------------------------------------------------
def compose_service_names() -> list[str]:
    names = set()
    for file in ("compose/docker-compose.demo.yml", "compose/monitoring.yml"):
        names |= set((yaml.safe_load((ROOT / file).read_text()) or {}).get("services", {}))
    return sorted(names)


def enter_namespaces() -> None:
    """Re-executes the current script in new mount and network namespaces (returns only there).
    Call it first: everything before it runs twice."""
    if os.environ.get(SANDBOX_ENV) != "1":
        if os.geteuid() != 0:
            sys.exit("this check runs as root (it creates namespaces and switches users)")
        env = dict(os.environ, **{SANDBOX_ENV: "1"})
        os.execvpe("unshare", ["unshare", "--mount", "--net", "--propagation", "private", "--fork",
                               "--kill-child", sys.executable, *sys.argv], env)
    run(["ip", "link", "set", "lo", "up"])
    run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run"])
    hosts = Path("/run/sandbox-hosts")
    names = " ".join(sorted(set(compose_service_names()) | set(EXTRA_HOSTS)))
    hosts.write_text(f"127.0.0.1 localhost {names}\n::1 localhost\n")
    run(["mount", "--bind", hosts, "/etc/hosts"])
    Path("/run/secrets").mkdir(mode=0o755)


# ---- the bundle copy and the merged overlay --------------------------------------------------
@dataclass
class Bundle:
    env_overrides: dict = field(default_factory=dict)
    dir: Path = field(init=False)
    env: dict = field(init=False)
    config: dict = field(init=False)

    def __post_init__(self):
        self._tmp = tempfile.mkdtemp(prefix="bundle-overlay-")
        self.dir = Path(self._tmp) / "bundle"
        self.dir.mkdir()
        for part in ("compose", "monitoring", "dashboards", ".env.example"):
            run(["cp", "-a", ROOT / part, self.dir / part])
        (self.dir / "scripts").mkdir()
        run(["cp", "-a", ROOT / "scripts/init-secrets", self.dir / "scripts/init-secrets"])
        for crate in ("exporter", "alert-relay"):
            (self.dir / crate).mkdir()
            run(["cp", "-a", ROOT / crate / "Dockerfile", self.dir / crate / "Dockerfile"])
        # secrets/ without any secret of the checkout: init-secrets writes them below.
        (self.dir / "secrets").mkdir()
        for keep in (".gitignore", "README.md"):
            if (ROOT / "secrets" / keep).exists():
                run(["cp", "-a", ROOT / "secrets" / keep, self.dir / "secrets" / keep])
        env_text = (self.dir / ".env.example").read_text()
        overrides = {"MONITORING_BUNDLE_DIR": str(self.dir), "GRAFANA_ADMIN_PASSWORD": "sandbox",
                     **self.env_overrides}
        for key, value in overrides.items():
            env_text, n = re.subn(rf"^{key}=.*$", f"{key}={value}", env_text, flags=re.M)
            if not n:
                env_text += f"{key}={value}\n"
        (self.dir / ".env").write_text(env_text)
        # As an operator does (scripts/init-secrets .env), as root.
        run([self.dir / "scripts/init-secrets", self.dir / ".env"], cwd=self.dir, stdout=subprocess.DEVNULL)
        self.env = dict(line.split("=", 1) for line in (self.dir / ".env").read_text().splitlines()
                        if re.match(r"^[A-Z_][A-Z0-9_]*=", line))
        merged = run(["docker-compose", "--project-directory", self.dir, "--env-file", self.dir / ".env",
                      "-f", self.dir / "compose/docker-compose.demo.yml", "-f", self.dir / "compose/monitoring.yml",
                      "config"], capture_output=True, text=True).stdout
        self.config = yaml.safe_load(merged)

    @property
    def services(self) -> dict:
        return self.config["services"]

    def user_of(self, name: str) -> tuple[int, int, str]:
        """The uid:gid the service's container runs as: compose `user:`, else the image's."""
        service = self.services[name]
        if service.get("user"):
            uid, _, gid = str(service["user"]).partition(":")
            return int(uid), int(gid or uid), "compose user:"
        if "build" in service:
            dockerfile = Path(service["build"]["context"]) / service["build"].get("dockerfile", "Dockerfile")
            users = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(), re.M)
            user = users[-1] if users else "root"
            uid, _, gid = user.partition(":")
            if uid.isdigit():
                return int(uid), int(gid or uid), f"USER {user} ({dockerfile.relative_to(self.dir)})"
            uid_n, gid_n = NAMED_USERS[uid]
            return uid_n, gid_n, f"USER {user} = {uid_n}:{gid_n} ({dockerfile.relative_to(self.dir)})"
        repo = service["image"].rsplit(":", 1)[0]
        if repo not in IMAGE_USERS:
            raise KeyError(f"{name}: no known user for image {service['image']} (add it to IMAGE_USERS)")
        return IMAGE_USERS[repo]

    def cleanup(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)


@dataclass
class Mount:
    source: str
    target: str  # inside the container
    read_only: bool
    kind: str  # bind | secret


class ContainerView:
    """One service's files, mounted as its container would see them."""

    def __init__(self, bundle: Bundle, name: str):
        self.bundle, self.name = bundle, name
        self.uid, self.gid, self.user_source = bundle.user_of(name)
        self.root = Path("/run/containers") / name
        self.root.mkdir(parents=True, mode=0o755)
        self.mounts: list[Mount] = []
        self.skipped: list[tuple[str, str]] = []
        service = bundle.services[name]
        for volume in service.get("volumes") or []:
            parts = volume.split(":") if isinstance(volume, str) else [volume["source"], volume["target"]]
            source, target = parts[0], parts[1]
            if not source.startswith("/"):
                continue  # a named volume
            self.mounts.append(Mount(source, target, len(parts) > 2 and "ro" in parts[2].split(","), "bind"))
        declared = bundle.config.get("secrets") or {}
        for secret in service.get("secrets") or []:
            source = secret if isinstance(secret, str) else secret["source"]
            target = (secret.get("target") if isinstance(secret, dict) else None) or source
            target = target if target.startswith("/") else f"/run/secrets/{target}"
            self.mounts.append(Mount(declared[source]["file"], target, True, "secret"))
        for mount in self.mounts:
            if mount.source == "/" or mount.source in HOST_RUNTIME_PATHS:
                continue
            self._bind(mount.source, self.path(mount.target), mount.read_only)

    def path(self, target: str) -> Path:
        return self.root / target.lstrip("/")

    @staticmethod
    def _bind(source: str, at: Path, read_only: bool) -> None:
        at.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        if Path(source).is_dir():
            at.mkdir(exist_ok=True)
        else:
            at.touch()
        run(["mount", "--bind", source, at])
        if read_only:
            run(["mount", "-o", "remount,bind,ro", at])

    def expose_secrets(self) -> None:
        """Binds the service's secrets at their real in-container paths (/run/secrets/...)."""
        for mount in self.mounts:
            if mount.kind == "secret":
                self._bind(mount.source, Path(mount.target), True)

    def read_checks(self) -> list[tuple[str, str, bool, str]]:
        """(mount, in-container path, readable, error) for every file and directory mounted,
        each read as the container's uid:gid (directories listed, files read whole)."""
        results = []
        for mount in self.mounts:
            if mount.source in HOST_RUNTIME_PATHS:
                self.skipped.append((mount.target, HOST_RUNTIME_PATHS[mount.source]))
                continue
            if mount.source == "/":
                entries = [(Path("/"), "/")]  # the host's root: listed, not walked
            else:
                base = self.path(mount.target)
                entries = [(base, mount.target)]
                if base.is_dir():
                    for dirpath, dirnames, filenames in os.walk(base):
                        for entry in sorted(dirnames) + sorted(filenames):
                            full = Path(dirpath) / entry
                            entries.append((full, mount.target + "/" + str(full.relative_to(base))))
            for path, shown in entries:
                argv = ["ls", "-a", path] if path.is_dir() else ["cat", path]
                result = subprocess.run(as_user(self.uid, self.gid) + [str(a) for a in argv],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                results.append((mount.kind, shown, result.returncode == 0, result.stderr.strip()))
        return results


# ---- processes -------------------------------------------------------------------------------
class Processes:
    """Starts processes in their own process group and stops every one of them (by pid)."""

    def __init__(self, logdir: Path):
        self.logdir, self.procs = logdir, []
        logdir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: list, env: dict | None = None) -> subprocess.Popen:
        out = open(self.logdir / f"{name}.log", "ab")
        proc = subprocess.Popen([str(a) for a in argv], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        out.close()
        self.procs.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        path = self.logdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def alive(self, name: str) -> subprocess.Popen:
        for pname, proc in self.procs:
            if pname == name:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log(name)[-3000:]}")
                return proc
        raise KeyError(name)

    def stop(self, name: str | None = None) -> None:
        for pname, proc in reversed(self.procs):
            if name not in (None, pname) or proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs = [(n, p) for n, p in self.procs if p.poll() is None]


def start_alertmanager(bundle: Bundle, view: ContainerView, procs: Processes, name: str = "alertmanager"):
    """Alertmanager as the overlay runs it: the service's entrypoint and command, as its image's
    user, on the files mounted in `view`, with only these native adaptations: container paths
    under the view's root, Debian's binary, gossip off (no private address in the sandbox)."""
    service = bundle.services["alertmanager"]
    data = view.path("/alertmanager")
    data.mkdir(parents=True, exist_ok=True)
    os.chown(data, view.uid, view.gid)  # the image's /alertmanager volume belongs to nobody
    entrypoint = [str(view.path(a)) if a.startswith("/etc/") else a for a in service["entrypoint"]]
    entrypoint[0] = "sh"  # /bin/sh
    args = []
    for arg in service["command"]:
        key, _, value = arg.partition("=")
        if key == "--config.file":
            arg = f"{key}={view.path(value)}"
        elif key == "--storage.path":
            arg = f"{key}={data}"
        args.append(arg)
    args.append("--cluster.listen-address=")
    env = {"ALERTMANAGER_BIN": "prometheus-alertmanager",
           "ALERTMANAGER_RENDERED": str(data / "alertmanager.rendered.yml")}
    procs.start(name, as_user(view.uid, view.gid) + entrypoint + args, env)
    wait_until("Alertmanager to be ready", lambda: procs.alive(name) and
               http("GET", "http://alertmanager:9093/-/ready")[0] == 200, 60)


def post_alerts(alerts: list[dict]) -> None:
    body = json.dumps([{"labels": a, "annotations": {"summary": f"{a['alertname']} (sandbox)"}}
                       for a in alerts]).encode()
    status, reply = http("POST", "http://alertmanager:9093/api/v2/alerts", body,
                         {"Content-Type": "application/json"})
    if status != 200:
        raise RuntimeError(f"Alertmanager refused the alerts: {status} {reply[:300]!r}")


class Recorder:
    """A fake HTTP receiver (the relay, ntfy) on a fixed loopback port of the sandbox: records
    every request; `answer(path, headers)` gives (status, JSON body)."""

    def __init__(self, port: int, answer=None):
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                with outer.lock:
                    outer.requests.append({"path": self.path, "headers": headers, "json": parsed})
                status, reply = (answer or (lambda p, h: (200, {})))(self.path, headers)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, path_prefix: str = "") -> list[tuple[dict, str]]:
        """(request, alertname) for every alert received on a path starting with path_prefix."""
        with self.lock:
            reqs = list(self.requests)
        return [(r, a["labels"].get("alertname")) for r in reqs if r["path"].startswith(path_prefix)
                and r["json"] for a in r["json"].get("alerts", [])]

    def close(self) -> None:
        """Stops answering: the port is closed, connections are refused (a dead process)."""
        self.server.shutdown()
        self.server.server_close()


def report(results: list[tuple[str, bool, str]]) -> int:
    """Prints PASS/FAIL lines and the closing `N passed, N failed`; returns the exit status."""
    passed = sum(1 for _, ok, _ in results if ok)
    for name, ok, detail in results:
        print(f"{'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""), flush=True)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if results and passed == len(results) else 1
