"""Readiness over gRPC health: every component reports NOT_SERVING within seconds of the API
server dying (SIGKILL) and SERVING again once it is back, without being restarted itself."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from kubelite.testing.cluster import NodeSpec, TestCluster
from kubelite.testing.etcd import EtcdProcess
from tests.e2e.conftest import E2EReport

pytestmark = [pytest.mark.e2e]

COMPONENTS = ("scheduler", "scheduler-standby", "controller-manager", "kubelet-node-1",
              "proxy-node-1")


@pytest.fixture(scope="module")
def cluster(etcd: EtcdProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    c = TestCluster(tmp_path_factory.mktemp("readiness"), etcd.endpoint,
                    [NodeSpec("node-1", "127.0.0.2")], controller_manager=True, proxy=True)
    try:
        c.start()
        c.start_scheduler("scheduler-standby")
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.stop()


def statuses(cluster: TestCluster) -> dict[str, str]:
    return {name: cluster.health_status(name) for name in COMPONENTS}


def all_report(cluster: TestCluster, status: str) -> bool:
    return set(statuses(cluster).values()) == {status}


def wait_all(cluster: TestCluster, status: str, timeout: float) -> float:
    started = time.monotonic()
    try:
        cluster.wait_for(lambda: all_report(cluster, status), f"every component {status}",
                         timeout=timeout, interval=0.1)
    except AssertionError as e:
        raise AssertionError(f"{e}: {statuses(cluster)}\n{cluster.logs()}") from None
    return time.monotonic() - started


def readiness_lines(cluster: TestCluster, name: str) -> list[dict[str, object]]:
    text = cluster.processes[name].log_path.read_text(errors="replace")
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "readiness changed"]


def test_every_component_follows_the_api_server_down_and_back(
    cluster: TestCluster, e2e_report: E2EReport
) -> None:
    assert set(cluster.health) >= set(COMPONENTS)
    wait_all(cluster, "SERVING", timeout=30)
    pids = {name: cluster.processes[name].pid for name in COMPONENTS}

    apiserver = cluster.processes["apiserver"]
    apiserver.kill()
    down = wait_all(cluster, "NOT_SERVING", timeout=8)

    apiserver.start()  # the same argv: the same port, etcd and prefix
    up = wait_all(cluster, "SERVING", timeout=30)
    e2e_report.add(f"readiness: NOT_SERVING {down:.1f}s after SIGKILL of the API server,"
                   f" SERVING {up:.1f}s after its restart")

    for name in COMPONENTS:
        process = cluster.processes[name]
        assert process.running() and process.pid == pids[name], f"{name} was restarted"
    # Each flip is logged once with its reason; leader-elected components add their role.
    scheduler = [(line["status"], line.get("leader")) for line in
                 readiness_lines(cluster, "scheduler")]
    assert ("NOT_SERVING", False) in scheduler or ("NOT_SERVING", True) in scheduler
    assert scheduler[-1][0] == "SERVING"
    standby = readiness_lines(cluster, "scheduler-standby")
    assert ("SERVING", False) in [(line["status"], line["leader"]) for line in standby], \
        "a connected standby is ready"
    kubelet = readiness_lines(cluster, "kubelet-node-1")
    assert any(line["status"] == "NOT_SERVING" and line["reason"] for line in kubelet)
