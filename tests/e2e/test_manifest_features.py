"""Manifests from the Kubernetes docs on real processes (API server, scheduler, controller
manager, kubelets), driven by klctl: what they need of the cluster beyond plain pods — the
``kubernetes`` Service's variables, a StatefulSet's volumeClaimTemplates, Indexed Jobs."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from kubelite.testing.cluster import NodeSpec, TestCluster
from kubelite.testing.etcd import EtcdProcess
from tests.helpers import INDEXED_JOB

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="pod volumes need mount namespaces (root)"),
]


@pytest.fixture(scope="module")
def cluster(etcd: EtcdProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    # Two nodes: container ports are host ports on the process runtime, so the StatefulSet's
    # two pods (containerPort 80 each) need a node each.
    c = TestCluster(tmp_path_factory.mktemp("features"), etcd.endpoint,
                    [NodeSpec("node-1", "127.0.0.2", cpu="8"),
                     NodeSpec("node-2", "127.0.0.3", cpu="8")], controller_manager=True)
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


def items(cluster: TestCluster, *what: str) -> list[dict[str, Any]]:
    found = get(cluster, *what)
    return found["items"] if found.get("kind") == "List" else [found]


# https://kubernetes.io/docs/tasks/inject-data-application/define-command-argument-container/
COMMANDS = """
apiVersion: v1
kind: Pod
metadata:
  name: command-demo
  labels:
    purpose: demonstrate-command
spec:
  containers:
  - name: command-demo-container
    image: debian
    command: ["printenv"]
    args: ["HOSTNAME", "KUBERNETES_PORT"]
  restartPolicy: OnFailure
"""


def test_commands_pod_sees_the_kubernetes_service(cluster: TestCluster) -> None:
    cluster.apply(COMMANDS)
    cluster.wait_for(lambda: get(cluster, "pod", "command-demo")["status"].get("phase")
                     == "Succeeded", "command-demo Succeeded", timeout=60)
    pod = get(cluster, "pod", "command-demo")
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    svc = get(cluster, "svc", "kubernetes")
    assert cluster.klctl("logs", "command-demo").stdout == (
        f"command-demo\ntcp://{svc['spec']['clusterIP']}:443\n")


# The docs' StatefulSet "web" (concepts/workloads/controllers/statefulset), with busybox
# serving nothing in place of nginx, which the process runtime cannot run.
STATEFULSET = """
apiVersion: v1
kind: Service
metadata:
  name: nginx
  labels:
    app: nginx
spec:
  ports:
  - port: 80
    name: web
  clusterIP: None
  selector:
    app: nginx
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  selector:
    matchLabels:
      app: nginx
  serviceName: "nginx"
  replicas: 2
  minReadySeconds: 1
  template:
    metadata:
      labels:
        app: nginx
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: nginx
        image: busybox
        command: ["sh", "-c", "echo $HOSTNAME > /usr/share/nginx/html/index.html; exec sleep 3600"]
        ports:
        - containerPort: 80
          name: web
        volumeMounts:
        - name: www
          mountPath: /usr/share/nginx/html
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: [ "ReadWriteOnce" ]
      storageClassName: "my-storage-class"
      resources:
        requests:
          storage: 1Gi
"""


def test_canonical_stateful_set_runs_with_its_claim_volumes(cluster: TestCluster) -> None:
    cluster.apply(STATEFULSET)

    def running() -> bool:
        pods = items(cluster, "pods", "-l", "app=nginx")
        return sorted(p["metadata"]["name"] for p in pods
                      if p["status"].get("phase") == "Running") == ["web-0", "web-1"]

    cluster.wait_for(running, "web-0 and web-1 Running", timeout=90)
    for name in ("web-0", "web-1"):
        pod = get(cluster, "pod", name)
        www = next(v for v in pod["spec"]["volumes"] if v["name"] == "www")
        assert www == {"name": "www", "emptyDir": {"sizeLimit": "1Gi"}}
        served = cluster.klctl("exec", name, "--", "cat", "/usr/share/nginx/html/index.html")
        assert served.stdout.strip() == name
    assert cluster.klctl("get", "pvc", check=False).returncode != 0  # no claims were made


def test_indexed_job_runs_every_index_once(cluster: TestCluster) -> None:
    cluster.apply(INDEXED_JOB)

    def complete() -> bool:
        conditions = get(cluster, "job", "indexed")["status"].get("conditions", [])
        return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)

    cluster.wait_for(complete, "the Indexed Job Complete", timeout=90)
    status = get(cluster, "job", "indexed")["status"]
    assert (status["completedIndexes"], status["succeeded"]) == ("0-2", 3)
    pods = items(cluster, "pods", "-l", "job-name=indexed")
    seen = {}
    for pod in pods:
        index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        assert pod["metadata"]["name"].startswith(f"indexed-{index}-")
        seen[index] = cluster.klctl("logs", pod["metadata"]["name"]).stdout
    assert seen == {i: f"index={i} host=indexed-{i}\n" for i in ("0", "1", "2")}
