"""Pods with IPs of their own: three nodes with a podCIDR each (a loopback block), a
Deployment whose pods all listen on containerPort 8080, reached through Endpoints, the
ClusterIP and NodePorts, and rolled out to a new image with maxSurge 1 / maxUnavailable 0."""

from __future__ import annotations

import ipaddress
import json
import os
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from kubelite.testing.cluster import NodeSpec, TestCluster
from kubelite.testing.etcd import EtcdProcess

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="pod volumes need mount namespaces (root)"),
]

NODES = [NodeSpec(f"node-{i}", f"127.0.0.{40 + i}", cpu="4", pod_cidr=f"127.245.{40 + i}.0/24")
         for i in range(1, 4)]

APP = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: web
          image: kubelite/agnhost:1.0
          args: ["netexec", "--http-port", "8080"]
          ports:
            - {name: http, containerPort: 8080}
          readinessProbe:
            httpGet: {path: /readyz, port: http}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector: {app: web}
  ports:
    - {name: http, port: 80, targetPort: http}
"""


@pytest.fixture(scope="module")
def cluster(etcd: EtcdProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    c = TestCluster(tmp_path_factory.mktemp("pod-network"), etcd.endpoint, list(NODES),
                    controller_manager=True, proxy=True)
    try:
        c.start()
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.stop()


def get(cluster: TestCluster, *what: str) -> dict[str, Any]:
    return json.loads(cluster.klctl("get", *what, "-o", "json").stdout)  # type: ignore[no-any-return]


def web_pods(cluster: TestCluster) -> list[dict[str, Any]]:
    return [p for p in get(cluster, "pods", "-l", "app=web")["items"]
            if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in pod["status"].get("conditions", []))


def ready_endpoints(cluster: TestCluster) -> dict[str, str]:
    """Pod name -> IP of the Service's ready addresses."""
    ep = get(cluster, "endpoints", "web")
    return {a["targetRef"]["name"]: a["ip"] for s in ep.get("subsets", [])
            for a in s.get("addresses", [])}


def ask(host: str, port: int) -> str:
    with urllib.request.urlopen(f"http://{host}:{port}/hostname", timeout=5) as response:
        text: str = response.read().decode()
    return text.strip()


def allocated(cluster: TestCluster, node: NodeSpec) -> set[str]:
    """The pod IPs node's kubelet holds (its allocation files)."""
    directory = cluster.workdir / node.name / "pod-ips"
    return {name for name in os.listdir(directory) if not name.startswith(".")}


def test_a_rolling_update_of_pods_on_one_container_port_completes(cluster: TestCluster) -> None:
    for node in NODES:
        spec = get(cluster, "node", node.name)["spec"]
        assert (spec["podCIDR"], spec["podCIDRs"]) == (node.pod_cidr, [node.pod_cidr])
    cluster.apply(APP)
    cluster.wait_for(lambda: len(ready_endpoints(cluster)) == 3, "3 ready endpoints",
                     timeout=60)
    pods = web_pods(cluster)
    by_node = {n.name: n for n in NODES}
    ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods}
    assert len(set(ips.values())) == 3, ips
    for p in pods:
        node = by_node[p["spec"]["nodeName"]]
        ip = p["status"]["podIP"]
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(node.pod_cidr), (ip, node)
        assert p["status"]["hostIP"] == node.address
        assert p["status"]["podIPs"] == [{"ip": ip}]
    assert ready_endpoints(cluster) == ips
    # Each pod serves on its own IP; the ClusterIP and every NodePort reach them.
    for name, ip in ips.items():
        assert ask(ip, 8080) == name
    svc = get(cluster, "service", "web")
    cluster_ip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    assert {ask(cluster_ip, 80) for _ in range(6)} == set(ips)
    for node in NODES:
        assert {ask(node.address, node_port) for _ in range(6)} == set(ips)

    cluster.klctl("set", "image", "deployment/web", "web=kubelite/agnhost:2.0")
    cluster.klctl("rollout", "status", "deployment/web", "--timeout", "90s", timeout=100)

    def rolled_out() -> bool:
        current = web_pods(cluster)
        return (len(current) == 3 and all(ready(p) for p in current)
                and {p["spec"]["containers"][0]["image"] for p in current}
                == {"kubelite/agnhost:2.0"} and len(ready_endpoints(cluster)) == 3)

    cluster.wait_for(rolled_out, "three ready pods of the new image", timeout=30)
    new_ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in web_pods(cluster)}
    assert not set(new_ips) & set(ips)
    assert {ask(node.address, node_port) for node in NODES for _ in range(3)} == set(new_ips)
    # The old pods' addresses went back to their nodes' blocks.
    cluster.wait_for(
        lambda: set().union(*(allocated(cluster, n) for n in NODES)) == set(new_ips.values()),
        "only the new pods' IPs allocated", timeout=30)


def netexec_pod(name: str, node: NodeSpec) -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: {node.name}
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: kubelite/agnhost
      args: ["netexec", "--http-port", "8080"]
"""


def test_a_restarted_kubelet_keeps_its_pods_ips(cluster: TestCluster) -> None:
    node = NODES[0]
    cluster.apply(netexec_pod("steady", node))
    cluster.wait_for(lambda: get(cluster, "pod", "steady")["status"].get("phase") == "Running",
                     "steady Running")
    ip = get(cluster, "pod", "steady")["status"]["podIP"]
    cluster.wait_for(lambda: ask(ip, 8080) == "steady", "steady serving on its IP")
    cluster.processes[f"kubelet-{node.name}"].kill()
    cluster.start_kubelet(node)
    cluster.wait_for(
        lambda: cluster.processes[f"kubelet-{node.name}"].tail(10_000).count("kubelet running")
        >= 2, "the restarted kubelet")
    cluster.apply(netexec_pod("newcomer", node))
    cluster.wait_for(lambda: get(cluster, "pod", "newcomer")["status"].get("phase") == "Running",
                     "newcomer Running")
    steady = get(cluster, "pod", "steady")
    assert steady["status"]["podIP"] == ip
    assert steady["status"]["containerStatuses"][0]["restartCount"] == 0
    newcomer_ip = get(cluster, "pod", "newcomer")["status"]["podIP"]
    assert newcomer_ip != ip
    assert ask(ip, 8080) == "steady" and ask(newcomer_ip, 8080) == "newcomer"
    cluster.klctl("delete", "pod", "steady", "newcomer")
    cluster.wait_for(lambda: not ({ip, newcomer_ip} & allocated(cluster, node)),
                     "the deleted pods' IPs released")
