"""Workload controllers with real processes: API server, scheduler, controller manager (with a
standby) and three kubelets, driven by klctl with manifests as Kubernetes users write them."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kubelite.api.errors import ApiError
from kubelite.client.client import ApiClient
from kubelite.testing.cluster import NodeSpec, TestCluster
from kubelite.testing.etcd import EtcdProcess
from protos.v1 import objects_pb2 as v1

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="pod volumes need mount namespaces (root)"),
]

NODES = [NodeSpec(f"node-{i}", f"127.0.0.{i + 1}", cpu="8") for i in (1, 2, 3)]


@pytest.fixture(scope="module")
def cluster(etcd: EtcdProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    c = TestCluster(tmp_path_factory.mktemp("workloads"), etcd.endpoint, list(NODES),
                    controller_manager=True)
    try:
        c.start()
        c.start_controller_manager("controller-manager-standby")
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.stop()


def get(cluster: TestCluster, *what: str) -> dict[str, Any]:
    return json.loads(cluster.klctl("get", *what, "-o", "json").stdout)  # type: ignore[no-any-return]


def pods(cluster: TestCluster, selector: str) -> list[dict[str, Any]]:
    items = get(cluster, "pods", "-l", selector).get("items")
    if items is None:  # a single object comes back unwrapped
        items = [get(cluster, "pods", "-l", selector)]
    return [p for p in items if p.get("kind") == "Pod"]


def _ready(p: dict[str, Any]) -> bool:
    return (p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True"
                    for c in p["status"].get("conditions", [])))


def running_ready(cluster: TestCluster, selector: str) -> int:
    return sum(1 for p in pods(cluster, selector) if _ready(p))


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: sleeper
spec:
  replicas: {replicas}
  strategy:
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 1}}
  selector:
    matchLabels: {{app: sleeper}}
  template:
    metadata:
      labels: {{app: sleeper}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          image: {image}
          command: ["sleep", "3600"]
          readinessProbe:
            exec: {{command: ["true"]}}
            periodSeconds: 1
"""


class PodHistory:
    """Counts a label's pods from a watch, in a thread, for the whole life of a test."""

    def __init__(self, server: str, selector: str) -> None:
        self.server, self.selector = server, selector
        self.samples: list[tuple[int, int]] = []  # (live, ready) after each event
        self.node_changes: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        async with ApiClient(self.server) as client:
            state: dict[str, v1.Pod] = {}
            bound: dict[str, str] = {}
            stream = client.watch(v1.Pod, "default", label_selector=self.selector)
            try:
                async for event in stream:
                    if self._stop.is_set():
                        return
                    p = event.object
                    if p is None:
                        continue
                    if event.type == "DELETED":
                        state.pop(p.metadata.uid, None)
                    else:
                        state[p.metadata.uid] = p
                        if p.spec.node_name:
                            old = bound.setdefault(p.metadata.uid, p.spec.node_name)
                            if old != p.spec.node_name:
                                self.node_changes.append(p.metadata.name)
                    # Terminating pods do not count, as in the Deployment controller's sums.
                    live = [q for q in state.values() if not q.metadata.deletion_timestamp]
                    ready = sum(1 for q in live if any(
                        c.type == "Ready" and c.status == "True" for c in q.status.conditions))
                    self.samples.append((len(live), ready))
            except ApiError:
                pass

    def stop(self) -> None:
        self._stop.set()


def test_deployment_scales_and_rolls_within_surge_and_unavailable(cluster: TestCluster) -> None:
    history = PodHistory(cluster.server, "app=sleeper")
    cluster.apply(DEPLOYMENT.format(replicas=3, image="busybox"))
    cluster.wait_for(lambda: running_ready(cluster, "app=sleeper") == 3, "3 ready", timeout=60)
    for replicas in (5, 2):
        cluster.klctl("scale", "deployment/sleeper", f"--replicas={replicas}")
        cluster.wait_for(lambda r=replicas: running_ready(cluster, "app=sleeper") == r
                         and len(pods(cluster, "app=sleeper")) == r, f"{replicas} pods",
                         timeout=60)
    cluster.klctl("scale", "deployment/sleeper", "--replicas=3")
    cluster.wait_for(lambda: running_ready(cluster, "app=sleeper") == 3, "back to 3", timeout=60)
    start = len(history.samples)
    cluster.klctl("set", "image", "deployment/sleeper", "main=busybox:1.36")
    cluster.klctl("rollout", "status", "deployment/sleeper", "--timeout", "90s", timeout=100)
    during = history.samples[start:]
    assert during, "the watch saw the rollout"
    assert max(n for n, _ in during) <= 3 + 1, f"more than replicas+maxSurge: {during}"
    # Ready pods never drop below replicas - maxUnavailable once the rollout began.
    assert min(r for _, r in during) >= 3 - 1, f"fewer than replicas-maxUnavailable: {during}"
    images = {p["spec"]["containers"][0]["image"] for p in pods(cluster, "app=sleeper")
              if not p["metadata"].get("deletionTimestamp")}
    cluster.wait_for(lambda: {p["spec"]["containers"][0]["image"]
                              for p in pods(cluster, "app=sleeper")} == {"busybox:1.36"},
                     "only new pods remain")
    del images
    cluster.klctl("rollout", "undo", "deployment/sleeper")
    cluster.klctl("rollout", "status", "deployment/sleeper", "--timeout", "90s", timeout=100)
    deployment = get(cluster, "deployment", "sleeper")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox"
    revisions = cluster.klctl("rollout", "history", "deployment/sleeper").stdout
    assert "3" in revisions.split(), revisions
    history.stop()
    assert not history.node_changes, "a pod was bound twice"


