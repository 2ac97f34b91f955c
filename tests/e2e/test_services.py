"""Services with real processes: five nodes, each with a kubelet and a proxy, the controller
manager keeping Endpoints, and connections made through ClusterIPs and NodePorts."""

from __future__ import annotations

import collections
import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from kubelite.testing.cluster import NodeSpec, TestCluster
from kubelite.testing.etcd import EtcdProcess
from tests.e2e.conftest import E2EReport

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="pod volumes need mount namespaces (root)"),
]

NODES = [NodeSpec(f"node-{i}", f"127.0.0.{10 + i}", cpu="4") for i in range(1, 6)]
PORT = 19380

APP = f"""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hostnames
spec:
  replicas: 3
  selector:
    matchLabels: {{app: hostnames}}
  template:
    metadata:
      labels: {{app: hostnames}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: netexec
          image: kubelite/agnhost
          args: ["netexec", "--http-port", "{PORT}"]
          ports:
            - {{name: http, containerPort: {PORT}}}
          readinessProbe:
            httpGet: {{path: /readyz, port: http}}
            periodSeconds: 1
            failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata:
  name: hostnames
spec:
  type: NodePort
  selector: {{app: hostnames}}
  ports:
    - name: http
      port: 80
      targetPort: http
"""


@pytest.fixture(scope="module")
def cluster(etcd: EtcdProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    c = TestCluster(tmp_path_factory.mktemp("services"), etcd.endpoint, list(NODES),
                    controller_manager=True, proxy=True)
    try:
        c.start()
        c.apply(APP)
        c.wait_for(lambda: len(ready_endpoints(c)) == 3, "3 ready endpoints", timeout=60)
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.stop()


def get(cluster: TestCluster, *what: str) -> dict[str, Any]:
    return json.loads(cluster.klctl("get", *what, "-o", "json").stdout)  # type: ignore[no-any-return]


def ready_endpoints(cluster: TestCluster) -> list[str]:
    ep = get(cluster, "endpoints", "hostnames")
    return sorted(a["targetRef"]["name"] for s in ep.get("subsets", [])
                  for a in s.get("addresses", []))


def service(cluster: TestCluster) -> tuple[str, int]:
    svc = get(cluster, "service", "hostnames")
    return svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]


def ask(host: str, port: int, path: str = "/hostname", timeout: float = 5) -> str:
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=timeout) as response:
        text: str = response.read().decode()
    return text.strip()


def names_through(host: str, port: int, count: int) -> collections.Counter[str]:
    return collections.Counter(ask(host, port) for _ in range(count))


def test_node_ports_round_robin_over_every_pod_on_every_node(cluster: TestCluster) -> None:
    _, node_port = service(cluster)
    pods = ready_endpoints(cluster)
    for node in NODES:
        counts = names_through(node.address, node_port, 30)
        assert sorted(counts) == pods, (node.name, counts)
        assert set(counts.values()) == {10}, (node.name, counts)


