"""`kubelite up --runtime containerd --local-registry` as a user runs it, inside a network
namespace the test makes (its loopback, bridges and ClusterIP interface are the namespace's
own): the README's nginx tour reaches Running with each pod its own IP, a pod reaches the
Service's ClusterIP with exact round robin, a pod's containers share its network and UTS
namespaces, hostNetwork and hostPort work, and `kubelite down` leaves nothing behind."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelite.cli.local_containerd import missing_for_containerd
from kubelite.testing.cluster import TestCluster
from tests.e2e.local_netns import LocalCluster, local_cluster_in_netns

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]


def _missing() -> list[str]:
    missing = missing_for_containerd(local_registry=True)
    if shutil.which("nsenter") is None:
        missing.append("nsenter (util-linux)")
    return missing


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    missing = _missing()
    if missing:
        pytest.skip("containerd runtime needs: " + ", ".join(missing))
    with local_cluster_in_netns(tmp_path_factory.mktemp("containerd-up"), "--runtime",
                                "containerd", "--local-registry", "--nodes", "2") as cluster:
        yield cluster


def test_the_nginx_tour_with_exact_round_robin_from_a_pod(cluster: LocalCluster) -> None:
    applied = cluster.klctl("apply", "-f", str(ROOT / "deploy" / "nginx"))
    assert applied.returncode == 0, applied.stderr

    def pods() -> list[dict[str, Any]]:
        listed = cluster.get("pods", "-l", "app=nginx")
        return list(listed["items"]) if listed else []

    TestCluster.wait_for(
        lambda: len([p for p in pods() if p["status"]["phase"] == "Running"]) == 3,
        "3 nginx pods Running", timeout=90)
    ips = {p["status"]["podIP"] for p in pods()}
    assert len(ips) == 3 and all(str(ip).startswith("10.244.") for ip in ips), ips
    cluster_ip = cluster.get("svc", "nginx")["spec"]["clusterIP"]
    assert cluster_ip.startswith("10.96."), cluster_ip
    client = pods()[0]["metadata"]["name"]
    fetch = f"for i in $(seq 30); do wget -qO- http://{cluster_ip}/cgi-bin/hostname; done"

    def answers() -> list[str]:
        result = cluster.klctl("exec", client, "--", "sh", "-c", fetch)
        return result.stdout.split() if result.returncode == 0 else []

    TestCluster.wait_for(lambda: len(answers()) == 30, "30 answers through the ClusterIP",
                         timeout=30)
    counts: dict[str, int] = {}
    for name in answers():
        counts[name] = counts.get(name, 0) + 1
    assert sorted(counts.values()) == [10, 10, 10], counts
    # By name through the cluster DNS (kube-dns pods on containerd too).
    TestCluster.wait_for(
        lambda: cluster.klctl("exec", client, "--", "wget", "-qO-",
                              "http://nginx/cgi-bin/hostname").stdout.strip()
        in {p["metadata"]["name"] for p in pods()},
        "nginx by its Service name", timeout=30)


# GRACE: `sleep` and busybox's httpd run as their container's PID 1, which ignores SIGTERM;
# with Kubernetes' default grace period (30 s) `kubelite down` at the module's end would wait
# that long for each of these pods before it kills them.
SHARED = """
apiVersion: v1
kind: Pod
metadata:
  name: shared
spec:
  hostname: web-0
  terminationGracePeriodSeconds: 1  # see GRACE
  containers:
  - name: server
    image: busybox
    command: ["httpd", "-f", "-p", "8080", "-h", "/etc"]
    ports:
    - containerPort: 8080
      hostPort: 18080
  - name: client
    image: busybox
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: on-host
spec:
  terminationGracePeriodSeconds: 1  # see GRACE
  hostNetwork: true
  containers:
  - name: main
    image: busybox
    command: ["sleep", "3600"]
"""


def test_containers_share_the_pods_network_and_hostname_and_host_modes_work(
        cluster: LocalCluster) -> None:
    applied = cluster.klctl("apply", "-f", "-", stdin=SHARED)
    assert applied.returncode == 0, applied.stderr
    shared = cluster.wait_running("shared")
    on_host = cluster.wait_running("on-host")
    # localhost between the containers of one pod, and the pod's hostname in both.
    fetched = cluster.klctl("exec", "shared", "-c", "client", "--", "wget", "-qO-",
                            "http://127.0.0.1:8080/hostname")
    assert fetched.returncode == 0 and fetched.stdout.strip() == "web-0", fetched
    assert cluster.klctl("exec", "shared", "-c", "server", "--",
                         "hostname").stdout.strip() == "web-0"
    # hostNetwork: the node's address and network namespace (its bridges are visible).
    node_ip = on_host["status"]["hostIP"]
    assert on_host["status"]["podIP"] == node_ip
    links = cluster.klctl("exec", "on-host", "--", "ip", "link").stdout
    assert "kube-ipvs0" in links and "kubelite" in links
    # hostPort: the node's port 18080 forwards to the pod's 8080 (portmap).
    node = shared["status"]["hostIP"]
    fetched = cluster.klctl("exec", "on-host", "--", "wget", "-qO-",
                            f"http://{node}:18080/hostname")
    assert fetched.stdout.strip() == "web-0", fetched
    assert shared["status"]["podIP"].startswith("10.244.")


SECURITY = """
apiVersion: v1
kind: Pod
metadata:
  name: locked
spec:
  terminationGracePeriodSeconds: 1  # see GRACE
  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
  containers:
  - name: main
    image: busybox
    command: ["sleep", "3600"]
    securityContext:
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
      capabilities:
        drop: ["ALL"]
        add: ["NET_BIND_SERVICE"]
---
apiVersion: v1
kind: Pod
metadata:
  name: privileged
spec:
  terminationGracePeriodSeconds: 1  # see GRACE
  containers:
  - name: main
    image: busybox
    command: ["sleep", "3600"]
    securityContext:
      privileged: true
"""

NET_BIND_SERVICE = 1 << 10


def _status_field(cluster: LocalCluster, pod: str, field: str) -> str:
    status = cluster.klctl("exec", pod, "--", "cat", "/proc/self/status").stdout
    return next(line.split(":", 1)[1].strip() for line in status.splitlines()
                if line.startswith(field + ":"))


def test_security_context_is_enforced(cluster: LocalCluster) -> None:
    applied = cluster.klctl("apply", "-f", "-", stdin=SECURITY)
    assert applied.returncode == 0, applied.stderr
    cluster.wait_running("locked")
    cluster.wait_running("privileged")
    assert cluster.klctl("exec", "locked", "--", "id").stdout.split() == [
        "uid=1000(user)", "gid=3000", "groups=3000"]
    write = cluster.klctl("exec", "locked", "--", "touch", "/written")
    assert write.returncode != 0 and "Read-only file system" in write.stderr + write.stdout
    # drop ALL + add NET_BIND_SERVICE: that one capability is bounded, none effective for a
    # non-root user, and no_new_privs is set.
    assert int(_status_field(cluster, "locked", "CapBnd"), 16) == NET_BIND_SERVICE
    assert int(_status_field(cluster, "locked", "CapEff"), 16) == 0
    assert _status_field(cluster, "locked", "NoNewPrivs") == "1"
    # privileged: every capability, and the host's devices.
    assert int(_status_field(cluster, "privileged", "CapEff"), 16) > (1 << 37) - 1
    assert _status_field(cluster, "privileged", "NoNewPrivs") == "0"
    devices = cluster.klctl("exec", "privileged", "--", "ls", "/dev").stdout.split()
    assert len(devices) > 20, devices
