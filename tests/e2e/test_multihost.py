"""Several hosts on a bridge (network namespaces): a Deployment behind a NodePort Service
answers on every host, and survives losing a host's link.

Worker hosts: four for three replicas. With the process runtime a pod's containerPort is a
port of its node, so the scheduler never puts two of these pods on one host; a lost host's
pod can only be replaced on a host that has none, hence one spare.
"""

from __future__ import annotations

import asyncio
import collections
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubelite.client.client import ApiClient
from kubelite.testing.netns import (
    MultiHostCluster,
    MultiHostSettings,
    eventually,
    has_script,
    unavailable_reason,
)
from protos.v1 import objects_pb2 as v1
from tests.e2e.conftest import E2EReport

REASON = unavailable_reason()
WORKERS = 4
REPLICAS = 3
APP = "hostnames"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(REASON is not None, reason=REASON or ""),
    pytest.mark.skipif(not has_script("kubelite-controller-manager"),
                       reason="kubelite-controller-manager (Deployments, node lifecycle, "
                              "Endpoints) is not installed yet"),
    pytest.mark.skipif(not has_script("kubelite-proxy"),
                       reason="kubelite-proxy (Services, NodePorts) is not installed yet"),
]

MANIFEST = f"""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {APP}
spec:
  replicas: {REPLICAS}
  selector:
    matchLabels: {{app: {APP}}}
  template:
    metadata:
      labels: {{app: {APP}}}
    spec:
      terminationGracePeriodSeconds: 2
      tolerations:
        - key: node.kubernetes.io/unreachable
          operator: Exists
          effect: NoExecute
          tolerationSeconds: 2
      containers:
        - name: server
          image: kubelite/agnhost
          args: ["serve-hostname", "--port", "9376"]
          ports:
            - {{name: http, containerPort: 9376}}
          readinessProbe:
            httpGet: {{path: /, port: http}}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: {APP}
spec:
  type: NodePort
  selector: {{app: {APP}}}
  ports:
    - {{name: http, port: 80, targetPort: 9376}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiHostCluster]:
    c = MultiHostCluster(Path(tmp_path_factory.mktemp("multihost")),
                         settings=MultiHostSettings(workers=WORKERS))
    c.start()
    try:
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.stop()
    assert not c.leaked, f"processes outlived the cluster's stop: {c.leaked}"


def is_ready(pod: v1.Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)


async def app_pods(client: ApiClient) -> list[v1.Pod]:
    return (await client.list(v1.Pod, "default", label_selector=f"app={APP}")).items


def live(pods: list[v1.Pod]) -> list[v1.Pod]:
    return [p for p in pods if not p.metadata.deletion_timestamp]


def fetch(url: str, timeout: float = 2.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return str(response.read().decode().strip())
    except OSError:
        return None


async def answers(address: str, node_port: int, count: int) -> list[str | None]:
    """``count`` requests, each a new connection, to address:nodePort from the root netns."""
    url = f"http://{address}:{node_port}/"
    return [await asyncio.to_thread(fetch, url) for _ in range(count)]


@dataclass(frozen=True)
class Applied:
    node_port: int
    """The Service's allocated nodePort."""
    at: float
    """time.monotonic() of the apply."""


@pytest.fixture(scope="module")
def applied(cluster: MultiHostCluster) -> Applied:
    at = time.monotonic()
    cluster.apply(MANIFEST)
    service = cluster.get_json("service", APP)
    port = int(service["spec"]["ports"][0]["nodePort"])
    assert 30000 <= port <= 32767
    return Applied(port, at)


async def wait_all_ready(client: ApiClient, exclude_nodes: set[str] = frozenset(),  # type: ignore[assignment]
                         timeout: float = 60) -> list[v1.Pod]:
    async def check() -> list[v1.Pod] | None:
        pods = live(await app_pods(client))
        if len(pods) == REPLICAS and all(is_ready(p) and p.spec.node_name not in exclude_nodes
                                         for p in pods):
            return pods
        return None

    result: list[v1.Pod] = await eventually(check, f"{REPLICAS} ready pods", timeout)
    return result


