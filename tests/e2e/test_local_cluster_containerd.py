"""`kubelite up --runtime containerd --local-registry` as a user runs it, inside a network
namespace the test makes (its loopback, bridges and ClusterIP interface are the namespace's
own): the README's nginx tour reaches Running with each pod its own IP, a pod reaches the
Service's ClusterIP with exact round robin, a pod's containers share its network and UTS
namespaces, hostNetwork and hostPort work, and `kubelite down` leaves nothing behind."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubelite.cli.local_containerd import missing_for_containerd
from kubelite.testing.cluster import TestCluster, script

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]


def _missing() -> list[str]:
    missing = missing_for_containerd(local_registry=True)
    if shutil.which("nsenter") is None:
        missing.append("nsenter (util-linux)")
    return missing


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


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    missing = _missing()
    if missing:
        pytest.skip("containerd runtime needs: " + ", ".join(missing))
    tmp = tmp_path_factory.mktemp("containerd-up")
    netns = f"klup-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"], check=True)
    cluster = LocalCluster(netns, tmp / "cluster",
                           {**os.environ, "KUBELITE_CONFIG": str(tmp / "klctl-config")})
    process = subprocess.Popen(
        in_netns(netns, [script("kubelite"), "up", "--runtime", "containerd",
                         "--local-registry", "--nodes", "2", "--data-dir", str(cluster.data)]),
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


SHARED = """
apiVersion: v1
kind: Pod
metadata:
  name: shared
spec:
  hostname: web-0
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