def exact(counts: collections.Counter[str], pods: list[str]) -> bool:
    return sorted(counts) == pods and set(counts.values()) == {30 // len(pods)}


def test_cluster_ip_round_robin_is_exact_and_survives_its_owner_stopping(
    cluster: TestCluster, e2e_report: E2EReport
) -> None:
    cluster_ip, _ = service(cluster)
    assert cluster_ip.startswith("127.96.")
    pods = ready_endpoints(cluster)
    # Five proxies on one host: one owns the ClusterIP listener and balances every connection.
    rounds = [names_through(cluster_ip, 80, 30) for _ in range(5)]
    assert all(exact(c, pods) for c in rounds), rounds
    standing_by = [n for n in NODES
                   if f"{cluster_ip}:80" in standby_lines(cluster, f"proxy-{n.name}")]
    owners = [n for n in NODES if n not in standing_by]
    assert len(owners) == 1, [n.name for n in owners]
    # Stop the owner: another proxy takes the address over and is exact again.
    cluster.processes[f"proxy-{owners[0].name}"].stop()
    stopped = time.monotonic()
    try:
        cluster.wait_for(lambda: _answers(cluster_ip, 80), "the ClusterIP served again",
                         timeout=5, interval=0.02)
        took = time.monotonic() - stopped
        after = [names_through(cluster_ip, 80, 30) for _ in range(5)]
        assert all(exact(c, pods) for c in after), after
    finally:
        cluster.start_proxy(owners[0])
    e2e_report.add(f"ClusterIP from one host, 5 proxies: 5 rounds of 30 exact; owner stopped,"
                   f" served again after {took:.2f}s, exact again")


def standby_lines(cluster: TestCluster, name: str) -> str:
    log = cluster.workdir / "logs" / f"{name}.log"
    return "\n".join(line for line in log.read_text().splitlines() if "standing by" in line)


def test_not_ready_pod_leaves_rotation_and_returns(
    cluster: TestCluster, e2e_report: E2EReport
) -> None:
    _, node_port = service(cluster)
    entry = NODES[0].address
    pods = ready_endpoints(cluster)
    victim = pods[0]
    victim_ip = get(cluster, "pod", victim)["status"]["podIP"]
    ask(victim_ip, PORT, "/fail-readyz")

    def not_ready() -> bool:
        conditions = get(cluster, "pod", victim)["status"]["conditions"]
        return any(c["type"] == "Ready" and c["status"] == "False" for c in conditions)

    cluster.wait_for(not_ready, f"{victim} not ready", interval=0.05)
    noticed = time.monotonic()
    cluster.wait_for(lambda: victim not in names_through(entry, node_port, 6),
                     "connections to skip the not-ready pod", timeout=10, interval=0.01)
    e2e_report.add(f"a pod seen not Ready left the rotation {time.monotonic() - noticed:.2f}s"
                   " later")
    assert victim not in names_through(entry, node_port, 20)
    ask(victim_ip, PORT, "/heal-readyz")
    cluster.wait_for(lambda: victim in names_through(entry, node_port, 6),
                     "the pod back in rotation", timeout=10)


def test_scaling_to_five_brings_new_pods_into_rotation(cluster: TestCluster) -> None:
    _, node_port = service(cluster)
    cluster.klctl("scale", "deployment/hostnames", "--replicas=5")
    cluster.wait_for(lambda: len(ready_endpoints(cluster)) == 5, "5 ready endpoints",
                     timeout=60)
    counts = names_through(NODES[1].address, node_port, 50)
    assert sorted(counts) == ready_endpoints(cluster)
    assert set(counts.values()) == {10}
    cluster.klctl("scale", "deployment/hostnames", "--replicas=3")
    cluster.wait_for(lambda: len(ready_endpoints(cluster)) == 3, "back to 3", timeout=60)


def test_client_ip_affinity_pins_a_client(cluster: TestCluster) -> None:
    cluster.apply("""
apiVersion: v1
kind: Service
metadata:
  name: sticky
spec:
  type: NodePort
  sessionAffinity: ClientIP
  selector: {app: hostnames}
  ports:
    - {name: http, port: 81, targetPort: http}
""")
    sticky = get(cluster, "service", "sticky")
    node_port = sticky["spec"]["ports"][0]["nodePort"]
    entry = NODES[2].address
    cluster.wait_for(lambda: _answers(entry, node_port), "sticky to answer")
    counts = names_through(entry, node_port, 20)
    assert len(counts) == 1, counts
    cluster.klctl("delete", "service", "sticky")


def test_deleted_service_frees_its_ip_and_port_and_closes_listeners(
    cluster: TestCluster,
) -> None:
    cluster.apply("""
apiVersion: v1
kind: Service
metadata:
  name: doomed
spec:
  type: NodePort
  selector: {app: hostnames}
  ports:
    - {name: http, port: 82, targetPort: http}
""")
    doomed = get(cluster, "service", "doomed")
    ip, node_port = doomed["spec"]["clusterIP"], doomed["spec"]["ports"][0]["nodePort"]
    cluster.wait_for(lambda: _answers(NODES[0].address, node_port), "doomed to answer")
    cluster.klctl("delete", "service", "doomed")
    cluster.wait_for(lambda: _refused(NODES[0].address, node_port) and _refused(ip, 82),
                     "listeners closed", timeout=5)
    cluster.apply(f"""
apiVersion: v1
kind: Service
metadata:
  name: reborn
spec:
  type: NodePort
  clusterIP: {ip}
  selector: {{app: hostnames}}
  ports:
    - {{name: http, port: 82, targetPort: http, nodePort: {node_port}}}
""")
    reborn = get(cluster, "service", "reborn")
    assert reborn["spec"]["clusterIP"] == ip
    cluster.klctl("delete", "service", "reborn")


def test_service_without_pods_refuses_promptly(cluster: TestCluster) -> None:
    cluster.apply("""
apiVersion: v1
kind: Service
metadata:
  name: empty
spec:
  type: NodePort
  selector: {app: nothing-here}
  ports:
    - {port: 83, targetPort: 8080}
""")
    empty = get(cluster, "service", "empty")
    node_port = empty["spec"]["ports"][0]["nodePort"]
    # Refused, not left hanging: a hang would end in the socket's TimeoutError.
    assert _refused(NODES[0].address, node_port)
    assert _refused(empty["spec"]["clusterIP"], 83)


def _answers(host: str, port: int) -> bool:
    try:
        ask(host, port, timeout=1)
        return True
    except (OSError, urllib.error.URLError):
        return False


def _refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=5) as s:
            s.settimeout(5)
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return s.recv(1) == b""  # accepted then closed at once also counts as refusing
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        return True
