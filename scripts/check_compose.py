#!/usr/bin/env python3
"""Checks a merged compose configuration (the output of `docker-compose config`):

- every bind-mounted host path exists;
- only Grafana publishes ports (besides the user's own services, --user-service);
- every pulled image has an exact tag (no `latest`, no missing tag);
- every bundle service has a healthcheck, except Loki (distroless image: no shell to run one);
- data lives in named volumes that are declared.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

BUNDLE_SERVICES = {"prometheus", "alertmanager", "grafana", "loki", "exporter", "alert-relay"}
NO_HEALTHCHECK = {"loki": "distroless image without a shell"}


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
                if source != "/" and not Path(source).exists():
                    problems.append(f"{name}: mounted path {source} does not exist")
            elif kind == "volume" and source not in volumes:
                problems.append(f"{name}: volume {source} is not declared")
        if name in args.user_service:
            continue
        if service.get("ports") and name != "grafana":
            problems.append(f"{name}: publishes ports {service['ports']} (only grafana should)")
        image = service.get("image", "")
        if "build" not in service:
            tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
            if not tag or tag == "latest":
                problems.append(f"{name}: image {image!r} is not pinned to a version")
        if name in BUNDLE_SERVICES and "healthcheck" not in service and name not in NO_HEALTHCHECK:
            problems.append(f"{name}: no healthcheck")
    for problem in problems:
        print(problem)
    print(f"check_compose: {len(services)} services, {mounts} bind mounts, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
