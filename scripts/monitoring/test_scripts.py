#!/usr/bin/env python3
"""Proves that the monitoring checkers fail on bad input (a checker that cannot fail checks
nothing): broken dashboards, a missing runbook, an orphan runbook, an untested alert."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
failures = []


def expect(name: str, args: list[str], code: int, needle: str) -> None:
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    output = result.stdout + result.stderr
    if result.returncode != code or needle not in output:
        failures.append(f"{name}: exit {result.returncode} (want {code}), {needle!r} not in:\n{output}")
    else:
        print(f"ok  {name}")


with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    good = json.loads((ROOT / "dashboards/host.json").read_text())

    def variant(name: str, change) -> str:
        d = json.loads(json.dumps(good))
        change(d)
        path = tmp / f"{name}.json"
        path.write_text(json.dumps(d))
        return str(path)

    lint = str(HERE / "lint_dashboards.py")
    expect("clean dashboard passes", [lint, variant("good", lambda d: None)], 0, "0 problems")
    expect("old schemaVersion", [lint, variant("schema", lambda d: d.update(schemaVersion=16))], 1, "schemaVersion 16")
    expect("no unit", [lint, variant("unit", lambda d: d["panels"][0]["fieldConfig"]["defaults"].pop("unit"))], 1, "no unit")
    expect("fixed rate window", [lint, variant("rate", lambda d: d["panels"][3]["targets"][0].update(
        expr="rate(host_network_receive_bytes_total[5m])"))], 1, "use [$__rate_interval]")
    expect("bare counter", [lint, variant("counter", lambda d: d["panels"][3]["targets"][0].update(
        expr="host_network_receive_bytes_total"))], 1, "counter host_network_receive_bytes_total outside")
    expect("no datasource variable", [lint, variant("ds", lambda d: d["templating"].update(list=[]))], 1, "no `datasource` template variable")
    expect("duplicate uid", [lint, variant("a", lambda d: None), variant("b", lambda d: None)], 1, "also used by")
    expect("numeric id", [lint, variant("id", lambda d: d.update(id=7))], 1, "id must be null")
    expect("host query without $instance", [lint, variant("instance", lambda d: d["panels"][4]["targets"][0].update(
        expr="host_load1"))], 1, "ignores the instance variable")
    expect("runbook link to a placeholder", [lint, variant("link", lambda d: d["panels"][0]["links"][0].update(
        url="https://github.com/your-org/observability-bundle/blob/main/docs/runbooks/HostCpuSaturation.md"))], 1,
        "must start with ${runbook_base}")
    expect("runbook link without the runbook_base variable", [lint, variant("nobase", lambda d: d["templating"].update(
        list=[v for v in d["templating"]["list"] if v["name"] != "runbook_base"]))], 1, "needs a constant variable runbook_base")
    deployment = json.loads((ROOT / "dashboards/deployment.json").read_text())
    for panel in deployment["panels"]:
        if panel["title"] == "Overall health":
            panel["fieldConfig"]["defaults"].pop("mappings")
    (tmp / "nomap.json").write_text(json.dumps(deployment))
    expect("state stat panel without mappings", [lint, str(tmp / "nomap.json")], 1, "needs value mappings")

    runbooks = tmp / "runbooks"
    shutil.copytree(ROOT / "docs/runbooks", runbooks)
    check = str(HERE / "check_runbooks.py")
    rules, tests = str(ROOT / "monitoring/prometheus/rules"), str(ROOT / "monitoring/prometheus/tests")
    expect("runbooks agree", [check, "--rules", rules, "--tests", tests, "--runbooks", str(runbooks)], 0, "0 problems")
    (runbooks / "GatewayDown.md").unlink()
    (runbooks / "NoSuchAlert.md").write_text("# NoSuchAlert\n")
    expect("missing and orphan runbooks", [check, "--rules", rules, "--tests", tests, "--runbooks", str(runbooks)], 1,
           "GatewayDown: no runbook")
    expect("orphan runbook named", [check, "--rules", rules, "--tests", tests, "--runbooks", str(runbooks)], 1,
           "NoSuchAlert.md: names no existing alert")
    index = runbooks / "README.md"
    index.write_text(index.read_text().replace("| [RelayDown](RelayDown.md) | critical |\n", ""))
    expect("alert missing from the index", [check, "--rules", rules, "--tests", tests, "--runbooks", str(runbooks)], 1,
           "README.md: RelayDown is not listed")
    bad_rules = tmp / "rules"
    shutil.copytree(ROOT / "monitoring/prometheus/rules", bad_rules)
    alerts = bad_rules / "alerts.yml"
    alerts.write_text(alerts.read_text().replace("'{{ $externalLabels.runbook_base }}/GatewayDown'",
                                                 "https://github.com/your-org/x/docs/runbooks/GatewayDown.md", 1))
    expect("runbook_url not under runbook_base", [check, "--rules", str(bad_rules), "--tests", tests, "--runbooks",
                                                 str(ROOT / "docs/runbooks")], 1, "GatewayDown: runbook_url must be")
    empty_tests = tmp / "tests"
    empty_tests.mkdir()
    expect("untested alerts", [check, "--rules", rules, "--tests", str(empty_tests), "--runbooks", str(ROOT / "docs/runbooks")], 1,
           "GatewayHighErrorRate: no promtool test shows it firing")

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("test_scripts: all checkers fail on bad input")