def test_daemonset_runs_on_every_node_and_a_new_one(cluster: TestCluster) -> None:
    cluster.apply("""
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: agent
          image: busybox
          command: ["sleep", "3600"]
""")
    cluster.wait_for(lambda: sorted(p["spec"].get("nodeName", "") for p in pods(
        cluster, "app=agent")) == ["node-1", "node-2", "node-3"], "one pod per node", timeout=60)
    extra = NodeSpec("node-4", "127.0.0.5", cpu="8")
    cluster.nodes.append(extra)
    cluster.start_kubelet(extra)
    cluster.wait_for(lambda: "node-4" in {p["spec"].get("nodeName") for p in pods(
        cluster, "app=agent")}, "a pod on the new node", timeout=60)
    cluster.wait_for(lambda: running_ready(cluster, "app=agent") == 4, "4 ready", timeout=60)


def test_statefulset_orders_creation_and_deletion(cluster: TestCluster) -> None:
    cluster.apply("""
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector: {app: web-sts}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels: {app: web-sts}
  template:
    metadata:
      labels: {app: web-sts}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          image: busybox
          command: ["sleep", "3600"]
          readinessProbe:
            exec: {command: ["true"]}
            periodSeconds: 1
""")
    created: list[str] = []

    def seen() -> bool:
        snapshot = pods(cluster, "app=web-sts")
        for p in snapshot:
            if p["metadata"]["name"] not in created:
                created.append(p["metadata"]["name"])
        return sum(1 for p in snapshot if _ready(p)) == 3

    cluster.wait_for(seen, "web-0..2 ready", timeout=60, interval=0.05)
    assert created == ["web-0", "web-1", "web-2"]
    remaining: list[list[str]] = []
    cluster.klctl("scale", "statefulset/web", "--replicas=0")

    def shrinking() -> bool:
        names = sorted(p["metadata"]["name"] for p in pods(cluster, "app=web-sts")
                       if not p["metadata"].get("deletionTimestamp"))
        if not remaining or remaining[-1] != names:
            remaining.append(names)
        return not names

    cluster.wait_for(shrinking, "scaled to 0", timeout=60, interval=0.05)
    # Each step removed the highest ordinal first.
    for before, after in itertools.pairwise(remaining):
        assert after == before[: len(after)], remaining


def test_job_counts_down_and_completes(cluster: TestCluster) -> None:
    cluster.apply("""
apiVersion: batch/v1
kind: Job
metadata:
  name: countdown
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: counter
          image: busybox
          command: ["sh", "-c", "for i in 9 8 7 6 5 4 3 2 1; do echo $i; done"]
""")
    cluster.wait_for(lambda: any(c["type"] == "Complete" and c["status"] == "True" for c in get(
        cluster, "job", "countdown")["status"].get("conditions", [])), "Complete", timeout=60)
    name = pods(cluster, "job-name=countdown")[0]["metadata"]["name"]
    assert cluster.klctl("logs", name).stdout == "".join(f"{i}\n" for i in range(9, 0, -1))
    assert get(cluster, "job", "countdown")["status"]["succeeded"] == 1


def test_cronjob_creates_jobs_and_keeps_history(cluster: TestCluster) -> None:
    # The controller manager runs a 60x schedule clock: */1 fires about every second.
    cluster.apply("""
apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: "*/1 * * * *"
  successfulJobsHistoryLimit: 2
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
            - name: tick
              image: busybox
              command: ["true"]
""")
    seen: set[str] = set()

    def jobs() -> list[dict[str, Any]]:
        items = get(cluster, "jobs").get("items", [])
        return [j for j in items if j["metadata"]["name"].startswith("tick-")]

    def enough() -> bool:
        seen.update(j["metadata"]["name"] for j in jobs())
        return len(seen) >= 4

    cluster.wait_for(enough, "4 scheduled jobs", timeout=60, interval=0.2)
    cluster.klctl("patch", "cronjob", "tick", "-p", '{"spec":{"suspend":true}}')
    cluster.wait_for(lambda: len([j for j in jobs() if j["status"].get("succeeded")]) <= 2
                     and not [j for j in jobs() if not j["status"].get("conditions")],
                     "history trimmed to 2", timeout=30)


