"""A large Deployment end to end on hollow nodes, as clusterloader2 measures it.

etcd, the API server, the scheduler, the controller manager and the hollow nodes
(bench/hollow_nodes.py: N Ready nodes and a hollow kubelet that marks bound pods Running and
Ready) each run as their own process. A warm-up Deployment of one replica shows every part
working; then the bench creates a Deployment of R replicas (small requests) and watches
pods, ReplicaSets and Deployments until every pod is Running and the Deployment is Available
(status.availableReplicas == R and condition Available=True).

Prints one JSON object:
- ``seconds``: Deployment create -> Available, with ``ratio_to_goal`` (the goal: 20 s for
  1,000 replicas on 100 nodes; below 1.0 meets it);
- ``milestones_s``: seconds from the create to each stage's end, as seen by the watches:
  ReplicaSet created, first and last pod created (the ReplicaSet's creates), all pods
  scheduled, all pods Running (the kubelet's status), Deployment Available; ``stages_s``:
  the gap between consecutive milestones;
- ``pods_created_per_second`` (ReplicaSet created -> last pod created), and p50/p99 per-pod
  latencies created -> bound and bound -> Running; ``per_second``: how many pods were seen
  created, bound and Running in each second after the create;
- ``cpu_seconds``: each process's CPU (user + system) over the measurement, per pod
  (``cpu_ms_per_pod``, the figure that load on the machine changes least), its average in
  cores and its busiest second (``cpu_cores_peak_1s``: near 1.0, that process held a whole
  core, and being single-threaded Python it could go no faster);
- ``writes_until_available``: ReplicaSet and Deployment updates seen by the watches, and
  Events written in the namespace (pod writes are the replicas themselves);
- ``reference``: the same number of pods created directly by this client, in the same
  slow-start batches the ReplicaSet controller uses (1, 2, 4, ... up to its burst of 500 in
  flight), measured after the Deployment in the same run: the floor of the API path.
  ``ratio_pods_created_to_reference`` compares the controller's create rate with it;
  ``too_many_requests_retries`` counts its creates refused over the API server's in-flight
  limit (sent again after the retry-after). The reference pods name a scheduler that does
  not run, so nothing schedules or runs them.

Usage: python -m bench.deployment [--replicas 1000] [--nodes 100] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import percentile, py_spy, stop, temporary_etcd, wait_for_port
from bench.hollow_nodes import READY_LINE
from bench.proxy import cpu_seconds
from controller_manager.replicaset import BURST_REPLICAS, SLOW_START_INITIAL_BATCH
from kubelite import daemon
from kubelite.api import meta as m
from kubelite.client.client import ApiClient
from kubelite.health import check_health
from kubelite.ports import free_port
from protos.v1 import objects_pb2 as v1

GOAL_SECONDS = 20.0
"""Deployment of 1,000 replicas on 100 hollow nodes: created -> Available."""
NAMESPACE = "default"
REFERENCE_NAMESPACE = "bench-reference"
NO_SCHEDULER = "bench-no-scheduler"
"""The schedulerName of the reference pods: no scheduler runs under it."""
WARM_UP_SECONDS = 120.0
WAIT_SECONDS = 600.0
"""The longest the bench waits for any stage."""


# ---------------------------------------------------------------- processes


@dataclass
class Component:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def component(name: str, argv: list[str], log_dir: Path,
              stdout: int = subprocess.DEVNULL) -> Iterator[Component]:
    """A daemon as its own process until the block ends (SIGTERM, then SIGKILL after 10 s);
    its stderr goes to LOG_DIR/NAME.log, whose tail is shown if it ends badly."""
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, *argv], stdout=stdout, stderr=log, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        yield Component(name, proc, log_path)
    finally:
        stop(proc)
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.returncode not in (0, -signal.SIGTERM):
            tail = log_path.read_text(errors="replace")[-4000:]
            sys.stderr.write(f"{name} exited with {proc.returncode}:\n{tail}\n")


def wait_serving(comp: Component, health: str, timeout: float = 60.0) -> None:
    """Until ``comp``'s gRPC health service says SERVING (its informers all watch)."""
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        if comp.process.poll() is not None:
            raise RuntimeError(f"{comp.name} exited with {comp.process.returncode}; see"
                               f" {comp.log}")
        status = asyncio.run(check_health(health))
        if status == "SERVING":
            return
        time.sleep(0.1)
    raise TimeoutError(f"{comp.name} not SERVING after {timeout}s (last: {status})")


