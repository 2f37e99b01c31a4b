#!/usr/bin/env python3
"""Side-by-side benchmarks of the bundle (issue: benchmarks). Everything compared runs in the
same invocation, interleaved where possible, and is reported as ratios; results are JSON lines
on stdout and a Markdown summary at the end. Usage: scripts/bench/run [exporter|middleware|relay|storm|startup|slowclients|firstdelivery|
intake-backends|latency-backends|failover|intake-replicas|console]...

Needs release builds (scripts/bench/run does them), Debian's prometheus-node-exporter and wrk.
"""

from __future__ import annotations

import glob
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import urllib.request
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REL = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "release"
TOKEN = "bench-token-0123456789abcdef"
CLK = os.sysconf("SC_CLK_TCK")
results: dict[str, dict] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, path: str, limit: float = 20.0) -> float:
    """Polls until 200; returns the seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", path)
            if c.getresponse().status == 200:
                return time.perf_counter() - start
        except OSError:
            pass
        time.sleep(0.002)
    raise TimeoutError(f"127.0.0.1:{port}{path} not ready")


class Proc:
    def __init__(self, argv, env=None, cwd=None, **popen):
        self.p = subprocess.Popen([str(a) for a in argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env={**os.environ, **(env or {})}, cwd=cwd, **popen)
        self.started = time.perf_counter()

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK

    def status_kb(self, key: str) -> int:
        m = re.search(rf"^{key}:\s+(\d+) kB", Path(f"/proc/{self.p.pid}/status").read_text(), re.M)
        return int(m.group(1)) if m else 0

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()


def emit(name: str, data: dict):
    results[name] = data
    print(json.dumps({"bench": name, **data}), flush=True)


def bench_exporter(scrapes: int = 1000):
    gw_port, ours_port, node_port = free_port(), free_port(), free_port()
    tmp = tempfile.mkdtemp()
    gw = Proc([REL / "demo-gateway", "--listen", f"127.0.0.1:{gw_port}"])
    wait_http(gw_port, "/health")
    ours = Proc([REL / "exporter", "--listen", f"127.0.0.1:{ours_port}", "--gateway-url", f"http://127.0.0.1:{gw_port}",
                 "--state-file", f"{tmp}/state.json"])
    node = Proc(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{node_port}"])
    try:
        wait_http(ours_port, "/ready")
        wait_http(node_port, "/metrics")
        time.sleep(1)
        conns = {"ours": http.client.HTTPConnection("127.0.0.1", ours_port), "node": http.client.HTTPConnection("127.0.0.1", node_port)}
        procs = {"ours": ours, "node": node}
        lat = {"ours": [], "node": []}
        body = {}
        cpu0 = {k: p.cpu_seconds() for k, p in procs.items()}
        for _ in range(scrapes):
            for k in ("ours", "node"):
                t = time.perf_counter()
                conns[k].request("GET", "/metrics", headers={"Accept": "text/plain"})
                data = conns[k].getresponse().read()
                lat[k].append(time.perf_counter() - t)
                body[k] = data
        cpu = {k: (p.cpu_seconds() - cpu0[k]) for k, p in procs.items()}
        out = {}
        for k in ("ours", "node"):
            text = body[k].decode()
            out[k] = {
                "median_ms": round(statistics.median(lat[k]) * 1000, 3),
                "p99_ms": round(sorted(lat[k])[int(len(lat[k]) * 0.99) - 1] * 1000, 3),
                "cpu_ms_per_1000_scrapes": round(cpu[k] * 1000 * 1000 / scrapes, 1),
                "rss_kb": procs[k].status_kb("VmRSS"),
                "series": sum(1 for line in text.splitlines() if line and not line.startswith("#")),
                "body_bytes": len(body[k]),
            }
        out["ratios"] = {m: round(out["ours"][m] / out["node"][m], 3) for m in ("median_ms", "cpu_ms_per_1000_scrapes", "rss_kb") if out["node"][m]}
        emit("exporter_vs_node_exporter", out)
    finally:
        for p in (ours, node, gw):
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def wrk(port: int, seconds: int = 5) -> float:
    out = subprocess.run(["wrk", "-t1", "-c16", f"-d{seconds}s", f"http://127.0.0.1:{port}/api/cheap"],
                         capture_output=True, text=True, check=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def bench_middleware(rounds: int = int(os.environ.get("BENCH_ROUNDS", "15")), seconds: int = 2):
    """Throughput of the same app with, without and with axum-prometheus's layer. Shared
    machines drift by ±15% within a minute, so runs are short and interleaved, each round in
    the reverse order of the previous one (ABC CBA: linear drift cancels), and the ratio is
    the median of the per-round ratios."""
    app = ROOT / "scripts/bench/axum-prometheus-app"
    subprocess.run(["cargo", "build", "--release", "--quiet", "--manifest-path", str(app / "Cargo.toml")], check=True)
    ports = {"with_layer": free_port(), "without": free_port(), "axum_prometheus": free_port()}
    procs = {
        "with_layer": Proc([REL / "demo-gateway", "--listen", f"127.0.0.1:{ports['with_layer']}"]),
        "without": Proc([REL / "demo-gateway", "--listen", f"127.0.0.1:{ports['without']}", "--no-metrics-layer"]),
        "axum_prometheus": Proc([app / "target/release/axum-prometheus-app", f"127.0.0.1:{ports['axum_prometheus']}"]),
    }
    try:
        for name, port in ports.items():
            wait_http(port, "/api/cheap")
            wrk(port, 1)  # warm-up
        runs = {k: [] for k in ports}
        order = list(ports)
        for _ in range(rounds):
            for name in order:
                runs[name].append(wrk(ports[name], seconds))
            order.reverse()
        med = {k: statistics.median(v) for k, v in runs.items()}
        paired = lambda a, b: round(statistics.median(x / y for x, y in zip(runs[a], runs[b])), 3)  # noqa: E731
        micro = json.loads(subprocess.run([REL / "examples/layer_overhead"], capture_output=True, text=True, check=True).stdout)
        emit("middleware", {
            "req_per_s_median": {k: round(v) for k, v in med.items()},
            "runs": {k: [round(x) for x in v] for k, v in runs.items()},
            "with_layer_vs_without": paired("with_layer", "without"),
            "with_layer_vs_axum_prometheus": paired("with_layer", "axum_prometheus"),
            "in_process_ns": micro,
        })
    finally:
        for p in procs.values():
            p.stop()


def loadgen(*args) -> list[dict]:
    out = subprocess.run([REL / "examples/loadgen", *map(str, args)], capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


class Relay:
    """A fresh relay (own data directory) with the shipped policy: the log target always,
    ntfy when `ntfy_port` is given. Each measurement gets its own, so that no backlog of an
    earlier run is still being delivered."""

    def __init__(self, ntfy_port: int | None = None, under: str | None = None, extra_env: dict | None = None,
                 database_url: str | None = None, policy: Path | None = None):
        self.tmp = Path(tempfile.mkdtemp(dir=under))
        self.port = free_port()
        env = {"RELAY_WEBHOOK_TOKEN": TOKEN, "RELAY_AUDIT_LOG": str(self.tmp / "audit.log"),
               "LOG_FORMAT": "json", "RUST_LOG": "warn"}
        if ntfy_port:
            env.update(NTFY_URL=f"http://127.0.0.1:{ntfy_port}", NTFY_TOPIC_PRIMARY="bench")
        env.update(extra_env or {})
        database = ["--database-url", database_url] if database_url else []
        self.proc = Proc([REL / "alert-relay", "serve", "--config", policy or ROOT / "monitoring/alert-relay/escalation-policy.yml",
                          "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.tmp / "data", *database], env=env)
        wait_http(self.port, "/ready")
        self.url = f"http://127.0.0.1:{self.port}/webhook"

    def close(self):
        self.proc.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def disk_floor(directory: Path, rate: int = 500, seconds: int = 10) -> dict:
    """The disk's own answer to what durable intake asks of it: appends paced at `rate` per
    second, each followed by fsync, latency measured from the scheduled time. 4 KiB is one
    page; 32 KiB is about what one small group commit appends to SQLite's WAL."""
    out = {}
    for size in (4096, 32768):
        path = directory / "fsync-probe"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        lat, start, written = [], time.perf_counter(), 0
        for n in range(rate * seconds):
            due = start + n / rate
            if (pause := due - time.perf_counter()) > 0:
                time.sleep(pause)
            os.write(fd, b"x" * size)
            os.fsync(fd)
            lat.append((time.perf_counter() - due) * 1000)
            written += size
            if written > 64 << 20:
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, 0)
                written = 0
        os.close(fd)
        path.unlink()
        lat.sort()
        out[f"append_{size // 1024}k_fsync"] = {"p50_ms": round(lat[len(lat) // 2], 3),
                                                 "p99_ms": round(lat[int(len(lat) * 0.99)], 3),
                                                 "max_ms": round(lat[-1], 3)}
    return out


def bench_relay():
    trivial_port = free_port()
    trivial = Proc([REL / "examples/loadgen", "trivial", "--listen", f"127.0.0.1:{trivial_port}"])
    time.sleep(0.3)  # the trivial server answers POST only
    turl = f"http://127.0.0.1:{trivial_port}/webhook"
    relay_max, trivial_max = [], []
    try:
        for _ in range(2):
            relay = Relay()
            try:
                relay_max.append(loadgen("intake", "--url", relay.url, "--token", TOKEN, "--rate", 0, "--connections", 32, "--duration", 5)[0])
            finally:
                relay.close()
            trivial_max.append(loadgen("intake", "--url", turl, "--token", TOKEN, "--rate", 0, "--connections", 32, "--duration", 5)[0])
    finally:
        trivial.stop()
    # At 500/s, interleaved: the store on this disk, and the same relay with its store in
    # memory (tmpfs, where fsync returns at once) to separate the software from the disk.
    at500, at500_tmpfs = [], []
    for _ in range(3):
        for runs, under in ((at500, None), (at500_tmpfs, "/dev/shm")):
            relay = Relay(under=under)
            try:
                runs.append(loadgen("intake", "--url", relay.url, "--token", TOKEN, "--rate", 500, "--duration", 10)[0])
            finally:
                relay.close()
    floor = disk_floor(Path(tempfile.gettempdir()))
    ntfy = free_port()
    relay = Relay(ntfy)
    try:
        e2e = loadgen("e2e", "--url", relay.url, "--token", TOKEN, "--rate", 100, "--duration", 10, "--ntfy-listen", f"127.0.0.1:{ntfy}")
    finally:
        relay.close()
    best = lambda runs: max(runs, key=lambda r: r["rate_per_s"])  # noqa: E731
    emit("relay_intake", {
        "durable_max_per_s": round(best(relay_max)["rate_per_s"]),
        "trivial_max_per_s": round(best(trivial_max)["rate_per_s"]),
        "ratio_to_trivial": round(best(relay_max)["rate_per_s"] / best(trivial_max)["rate_per_s"], 3),
        "at_500_per_s_p99_ms": [r["p99_ms"] for r in at500],
        "at_500_per_s_p50_ms": [r["p50_ms"] for r in at500],
        "at_500_per_s": at500,
        "at_500_per_s_tmpfs_p99_ms": [r["p99_ms"] for r in at500_tmpfs],
        "at_500_per_s_tmpfs_p50_ms": [r["p50_ms"] for r in at500_tmpfs],
        "at_500_per_s_tmpfs": at500_tmpfs,
        "disk_floor_500_per_s": floor,
        "runs": {"relay": relay_max, "trivial": trivial_max},
    })
    emit("relay_e2e_100_per_s", {"intake": e2e[0], "webhook_to_push": e2e[1]})


def bench_storm():
    # Storm: 1,000 groups carrying 5,000 alerts within 10 s; then the same storm with info
    # logs shipped to a Loki that refuses connections (log lines queue while it backs off).
    for name, extra in (("relay_storm", None),
                        ("relay_storm_loki_down", {"RUST_LOG": "info", "LOKI_URL": "http://127.0.0.1:9"})):
        ntfy = free_port()
        relay = Relay(ntfy, extra_env=extra)
        try:
            storm = loadgen("storm", "--url", relay.url, "--token", TOKEN, "--groups", 1000,
                            "--alerts", 5000, "--duration", 10, "--ntfy-listen", f"127.0.0.1:{ntfy}")
            time.sleep(1)
            audit = (relay.tmp / "audit.log").read_text().count("\n") if (relay.tmp / "audit.log").exists() else 0
            emit(name, {"intake": storm[0], "pages": storm[1], "audit_lines": audit,
                        "peak_rss_kb": relay.proc.status_kb("VmHWM"), "rss_after_kb": relay.proc.status_kb("VmRSS")})
        finally:
            relay.close()


def bench_startup(runs: int = 5):
    out = {}
    for name in ("exporter", "alert-relay", "demo-gateway"):
        times, rss = [], []
        for _ in range(runs):
            tmp = Path(tempfile.mkdtemp())
            port = free_port()
            argv = {
                "exporter": [REL / "exporter", "--listen", f"127.0.0.1:{port}", "--state-file", tmp / "s.json", "--host-interval", "1s"],
                "alert-relay": [REL / "alert-relay", "serve", "--config", ROOT / "monitoring/alert-relay/escalation-policy.yml",
                                "--listen", f"127.0.0.1:{port}", "--data-dir", tmp / "data"],
                "demo-gateway": [REL / "demo-gateway", "--listen", f"127.0.0.1:{port}"],
            }[name]
            p = Proc(argv, env={"RELAY_WEBHOOK_TOKEN": TOKEN})
            path = "/health" if name == "demo-gateway" else "/ready"
            wait_http(port, path, 10)
            times.append(time.perf_counter() - p.started)
            time.sleep(2)
            rss.append(p.status_kb("VmRSS"))
            p.stop()
            shutil.rmtree(tmp, ignore_errors=True)
        out[name] = {"start_to_ready_ms_median": round(statistics.median(times) * 1000, 1), "idle_rss_kb_median": statistics.median(rss)}
    emit("startup_and_idle", out)


def bench_first_delivery(runs: int = 7):
    """Webhook -> push latency of the first page after a start, against the next ones: vendor
    clients are built at start, so the first page should not pay for them."""
    import http.server
    import threading

    arrivals = []

    class Ntfy(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            arrivals.append(time.perf_counter())
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def do_GET(self):  # noqa: N802
            body = b'{"healthy":true}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ntfy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    first, later = [], []
    try:
        for _ in range(runs):
            relay = Relay(server.server_address[1])
            try:
                time.sleep(0.5)  # the start-up healthcheck has answered
                for i in range(4):
                    arrivals.clear()
                    body = json.dumps({
                        "version": "4", "groupKey": f"{{}}:{{alertname=\"First{i}\"}}", "status": "firing",
                        "receiver": "relay", "groupLabels": {"alertname": f"First{i}"},
                        "commonLabels": {"alertname": f"First{i}", "severity": "critical"},
                        "commonAnnotations": {}, "externalURL": "http://am", "truncatedAlerts": 0,
                        "alerts": [{"status": "firing", "labels": {"alertname": f"First{i}", "severity": "critical"},
                                    "annotations": {}, "startsAt": "2026-12-02T00:00:00Z", "fingerprint": f"f{i}"}]}).encode()
                    sent = time.perf_counter()
                    req = urllib.request.Request(relay.url, data=body, headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
                    urllib.request.urlopen(req, timeout=10).read()
                    deadline = time.time() + 10
                    while not arrivals and time.time() < deadline:
                        time.sleep(0.0005)
                    ms = (arrivals[0] - sent) * 1000 if arrivals else float("nan")
                    (first if i == 0 else later).append(ms)
            finally:
                relay.close()
    finally:
        server.shutdown()
    emit("relay_first_delivery", {
        "runs": runs,
        "first_after_start_ms_median": round(statistics.median(first), 2),
        "first_after_start_ms_max": round(max(first), 2),
        "later_ms_median": round(statistics.median(later), 2),
        "later_ms_max": round(max(later), 2),
        "first": [round(x, 2) for x in first],
    })


def bench_slowclients():
    from slowclients import bench_slowclients as run  # scripts/bench/slowclients.py

    run(emit)


# --- PostgreSQL and SQLite side by side -------------------------------------------------

PG_DURABLE = "-c fsync=on -c synchronous_commit=on -c full_page_writes=on"


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: [int(x) for x in re.findall(r"\d+", p)])
    return found[-1] if found else name


class Postgres:
    """A throwaway server from scripts/start-postgres (fsync off, as for the tests), or with
    `durable` the same server with fsync, synchronous commit and full page writes on, the
    PostgreSQL counterpart of SQLite's synchronous=FULL. Each relay gets a fresh database."""

    def __init__(self, durable: bool = False):
        env = {**os.environ, "RELAY_TEST_POSTGRES_OPTIONS": PG_DURABLE if durable else ""}
        out = subprocess.run([ROOT / "scripts/start-postgres"], capture_output=True, text=True, check=True, env=env).stdout
        exports = dict(re.findall(r"export (\w+)=(\S+)", out))
        self.url, self.dir, self.n = exports["RELAY_TEST_DATABASE_URL"], exports["RELAY_TEST_POSTGRES_DIR"], 0
        self.pid = int(Path(self.dir, "data/postmaster.pid").read_text().split()[0])

    def psql(self, sql: str, url: str | None = None) -> str:
        return subprocess.run([pg_bin("psql"), url or self.url, "-qAtc", sql], capture_output=True, text=True, check=True).stdout.strip()

    def fresh(self) -> str:
        self.n += 1
        self.psql(f"CREATE DATABASE bench{self.n}")
        return self.url.rsplit("/", 1)[0] + f"/bench{self.n}"

    def settings(self) -> dict:
        return {k: self.psql(f"SHOW {k}") for k in ("server_version", "fsync", "synchronous_commit", "full_page_writes", "shared_buffers")}

    def cpu_seconds(self) -> float:
        """CPU of the whole server (postmaster and every backend), from /proc."""
        total = 0.0
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
                pid = int(stat.split("/")[2])
                if pid == self.pid or int(fields[1]) == self.pid:
                    total += (int(fields[11]) + int(fields[12])) / CLK
            except (OSError, ValueError, IndexError):
                pass
        return total

    def stop(self):
        subprocess.run([ROOT / "scripts/start-postgres", "--stop", self.dir], check=False)


BACKENDS = ("sqlite", "postgres_fsync_off", "postgres_fsync_on")


class Backends:
    def __init__(self):
        self.pg = {"postgres_fsync_off": Postgres(False), "postgres_fsync_on": Postgres(True)}

    def relay(self, backend: str, ntfy_port: int | None = None, **kw) -> Relay:
        return Relay(ntfy_port, database_url=None if backend == "sqlite" else self.pg[backend].fresh(), **kw)

    def settings(self) -> dict:
        return {k: pg.settings() for k, pg in self.pg.items()}

    def stop(self):
        for pg in self.pg.values():
            pg.stop()


def paired_ratios(runs: dict, key: str, base: str = "sqlite") -> dict:
    return {b: round(statistics.median(x[key] / y[key] for x, y in zip(runs[b], runs[base]) if y[key]), 3)
            for b in runs if b != base}


def bench_intake_backends(rounds: int = int(os.environ.get("BENCH_ROUNDS", "3"))):
    """Durable intake on SQLite (synchronous=FULL) and on PostgreSQL (fsync off, as started
    for the tests; and fsync + synchronous_commit on), interleaved, a fresh relay and
    database per run, each round in the reverse order of the previous one. Maximum: 32
    connections back to back for 5 s; then open loop at 500/s for 10 s."""
    b = Backends()
    try:
        maxrate, at500 = {k: [] for k in BACKENDS}, {k: [] for k in BACKENDS}
        cpu = {k: [] for k in BACKENDS}
        order = list(BACKENDS)
        for _ in range(rounds):
            for backend in order:
                relay = b.relay(backend)
                pg = b.pg.get(backend)
                try:
                    c0 = (relay.proc.cpu_seconds(), pg.cpu_seconds() if pg else 0.0)
                    r = loadgen("intake", "--url", relay.url, "--token", TOKEN, "--rate", 0, "--connections", 32, "--duration", 5)[0]
                    r["relay_cpu_s"] = round(relay.proc.cpu_seconds() - c0[0], 2)
                    r["postgres_cpu_s"] = round((pg.cpu_seconds() if pg else 0.0) - c0[1], 2)
                    maxrate[backend].append(r)
                    cpu[backend].append((r["relay_cpu_s"], r["postgres_cpu_s"]))
                finally:
                    relay.close()
                relay = b.relay(backend)
                try:
                    at500[backend].append(loadgen("intake", "--url", relay.url, "--token", TOKEN, "--rate", 500, "--duration", 10)[0])
                finally:
                    relay.close()
            order.reverse()
        emit("intake_backends", {
            "postgres_settings": b.settings(),
            "max_per_s": {k: [round(r["rate_per_s"]) for r in v] for k, v in maxrate.items()},
            "max_ratio_to_sqlite": paired_ratios(maxrate, "rate_per_s"),
            "max_p99_ms": {k: [r["p99_ms"] for r in v] for k, v in maxrate.items()},
            "cpu_s_relay_postgres": cpu,
            "at_500_p50_ms": {k: [r["p50_ms"] for r in v] for k, v in at500.items()},
            "at_500_p99_ms": {k: [r["p99_ms"] for r in v] for k, v in at500.items()},
            "runs": {"max": maxrate, "at_500": at500},
        })
    finally:
        b.stop()


def loadgen_parallel(urls: list[str], connections: int, seconds: int) -> list[dict]:
    """Closed-loop intake against several relays at once: one loadgen per relay, each with
    its own alert names (so that each webhook starts an incident), started together."""
    procs = [subprocess.Popen([REL / "examples/loadgen", "intake", "--url", url, "--token", TOKEN, "--rate", "0",
                               "--connections", str(connections), "--duration", str(seconds),
                               "--start", str(1_000_000 * (i + 1))], stdout=subprocess.PIPE, text=True)
             for i, url in enumerate(urls)]
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        out += [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return out


def bench_intake_replicas(rounds: int = int(os.environ.get("BENCH_ROUNDS", "5"))):
    """Durable intake with several relays on one PostgreSQL database (fsync, synchronous
    commit and full page writes on), beside one relay on it and one relay on SQLite
    (synchronous=FULL): 32 connections back to back for 5 s in all (two relays: 16 each,
    each relay its own alert names). A fresh database and relays per measurement; each round
    in the reverse order of the previous one. Also: commits on the server per webhook."""
    pg = Postgres(True)
    cases = ("sqlite", "postgres_1", "postgres_2")
    rates = {k: [] for k in cases}
    commits = {k: [] for k in cases if k != "sqlite"}
    cpu = {k: [] for k in cases}
    server_cpu = {k: [] for k in cases if k != "sqlite"}
    order = list(cases)
    try:
        for _ in range(rounds):
            for case in order:
                n = 2 if case == "postgres_2" else 1
                url = None if case == "sqlite" else pg.fresh()
                relays = [Relay(database_url=url) for _ in range(n)]
                try:
                    s0 = pg.cpu_seconds() if url else 0.0
                    c0 = sum(r.proc.cpu_seconds() for r in relays) + s0
                    x0 = int(pg.psql("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()", url)) if url else 0
                    runs = loadgen_parallel([r.url for r in relays], 32 // n, 5)
                    total = sum(r["requests"] for r in runs)
                    rate = sum(r["rate_per_s"] for r in runs)
                    errors = sum(r["errors"] for r in runs)
                    rates[case].append({"rate_per_s": rate, "requests": total, "errors": errors,
                                        "p99_ms": max(r["p99_ms"] for r in runs)})
                    s1 = pg.cpu_seconds() if url else 0.0
                    cpu[case].append(round(sum(r.proc.cpu_seconds() for r in relays) + s1 - c0, 2))
                    if url:
                        # The server's CPU per 1,000 webhooks, in seconds.
                        server_cpu[case].append(round((s1 - s0) / max(total, 1) * 1000, 3))
                finally:
                    for r in relays:
                        r.close()
                if url:
                    # Sessions report their counts when they end (the relays have stopped).
                    time.sleep(1)
                    x1 = int(pg.psql("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()", url))
                    commits[case].append(round((x1 - x0) / max(total, 1), 2))
            order.reverse()
        emit("intake_replicas", {
            "postgres": pg.settings(),
            "max_per_s": {k: [round(r["rate_per_s"]) for r in v] for k, v in rates.items()},
            "median_per_s": {k: round(statistics.median(r["rate_per_s"] for r in v)) for k, v in rates.items()},
            "ratio_to_sqlite": paired_ratios(rates, "rate_per_s"),
            "errors": {k: sum(r["errors"] for r in v) for k, v in rates.items()},
            "p99_ms": {k: [r["p99_ms"] for r in v] for k, v in rates.items()},
            "commits_per_webhook": commits,
            "cpu_s_relays_and_server_per_5s": cpu,
            "server_cpu_s_per_1000_webhooks": server_cpu,
        })
    finally:
        pg.stop()


class FakeNtfy:
    """An ntfy on loopback that answers at once and records (arrival, topic) of each push."""

    def __init__(self):
        arrivals = self.arrivals = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                at, topic = time.perf_counter(), self.path.strip("/")
                try:
                    topic = json.loads(body).get("topic") or topic  # ntfy's JSON publishing: POST / {"topic": ...}
                except (ValueError, AttributeError):
                    pass
                arrivals.append((at, topic))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def do_GET(self):  # noqa: N802
                body = b'{"healthy":true}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def critical_webhook(name: str) -> bytes:
    return json.dumps({
        "version": "4", "groupKey": f"{{}}:{{alertname=\"{name}\"}}", "status": "firing",
        "receiver": "relay", "groupLabels": {"alertname": name},
        "commonLabels": {"alertname": name, "severity": "critical"},
        "commonAnnotations": {}, "externalURL": "http://am", "truncatedAlerts": 0,
        "alerts": [{"status": "firing", "labels": {"alertname": name, "severity": "critical"},
                    "annotations": {}, "startsAt": "2026-12-02T00:00:00Z", "fingerprint": name}]}).encode()


def post_webhook(url: str, body: bytes):
    req = urllib.request.Request(url, data=body, headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()


def wait_push(arrivals: list, topic: str, after: float, limit: float = 15.0) -> float | None:
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        for at, t in list(arrivals):
            if t == topic and at >= after:
                return at
        time.sleep(0.0005)
    return None


def bench_latency_backends(rounds: int = int(os.environ.get("BENCH_ROUNDS", "3")), pages: int = 8):
    """Webhook -> ntfy push on each backend, interleaved: `pages` single webhooks one after
    another on a fresh relay (the first after the start counted apart), then loadgen's e2e at
    100/s for 5 s on another fresh relay."""
    b = Backends()
    ntfy = FakeNtfy()
    try:
        first, later, e2e = ({k: [] for k in BACKENDS} for _ in range(3))
        order = list(BACKENDS)
        for rnd in range(rounds):
            for backend in order:
                relay = b.relay(backend, ntfy.port)
                try:
                    time.sleep(0.5)  # the start-up healthcheck has answered
                    for i in range(pages):
                        sent = time.perf_counter()
                        post_webhook(relay.url, critical_webhook(f"Lat{rnd}x{i}"))
                        at = wait_push(ntfy.arrivals, "bench", sent, 10)
                        (first if i == 0 else later)[backend].append(round((at - sent) * 1000, 2) if at else float("nan"))
                finally:
                    relay.close()
                port = free_port()
                relay = b.relay(backend, port)
                try:
                    e2e[backend].append(loadgen("e2e", "--url", relay.url, "--token", TOKEN, "--rate", 100, "--duration", 5,
                                                "--ntfy-listen", f"127.0.0.1:{port}")[1])
                finally:
                    relay.close()
            order.reverse()
        emit("latency_backends", {
            "sequential_first_after_start_ms": first,
            "sequential_later_ms_median": {k: round(statistics.median(v), 2) for k, v in later.items()},
            "sequential_later_ms_max": {k: round(max(v), 2) for k, v in later.items()},
            "e2e_100_per_s_p50_ms": {k: [r.get("p50_ms") for r in v] for k, v in e2e.items()},
            "e2e_100_per_s_p99_ms": {k: [r.get("p99_ms") for r in v] for k, v in e2e.items()},
            "e2e_100_per_s": e2e,
        })
    finally:
        ntfy.close()
        b.stop()


FAILOVER_POLICY = """server:
  webhook_auth:
    bearer_token: ${RELAY_WEBHOOK_TOKEN}
delivery:
  timeout: 10s
  initial_backoff: 1s
  max_backoff: 60s
  give_up_after: 6h
targets:
  ntfy:
    primary: {url: "${NTFY_URL}", topic: step1}
    secondary: {url: "${NTFY_URL}", topic: step2}
  log:
    audit: {path: "${RELAY_AUDIT_LOG:--}"}
policies:
  - name: critical
    matchers: ['severity="critical"']
    steps:
      - {after: 0s, notify: [ntfy.primary, log.audit]}
      - {after: %ds, notify: [ntfy.secondary]}
    send_resolved: true
"""


def bench_failover(runs: int = int(os.environ.get("BENCH_FAILOVER_RUNS", "7")), step2_after: int = 3):
    """Two relays on one PostgreSQL database (fsync off), each with its own fake ntfy so that
    a push says who sent it. A critical webhook to one relay; as soon as step 1's push
    arrives, the relay that sent it is killed with SIGKILL; measured: the push of step 2
    (due `step2_after` s after the webhook) from the survivor, after the kill and after its
    due time. The same with nobody killed is the baseline of how late a due step fires."""
    pg = Postgres(False)
    tmp = Path(tempfile.mkdtemp())
    policy = tmp / "policy.yml"
    policy.write_text(FAILOVER_POLICY % step2_after)
    out = {"killed": [], "baseline": []}
    try:
        for n in range(runs * 2):
            kill = n % 2 == 0
            url = pg.fresh()
            fakes = [FakeNtfy(), FakeNtfy()]
            relays = [Relay(f.port, database_url=url, policy=policy) for f in fakes]
            try:
                time.sleep(0.5)
                sent = time.perf_counter()
                post_webhook(relays[n % 2].url, critical_webhook(f"Failover{n}"))
                deadline = time.perf_counter() + 10
                fired = None
                while fired is None and time.perf_counter() < deadline:
                    fired = next((i for i, f in enumerate(fakes) if any(t == "step1" for _, t in f.arrivals)), None)
                    time.sleep(0.0005)
                step1 = min(a for a, t in fakes[fired].arrivals if t == "step1")
                killed_at = None
                if kill:
                    relays[fired].proc.p.kill()
                    killed_at = time.perf_counter()
                    relays[fired].proc.p.wait()
                survivors = [1 - fired] if kill else [0, 1]
                arrival, by = None, None
                limit = time.perf_counter() + step2_after + 60
                while arrival is None and time.perf_counter() < limit:
                    for i in survivors:
                        hits = [a for a, t in fakes[i].arrivals if t == "step2"]
                        if hits:
                            arrival, by = min(hits), i
                    time.sleep(0.0005)
                due = sent + step2_after
                row = {"step1_ms": round((step1 - sent) * 1000, 1), "fired_by_webhook_receiver": fired == n % 2,
                       "step2_after_due_ms": round((arrival - due) * 1000, 1) if arrival else None,
                       "step2_by": "survivor" if kill else ("same" if by == fired else "other")}
                if kill:
                    row["kill_to_step2_ms"] = round((arrival - killed_at) * 1000, 1) if arrival else None
                # any duplicate step-2 push from the survivors
                row["step2_pushes"] = sum(1 for i in survivors for _, t in fakes[i].arrivals if t == "step2")
                out["killed" if kill else "baseline"].append(row)
                print(json.dumps({"failover_run": n, "killed": kill, **row}), flush=True)
            finally:
                for r in relays:
                    r.close()
                for f in fakes:
                    f.close()
        stats = lambda xs: {"min": min(xs), "median": statistics.median(xs), "max": max(xs)} if xs else None  # noqa: E731
        emit("failover", {
            "step2_after_s": step2_after, "postgres": pg.settings(),
            "killed_step2_after_due_ms": stats([r["step2_after_due_ms"] for r in out["killed"] if r["step2_after_due_ms"] is not None]),
            "killed_kill_to_step2_ms": stats([r["kill_to_step2_ms"] for r in out["killed"] if r.get("kill_to_step2_ms") is not None]),
            "baseline_step2_after_due_ms": stats([r["step2_after_due_ms"] for r in out["baseline"] if r["step2_after_due_ms"] is not None]),
            "lost": sum(1 for r in out["killed"] + out["baseline"] if r["step2_after_due_ms"] is None),
            "runs": out,
        })
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def bench_console():
    import console  # scripts/bench/console.py
    console.bench_console()


def main(argv: list[str]) -> int:
    wanted = argv or ["exporter", "middleware", "relay", "storm", "startup", "slowclients", "firstdelivery"]
    for name in wanted:
        {"exporter": bench_exporter, "middleware": bench_middleware, "relay": bench_relay, "storm": bench_storm,
         "startup": bench_startup, "slowclients": bench_slowclients, "firstdelivery": bench_first_delivery,
         "intake-backends": bench_intake_backends, "latency-backends": bench_latency_backends, "failover": bench_failover,
         "intake-replicas": bench_intake_replicas, "console": bench_console}[name]()
    print("\nsummary:", json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
