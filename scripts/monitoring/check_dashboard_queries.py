#!/usr/bin/env python3
"""Runs every Prometheus query of every dashboard panel (and annotation) against a running
Prometheus and reports, per panel, whether it returned data.

Grafana variables are substituted: $__rate_interval -> 1m (or --rate-interval), $__interval,
$__range, ${datasource}, and query variables ($job) -> .* . Loki panels are skipped (no Loki
on these machines).

Usage: check_dashboard_queries.py --prometheus URL [--require-data] [--skip-regex RE] [FILES]
Exit 1 when a query fails, or (with --require-data) returns no series.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def substitute(expr: str, rate_interval: str) -> str:
    replacements = {
        "$__rate_interval": rate_interval,
        "${__rate_interval}": rate_interval,
        "$__interval": "15s",
        "$__range": "1h",
        "${datasource}": "",
    }
    for key, value in replacements.items():
        expr = expr.replace(key, value)
    # Remaining variables ($job, ${job}) match everything.
    return re.sub(r"\$\{?[a-zA-Z_]\w*\}?", ".*", expr)


def query(base: str, expr: str) -> tuple[bool, int, str]:
    url = f"{base.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
    except urllib.error.HTTPError as err:
        return False, 0, err.read().decode(errors="replace")[:300]
    except (urllib.error.URLError, OSError) as err:
        return False, 0, str(err)
    if body.get("status") != "success":
        return False, 0, str(body.get("error"))
    return True, len(body["data"]["result"]), ""


def queries(path: Path) -> list[tuple[str, str]]:
    d = json.loads(path.read_text())
    out = []
    panels = []
    for panel in d.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    for panel in panels:
        if (panel.get("datasource") or {}).get("type") == "loki":
            continue
        for target in panel.get("targets") or []:
            out.append((f"{path.name} #{panel.get('id')} {panel.get('title')} [{target.get('refId')}]", target.get("expr", "")))
    for annotation in d.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            out.append((f"{path.name} annotation {annotation.get('name')}", annotation["expr"]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    parser.add_argument("--require-data", action="store_true", help="fail on queries returning no series")
    parser.add_argument("--skip-regex", help="panels (file #id title) to skip, e.g. annotations that need events")
    parser.add_argument("--rate-interval", default="1m")
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args()
    files = args.files or sorted((ROOT / "dashboards").glob("*.json"))
    failed = empty = ok = skipped = 0
    for path in files:
        for name, expr in queries(path):
            if args.skip_regex and re.search(args.skip_regex, name):
                skipped += 1
                continue
            good, series, error = query(args.prometheus, substitute(expr, args.rate_interval))
            if not good:
                failed += 1
                print(f"FAIL  {name}: {error}")
            elif series == 0:
                empty += 1
                print(f"{'FAIL' if args.require_data else 'EMPTY'}  {name}: no data for {expr}")
            else:
                ok += 1
                print(f"ok    {name}: {series} series")
    print(f"check_dashboard_queries: {ok} with data, {empty} empty, {failed} failed, {skipped} skipped")
    return 1 if failed or (args.require_data and empty) else 0


if __name__ == "__main__":
    sys.exit(main())