def wait_ready_line(comp: Component, timeout: float = 120.0) -> None:
    """Until ``comp`` prints the hollow nodes' ready line on stdout."""
    assert comp.process.stdout is not None
    deadline = time.monotonic() + timeout
    os.set_blocking(comp.process.stdout.fileno(), False)
    buffer = b""
    while time.monotonic() < deadline:
        if comp.process.poll() is not None:
            raise RuntimeError(f"{comp.name} exited with {comp.process.returncode}; see"
                               f" {comp.log}")
        chunk = comp.process.stdout.read()
        if chunk:
            buffer += chunk
            if READY_LINE.encode() in buffer.splitlines():
                return
        time.sleep(0.05)
    raise TimeoutError(f"{comp.name} not ready after {timeout}s; see {comp.log}")


@contextlib.contextmanager
def profiled(comp: Component, out: Path | None) -> Iterator[None]:
    """py-spy records ``comp`` (GIL holder, raw collapsed stacks) while the block runs."""
    if out is None:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{comp.name}.txt"
    proc = subprocess.Popen(
        [py_spy(), "record", "--pid", str(comp.process.pid), "--gil", "--nonblocking",
         "--format", "raw", "--rate", "200", "-o", str(target)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        yield
    finally:
        stop(proc, signal.SIGINT, 30)  # py-spy writes its file and exits
        if proc.stderr is not None:
            proc.stderr.close()


# ---------------------------------------------------------------- objects


def bench_deployment(name: str, replicas: int, app: str) -> v1.Deployment:
    d = v1.Deployment(metadata=v1.ObjectMeta(name=name, namespace=NAMESPACE))
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = app
    d.spec.template.metadata.labels["app"] = app
    container = d.spec.template.spec.containers.add(name="pause",
                                                   image="registry.k8s.io/pause:3.9")
    container.resources.requests.update({"cpu": "1m", "memory": "1Mi"})
    return d


def reference_pod(template: v1.PodTemplateSpec, index: int) -> v1.Pod:
    pod = v1.Pod()
    pod.metadata.name = f"reference-{index}"
    pod.metadata.namespace = REFERENCE_NAMESPACE
    pod.metadata.labels.update(template.metadata.labels)
    pod.spec.CopyFrom(template.spec)
    pod.spec.scheduler_name = NO_SCHEDULER
    return pod


def _available(d: v1.Deployment, replicas: int) -> bool:
    return d.status.available_replicas == replicas and any(
        c.type == "Available" and c.status == "True" for c in d.status.conditions)


# ---------------------------------------------------------------- measuring


@dataclass
class Observed:
    """When this process saw each thing happen (perf_counter seconds)."""

    replicas: int
    replicaset_at: float | None = None
    available_at: float | None = None
    replicaset_updates: int = 0
    deployment_updates: int = 0
    created: dict[str, float] = field(default_factory=dict)
    bound: dict[str, float] = field(default_factory=dict)
    running: dict[str, float] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def check(self) -> None:
        if (self.available_at is not None and len(self.running) == self.replicas
                and len(self.created) == self.replicas):
            self.done.set()


async def _watch_pods(client: ApiClient, app: str, rv: str, seen: Observed) -> None:
    async for event in client.watch(v1.Pod, NAMESPACE, label_selector=f"app={app}",
                                    resource_version=rv):
        pod, now = event.object, time.perf_counter()
        if pod is None or event.type == "DELETED":
            continue
        name = pod.metadata.name
        seen.created.setdefault(name, now)
        if pod.spec.node_name:
            seen.bound.setdefault(name, now)
        if pod.status.phase == "Running":
            seen.running.setdefault(name, now)
        seen.check()


async def _watch_replicasets(client: ApiClient, owner: str, rv: str, seen: Observed) -> None:
    async for event in client.watch(v1.ReplicaSet, NAMESPACE, resource_version=rv):
        rs = event.object
        if rs is None:
            continue
        ref = m.controller_of(rs)
        if ref is None or ref.name != owner:
            continue
        if seen.replicaset_at is None:
            seen.replicaset_at = time.perf_counter()
        elif event.type == "MODIFIED" and seen.available_at is None:
            seen.replicaset_updates += 1


async def _watch_deployments(client: ApiClient, name: str, rv: str, seen: Observed) -> None:
    async for event in client.watch(v1.Deployment, NAMESPACE, resource_version=rv):
        d = event.object
        if d is None or d.metadata.name != name or seen.available_at is not None:
            continue
        if event.type == "MODIFIED":
            seen.deployment_updates += 1
        if _available(d, seen.replicas):
            seen.available_at = time.perf_counter()
            seen.check()


class CpuSampler:
    """Each process's CPU, read every ``period`` seconds: its busiest ``window`` shows a
    process that held a whole core (the bottleneck, on a machine with cores to spare)."""

    def __init__(self, pids: dict[str, int | None], period: float = 0.25,
                 window: float = 1.0) -> None:
        self.pids = pids
        self.period = period
        self.window = window
        self.samples: list[tuple[float, dict[str, float]]] = []

    def sample(self) -> None:
        self.samples.append((time.perf_counter(),
                             {k: cpu_seconds(pid) for k, pid in self.pids.items()}))

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.period)

    def peak_cores(self) -> dict[str, float]:
        """Per process: the most CPU seconds per second over any ``window``."""
        peaks = dict.fromkeys(self.pids, 0.0)
        for i, (t0, cpu0) in enumerate(self.samples):
            for t1, cpu1 in self.samples[i + 1:]:
                if t1 - t0 >= self.window:
                    for k in peaks:
                        peaks[k] = max(peaks[k], (cpu1[k] - cpu0[k]) / (t1 - t0))
                    break
        return {k: round(v, 2) for k, v in peaks.items()}


async def _events_by_source(client: ApiClient) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in (await client.list(v1.Event, NAMESPACE)).items:
        source = event.source.component or event.reporting_component or "unknown"
        counts[source] = counts.get(source, 0) + 1
    return counts


async def warm_up(client: ApiClient, nodes: int) -> None:
    """Until the nodes are Ready and a one-replica Deployment is Available: every component
    is up, has synced its caches and does its part."""
    deadline = time.monotonic() + WARM_UP_SECONDS
    while True:
        listed = await client.list(v1.Node)
        ready = [n for n in listed.items if any(
            c.type == "Ready" and c.status == "True" for c in n.status.conditions)]
        if len(ready) >= nodes:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(ready)} of {nodes} nodes Ready")
        await asyncio.sleep(0.2)
    await client.create(bench_deployment("warm-up", 1, "warm-up"))
    while not _available(await client.get(v1.Deployment, "warm-up", NAMESPACE), 1):
        if time.monotonic() > deadline:
            raise TimeoutError("the warm-up Deployment did not become Available")
        await asyncio.sleep(0.1)


