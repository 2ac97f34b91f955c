"""`kubelite up` as a user runs it: the whole cluster from one command, the README's example
manifests, `status`, `down`, and a restart on the same data dir keeping the objects."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubelite.testing.cluster import TestCluster, script
from kubelite.testing.ports import free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="pod volumes need mount namespaces (root)"),
]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "KUBELITE_CONFIG": str(tmp_path / "klctl-config")}


def up(data: Path, env: dict[str, str], api: int, etcd: int, kubelet: int
       ) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [script("kubelite"), "up", "--data-dir", str(data), "--nodes", "3", "--api-port",
         str(api), "--etcd-port", str(etcd), "--kubelet-port", str(kubelet)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )


def wait_ready(process: subprocess.Popen[str], timeout: float = 90) -> tuple[float, str]:
    started = time.monotonic()
    output = []
    assert process.stdout is not None
    while time.monotonic() - started < timeout:
        line = process.stdout.readline()
        if not line:
            raise AssertionError("kubelite up exited:\n" + "".join(output))
        output.append(line)
        if "kubelite is ready" in line:
            return time.monotonic() - started, "".join(output)
    raise AssertionError("kubelite up not ready:\n" + "".join(output))


@pytest.fixture
def ports() -> Iterator[tuple[int, int, int]]:
    yield free_port(), free_port(), free_port()


def klctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # No --server: klctl finds the cluster through the config file `kubelite up` wrote.
    return subprocess.run([script("klctl"), *args], capture_output=True, text=True, env=env,
                          timeout=30, check=False)


def test_up_apply_status_down_and_restart(tmp_path: Path, env: dict[str, str],
                                          ports: tuple[int, int, int]) -> None:
    api, etcd, kubelet = ports
    data = tmp_path / "cluster"
    process = up(data, env, api, etcd, kubelet)
    try:
        seconds, output = wait_ready(process)
        print(f"kubelite up: Ready cluster in {seconds:.1f}s")
        assert "etcd ready" in output and "kubelet-node-3 ready" in output
        applied = klctl(env, "apply", "-f", str(ROOT / "deploy" / "examples"))
        assert applied.returncode == 0, applied.stderr
        TestCluster.wait_for(lambda: _ready_pods(env) == 3, "the example's 3 pods", timeout=60)
        status = subprocess.run([script("kubelite"), "status", "--data-dir", str(data)],
                                capture_output=True, text=True, check=False)
        assert status.returncode == 0, status.stdout
        assert status.stdout.count("healthy") >= 10  # 4 control plane + 3 kubelets + 3 proxies
        down = subprocess.run([script("kubelite"), "down", "--data-dir", str(data)],
                              capture_output=True, text=True, check=False, timeout=90)
        assert down.returncode == 0, down.stderr
        process.wait(30)
        assert _leftovers(data) == [], "components or pods left running"
        # Up again on the same data dir: the objects are still there.
        process = up(data, env, api, etcd, kubelet)
        wait_ready(process)
        listed = json.loads(klctl(env, "get", "deploy,svc,cm", "-o", "json").stdout)
        names = {item["metadata"]["name"] for item in listed["items"]}
        assert {"web", "web-config"} <= names
        TestCluster.wait_for(lambda: _ready_pods(env) == 3, "pods back after restart",
                             timeout=60)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C stops everything
            process.wait(90)
    assert _leftovers(data) == []


def _ready_pods(env: dict[str, str]) -> int:
    result = klctl(env, "get", "pods", "-o", "json")
    if result.returncode != 0:
        return -1
    items = json.loads(result.stdout).get("items", [])
    return sum(1 for p in items if any(c["type"] == "Ready" and c["status"] == "True"
                                       for c in p["status"].get("conditions", [])))


def _leftovers(data: Path) -> list[str]:
    """Processes still running from this cluster's data dir (components or pods' shims)."""
    result = subprocess.run(["pgrep", "-af", str(data)], capture_output=True, text=True,
                            check=False)
    own = str(os.getpid())
    return [line for line in result.stdout.splitlines()
            if line and not line.startswith(own) and "pgrep" not in line
            and sys.executable not in line.split()[1:2]]
