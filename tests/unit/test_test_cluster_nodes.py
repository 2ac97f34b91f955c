"""The test cluster's NodeSpec reaches its kubelet's command line: a process node keeps the
flags it always had, a containerd node gets the runtime's, and bad runtime fields are refused
naming the field."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from kubelite.testing.cluster import NodeSpec, TestCluster

RUNTIME_FLAGS = ("--container-runtime", "--container-runtime-endpoint", "--cni-conf-dir",
                 "--cni-bridge", "--cgroup-root")


def flag_values(argv: list[str]) -> dict[str, str]:
    return {flag: value for flag, value in itertools.pairwise(argv)
            if flag.startswith("--")}


def cluster(tmp_path: Path) -> TestCluster:
    c = TestCluster(tmp_path, "127.0.0.1:2379", [])
    c.server = "127.0.0.1:6443"
    return c


def test_a_process_node_has_no_runtime_flags(tmp_path: Path) -> None:
    argv = cluster(tmp_path).kubelet_spec(NodeSpec("node-1", "127.0.0.2")).argv()
    assert not set(RUNTIME_FLAGS) & set(argv)


def test_a_containerd_node_passes_its_runtime_to_the_kubelet(tmp_path: Path) -> None:
    node = NodeSpec("node-1", "127.0.0.2", pod_cidr="10.245.1.0/24", runtime="containerd",
                    container_runtime_endpoint="unix:///run/c1/containerd.sock",
                    cni_conf_dir="/run/c1/net.d", cni_bridge="klbench1",
                    cgroup_root="/klbench/node-1")
    flags = flag_values(cluster(tmp_path).kubelet_spec(node).argv())
    assert {f: flags[f] for f in (*RUNTIME_FLAGS, "--pod-cidr")} == {
        "--container-runtime": "containerd",
        "--container-runtime-endpoint": "unix:///run/c1/containerd.sock",
        "--cni-conf-dir": "/run/c1/net.d",
        "--cni-bridge": "klbench1",
        "--cgroup-root": "/klbench/node-1",
        "--pod-cidr": "10.245.1.0/24",
    }


@pytest.mark.parametrize(("fields", "message"), [
    ({"runtime": "docker"}, "runtime: 'docker' is not one of process, containerd"),
    ({"runtime": "containerd"}, "container_runtime_endpoint: '' must be a unix:// socket"),
    ({"runtime": "containerd", "container_runtime_endpoint": "/run/c.sock"},
     "container_runtime_endpoint: '/run/c.sock' must be a unix:// socket"),
    ({"cni_bridge": "klbench1"}, "cni_bridge: only for the containerd runtime"),
])
def test_bad_runtime_fields_are_refused(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        NodeSpec("node-1", "127.0.0.2", **fields)  # type: ignore[arg-type]