async def test_nodeport_answers_from_every_host(cluster: MultiHostCluster, applied: Applied,
                                                e2e_report: E2EReport) -> None:
    started = applied.at
    node_port = applied.node_port
    async with ApiClient(cluster.admin, timeout=5) as client:
        pods = await wait_all_ready(client)
        ready_at = time.monotonic() - started
        names = {p.metadata.name for p in pods}
        assert len({p.spec.node_name for p in pods}) == REPLICAS, "one pod per host (its port)"
        seen_by_host: dict[str, set[str]] = {}
        for host in cluster.workers:
            seen: set[str] = set()

            async def all_seen(h: str = host.address, s: set[str] = seen) -> bool:
                for answer in await answers(h, node_port, 2 * REPLICAS):
                    assert answer is None or answer in names, f"{answer!r} from {h}"
                    if answer is not None:
                        s.add(answer)
                return s == names

            await eventually(all_seen, f"every pod through {host.name}'s NodePort", 30)
            seen_by_host[host.name] = seen
        # The ClusterIP answers from inside every host too (its own proxy on loopback).
        cluster_ip = cluster.get_json("service", APP)["spec"]["clusterIP"]
        for host in cluster.workers:
            body = await eventually(
                lambda: cluster.http_get(host.name, f"http://{cluster_ip}:80/"),
                f"the ClusterIP from {host.name}", 20)
            assert body.strip() in names
        # From one host, only its own proxy serves the ClusterIP: exact round robin.
        first = cluster.workers[0].name
        loop = (f"for i in $(seq {10 * REPLICAS}); do curl -sS --max-time 3"
                f" http://{cluster_ip}:80/; echo; done")
        result = cluster.run(first, ["sh", "-c", loop], timeout=60)
        counts = collections.Counter(line.strip() for line in result.stdout.splitlines()
                                     if line.strip())
        assert counts == {name: 10 for name in names}, counts
    e2e_report.add(f"multihost: {REPLICAS} pods ready {ready_at:.1f}s after apply; every "
                   f"NodePort of {WORKERS} hosts answered with all of them "
                   f"({time.monotonic() - started:.1f}s in all)")


async def test_lost_host_is_replaced_and_recovers(cluster: MultiHostCluster, applied: Applied,
                                                  e2e_report: E2EReport) -> None:
    node_port = applied.node_port
    async with ApiClient(cluster.admin, timeout=5) as client:
        pods = await wait_all_ready(client)
        victim = pods[0].spec.node_name
        lost = {p.metadata.name for p in pods if p.spec.node_name == victim}
        hosts_left = [h for h in cluster.workers if h.name != victim]
        # The processes of the pods about to be lost are found (so "none left" means it).
        assert all(cluster.pod_pids(victim, name) for name in lost)

        async def node_status_is(expected: str) -> bool:
            node = await client.get(v1.Node, victim)
            return expected == next(
                (c.status for c in node.status.conditions if c.type == "Ready"), "")

        started = time.monotonic()
        cluster.link_down(victim)
        timings: dict[str, float] = {}
        try:
            await eventually(lambda: node_status_is("Unknown"), f"{victim} Unknown", 30)
            timings["node Unknown"] = time.monotonic() - started

            replaced = await wait_all_ready(client, exclude_nodes={victim}, timeout=45)
            timings["replaced elsewhere"] = time.monotonic() - started
            alive = {p.metadata.name for p in replaced}
            assert not alive & lost
            # The lost pods were evicted: marked for deletion, waiting for their kubelet.
            everything = await app_pods(client)
            assert {p.metadata.name for p in everything if p.metadata.deletion_timestamp} \
                >= lost

            for host in hosts_left:
                window: list[str | None] = []

                async def only_alive(h: str = host.address, w: list[str | None] = window
                                     ) -> bool:
                    batch = await answers(h, node_port, 2 * REPLICAS)
                    w[:] = batch
                    return all(a in alive for a in batch) and set(batch) == alive

                await eventually(only_alive, f"only live pods through {host.name}", 30)
                # And it stays so.
                for answer in await answers(host.address, node_port, 3 * REPLICAS):
                    assert answer in alive, f"{answer!r} through {host.name}: not a live pod"
            timings["Service follows"] = time.monotonic() - started
        finally:
            cluster.link_up(victim)
        up_at = time.monotonic()

        await eventually(lambda: node_status_is("True"), f"{victim} Ready again", 30)
        timings["node Ready after link up"] = time.monotonic() - up_at

        async def stale_removed() -> bool:
            names = {p.metadata.name for p in await app_pods(client)}
            return not names & lost

        await eventually(stale_removed, "the stale pods removed", 30)
        timings["stale pods removed after link up"] = time.monotonic() - up_at
        await eventually(lambda: not any(cluster.pod_pids(victim, n) for n in lost),
                         f"no process of a removed pod on {victim}", 15)

        final = await app_pods(client)
        assert len(final) == REPLICAS, [p.metadata.name for p in final]
        assert all(p.status.phase == "Running" and is_ready(p)
                   and not p.metadata.deletion_timestamp for p in final)
        assert {p.metadata.name for p in final} == alive
        deployment = await client.get(v1.Deployment, APP, "default")
        assert deployment.status.replicas == REPLICAS
        # Every host, the recovered one included, answers from the live pods only.
        for host in cluster.workers:
            async def all_answer(h: str = host.address) -> list[str | None] | None:
                got = await answers(h, node_port, 2 * REPLICAS)
                return None if None in got else got

            got = await eventually(all_answer, f"{host.name}'s NodePort after recovery", 30)
            assert set(got) <= alive, f"{got} through {host.name}"
    e2e_report.add("multihost link cut: " + ", ".join(f"{k} {v:.1f}s"
                                                       for k, v in timings.items()))
