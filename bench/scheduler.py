"""Scheduler throughput on hollow nodes, as Kubernetes' kubemark + clusterloader2.

etcd, the API server and the scheduler each run as their own process, fresh for every
configuration. The benchmark plays the rest of the cluster in two more processes, so that its
own Python is never what the scheduler waits for:

- a *pod creator* process creates the pods (small requests, ``--concurrency`` in flight);
- this process plays the nodes: N Node objects whose Ready condition is rewritten every
  ``--heartbeat`` seconds (spread over the period, as kubelets' status updates are), and a
  hollow kubelet that marks every bound pod Running; it also watches the pods and notes when
  each one is bound.

pods/s is the number of pods over the time from the first create to the last bind seen
through the watch. Beside it, each process's CPU over that window per pod: the scheduler's
is the steady figure on a loaded machine (wall time depends on what else runs), and the
others show which process would be the bottleneck (``busy`` near 1.0 is one core saturated).

By default two configurations run, each on its own etcd, API server and scheduler: 1,000 pods
on 100 nodes and 5,000 pods on 500 nodes, and ``growth`` says how the scheduler's cost per
pod grows with the node count. ``--pods``/``--nodes`` run one configuration instead.

The reference, measured in the same run on a control plane of its own: a *null binder* in
the scheduler's place, which binds each pod to the next node in turn the moment it sees it (no
cache, filter or score). Its pods/s is what this API server and machine allow any scheduler
just then; ``ratio_to_null_binder`` is the scheduler's share of it, and the difference in
``cpu_ms_per_pod.scheduler`` is what the scheduling decisions cost. ``ratio_to_100_pods_per_s``
is against the 100 pods/s that clusterloader2's scheduler throughput test expects of
kube-scheduler.

Usage: python -m bench.scheduler [--pods N --nodes N] [--concurrency N] [--profile DIR]
                                 [--no-reference]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench.harness import (
    apiserver_process,
    child_serving,
    percentile,
    py_spy,
    stop,
    temporary_etcd,
)
from bench.proxy import cpu_seconds
from kubelite import daemon
from kubelite.api import meta as m
from kubelite.api.errors import ApiError, Conflict
from kubelite.api.pods import set_condition
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1

REFERENCE_PODS_PER_S = 100.0
"""clusterloader2's scheduler throughput threshold for kube-scheduler."""
CONFIGURATIONS = ((1000, 100), (5000, 500))
"""(pods, nodes) run by default, each on a fresh control plane."""
LABEL = {"bench": "scheduler"}
SELECTOR = "bench=scheduler"
BOUND = "spec.nodeName!="
"""The hollow kubelets watch only bound pods, as kubelets watch their own."""
NAMESPACE = "default"
WARM_UP = "warm-up"
HEARTBEAT_SECONDS = 10.0
"""The kubelet's default nodeStatusUpdateFrequency."""
PROFILE_RATE = 200
"""Samples per second py-spy takes of the scheduler with --profile."""
GO = b"go\n"
READY = "ready"


# --------------------------------------------------------------------------- processes


@dataclass
class SchedulerProcess:
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    """What it wrote to stderr (warnings and errors only)."""

    def log_lines(self) -> list[str]:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace").splitlines()


SCHEDULER, NULL_BINDER = "scheduler", "null-binder"


@contextlib.contextmanager
def scheduler_process(address: str, binder: str = SCHEDULER) -> Iterator[SchedulerProcess]:
    """``python -m scheduler`` in its own process (as deployed), without leader election;
    or, for NULL_BINDER, this module's round-robin binder in its place."""
    if binder == SCHEDULER:
        command = ["-m", "scheduler", "--server", address, "--leader-elect=false",
                   "--health-address", "", "--log-level", "warning"]
    else:
        command = ["-m", "bench.scheduler", "--bind-round-robin", "--server", address]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, *command],
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            yield SchedulerProcess(proc, log)
        finally:
            stop(proc)
            if proc.returncode not in (0, -signal.SIGTERM):
                log.seek(0)
                sys.stderr.write(log.read().decode(errors="replace")[-4000:])


