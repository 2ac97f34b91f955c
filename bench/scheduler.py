"""Scheduler throughput on hollow nodes, as Kubernetes' kubemark + clusterloader2.

etcd, the API server and the scheduler each run as their own process. The bench itself plays
the nodes: N Node objects kept Ready by a heartbeat (their Ready condition is rewritten every
few seconds, as kubelets do) and a hollow kubelet that marks every bound pod Running. It
creates the pods with small requests and watches them: pods/s is the number of pods over the
time from the first create to the last bind observed through the watch.

Prints one JSON object: pods, nodes, seconds, pods_per_second, and the ratio to the 100
pods/s that clusterloader2's scheduler throughput test expects of kube-scheduler.

Usage: python -m bench.scheduler [--pods N] [--nodes N] [--concurrency N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

from bench.harness import apiserver_process, percentile, temporary_etcd
from kubelite import daemon
from kubelite.api import meta as m
from kubelite.api.errors import ApiError, Conflict
from kubelite.api.pods import set_condition
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1

REFERENCE_PODS_PER_S = 100.0
"""clusterloader2's scheduler throughput threshold for kube-scheduler."""
LABEL = {"bench": "scheduler"}
HEARTBEAT_SECONDS = 3.0


@contextlib.contextmanager
def scheduler_process(address: str) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m scheduler`` in its own process (as deployed), without leader election."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scheduler", "--server", address, "--leader-elect=false",
             "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.returncode not in (0, -signal.SIGTERM):
                log.seek(0)
                sys.stderr.write(log.read().decode(errors="replace")[-4000:])


def hollow_node(name: str) -> v1.Node:
    node = v1.Node(metadata=v1.ObjectMeta(
        name=name, labels={"kubernetes.io/hostname": name, "type": "hollow"}))
    resources = {"cpu": "32", "memory": "128Gi", "pods": "110"}
    node.status.capacity.update(resources)
    node.status.allocatable.update(resources)
    now = m.now_rfc3339()
    node.status.conditions.add(type="Ready", status="True", reason="KubeletReady",
                               message="hollow kubelet is posting ready status",
                               last_heartbeat_time=now, last_transition_time=now)
    return node


def bench_pod(name: str) -> v1.Pod:
    pod = v1.Pod(metadata=v1.ObjectMeta(name=name, namespace="default", labels=LABEL))
    container = pod.spec.containers.add(name="pause", image="registry.k8s.io/pause:3.9")
    container.resources.requests.update({"cpu": "10m", "memory": "16Mi"})
    return pod


async def heartbeat(client: ApiClient, names: list[str]) -> None:
    """Keeps every hollow node Ready, as kubelets post node status."""
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        for name in names:
            try:
                node = await client.get(v1.Node, name)
                for condition in node.status.conditions:
                    if condition.type == "Ready":
                        condition.last_heartbeat_time = m.now_rfc3339()
                await client.update_status(node)
            except ApiError:
                pass  # the next beat retries


async def mark_running(client: ApiClient, pod: v1.Pod) -> None:
    """The hollow kubelet: a bound pod starts at once."""
    for _ in range(5):
        running = m.copy(pod)
        running.status.phase = "Running"
        running.status.host_ip = "10.0.0.1"
        running.status.start_time = m.now_rfc3339()
        for type_ in ("Initialized", "ContainersReady", "Ready"):
            set_condition(running, type_, "True")
        try:
            await client.update_status(running)
            return
        except Conflict:
            pod = await client.get(v1.Pod, pod.metadata.name, pod.metadata.namespace)


