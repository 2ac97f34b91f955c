"""Cluster DNS as `kubelite up` deploys it (kube-dns Service + Deployment of kubelite-dns),
queried from inside pods: Services by short name and FQDN, a headless Service giving every
ready pod, a StatefulSet pod by web-0.nginx, an ExternalName CNAME, NXDOMAIN for unknown
names, and names that appear soon after their Service's creation and go soon after its
deletion (the times are reported). The cluster runs in a network namespace the test makes (port 53 is its own)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator

import pytest

from kubelite.testing.cluster import TestCluster
from tests.e2e.conftest import E2EReport
from tests.e2e.local_netns import LocalCluster, local_cluster_in_netns

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="port 53 and network namespaces need root"),
    pytest.mark.skipif(shutil.which("nsenter") is None, reason="nsenter (util-linux) missing"),
]

APPS = """
apiVersion: v1
kind: Service
metadata:
  name: nginx
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: nginx
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: kubelite/agnhost
        args: ["netexec", "--http-port", "8080"]
        ports: [{containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /healthz, port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: backend
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: search
spec:
  type: ExternalName
  externalName: backend.default.svc.cluster.local
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: ["sleep", "3600"]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with local_cluster_in_netns(tmp_path_factory.mktemp("dns"), "--nodes", "2") as cluster:
        applied = cluster.klctl("apply", "-f", "-", stdin=APPS)
        assert applied.returncode == 0, applied.stderr
        cluster.wait_running("client")
        TestCluster.wait_for(
            lambda: all(cluster.pod(f"web-{i}").get("status", {}).get("phase") == "Running"
                        for i in range(2)), "web-0 and web-1 running", timeout=60)
        yield cluster


def lookup(cluster: LocalCluster, name: str) -> tuple[int, str]:
    result = cluster.klctl("exec", "client", "--", "nslookup", name)
    return result.returncode, result.stdout + result.stderr


def addresses(output: str) -> set[str]:
    """The answers' addresses in busybox nslookup's output (not the server's)."""
    answers = output.split("Name:", 1)[-1] if "Name:" in output else ""
    return {line.split()[-1] for line in answers.splitlines() if line.startswith("Address")}


def test_services_by_short_name_fqdn_headless_statefulset_pod_and_externalname(
        cluster: LocalCluster) -> None:
    backend = cluster.get("svc", "backend")["spec"]["clusterIP"]
    pods = {cluster.pod(f"web-{i}")["status"]["podIP"] for i in range(2)}
    TestCluster.wait_for(lambda: addresses(lookup(cluster, "backend")[1]) == {backend},
                         "backend by its short name", timeout=20)
    assert addresses(lookup(cluster, "backend.default.svc.cluster.local")[1]) == {backend}
    # Headless: every ready pod; StatefulSet pods by <hostname>.<service>.
    TestCluster.wait_for(
        lambda: addresses(lookup(cluster, "nginx.default.svc.cluster.local")[1]) == pods,
        "the headless Service's ready pods", timeout=20)
    web0 = cluster.pod("web-0")["status"]["podIP"]
    assert addresses(lookup(cluster, "web-0.nginx.default.svc.cluster.local")[1]) == {web0}
    # web-0.nginx through the pod's resolver (search list, ndots:5), as an HTTP client uses it.
    fetched = cluster.klctl("exec", "client", "--", "wget", "-qO-",
                            "http://web-0.nginx:8080/hostname")
    assert fetched.stdout.strip() == "web-0", fetched
    code, output = lookup(cluster, "search.default.svc.cluster.local")
    assert "canonical name = backend.default.svc.cluster.local" in output, output
    assert backend in addresses(output)
    code, output = lookup(cluster, "nope.default.svc.cluster.local")
    assert code != 0 and "NXDOMAIN" in output, output
    # And a name works for an HTTP client in the pod, as manifests use it.
    fetched = cluster.klctl("exec", "client", "--", "wget", "-qO-", "http://backend/hostname")
    assert fetched.stdout.strip() in {"web-0", "web-1"}, fetched


def test_a_name_resolves_soon_after_creation_and_goes_soon_after_deletion(
        cluster: LocalCluster, e2e_report: E2EReport) -> None:
    service = ("apiVersion: v1\nkind: Service\nmetadata: {name: late}\n"
               "spec: {selector: {app: web}, ports: [{port: 81}]}\n")
    name = "late.default.svc.cluster.local"
    assert cluster.klctl("apply", "-f", "-", stdin=service).returncode == 0
    created = time.monotonic()
    TestCluster.wait_for(lambda: lookup(cluster, name)[0] == 0, "the new name", timeout=10,
                         interval=0.05)
    appeared = time.monotonic() - created
    assert cluster.klctl("delete", "svc", "late").returncode == 0
    deleted = time.monotonic()
    TestCluster.wait_for(lambda: lookup(cluster, name)[0] != 0, "the name gone", timeout=10,
                         interval=0.05)
    gone = time.monotonic() - deleted
    # Reported, not asserted (the waits' deadlines are the bound): each look runs klctl exec,
    # a process and a gRPC round trip that take seconds on a loaded machine, while the name
    # itself is served as soon as its watch event arrives.
    e2e_report.add(f"dns: a Service's name resolved {appeared:.2f}s after its create, NXDOMAIN"
                   f" {gone:.2f}s after its delete (each look through klctl exec, which alone"
                   f" took {_exec_seconds(cluster):.2f}s)")


def _exec_seconds(cluster: LocalCluster) -> float:
    started = time.monotonic()
    cluster.klctl("exec", "client", "--", "true")
    return time.monotonic() - started