@contextlib.asynccontextmanager
async def profiled(pid: int, output: Path | None) -> AsyncIterator[None]:
    """py-spy records ``pid`` (collapsed stacks of the GIL holder) while the block runs;
    nothing without ``output``. Writes OUTPUT and OUTPUT's -top.txt summary."""
    if output is None:
        yield
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    spy = await asyncio.create_subprocess_exec(
        py_spy(), "record", "--pid", str(pid), "--gil", "--nonblocking", "--format", "raw",
        "--rate", str(PROFILE_RATE), "-o", str(output),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert spy.stdout is not None
    # py-spy says so once it has attached: the measurement starts after that.
    started = await asyncio.wait_for(spy.stdout.readline(), 20)
    if b"Sampling" not in started:
        _, err = await spy.communicate()
        raise RuntimeError(f"py-spy did not start: {started!r} {err[-2000:]!r}")
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file and exits
        _, err = await asyncio.wait_for(spy.communicate(), 60)
        if spy.returncode != 0:
            raise RuntimeError(f"py-spy failed ({spy.returncode}): {err[-2000:]!r}")
        output.with_name(output.stem + "-top.txt").write_text(top_frames(output))


def top_frames(collapsed: Path, count: int = 20) -> str:
    """The ``count`` frames with the most samples on top of the stack (self) and anywhere in
    it (inclusive), from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        n = int(samples)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f"samples: {total}", "self:"]
    lines += [f"{100 * n / total:5.1f}% {f}" for f, n in own.most_common(count)]
    lines.append("inclusive:")
    lines += [f"{100 * n / total:5.1f}% {f}" for f, n in inclusive.most_common(count)]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- objects


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
    pod = v1.Pod(metadata=v1.ObjectMeta(name=name, namespace=NAMESPACE, labels=LABEL))
    container = pod.spec.containers.add(name="pause", image="registry.k8s.io/pause:3.9")
    container.resources.requests.update({"cpu": "10m", "memory": "16Mi"})
    return pod


def pod_names(count: int) -> list[str]:
    return [f"pod-{i}" for i in range(count)]


# --------------------------------------------------------------------------- the pod creator


async def create_pods(address: str, count: int, concurrency: int) -> None:
    """The pod creator process: connects, says ready, waits for "go" on stdin, creates
    ``count`` pods and prints as JSON when each create started (time.monotonic, which every
    process of this machine shares) and the CPU seconds the creates took."""
    loop = asyncio.get_running_loop()
    async with ApiClient(address) as client:
        await client.list(v1.Namespace)  # the channel is connected before the clock starts
        print(READY, flush=True)
        line = await loop.run_in_executor(None, sys.stdin.buffer.readline)
        if line != GO:
            raise RuntimeError(f"pod creator: expected {GO!r} on stdin, got {line!r}")
        cpu_before = cpu_seconds(os.getpid())
        names = iter(pod_names(count))
        created_at: dict[str, float] = {}

        async def worker() -> None:
            for name in names:
                created_at[name] = time.monotonic()
                await client.create(bench_pod(name))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cpu = cpu_seconds(os.getpid()) - cpu_before
    print(json.dumps({"created_at": created_at, "cpu_seconds": cpu}), flush=True)


@contextlib.asynccontextmanager
async def pod_creator(
    address: str, count: int, concurrency: int
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The pod creator as a child process, connected and waiting for GO."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.scheduler", "--create-pods", str(count),
        "--server", address, "--concurrency", str(concurrency),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        limit=64 * 1024 * 1024,  # its one line of JSON
    )
    assert proc.stdout is not None
    try:
        ready = await asyncio.wait_for(proc.stdout.readline(), 60)
        if ready.decode().strip() != READY:
            raise RuntimeError(f"pod creator did not start: {ready!r}")
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# --------------------------------------------------------------------------- the null binder


async def bind_round_robin(address: str) -> None:
    """The reference: binds every unscheduled pod to the next node in turn as soon as it is
    seen, with no cache, filter or score. What it reaches is what this API server allows a
    scheduler on this machine at the time (the same run's ceiling)."""
    async with ApiClient(address) as client:
        nodes: list[str] = []
        binds: set[asyncio.Task[None]] = set()
        turn = 0

        async def bind(pod: v1.Pod, node: str) -> None:
            try:
                await client.bind(pod.metadata.namespace, pod.metadata.name, node,
                                  pod.metadata.uid)
            except ApiError as e:
                print(f"null binder: {pod.metadata.name}: {e}", file=sys.stderr, flush=True)

        async for event in client.watch(v1.Pod, NAMESPACE, label_selector=SELECTOR,
                                        field_selector="spec.nodeName="):
            pod = event.object
            if event.type != "ADDED" or pod is None:
                continue
            if not nodes:
                # Every node exists before the first pod is created.
                nodes = [n.metadata.name for n in (await client.list(v1.Node)).items]
            task = asyncio.create_task(bind(pod, nodes[turn % len(nodes)]))
            turn += 1
            binds.add(task)
            task.add_done_callback(binds.discard)


# --------------------------------------------------------------------------- hollow nodes


async def heartbeat(client: ApiClient, nodes: dict[str, v1.Node], period: float) -> None:
    """Keeps every hollow node Ready, as kubelets post node status: each node once per
    ``period``, spread evenly over it."""
    while True:
        for name in list(nodes):
            await asyncio.sleep(period / len(nodes))
            node = nodes[name]
            for condition in node.status.conditions:
                if condition.type == "Ready":
                    condition.last_heartbeat_time = m.now_rfc3339()
            try:
                nodes[name] = await client.update_status(node)
            except Conflict:
                nodes[name] = await client.get(v1.Node, name)  # the next beat writes it
            except ApiError as e:
                print(f"heartbeat of {name} failed: {e}", file=sys.stderr)


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
    raise RuntimeError(f"could not mark {pod.metadata.name} Running")


class PodWatch:
    """Notes when each pod is first seen bound and Running; hands bound pods to the hollow
    kubelet."""

    def __init__(self, client: ApiClient, expected: set[str]) -> None:
        self.client = client
        self.expected = expected
        self.bound_at: dict[str, float] = {}
        self.bound_to: dict[str, str] = {}
        self.running: set[str] = set()
        self.warm = asyncio.Event()
        self.all_bound = asyncio.Event()
        self.all_running = asyncio.Event()
        self._kubelet: set[asyncio.Task[None]] = set()

    async def run(self, resource_version: str) -> None:
        async for event in self.client.watch(v1.Pod, NAMESPACE, label_selector=SELECTOR,
                                             field_selector=BOUND,
                                             resource_version=resource_version):
            pod = event.object
            if pod is None or not pod.spec.node_name:
                continue
            name = pod.metadata.name
            if name == WARM_UP:
                self.warm.set()
                continue
            if name not in self.expected:
                continue
            if name not in self.bound_at:
                self.bound_at[name] = time.monotonic()
                self.bound_to[name] = pod.spec.node_name
                task = asyncio.create_task(mark_running(self.client, pod))
                self._kubelet.add(task)
                task.add_done_callback(self._kubelet_done)
                if len(self.bound_at) == len(self.expected):
                    self.all_bound.set()
            if pod.status.phase == "Running":
                self.running.add(name)
                if len(self.running) == len(self.expected):
                    self.all_running.set()

    def _kubelet_done(self, task: asyncio.Task[None]) -> None:
        self._kubelet.discard(task)
        if not task.cancelled() and task.exception() is not None:
            print(f"hollow kubelet failed: {task.exception()}", file=sys.stderr)

    async def stop(self) -> None:
        tasks = list(self._kubelet)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# --------------------------------------------------------------------------- one configuration


@dataclass(frozen=True)
class Options:
    concurrency: int
    """Creates in flight in the pod creator."""
    heartbeat: float
    """Seconds between two status updates of one hollow node."""
    profile: Path | None
    """Directory for the scheduler's py-spy profiles; None: not profiled."""
    reference: bool = True
    """Also measure the null binder in the same run."""


@dataclass(frozen=True)
class Processes:
    scheduler: int
    apiserver: int
    etcd: int


async def measure(address: str, pods: int, nodes: int, procs: Processes,
                  options: Options) -> dict[str, object]:
    async with ApiClient(address) as client:
        sem = asyncio.Semaphore(options.concurrency)
        node_objects: dict[str, v1.Node] = {}

        async def create_node(name: str) -> None:
            async with sem:
                node_objects[name] = await client.create(hollow_node(name))

        await asyncio.gather(*(create_node(f"hollow-node-{i}") for i in range(nodes)))
        expected = set(pod_names(pods))
        watch = PodWatch(client, expected)
        start = await client.list(v1.Pod, NAMESPACE, label_selector=SELECTOR)
        background = [
            asyncio.create_task(heartbeat(client, node_objects, options.heartbeat)),
            asyncio.create_task(watch.run(start.resource_version)),
        ]
        try:
            # The scheduler process is up and sees every node once this pod is bound.
            await client.create(bench_pod(WARM_UP))
            await asyncio.wait_for(watch.warm.wait(), 60)
            profile = (options.profile / f"scheduler-{pods}-pods-{nodes}-nodes.txt"
                       if options.profile is not None else None)
            async with (pod_creator(address, pods, options.concurrency) as creator,
                        profiled(procs.scheduler, profile)):
                assert creator.stdin is not None and creator.stdout is not None
                pids = {"scheduler": procs.scheduler, "apiserver": procs.apiserver,
                        "etcd": procs.etcd, "bench_nodes": os.getpid()}
                cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                go = time.monotonic()
                creator.stdin.write(GO)
                await creator.stdin.drain()
                deadline = max(180.0, pods / 10)
                await asyncio.wait_for(watch.all_bound.wait(), deadline)
                bound = time.monotonic()
                cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
                output, _ = await asyncio.wait_for(creator.communicate(), 60)
                if creator.returncode != 0:
                    raise RuntimeError(f"pod creator failed ({creator.returncode})")
            created = json.loads(output.decode().strip().splitlines()[-1])
            created_at: dict[str, float] = created["created_at"]
            cpu["bench_creator"] = float(created["cpu_seconds"])
            await asyncio.wait_for(watch.all_running.wait(), 120)
            all_running = time.monotonic()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await watch.stop()

    first_create = min(created_at.values())
    last_create = max(created_at.values())
    seconds = max(watch.bound_at.values()) - first_create
    window = bound - go
    latencies = [watch.bound_at[n] - created_at[n] for n in expected]
    per_node = collections.Counter(watch.bound_to.values())
    return {
        "pods": pods,
        "nodes": nodes,
        "seconds": round(seconds, 3),
        "pods_per_second": round(pods / seconds, 1),
        "ratio_to_100_pods_per_s": round(pods / seconds / REFERENCE_PODS_PER_S, 3),
        "create_pods_per_second": round(pods / max(last_create - first_create, 1e-9), 1),
        "create_to_bound_ms_p50": round(percentile(latencies, 50) * 1000, 1),
        "create_to_bound_ms_p99": round(percentile(latencies, 99) * 1000, 1),
        "first_create_to_all_running_seconds": round(all_running - first_create, 3),
        "cpu_ms_per_pod": {name: round(seconds * 1000 / pods, 3)
                           for name, seconds in cpu.items()},
        "busy": {name: round(seconds / window, 2) for name, seconds in cpu.items()},
        "min_pods_per_node": min(per_node.values()) if len(per_node) == nodes else 0,
        "max_pods_per_node": max(per_node.values()),
    }


def run_configuration(
    pods: int, nodes: int, options: Options, binder: str = SCHEDULER
) -> dict[str, object]:
    """One configuration on its own etcd, API server and scheduler (or null binder)."""
    print(f"{binder}: {pods} pods on {nodes} hollow nodes ...", file=sys.stderr, flush=True)
    result: dict[str, object] = {}
    with (
        temporary_etcd() as etcd,
        apiserver_process(etcd.endpoint, "--insecure") as address,
        scheduler_process(address, binder) as scheduler,
    ):
        if etcd.process is None:
            raise RuntimeError("etcd is not running")
        procs = Processes(scheduler.process.pid, child_serving(address), etcd.process.pid)

        async def go() -> None:
            result.update(await measure(address, pods, nodes, procs,
                                        options if binder == SCHEDULER else
                                        dataclasses.replace(options, profile=None)))

        daemon.run(go())
        # The scheduler logs warnings and errors only: each is worth a look.
        logged = scheduler.log_lines()
        result["scheduler_log_lines"] = len(logged)
        for line in logged[:5]:
            print(f"{binder}: {line[:300]}", file=sys.stderr)
    return result


def with_reference(pods: int, nodes: int, options: Options) -> dict[str, object]:
    """The scheduler's figures, and beside them the null binder's on a control plane of its
    own in the same run (unless --no-reference)."""
    result = run_configuration(pods, nodes, options)
    if not options.reference:
        return result
    null = run_configuration(pods, nodes, options, NULL_BINDER)
    result["null_binder"] = {key: null[key] for key in (
        "pods_per_second", "create_pods_per_second", "create_to_bound_ms_p50",
        "cpu_ms_per_pod", "busy")}
    ratio = number(result, "pods_per_second") / number(null, "pods_per_second")
    result["ratio_to_null_binder"] = round(ratio, 3)
    return result


def number(result: dict[str, object], key: str) -> float:
    value = result[key]
    assert isinstance(value, int | float)
    return float(value)


def growth(small: dict[str, object], large: dict[str, object]) -> dict[str, float]:
    """How the larger configuration's costs compare with the smaller one's."""
    def cpu(result: dict[str, object]) -> float:
        per_pod = result["cpu_ms_per_pod"]
        assert isinstance(per_pod, dict)
        return float(per_pod["scheduler"])

    return {
        "nodes_ratio": round(number(large, "nodes") / number(small, "nodes"), 2),
        "scheduler_cpu_ms_per_pod_ratio": round(cpu(large) / cpu(small), 2),
        "pods_per_second_ratio": round(
            number(large, "pods_per_second") / number(small, "pods_per_second"), 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pods", type=int, default=None,
                   help="run one configuration of this many pods (default: 1000 and 5000)")
    p.add_argument("--nodes", type=int, default=None,
                   help="run one configuration on this many nodes (default: 100 and 500)")
    p.add_argument("--concurrency", type=int, default=32, help="creates in flight")
    p.add_argument("--heartbeat", type=float, default=HEARTBEAT_SECONDS,
                   help="seconds between two status updates of one hollow node")
    p.add_argument("--profile", type=Path, default=None, metavar="DIR",
                   help="record the scheduler with py-spy (pip install py-spy) while it"
                        " schedules, into DIR/scheduler-PODS-pods-NODES-nodes.txt (collapsed"
                        " stacks) and ...-top.txt (the top frames)")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the null binder (the same run's ceiling) beside each"
                        " configuration")
    # The pod creator and null binder children: not for direct use.
    p.add_argument("--create-pods", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--bind-round-robin", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--server", default="", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.create_pods is not None:
        daemon.run(create_pods(a.server, a.create_pods, a.concurrency))
        return
    if a.bind_round_robin:
        daemon.run(bind_round_robin(a.server))
        return
    for flag in ("pods", "nodes", "concurrency"):
        value = getattr(a, flag)
        if value is not None and value < 1:
            p.error(f"--{flag} must be at least 1, got {value}")
    if a.heartbeat <= 0:
        p.error(f"--heartbeat must be positive, got {a.heartbeat}")
    if a.profile is not None:
        try:
            py_spy()
        except FileNotFoundError as e:
            p.error(f"--profile: {e}")
    options = Options(a.concurrency, a.heartbeat, a.profile, reference=not a.no_reference)
    if a.pods is None and a.nodes is None:
        configurations = list(CONFIGURATIONS)
    else:
        configurations = [(a.pods or CONFIGURATIONS[0][0], a.nodes or CONFIGURATIONS[0][1])]
    load_before = os.getloadavg()
    results = [with_reference(pods, nodes, options) for pods, nodes in configurations]
    output: dict[str, object] = {
        "benchmark": "scheduler",
        "configurations": results,
    }
    if len(results) == 2:
        output["growth"] = growth(results[0], results[1])
    output["load_average_before"] = [round(x, 2) for x in load_before]
    output["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    if a.profile is not None:
        output["profiles"] = str(a.profile)
    print(json.dumps(output, indent=2))


if __name__ == "__main__":
    main()
