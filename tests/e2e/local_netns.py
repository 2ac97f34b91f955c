"""`kubelite up` run as a user runs it, inside a network namespace the test makes: its
loopback, bridges, ClusterIP interface and port 53 are the namespace's own, so it collides
with nothing on the machine and nothing it serves is reachable from outside."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubelite.testing.cluster import TestCluster, script


def in_netns(netns: str, argv: list[str]) -> list[str]:
    # nsenter, not `ip netns exec`: that remounts /sys, hiding the cgroups runc needs.
    return ["nsenter", f"--net=/run/netns/{netns}", *argv]


@dataclass
class LocalCluster:
    netns: str
    data: Path
    env: dict[str, str]

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(in_netns(self.netns, list(argv)), capture_output=True, text=True,
                              env=self.env, timeout=timeout, check=False)

    def klctl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(in_netns(self.netns, [script("klctl"), *args]),
                              capture_output=True, text=True, env=self.env, timeout=60,
                              check=False, input=stdin)

    def get(self, *what: str) -> Any:
        result = self.klctl("get", *what, "-o", "json")
        return json.loads(result.stdout) if result.returncode == 0 else None

    def pod(self, name: str) -> dict[str, Any]:
        return self.get("pod", name) or {}

    def wait_running(self, name: str, timeout: float = 60) -> dict[str, Any]:
        TestCluster.wait_for(
            lambda: self.pod(name).get("status", {}).get("phase") == "Running"
            and all(c.get("ready") for c in self.pod(name)["status"]["containerStatuses"]),
            f"pod {name} running and ready", timeout=timeout)
        return self.pod(name)


@contextmanager
def local_cluster_in_netns(tmp: Path, *up_args: str) -> Iterator[LocalCluster]:
    """``kubelite up UP_ARGS`` in a new network namespace; on exit `kubelite down`, and no
    process of the cluster's data dir may remain."""
    netns = f"klup-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"], check=True)
    cluster = LocalCluster(netns, tmp / "cluster",
                           {**os.environ, "KUBELITE_CONFIG": str(tmp / "klctl-config")})
    process = subprocess.Popen(
        in_netns(netns, [script("kubelite"), "up", *up_args, "--data-dir", str(cluster.data)]),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cluster.env)
    output: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if "kubelite is ready" in line:
                break
        else:
            raise AssertionError("kubelite up exited:\n" + "".join(output))
        yield cluster
        down = cluster.run(script("kubelite"), "down", "--data-dir", str(cluster.data),
                           timeout=120)
        assert down.returncode == 0, down.stderr
        process.wait(60)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(120)
        subprocess.run(["ip", "netns", "del", netns], check=False)
    leftovers = subprocess.run(["pgrep", "-af", str(cluster.data)], capture_output=True,
                               text=True, check=False).stdout
    assert [line for line in leftovers.splitlines() if "pgrep" not in line] == []
