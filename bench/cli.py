"""klctl's start-up: the wall and CPU seconds of one command, against a Python process that only
imports what any gRPC client in Python imports (the reference), in the same run.

Every klctl command is a new process, so its start-up is most of what a user waits for on
``klctl get``, and what a script or test that runs klctl in a loop pays each time. The
commands are ``klctl version --client`` (start-up alone), ``klctl get namespaces`` and
``klctl get configmaps -o yaml`` against an insecure API server over a temporary etcd. The
sides take turns, one run each, ``--runs`` times; each figure is the median.

Prints one JSON object: ``{side}_wall_s`` and ``{side}_cpu_s`` (user and system of the child)
per side, and ``ratio_{side}_to_reference_wall`` for each klctl command (1.0: klctl costs no
more than importing gRPC, protobuf, asyncio and YAML).

Usage: python -m bench.cli [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import apiserver_process, temporary_etcd

REFERENCE = "import asyncio, grpc, grpc.aio, yaml, google.protobuf.message"
"""What the reference process imports: the libraries every klctl command needs anyway."""
CONFIGMAP = """apiVersion: v1
kind: ConfigMap
metadata: {name: bench-cli, namespace: default, labels: {app: bench}}
data: {config.yaml: "replicas: 3"}
"""
"""What ``get configmaps -o yaml`` prints (so that it converts an object, not an empty list)."""


def klctl() -> str:
    """The klctl console script beside this interpreter (as installed by ./dev setup)."""
    return str(Path(sys.executable).parent / "klctl")


NO_CONFIG = {**os.environ, "KUBELITE_CONFIG": os.devnull}
"""klctl's environment: no config file (a user's ~/.kubelite/config would make --server TLS)."""


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one run of ``argv``, which must succeed."""
    before = os.times()
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, check=False, env=NO_CONFIG)
    wall = time.perf_counter() - start
    after = os.times()
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}:"
                           f" {result.stderr.decode(errors='replace')[-1000:]}")
    cpu = (after.children_user - before.children_user
           + after.children_system - before.children_system)
    return wall, cpu


def measure(address: str, runs: int) -> dict[str, float]:
    sides = {
        "reference": [sys.executable, "-c", REFERENCE],
        "klctl_version": [klctl(), "version", "--client"],
        "klctl_get_namespaces": [klctl(), "--server", address, "get", "namespaces"],
        "klctl_get_configmaps_yaml": [klctl(), "--server", address, "get", "configmaps",
                                      "-A", "-o", "yaml"],
    }
    applied = subprocess.run([klctl(), "--server", address, "apply", "-f", "-"],
                             input=CONFIGMAP.encode(), capture_output=True, check=False,
                             env=NO_CONFIG)
    if applied.returncode != 0:
        raise RuntimeError(f"klctl apply: {applied.stderr.decode(errors='replace')}")
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    for argv in sides.values():
        timed(argv)  # warm: byte-code caches written, files in the page cache
    for _ in range(runs):
        for name, argv in sides.items():
            samples[name].append(timed(argv))
    figures: dict[str, float] = {}
    for name, values in samples.items():
        figures[f"{name}_wall_s"] = round(statistics.median(w for w, _ in values), 4)
        figures[f"{name}_cpu_s"] = round(statistics.median(c for _, c in values), 4)
    for name in sides:
        if name != "reference":
            figures[f"ratio_{name}_to_reference_wall"] = round(
                figures[f"{name}_wall_s"] / figures["reference_wall_s"], 3)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each command (default 15)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs: must be at least 1, got {args.runs}")
    with temporary_etcd() as etcd, apiserver_process(etcd.endpoint, "--insecure") as address:
        figures = measure(address, args.runs)
    figures["runs"] = args.runs
    figures["cores"] = os.cpu_count() or 0
    figures["load_average_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