async def run(address: str, pods: int, nodes: int, concurrency: int) -> dict[str, object]:
    async with ApiClient(address) as client:
        names = [f"hollow-node-{i}" for i in range(nodes)]
        sem = asyncio.Semaphore(concurrency)

        async def create_node(name: str) -> None:
            async with sem:
                await client.create(hollow_node(name))

        await asyncio.gather(*(create_node(n) for n in names))
        beating = asyncio.create_task(heartbeat(client, names), name="heartbeat")

        bound_at: dict[str, float] = {}
        running: set[str] = set()
        kubelet_tasks: set[asyncio.Task[None]] = set()
        all_bound = asyncio.Event()
        all_running = asyncio.Event()
        start = await client.list(v1.Pod, "default", label_selector="bench=scheduler")
        expected = {f"pod-{i}" for i in range(pods)}

        async def watch() -> None:
            async for event in client.watch(v1.Pod, "default", label_selector="bench=scheduler",
                                            resource_version=start.resource_version):
                pod = event.object
                if pod is None or pod.metadata.name not in expected:
                    continue
                if pod.spec.node_name and pod.metadata.name not in bound_at:
                    bound_at[pod.metadata.name] = time.perf_counter()
                    task = asyncio.create_task(mark_running(client, pod))
                    kubelet_tasks.add(task)
                    task.add_done_callback(kubelet_tasks.discard)
                    if len(bound_at) == pods:
                        all_bound.set()
                if pod.status.phase == "Running":
                    running.add(pod.metadata.name)
                    if len(running) == pods:
                        all_running.set()

        watching = asyncio.create_task(watch(), name="watch-pods")
        # Warm-up: the scheduler process is up and sees the nodes once this pod is bound.
        await client.create(bench_pod("warm-up"))
        while not (await client.get(v1.Pod, "warm-up", "default")).spec.node_name:
            await asyncio.sleep(0.1)

        created_at: dict[str, float] = {}

        async def create_pod(name: str) -> None:
            async with sem:
                created_at[name] = time.perf_counter()
                await client.create(bench_pod(name))

        first_create = time.perf_counter()
        await asyncio.gather(*(create_pod(n) for n in sorted(expected)))
        created = time.perf_counter()
        await asyncio.wait_for(all_bound.wait(), 180)
        await asyncio.wait_for(all_running.wait(), 60)
        all_running_at = time.perf_counter()
        for task in (beating, watching, *kubelet_tasks):
            task.cancel()
        await asyncio.gather(beating, watching, *kubelet_tasks, return_exceptions=True)

    seconds = max(bound_at.values()) - first_create
    latencies = [bound_at[n] - created_at[n] for n in expected]
    return {
        "benchmark": "scheduler",
        "pods": pods,
        "nodes": nodes,
        "seconds": round(seconds, 3),
        "pods_per_second": round(pods / seconds, 1),
        "ratio_to_100_pods_per_s": round(pods / seconds / REFERENCE_PODS_PER_S, 3),
        "create_pods_per_second": round(pods / (created - first_create), 1),
        "create_to_bound_ms_p50": round(percentile(latencies, 50) * 1000, 1),
        "create_to_bound_ms_p99": round(percentile(latencies, 99) * 1000, 1),
        "first_create_to_all_running_seconds": round(all_running_at - first_create, 3),
    }


async def spread(address: str) -> dict[str, int]:
    """How evenly the pods spread: the fewest and most bench pods on one node."""
    async with ApiClient(address) as client:
        listed = await client.list(v1.Pod, "default", label_selector="bench=scheduler")
    counts: dict[str, int] = {}
    for pod in listed.items:
        if not pod.metadata.name.startswith("pod-"):
            continue  # the warm-up pod
        counts[pod.spec.node_name] = counts.get(pod.spec.node_name, 0) + 1
    return {"min_pods_per_node": min(counts.values()), "max_pods_per_node": max(counts.values())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pods", type=int, default=1000)
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=32, help="creates in flight")
    a = p.parse_args()
    result: dict[str, object] = {}

    async def go(address: str) -> None:
        result.update(await run(address, a.pods, a.nodes, a.concurrency))
        result.update(await spread(address))

    with (
        temporary_etcd() as etcd,
        apiserver_process(etcd.endpoint) as address,
        scheduler_process(address),
    ):
        daemon.run(go(address))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