async def measure_deployment(client: ApiClient, replicas: int,
                             pids: dict[str, int | None]) -> dict[str, object]:
    name, app = "bench", "bench"
    seen = Observed(replicas)
    rvs = [(await client.list(kind, NAMESPACE)).resource_version
           for kind in (v1.Pod, v1.ReplicaSet, v1.Deployment)]
    watches = [
        asyncio.create_task(_watch_pods(client, app, rvs[0], seen), name="watch-pods"),
        asyncio.create_task(_watch_replicasets(client, name, rvs[1], seen), name="watch-rs"),
        asyncio.create_task(_watch_deployments(client, name, rvs[2], seen), name="watch-d"),
    ]
    events_before = await _events_by_source(client)
    sampler = CpuSampler(pids)
    sampler.sample()
    cpu_before = sampler.samples[0][1]
    sampling = asyncio.create_task(sampler.run(), name="cpu-sampler")
    watches.append(sampling)
    start = time.perf_counter()
    try:
        await client.create(bench_deployment(name, replicas, app))
        created_at = time.perf_counter()
        waiting = asyncio.create_task(seen.done.wait())
        finished, _ = await asyncio.wait([waiting, *watches], timeout=WAIT_SECONDS,
                                         return_when=asyncio.FIRST_COMPLETED)
        if waiting not in finished:
            waiting.cancel()
            for task in finished:
                task.result()  # a watch that ended says why
            raise TimeoutError(
                f"after {WAIT_SECONDS}s: replicaset={seen.replicaset_at is not None}"
                f" created={len(seen.created)} bound={len(seen.bound)}"
                f" running={len(seen.running)} available={seen.available_at is not None}")
    finally:
        for task in watches:
            task.cancel()
        await asyncio.gather(*watches, return_exceptions=True)
    cpu = {k: round(cpu_seconds(pid) - cpu_before[k], 2) for k, pid in pids.items()}
    sampler.sample()
    events = {k: n - events_before.get(k, 0)
              for k, n in (await _events_by_source(client)).items()}
    assert seen.replicaset_at is not None and seen.available_at is not None

    def at(t: float) -> float:
        return round(t - start, 3)

    milestones = {
        "deployment_created": at(created_at),
        "replicaset_created": at(seen.replicaset_at),
        "first_pod_created": at(min(seen.created.values())),
        "all_pods_created": at(max(seen.created.values())),
        "all_pods_scheduled": at(max(seen.bound.values())),
        "all_pods_running": at(max(seen.running.values())),
        "deployment_available": at(seen.available_at),
    }
    order = ["deployment_created", "replicaset_created", "all_pods_created",
             "all_pods_scheduled", "all_pods_running", "deployment_available"]
    stages = {f"{a}->{b}": round(max(milestones[b] - milestones[a], 0.0), 3)
              for a, b in itertools.pairwise(order)}
    create_span = max(seen.created.values()) - seen.replicaset_at
    to_bound = [seen.bound[p] - seen.created[p] for p in seen.created]
    to_running = [seen.running[p] - seen.bound[p] for p in seen.created]
    seconds = seen.available_at - start

    def per_second(times: dict[str, float]) -> list[int]:
        counts = [0] * (int(seconds) + 1)
        for t in times.values():
            counts[min(int(t - start), len(counts) - 1)] += 1
        return counts

    return {
        "seconds": round(seconds, 3),
        "ratio_to_goal": round(seconds / GOAL_SECONDS, 3),
        "milestones_s": milestones,
        "stages_s": stages,
        "pods_created_per_second": round(replicas / create_span, 1) if create_span > 0 else None,
        "created_to_bound_ms_p50": round(percentile(to_bound, 50) * 1000, 1),
        "created_to_bound_ms_p99": round(percentile(to_bound, 99) * 1000, 1),
        "bound_to_running_ms_p50": round(percentile(to_running, 50) * 1000, 1),
        "bound_to_running_ms_p99": round(percentile(to_running, 99) * 1000, 1),
        "per_second": {"created": per_second(seen.created), "bound": per_second(seen.bound),
                       "running": per_second(seen.running)},
        "cpu_seconds": cpu,
        "cpu_ms_per_pod": {k: round(v * 1000 / replicas, 2) for k, v in cpu.items()},
        "cpu_cores_average": {k: round(v / seconds, 2) for k, v in cpu.items()},
        "cpu_cores_peak_1s": sampler.peak_cores(),
        "writes_until_available": {
            "replicaset_updates": seen.replicaset_updates,
            "deployment_updates": seen.deployment_updates,
            "events_by_source": events,
        },
    }


