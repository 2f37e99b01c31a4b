#!/usr/bin/env python3
"""Slow clients against the servers (issue: half-sent connections exhaust file descriptors).
`scripts/bench/run slowclients` (or this file alone once the release binaries are built).

1,500 slowloris clients open a connection each, send part of a request head and then one more
header line every second, never finishing it. Meanwhile a scraper opens a fresh connection
every 250 ms and GETs a page (2 s timeout). Both servers run with the common default soft
limit of 1,024 file descriptors:

- `exporter` serves through `exporter::serve` (default limits: 512 connections, 10 s header
  timeout);
- `demo-gateway` serves through plain `axum::serve`: the baseline, what the exporter was.

Reported per server: scrapes answered during the attack, the server's VmRSS and open file
descriptors (sampled every 100 ms), how many slow connections it closed and when (from the
last one opened until the last one closed).
"""

from __future__ import annotations

import http.client
import resource
import selectors
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import REL, ROOT, Proc, free_port, wait_http  # noqa: E402

SLOW_CLIENTS = 1500
SERVER_NOFILE = 1024
HOLD_S = 15.0
HEAD = b"GET /metrics HTTP/1.1\r\nHost: bench\r\n"


def raise_own_fd_limit() -> tuple[int, int]:
    """The benchmark itself holds 1,500+ sockets: soft limit up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return soft, hard


def limit_server_fds():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (SERVER_NOFILE, hard))


class Sampler(threading.Thread):
    """VmRSS and open descriptors of `pid`, every 100 ms until stopped."""

    def __init__(self, proc: Proc):
        super().__init__(daemon=True)
        self.proc, self.rss_kb, self.fds, self.done = proc, [], [], threading.Event()

    def run(self):
        pid = self.proc.p.pid
        while not self.done.is_set():
            try:
                self.rss_kb.append(self.proc.status_kb("VmRSS"))
                self.fds.append(len(list(Path(f"/proc/{pid}/fd").iterdir())))
            except OSError:
                return
            time.sleep(0.1)


class Scraper(threading.Thread):
    """A fresh connection and one GET every 250 ms; records (ok, seconds)."""

    def __init__(self, port: int, path: str):
        super().__init__(daemon=True)
        self.port, self.path, self.results, self.done = port, path, [], threading.Event()

    def run(self):
        while not self.done.is_set():
            start = time.perf_counter()
            ok = False
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", self.path)
                r = c.getresponse()
                r.read()
                ok = r.status == 200
                c.close()
            except OSError:
                pass
            self.results.append((ok, time.perf_counter() - start))
            self.done.wait(max(0.0, 0.25 - (time.perf_counter() - start)))


def attack(port: int) -> dict:
    """Opens the slow clients, trickles for HOLD_S, returns what the server did to them."""
    sel = selectors.DefaultSelector()
    opened_at: dict[int, float] = {}
    closed_at: dict[int, float] = {}
    socks: dict[int, socket.socket] = {}
    refused, start = 0, time.perf_counter()
    for i in range(SLOW_CLIENTS):
        s = socket.socket()
        s.settimeout(0.2)
        try:
            s.connect(("127.0.0.1", port))
            s.sendall(HEAD)
        except OSError:
            refused += 1
            s.close()
            continue
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
        socks[i], opened_at[i] = s, time.perf_counter()
        for key, _ in sel.select(0):  # closes seen while opening
            note_closed(key, sel, closed_at)
    last_open = time.perf_counter()
    next_trickle = last_open + 1.0
    while time.perf_counter() - last_open < HOLD_S and len(closed_at) < len(socks):
        for key, _ in sel.select(0.05):
            note_closed(key, sel, closed_at)
        if time.perf_counter() >= next_trickle:
            next_trickle += 1.0
            for i, s in socks.items():
                if i not in closed_at:
                    try:
                        s.send(b"X-Slow: 1\r\n")
                    except OSError:
                        pass
    for s in socks.values():
        s.close()
    shed_at_once = sum(1 for i, t in closed_at.items() if t - opened_at[i] < 1.0)
    return {
        "slow_clients_opened": len(socks),
        "connects_failed": refused,
        "seconds_to_open_all": round(last_open - start, 2),
        "closed_by_server": len(closed_at),
        "closed_within_1s_of_opening": shed_at_once,
        "closed_later": len(closed_at) - shed_at_once,
        "still_open_after_hold": len(socks) - len(closed_at),
        "last_closed_s_after_last_opened": round(max(closed_at.values()) - last_open, 2) if closed_at else None,
    }


def note_closed(key, sel, closed_at):
    try:
        data = key.fileobj.recv(4096)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    if not data:
        closed_at[key.data] = time.perf_counter()
        sel.unregister(key.fileobj)


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full (all
    sockets of the machine: TcpExt ListenOverflows)."""
    lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines() if line.startswith("TcpExt:")]
    return int(dict(zip(lines[0], lines[1])).get("ListenOverflows", 0))