@pytest.mark.parametrize(("cascade", "rs_left", "pods_left"),
                         [("background", 0, 0), ("foreground", 0, 0), ("orphan", 1, 2)])
def test_delete_cascade_modes(cluster: TestCluster, cascade: str, rs_left: int,
                              pods_left: int) -> None:
    name = f"cascade-{cascade}"
    cluster.apply(DEPLOYMENT.format(replicas=2, image="busybox").replace("sleeper", name))
    cluster.wait_for(lambda: running_ready(cluster, f"app={name}") == 2, "2 ready", timeout=60)
    cluster.klctl("delete", "deployment", name, f"--cascade={cascade}", "--timeout", "60s",
                  timeout=70)

    def settled() -> bool:
        rs = [r for r in get(cluster, "rs").get("items", [])
              if r["metadata"]["name"].startswith(name)]
        live = [p for p in pods(cluster, f"app={name}")
                if not p["metadata"].get("deletionTimestamp")]
        return len(rs) == rs_left and len(live) == pods_left

    cluster.wait_for(settled, f"{cascade} cascade result", timeout=60)
    if cascade == "orphan":
        for rs in get(cluster, "rs").get("items", []):
            if rs["metadata"]["name"].startswith(name):
                assert not rs["metadata"].get("ownerReferences")


def test_killed_kubelet_node_goes_unknown_and_pods_move(cluster: TestCluster) -> None:
    cluster.apply(DEPLOYMENT.format(replicas=3, image="busybox").replace("sleeper", "mover")
                  .replace("    spec:\n      terminationGracePeriodSeconds: 1",
                           "    spec:\n      terminationGracePeriodSeconds: 1\n"
                           "      tolerations:\n"
                           "        - {key: node.kubernetes.io/unreachable, operator: Exists,"
                           " effect: NoExecute, tolerationSeconds: 2}"))
    cluster.wait_for(lambda: running_ready(cluster, "app=mover") == 3, "3 ready", timeout=60)
    victim = pods(cluster, "app=mover")[0]["spec"]["nodeName"]
    cluster.processes[f"kubelet-{victim}"].kill()

    def node_unknown() -> bool:
        node = get(cluster, "node", victim)
        return any(c["type"] == "Ready" and c["status"] == "Unknown"
                   for c in node["status"]["conditions"])

    cluster.wait_for(node_unknown, f"{victim} Unknown", timeout=30)
    # Evicted after the pods' own toleration (2 s), not the default 300 s: the wait ends
    # long before that.
    cluster.wait_for(
        lambda: running_ready(cluster, "app=mover") == 3 and all(
            p["spec"].get("nodeName") != victim for p in pods(cluster, "app=mover")
            if not p["metadata"].get("deletionTimestamp")),
        "3 ready pods elsewhere", timeout=60)
    cluster.start_kubelet(next(n for n in cluster.nodes if n.name == victim))


def test_controller_manager_failover(cluster: TestCluster) -> None:
    history = PodHistory(cluster.server, "app=failover")
    cluster.apply(DEPLOYMENT.format(replicas=3, image="busybox").replace("sleeper", "failover"))
    cluster.wait_for(lambda: running_ready(cluster, "app=failover") == 3, "3 ready", timeout=60)
    lease = get(cluster, "lease", "kube-controller-manager", "-n", "kube-system")
    active = lease["spec"]["holderIdentity"]
    cluster.processes[active].kill()
    killed_at = time.monotonic()
    cluster.wait_for(lambda: get(cluster, "lease", "kube-controller-manager", "-n",
                                 "kube-system")["spec"].get("holderIdentity") not in (active,),
                     "the standby to lead", timeout=15)
    took_over = time.monotonic() - killed_at
    cluster.klctl("delete", "pod", pods(cluster, "app=failover")[0]["metadata"]["name"])
    cluster.wait_for(lambda: running_ready(cluster, "app=failover") == 3,
                     "the new leader replaces the pod", timeout=60)
    history.stop()
    # Well under Kubernetes' default 15 s lease: the configured 2 s one is what counted.
    assert took_over < 10, f"failover took {took_over:.1f}s (lease 2 s)"
    assert max(n for n, _ in history.samples) <= 3 + 1
    assert not history.node_changes