async def measure_reference(client: ApiClient, replicas: int) -> dict[str, object]:
    """``replicas`` pods created by this client in the ReplicaSet controller's slow-start
    batches (up to its burst in flight per round): what the API path costs alone."""
    template = bench_deployment("reference", 1, "reference").spec.template
    await client.create(v1.Namespace(metadata=v1.ObjectMeta(name=REFERENCE_NAMESPACE)))
    index = 0
    start = time.perf_counter()
    remaining = replicas
    while remaining > 0:
        sync = min(remaining, BURST_REPLICAS)
        batch = min(sync, SLOW_START_INITIAL_BATCH)
        while batch > 0:
            await asyncio.gather(*(client.create(reference_pod(template, index + i))
                                   for i in range(batch)))
            index += batch
            sync -= batch
            remaining -= batch
            batch = min(2 * batch, sync)
    seconds = time.perf_counter() - start
    return {"pods": replicas, "seconds": round(seconds, 3),
            "pods_created_per_second": round(replicas / seconds, 1),
            # Creates the API server refused as over its in-flight limit and the client sent
            # again after the retry-after: the batches' cost beyond the creates themselves.
            "too_many_requests_retries": client.stats.too_many_requests_retries}


async def _warm_up(address: str, nodes: int) -> None:
    async with ApiClient(address) as client:
        await warm_up(client, nodes)


