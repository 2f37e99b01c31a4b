#!/usr/bin/env python3
"""Lints Grafana dashboards (the Go dashboard-linter cannot be installed here).

Rules: schemaVersion 39-41; a stable, unique uid; id null; a `datasource` template variable;
every Prometheus panel uses it; every panel has a unit; rate/increase use $__rate_interval;
counters (`*_total`, `*_bucket`, `*_count`, `*_sum`) only inside rate/irate/increase;
every non-row panel has a query; a stat or state-timeline panel over an info or state metric
(`*_info`, `*_status`, `*_color`, `*_healthy`, `probe_success`, `up`: values that stand for a
label or a state) has value mappings, so that it shows the state, not "1"; a dashboard with an
`instance` variable uses `$instance` in every Prometheus query; runbook links are
`${runbook_base}/<AlertName>` with `runbook_base` a constant variable (RUNBOOK_BASE_URL).
Exit 1 listing every problem.

Usage: lint_dashboards.py [DASHBOARD.json ...]   (default: dashboards/*.json)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COUNTER = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*(?:_total|_bucket|_count|_sum))\b")
RANGE_FUNCS = ("rate", "irate", "increase")
STATE_METRIC = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*(?:_info|_status|_color|_healthy)|probe_success|up)\b(?!\s*\()")
STATE_PANELS = ("stat", "state-timeline")


def link_problems(where: str, links: list | None, has_runbook_base: bool) -> list[str]:
    problems = []
    for link in links or []:
        url, title = link.get("url", ""), link.get("title", "")
        if "your-org" in url:
            problems.append(f"{where}: link {title!r} points at a placeholder: {url}")
        if "runbook" in (url + title).lower():
            if not url.startswith("${runbook_base}"):
                problems.append(f"{where}: runbook link {title!r} must start with ${{runbook_base}}, not {url}")
            elif not has_runbook_base:
                problems.append(f"{where}: runbook link {title!r} needs a constant variable runbook_base")
    return problems


def counters_outside_range_functions(expr: str) -> list[str]:
    """Counter names not inside rate(...)/irate(...)/increase(...)."""
    inside = [False] * len(expr)
    for match in re.finditer(r"\b(?:%s)\s*\(" % "|".join(RANGE_FUNCS), expr):
        depth, i = 1, match.end()
        while i < len(expr) and depth:
            depth += {"(": 1, ")": -1}.get(expr[i], 0)
            i += 1
        for j in range(match.start(), i):
            inside[j] = True
    bad = []
    for match in COUNTER.finditer(expr):
        if not inside[match.start()] and not expr[match.end():].lstrip().startswith("("):
            bad.append(match.group(1))
    return bad


def panels_of(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows
    return out


def lint(path: Path, uids: dict[str, Path]) -> list[str]:
    problems = []
    where = path.name
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        return [f"{where}: not valid JSON: {err}"]
    if not 39 <= int(d.get("schemaVersion", 0)) <= 41:
        problems.append(f"{where}: schemaVersion {d.get('schemaVersion')} (want 39-41)")
    uid = d.get("uid")
    if not uid or not re.fullmatch(r"[a-z0-9-]{1,40}", uid):
        problems.append(f"{where}: uid {uid!r} must be a stable lowercase id (a-z, 0-9, -)")
    elif uid in uids:
        problems.append(f"{where}: uid {uid} also used by {uids[uid].name}")
    else:
        uids[uid] = path
    if d.get("id") is not None:
        problems.append(f"{where}: id must be null (Grafana assigns it)")
    variables = d.get("templating", {}).get("list", [])
    if not any(v.get("type") == "datasource" and v.get("name") == "datasource" for v in variables):
        problems.append(f"{where}: no `datasource` template variable of type datasource")
    has_runbook_base = any(v.get("name") == "runbook_base" and v.get("type") == "constant" for v in variables)
    has_instance = any(v.get("name") == "instance" and v.get("type") == "query" for v in variables)
    problems.extend(link_problems(where, d.get("links"), has_runbook_base))
    ids = set()
    for panel in panels_of(d):
        title = f"{where}: panel {panel.get('id')} {panel.get('title')!r}"
        if panel.get("type") == "row":
            continue
        if panel.get("id") in ids:
            problems.append(f"{title}: duplicate panel id")
        ids.add(panel.get("id"))
        if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit"):
            problems.append(f"{title}: no unit (fieldConfig.defaults.unit)")
        targets = panel.get("targets") or []
        if panel.get("type") != "text" and not targets:
            problems.append(f"{title}: no query")
        problems.extend(link_problems(title, panel.get("links"), has_runbook_base))
        ds = panel.get("datasource") or {}
        is_loki = ds.get("type") == "loki"
        mappings = panel.get("fieldConfig", {}).get("defaults", {}).get("mappings")
        if panel.get("type") in STATE_PANELS and not is_loki and not mappings:
            states = {m.group(1) for target in targets for m in STATE_METRIC.finditer(target.get("expr", ""))}
            if states:
                problems.append(f"{title}: a {panel.get('type')} panel over {sorted(states)} needs value mappings "
                                "(it shows the state or label, not its number)")
        if not is_loki and ds.get("uid") != "${datasource}":
            problems.append(f"{title}: datasource must be the ${{datasource}} variable")
        for target in targets:
            expr = target.get("expr", "")
            if not expr.strip():
                problems.append(f"{title}: empty query {target.get('refId')}")
                continue
            if is_loki:
                continue
            if has_instance and "$instance" not in expr:
                problems.append(f"{title}: query {target.get('refId')} ignores the instance variable ($instance): {expr!r}")
            for fn in re.finditer(r"\b(?:rate|irate|increase)\s*\([^\[]*\[([^\]]+)\]", expr):
                if fn.group(1) != "$__rate_interval":
                    problems.append(f"{title}: use [$__rate_interval], not [{fn.group(1)}], in {expr!r}")
            for counter in counters_outside_range_functions(expr):
                problems.append(f"{title}: counter {counter} outside rate/increase in {expr!r}")
    for annotation in d.get("annotations", {}).get("list", []):
        expr = annotation.get("expr", "")
        for counter in counters_outside_range_functions(expr):
            problems.append(f"{where}: annotation {annotation.get('name')!r}: counter {counter} outside rate/increase")
    return problems


def main(argv: list[str]) -> int:
    paths = [Path(p) for p in argv] or sorted((ROOT / "dashboards").glob("*.json"))
    if not paths:
        print("no dashboards found", file=sys.stderr)
        return 1
    uids: dict[str, Path] = {}
    problems = [p for path in paths for p in lint(path, uids)]
    for problem in problems:
        print(problem)
    print(f"lint_dashboards: {len(paths)} dashboards, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