def run_one(name: str, argv: list, port: int, ready_path: str, scrape_path: str, env: dict | None = None) -> dict:
    proc = Proc(argv, env=env, preexec_fn=limit_server_fds)
    try:
        wait_http(port, ready_path)
        time.sleep(1)
        idle_rss = proc.status_kb("VmRSS")
        sampler, scraper = Sampler(proc), Scraper(port, scrape_path)
        sampler.start()
        scraper.start()
        overflows = listen_overflows()
        slow = attack(port)
        slow["listen_queue_overflows"] = listen_overflows() - overflows
        scraper.done.set()
        scraper.join()
        sampler.done.set()
        sampler.join()
        after = []
        for _ in range(3):  # once the attackers are gone
            ok, _ = probe(port, scrape_path)
            after.append(ok)
        time.sleep(1)
        rss_after = proc.status_kb("VmRSS")
        answered = [t for ok, t in scraper.results if ok]
        return {
            "server": name,
            **slow,
            "scrapes_during_attack": len(scraper.results),
            "scrapes_answered": len(answered),
            "scrape_ms_median": round(statistics.median(answered) * 1000, 1) if answered else None,
            "scrape_ms_max": round(max(answered) * 1000, 1) if answered else None,
            "scrapes_answered_after": sum(after),
            "rss_kb_idle": idle_rss,
            "rss_kb_peak": max(sampler.rss_kb),
            "rss_kb_after": rss_after,
            "fds_peak": max(sampler.fds),
            "server_fd_soft_limit": SERVER_NOFILE,
        }
    finally:
        proc.stop()


def probe(port: int, path: str) -> tuple[bool, float]:
    start = time.perf_counter()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", path)
        return c.getresponse().status == 200, time.perf_counter() - start
    except OSError:
        return False, time.perf_counter() - start


def bench_slowclients(emit):
    soft, hard = raise_own_fd_limit()
    tmp = tempfile.mkdtemp()
    try:
        port = free_port()
        ours = run_one("exporter (exporter::serve)",
                       [REL / "exporter", "--listen", f"127.0.0.1:{port}", "--state-file", f"{tmp}/state.json"],
                       port, "/ready", "/metrics")
        port = free_port()
        relay = run_one("alert-relay (exporter::serve)",
                        [REL / "alert-relay", "serve", "--config", ROOT / "monitoring/alert-relay/escalation-policy.yml",
                         "--listen", f"127.0.0.1:{port}", "--data-dir", f"{tmp}/relay-data"],
                        port, "/ready", "/metrics", env={"RELAY_WEBHOOK_TOKEN": "bench-token-0123456789abcdef"})
        port = free_port()
        base = run_one("demo-gateway (axum::serve)", [REL / "demo-gateway", "--listen", f"127.0.0.1:{port}"],
                       port, "/health", "/metrics")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit("slow_clients", {"default_fd_limit_here": {"soft": soft, "hard": hard}, "exporter": ours, "alert_relay": relay,
                         "axum_serve": base})


if __name__ == "__main__":
    import json

    bench_slowclients(lambda name, data: print(json.dumps({"bench": name, **data}, indent=1)))
