"""Pod startup latency on the process runtime: create -> Running, as Kubernetes' SLO measures.

Starts etcd, the API server, the scheduler and two kubelets as real processes (the e2e
harness), creates N busybox pods at a steady rate, and takes each pod's latency from the
acknowledged create to the first watch event that shows it Running. Prints one JSON object
with p50/p99 and the ratio of p99 to Kubernetes' 5 s SLO (below 1.0 meets it).

Usage: python -m bench.pod_startup [--pods 50] [--rate 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from bench.harness import percentile, temporary_etcd
from kubelite import daemon
from kubelite.client.client import ApiClient
from kubelite.testing.cluster import NodeSpec, TestCluster
from protos.v1 import objects_pb2 as v1

SLO_SECONDS = 5.0


def busybox(name: str) -> v1.Pod:
    pod = v1.Pod(metadata=v1.ObjectMeta(name=name, labels={"bench": "startup"}))
    container = pod.spec.containers.add(name="main", image="busybox", command=["sleep", "3600"])
    container.resources.requests.update({"cpu": "10m", "memory": "8Mi"})
    pod.spec.termination_grace_period_seconds = 0
    return pod


async def measure(server: str, pods: int, rate: float) -> dict[str, float]:
    created: dict[str, float] = {}
    running: dict[str, float] = {}
    async with ApiClient(server) as client:
        start = await client.list(v1.Pod, "default")
        done = asyncio.Event()

        async def watch() -> None:
            async for event in client.watch(v1.Pod, "default",
                                            resource_version=start.resource_version):
                p = event.object
                if p is None or p.status.phase != "Running":
                    continue
                running.setdefault(p.metadata.name, time.perf_counter())
                if len(running) >= pods:
                    done.set()
                    return

        watcher = asyncio.create_task(watch())
        for i in range(pods):
            name = f"startup-{i:03d}"
            sent = time.perf_counter()
            await client.create(busybox(name))
            created[name] = sent
            await asyncio.sleep(1 / rate)
        await asyncio.wait_for(done.wait(), 120)
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        latencies = [running[n] - created[n] for n in created]
        for name in created:
            await client.delete(v1.Pod, name, grace_period_seconds=0)
    return {
        "startup_latency_s_p50": round(percentile(latencies, 50), 3),
        "startup_latency_s_p99": round(percentile(latencies, 99), 3),
        "startup_latency_s_max": round(max(latencies), 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pods", type=int, default=50)
    p.add_argument("--rate", type=float, default=10.0, help="pods created per second")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="kubelite-startup-") as tmp, temporary_etcd() as etcd:
        cluster = TestCluster(
            Path(tmp), etcd.endpoint,
            [NodeSpec("node-1", "127.0.0.2", cpu="8"), NodeSpec("node-2", "127.0.0.3", cpu="8")],
        )
        cluster.start()
        result: dict[str, object] = {"benchmark": "pod_startup", "pods": a.pods,
                                     "create_rate_per_s": a.rate, "runtime": "process"}
        try:
            async def run() -> None:
                result.update(await measure(cluster.server, a.pods, a.rate))

            daemon.run(run())
        finally:
            cluster.stop()
    p99 = result["startup_latency_s_p99"]
    assert isinstance(p99, float)
    result["slo_seconds"] = SLO_SECONDS
    result["ratio_p99_to_slo"] = round(p99 / SLO_SECONDS, 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
