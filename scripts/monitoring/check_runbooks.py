#!/usr/bin/env python3
"""Checks that alerts, their tests and their runbooks agree.

- every alert has docs/runbooks/<Alert>.md with the sections Meaning, Impact, Diagnosis,
  Mitigation and Dashboard, and its runbook_url is RUNBOOK_URL with its name (where the relay
  serves that runbook: <runbook_base>/<Alert>, runbook_base being an external label);
- every runbook (except README.md) names an alert that exists;
- the index (README.md) lists every alert, with its severity, and nothing else;
- every alert has severity, service, summary and description;
- every alert has a promtool test where it fires and one where it must not.

Usage: check_runbooks.py [--rules DIR] [--tests DIR] [--runbooks DIR]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# Always firing by design: there is no case where it must not fire.
ALWAYS_FIRING = {"Watchdog"}
# The runbook_url every alert carries: the base is the external label set from RUNBOOK_BASE_URL.
RUNBOOK_URL = "{{ $externalLabels.runbook_base }}/%s"
SECTIONS = ("## Meaning", "## Impact", "## Diagnosis", "## Mitigation", "## Dashboard")


def alerts(rules_dir: Path) -> dict[str, dict]:
    found = {}
    for path in sorted(rules_dir.glob("*.yml")):
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            for rule in group.get("rules", []):
                if "alert" in rule:
                    found[rule["alert"]] = rule
    return found


def tested(tests_dir: Path) -> tuple[set[str], set[str]]:
    fires, silent = set(), set()
    for path in sorted(tests_dir.glob("*.yml")):
        for test in (yaml.safe_load(path.read_text()) or {}).get("tests", []):
            for case in test.get("alert_rule_test", []) or []:
                (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    return fires, silent


def check(rules_dir: Path, tests_dir: Path, runbooks_dir: Path) -> list[str]:
    problems = []
    rules = alerts(rules_dir)
    if not rules:
        return [f"no alerts found in {rules_dir}"]
    fires, silent = tested(tests_dir)
    for name, rule in rules.items():
        labels, annotations = rule.get("labels", {}), rule.get("annotations", {})
        for key in ("severity", "service"):
            if key not in labels:
                problems.append(f"{name}: no `{key}` label")
        for key in ("summary", "description", "runbook_url"):
            if not annotations.get(key):
                problems.append(f"{name}: no `{key}` annotation")
        if annotations.get("runbook_url") != RUNBOOK_URL % name:
            problems.append(f"{name}: runbook_url must be {RUNBOOK_URL % name!r}")
        runbook = runbooks_dir / f"{name}.md"
        if not runbook.is_file():
            problems.append(f"{name}: no runbook {runbook.relative_to(ROOT) if runbook.is_relative_to(ROOT) else runbook}")
        else:
            text = runbook.read_text()
            for section in SECTIONS:
                if section not in text:
                    problems.append(f"{runbook.name}: no `{section}` section")
        if name not in fires:
            problems.append(f"{name}: no promtool test shows it firing")
        if name not in silent and name not in ALWAYS_FIRING:
            problems.append(f"{name}: no promtool test shows where it must not fire")
    for runbook in sorted(runbooks_dir.glob("*.md")):
        if runbook.name != "README.md" and runbook.stem not in rules:
            problems.append(f"{runbook.name}: names no existing alert")
    problems.extend(check_index(rules, runbooks_dir / "README.md"))
    return problems


def check_index(rules: dict[str, dict], index: Path) -> list[str]:
    """The index's rows `| [Alert](Alert.md) | severity |` against the rules."""
    if not index.is_file():
        return [f"no index {index.name} in the runbooks folder"]
    listed = {name: severity for name, target, severity in
              re.findall(r"^\| \[(\w+)\]\((\w+)\.md\) \| (\w+) \|$", index.read_text(), re.M)
              if name == target}
    problems = []
    for name, rule in rules.items():
        severity = rule.get("labels", {}).get("severity", "")
        if name not in listed:
            problems.append(f"{index.name}: {name} is not listed")
        elif listed[name] != severity:
            problems.append(f"{index.name}: {name} is listed as {listed[name]}, its rule says {severity}")
    for name in sorted(set(listed) - set(rules)):
        problems.append(f"{index.name}: lists {name}, which is no alert")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=Path, default=ROOT / "monitoring/prometheus/rules")
    parser.add_argument("--tests", type=Path, default=ROOT / "monitoring/prometheus/tests")
    parser.add_argument("--runbooks", type=Path, default=ROOT / "docs/runbooks")
    args = parser.parse_args()
    problems = check(args.rules, args.tests, args.runbooks)
    for problem in problems:
        print(problem)
    print(f"check_runbooks: {len(alerts(args.rules))} alerts, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