async def _measure(address: str, replicas: int, pids: dict[str, int | None],
                   result: dict[str, object]) -> None:
    async with ApiClient(address) as client:
        result.update(await measure_deployment(client, replicas, pids))


async def _reference(address: str, replicas: int, result: dict[str, object]) -> None:
    async with ApiClient(address) as client:
        ref = await measure_reference(client, replicas)
    result["reference"] = ref
    rate = result.get("pods_created_per_second")
    if isinstance(rate, float):
        result["ratio_pods_created_to_reference"] = round(
            rate / float(str(ref["pods_created_per_second"])), 3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--replicas", type=int, default=1000)
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--workers", type=int, default=5,
                   help="the controller manager's --workers (concurrent syncs per controller)")
    p.add_argument("--hollow-workers", type=int, default=16,
                   help="pods the hollow kubelet updates at once")
    p.add_argument("--reference", default="on", choices=["on", "off"],
                   help="also measure the same creates made directly by this client")
    p.add_argument("--profile", type=Path, default=None,
                   help="py-spy records the controller manager, scheduler and API server"
                        " during the measurement into DIR (raw collapsed stacks)")
    p.add_argument("--log-dir", type=Path, default=None,
                   help="keep each process's log there (default: a temporary directory)")
    p.add_argument("--load-average", default="on", choices=["on", "off"],
                   help="report the 1-minute load average before and after")
    a = p.parse_args()
    if a.replicas < 1:
        p.error("--replicas: must be at least 1")
    if a.nodes < 1:
        p.error("--nodes: must be at least 1")
    result: dict[str, object] = {"benchmark": "deployment", "replicas": a.replicas,
                                 "nodes": a.nodes}
    if a.load_average == "on":
        result["load_average_before"] = round(os.getloadavg()[0], 2)
    with (
        tempfile.TemporaryDirectory(prefix="kubelite-bench-deployment-") as tmp,
        temporary_etcd() as etcd,
    ):
        logs = a.log_dir or Path(tmp)
        logs.mkdir(parents=True, exist_ok=True)
        api_port = free_port()
        address = f"127.0.0.1:{api_port}"
        sched_health = f"127.0.0.1:{free_port()}"
        cm_health = f"127.0.0.1:{free_port()}"
        with (
            component("apiserver", ["-m", "apiserver", "--listen", address, "--etcd-servers",
                                    etcd.endpoint, "--insecure", "--log-level", "warning"],
                      logs) as api,
        ):
            wait_for_port("127.0.0.1", api_port, api.process)
            with (
                component("scheduler", ["-m", "scheduler", "--server", address,
                                        "--leader-elect=false", "--health-address",
                                        sched_health, "--log-level", "warning"],
                          logs) as sched,
                component("controller-manager",
                          ["-m", "controller_manager", "--server", address,
                           "--leader-elect=false", "--workers", str(a.workers),
                           "--health-address", cm_health, "--log-level", "warning"],
                          logs) as cm,
                component("hollow-nodes",
                          ["-m", "bench.hollow_nodes", "--server", address, "--nodes",
                           str(a.nodes), "--workers", str(a.hollow_workers)],
                          logs, stdout=subprocess.PIPE) as hollow,
            ):
                wait_serving(sched, sched_health)
                wait_serving(cm, cm_health)
                wait_ready_line(hollow)
                pids: dict[str, int | None] = {
                    "etcd": etcd.process.pid if etcd.process is not None else None,
                    "apiserver": api.process.pid,
                    "scheduler": sched.process.pid,
                    "controller_manager": cm.process.pid,
                    "hollow_nodes": hollow.process.pid,
                    "bench": os.getpid(),
                }
                daemon.run(_warm_up(address, a.nodes))
                with contextlib.ExitStack() as stack:
                    if a.profile is not None:
                        for comp in (cm, sched, api):
                            stack.enter_context(profiled(comp, a.profile))
                    daemon.run(_measure(address, a.replicas, pids, result))
                if a.reference == "on":
                    daemon.run(_reference(address, a.replicas, result))
    if a.load_average == "on":
        result["load_average_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
