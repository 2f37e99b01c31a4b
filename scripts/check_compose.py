#!/usr/bin/env python3
"""Checks a merged compose configuration (the output of `docker-compose config`):

- every bind-mounted host path exists (the Docker socket excepted: it exists on the Docker host);
- only Grafana publishes ports on every interface; Prometheus, Alertmanager and alert-relay
  publish theirs on 127.0.0.1 only; no other bundle service publishes any (the user's own
  services, --user-service, are not checked);
- every secret is a file in the bundle's secrets/ that scripts/init-secrets writes;
- every pulled image has an exact tag (no `latest`, no missing tag);
- every bundle service has a healthcheck, except Loki (distroless image: no shell to run one);
- data lives in named volumes that are declared.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

BUNDLE_SERVICES = {"prometheus", "alertmanager", "grafana", "loki", "alloy", "exporter", "alert-relay"}
# Added by compose/monitoring-ha.yml: checked like the others when present.
HA_SERVICES = {"alertmanager-b", "alert-relay-b", "postgres"}
NO_HEALTHCHECK = {"loki": "distroless image without a shell"}
PUBLISHED = {"grafana"}
LOOPBACK_ONLY = {"prometheus", "alertmanager", "alert-relay", "alertmanager-b", "alert-relay-b"}
# Host paths that exist on a Docker host, not in a checkout.
HOST_RUNTIME_PATHS = {"/var/run/docker.sock"}


def port_problems(name: str, ports: list) -> list[str]:
    if not ports or name in PUBLISHED:
        return []
    if name not in LOOPBACK_ONLY:
        return [f"{name}: publishes ports {ports} (only grafana publishes; {sorted(LOOPBACK_ONLY)} on 127.0.0.1)"]
    bad = []
    for port in ports:
        host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
        if host_ip != "127.0.0.1":
            bad.append(f"{name}: publishes {port} beyond the host's loopback (use 127.0.0.1:PORT:PORT)")
    return bad


def secret_problems(config: dict, root: Path) -> list[str]:
    """Every secret a service uses is declared, is a file in <root>/secrets, and is written by
    scripts/init-secrets (its files are git-ignored, so they need not exist here)."""
    declared = config.get("secrets") or {}
    init = (root / "scripts/init-secrets").read_text()
    written = set(re.findall(r"^write_secret (\w+) ", init, re.M))
    problems = []
    for name, service in (config.get("services") or {}).items():
        for secret in service.get("secrets") or []:
            source = secret if isinstance(secret, str) else secret.get("source")
            if source not in declared:
                problems.append(f"{name}: secret {source} is not declared")
    for source, spec in declared.items():
        file = Path(spec.get("file", ""))
        if file.parent != (root / "secrets").resolve() and file.parent != root / "secrets":
            problems.append(f"secret {source}: file {file} is not in the bundle's secrets/")
        if file.name not in written:
            problems.append(f"secret {source}: scripts/init-secrets does not write {file.name}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("merged", type=Path)
    parser.add_argument("--root", type=Path, required=True, help="the bundle checkout")
    parser.add_argument("--user-service", action="append", default=[], help="services of the user's base file")
    args = parser.parse_args()
    config = yaml.safe_load(args.merged.read_text())
    services = config.get("services", {})
    volumes = set((config.get("volumes") or {}).keys())
    problems = []
    missing = BUNDLE_SERVICES - set(services)
    if missing:
        problems.append(f"services missing from the merge: {sorted(missing)}")
    if "gateway" not in services:
        problems.append("no `gateway` service (the overlay relies on the base file's gateway)")
    mounts = 0
    for name, service in services.items():
        for volume in service.get("volumes", []) or []:
            if isinstance(volume, str):
                source = volume.split(":")[0]
                kind = "bind" if source.startswith(("/", ".")) else "volume"
            else:
                source, kind = volume.get("source", ""), volume.get("type")
            if kind == "bind":
                mounts += 1
                if source != "/" and source not in HOST_RUNTIME_PATHS and not Path(source).exists():
                    problems.append(f"{name}: mounted path {source} does not exist")
            elif kind == "volume" and source not in volumes:
                problems.append(f"{name}: volume {source} is not declared")
        if name in args.user_service:
            continue
        problems.extend(port_problems(name, service.get("ports") or []))
        image = service.get("image", "")
        if "build" not in service:
            tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
            if not tag or tag == "latest":
                problems.append(f"{name}: image {image!r} is not pinned to a version")
        if name in BUNDLE_SERVICES | HA_SERVICES and "healthcheck" not in service and name not in NO_HEALTHCHECK:
            problems.append(f"{name}: no healthcheck")
    problems.extend(secret_problems(config, args.root))
    for problem in problems:
        print(problem)
    print(f"check_compose: {len(services)} services, {mounts} bind mounts, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
