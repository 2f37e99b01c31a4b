#!/usr/bin/env python3
"""Failover time for each fault of one replica, from the HA tests' own measurements (two or
three real relay processes on one PostgreSQL, a fake ntfy per relay, a TCP proxy for the
partitions): kill -9 mid-send, hung (SIGSTOP) mid-send, hung mid-intake under load, the
database path black-holed, the database connections closed, the database restarted under
load. Runs the tests RUNS times (default 5) one at a time and prints the median and the worst
of each figure as JSON lines, then a Markdown table.

    scripts/start-postgres -- python3 scripts/bench/faults.py [RUNS]
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys

TESTS = "test(/^hung::/) | test(/ha::the_replica_killed_while_its_page_is_on_the_way/)"

# (figure, regex on a line the tests print, how to fold several matches in one run)
FIGURES = [
    ("kill -9 mid-send: kill -> the page sent again", r"^failover: replica \w+ killed while sending, kill -> the page sent again in (\S+)", max),
    ("hung mid-send: stop -> the page sent again (same sequence id)", r"^hung mid-send: .*stop -> \w+ sent it again with the same sequence id in (\S+)", max),
    ("hung mid-send: a new incident accepted -> paged", r"^hung mid-send: a new incident on \w+ while \w+ hangs: accepted -> paged in (\S+)", max),
    ("hung mid-send: step 2 of either incident after it was due", r"^hung mid-send: step 2 of \w+ from \w+, (\S+) after it was due", max),
    ("hung mid-intake: slowest answer from the other replica", r"^hung mid-intake: \w+ to \w+: .*slowest answer (\S+),", max),
    ("hung mid-intake: first webhook -> paged (slowest group)", r"^hung mid-intake: \w+ paged (\S+) after its first webhook", max),
    ("partition, path black-holed: cut -> /ready not 200", r"^partition \(Blackhole\): .*its /ready not 200 in (\S+)", max),
    ("partition, path black-holed: cut -> the page sent again", r"^partition \(Blackhole\): cut -> \w+ sent the page again with its sequence id in (\S+)", max),
    ("partition, path black-holed: step 2 after it was due", r"^partition \(Blackhole\): step 2 of \w+ from \w+, (\S+) after it was due", max),
    ("partition, connections closed: cut -> /ready not 200", r"^partition \(Refuse\): .*its /ready not 200 in (\S+)", max),
    ("partition, connections closed: cut -> the page sent again", r"^partition \(Refuse\): cut -> \w+ sent the page again with its sequence id in (\S+)", max),
    ("database restart under load: longest until a webhook was taken", r"^database restart under load: .*longest until taken (\S+)", max),
    ("database restart under load: latest page after it was due", r"^database restart under load: the latest page left (\S+) after it was due", max),
]

UNITS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1000.0}


def millis(text: str) -> float:
    """A Rust `Duration` as `{:?}` prints it (`5.97s`, `17.7ms`, `0ns`), in milliseconds."""
    m = re.fullmatch(r"([0-9.]+)(ns|µs|us|ms|s)", text.strip())
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def one_run() -> dict[str, float]:
    env = {**os.environ}
    out = subprocess.run(["cargo", "nextest", "run", "-p", "alert-relay", "--locked", "--no-capture",
                          "--test-threads", "1", "-E", TESTS],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        text = out.stdout + out.stderr
        why = [line for line in text.splitlines() if "panicked" in line or "FAIL" in line]
        sys.stderr.write("\n".join(why) + "\n" + text[-4000:])
        raise SystemExit("the HA tests failed: no figures from a failing run")
    lines = (out.stdout + out.stderr).splitlines()
    run = {}
    for name, pattern, fold in FIGURES:
        values = [millis(m.group(1)) for line in lines if (m := re.search(pattern, line))]
        if values:
            run[name] = fold(values)
    return run


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    all_runs = []
    for n in range(runs):
        run = one_run()
        all_runs.append(run)
        print(json.dumps({"faults_run": n, **{k: round(v, 1) for k, v in run.items()}}), flush=True)
    summary = {}
    for name, _, _ in FIGURES:
        values = [r[name] for r in all_runs if name in r]
        if values:
            summary[name] = {"runs": len(values), "median_ms": round(statistics.median(values), 1),
                             "worst_ms": round(max(values), 1)}
    print(json.dumps({"bench": "faults", "summary": summary}))
    print("\n| fault: figure | runs | median | worst |\n|---|---|---|---|")
    for name, s in summary.items():
        print(f"| {name} | {s['runs']} | {s['median_ms'] / 1000:.2f} s | {s['worst_ms'] / 1000:.2f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
