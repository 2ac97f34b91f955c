"""Faults on a multi-host cluster (network namespaces), each repeated: kill -9 the API server
or etcd while a client writes and an informer watches, kill -9 the active scheduler and
controller manager beside standbys, restart a kubelet. Every run is recorded in the fault table
printed at the end of the session; acknowledged writes lost must be 0."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kubelite.api.errors import ApiError, Conflict
from kubelite.client.client import ApiClient
from kubelite.client.informer import Informer, InformerSettings
from kubelite.testing.netns import (
    MultiHostCluster,
    MultiHostSettings,
    eventually,
    has_script,
    unavailable_reason,
)
from protos.v1 import objects_pb2 as v1
from tests.e2e.conftest import E2EReport, FaultRecord

REASON = unavailable_reason()
RUNS = 3
SETTINGS = MultiHostSettings(workers=2, standbys=True)
NEEDS_CM = pytest.mark.skipif(
    not has_script("kubelite-controller-manager"),
    reason="kubelite-controller-manager (ReplicaSets, leader election) is not installed yet")

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiHostCluster]:
    c = MultiHostCluster(Path(tmp_path_factory.mktemp("faults")), settings=SETTINGS)
    c.start()
    try:
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.stop()
    assert not c.leaked, f"processes outlived the cluster's stop: {c.leaked}"


# --------------------------------------------------------------------------- writer + informer


@dataclass
class Writes:
    """What a writer was told: the state of every object whose last write was acknowledged."""

    expected: dict[str, str | None] = field(default_factory=dict)
    """name -> the value of data["v"] acknowledged last; None: acknowledged deleted."""
    uncertain: set[str] = field(default_factory=set)
    """Names whose last write failed (it may or may not have happened)."""
    acked_at: list[float] = field(default_factory=list)
    """time.monotonic() of every acknowledged write."""
    errors: int = 0

    def acked_between(self, start: float, end: float) -> int:
        return sum(1 for t in self.acked_at if start <= t <= end)


def configmap(name: str, label: str, value: str) -> v1.ConfigMap:
    cm = v1.ConfigMap(metadata=v1.ObjectMeta(name=name, namespace="default",
                                             labels={"fault": label}))
    cm.data["v"] = value
    return cm


async def write_forever(client: ApiClient, label: str, writes: Writes,
                        stop: asyncio.Event) -> None:
    """Creates ConfigMaps, updates and deletes some, and records what was acknowledged,
    until ``stop`` is set."""
    live: dict[str, v1.ConfigMap] = {}
    rng = random.Random(label)
    i = 0

    def failed(name: str) -> None:
        writes.errors += 1
        writes.uncertain.add(name)
        writes.expected.pop(name, None)
        live.pop(name, None)

    async def create(name: str) -> None:
        live[name] = await client.create(configmap(name, label, "0"))
        writes.expected[name] = "0"

    async def update(name: str) -> None:
        updated = v1.ConfigMap()
        updated.CopyFrom(live[name])
        updated.data["v"] = str(int(updated.data["v"]) + 1)
        live[name] = await client.update(updated)
        writes.expected[name] = updated.data["v"]

    async def delete(name: str) -> None:
        await client.delete(v1.ConfigMap, name, "default", uid=live[name].metadata.uid)
        writes.expected[name] = None
        live.pop(name)

    while not stop.is_set():
        i += 1
        steps = [(create, f"{label}-{i}")]
        if i % 3 == 0 and live:
            steps.append((update, rng.choice(sorted(live))))
        if i % 5 == 0 and live:
            steps.append((delete, rng.choice(sorted(live))))
        for step, name in steps:
            if step is not create and name not in live:
                continue
            try:
                await step(name)
                writes.acked_at.append(time.monotonic())
            except ApiError:
                failed(name)
            except asyncio.CancelledError:
                failed(name)  # sent, perhaps applied, never acknowledged
                raise
        await asyncio.sleep(0.01)  # pace, not synchronisation: ~100 writes/s at most


@dataclass
class Watched:
    """What an informer delivered through its handlers: name -> resourceVersion."""

    objects: dict[str, str] = field(default_factory=dict)

    def attach(self, informer: Informer[v1.ConfigMap]) -> None:
        informer.add_handlers(on_add=self._put, on_update=lambda _old, new: self._put(new),
                              on_delete=self._remove)

    def _put(self, obj: v1.ConfigMap) -> None:
        self.objects[obj.metadata.name] = obj.metadata.resource_version

    def _remove(self, obj: v1.ConfigMap) -> None:
        self.objects.pop(obj.metadata.name, None)


@dataclass
class WriteRun:
    label: str
    writes: Writes
    watched: Watched
    informer: Informer[v1.ConfigMap]
    client: ApiClient
    task: asyncio.Task[None]
    stop: asyncio.Event


@pytest.fixture
async def write_run(cluster: MultiHostCluster, request: pytest.FixtureRequest
                    ) -> AsyncIterator[WriteRun]:
    """A writer and an informer (each with its own connection) on one fresh label."""
    label = f"{request.node.originalname.removeprefix('test_')[:20]}-" \
            f"{request.node.callspec.params['run']}-{random.randrange(1 << 16):04x}"
    label = label.replace("_", "-")
    writer = ApiClient(cluster.admin, timeout=2)
    watcher = ApiClient(cluster.admin, timeout=5)
    informer: Informer[v1.ConfigMap] = Informer(
        watcher, v1.ConfigMap, "default", label_selector=f"fault={label}",
        settings=InformerSettings(backoff_initial=0.1, backoff_max=1.0))
    watched = Watched()
    watched.attach(informer)
    informer.start()
    await informer.wait_for_sync(20)
    writes = Writes()
    stop = asyncio.Event()
    task = asyncio.create_task(write_forever(writer, label, writes, stop),
                               name=f"writer-{label}")
    try:
        yield WriteRun(label, writes, watched, informer, writer, task, stop)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await informer.stop()
        await writer.close()
        await watcher.close()


async def stop_writer(run: WriteRun) -> None:
    """Lets the writer finish its current write (so every write it sent is either
    acknowledged or failed), then stops it."""
    run.stop.set()
    await asyncio.wait_for(run.task, 30)


async def audit(cluster: MultiHostCluster, run: WriteRun) -> tuple[int, list[str]]:
    """(objects lost, details): acknowledged writes missing or wrong in a full list, and
    differences between what the informer delivered and that list."""
    async with ApiClient(cluster.admin, timeout=10) as client:
        listed = await client.list(v1.ConfigMap, "default", label_selector=f"fault={run.label}")
    actual = {o.metadata.name: o for o in listed.items}
    problems: list[str] = []
    for name, value in run.writes.expected.items():
        if value is None and name in actual:
            problems.append(f"{name}: acknowledged deleted, still there")
        elif value is not None and name not in actual:
            problems.append(f"{name}: acknowledged v={value}, missing")
        elif value is not None and actual[name].data["v"] != value:
            problems.append(f"{name}: acknowledged v={value}, found v={actual[name].data['v']}")
    # The informer caught up with the list (bookmarks move it on quiet streams) ...
    await eventually(lambda: int(run.informer.resource_version or 0)
                     >= int(listed.resource_version), "the informer to reach the list", 20)
    # ... and then holds exactly what the list holds, as do its handlers' deliveries.
    want = {n: o.metadata.resource_version for n, o in actual.items()}
    store = {o.metadata.name: o.metadata.resource_version for o in run.informer.store.items()}
    for what, got in (("delivered", run.watched.objects), ("store", store)):
        for name in sorted(want.keys() | got.keys()):
            if want.get(name) != got.get(name):
                problems.append(f"{what} {name}: informer {got.get(name)!r}, "
                                f"list {want.get(name)!r}")
    return len(problems), problems


async def wait_acks(writes: Writes, at_least: int, what: str, timeout: float = 30) -> None:
    await eventually(lambda: len(writes.acked_at) >= at_least, what, timeout, interval=0.02)


async def run_storage_fault(cluster: MultiHostCluster, run: WriteRun, component: str,
                            fault: str, report: E2EReport) -> None:
    writes = run.writes
    await wait_acks(writes, 20, "writes before the fault")
    errors_before = writes.errors
    started = time.monotonic()
    cluster.kill(component)
    # The writer notices (its calls fail) before the component comes back.
    await eventually(lambda: writes.errors > errors_before, "the writer to see the fault", 20)
    cluster.start_component(component)
    acked = len(writes.acked_at)
    await wait_acks(writes, acked + 1, "a write acknowledged after the restart", 40)
    recovered = time.monotonic()
    await wait_acks(writes, acked + 30, "writes after the restart", 40)
    await stop_writer(run)
    window = writes.acked_between(started, recovered + 2.0)
    lost, problems = await audit(cluster, run)
    stats = run.informer.stats
    report.faults.append(FaultRecord(
        fault, len(writes.acked_at), lost, recovered - started, window,
        note=f"informer relists {stats.lists - 1}"
             + (", watch resumed" if stats.watches > 1 else ", watch kept")))
    assert lost == 0, "\n".join(problems[:30])
    assert len(run.watched.objects) > 0


# --------------------------------------------------------------------------- failover


@dataclass
class History:
    """Every watch event of pods, ReplicaSets and leases, with when it arrived."""

    events: list[tuple[int, str, Any]] = field(default_factory=list)
    """(resourceVersion, type, object) of pods and ReplicaSets."""
    leases: list[tuple[float, str, str]] = field(default_factory=list)
    """(time.monotonic(), lease name, holder)."""
    revision: dict[str, int] = field(default_factory=dict)
    """Per watched kind, the last resourceVersion its watch reached (bookmarks included)."""


async def record(client: ApiClient, kind: type[Any], namespace: str, history: History) -> None:
    listed = await client.list(kind, namespace)
    for obj in listed.items:
        if kind is v1.Lease:
            history.leases.append((time.monotonic(), obj.metadata.name,
                                   obj.spec.holder_identity))
        else:
            history.events.append((int(obj.metadata.resource_version), "ADDED", obj))
    history.revision[kind.__name__] = int(listed.resource_version)
    async for event in client.watch(kind, namespace, resource_version=listed.resource_version):
        history.revision[kind.__name__] = int(event.resource_version)
        if event.object is None:
            continue
        if kind is v1.Lease:
            history.leases.append((time.monotonic(), event.object.metadata.name,
                                   event.object.spec.holder_identity))
        else:
            history.events.append((int(event.resource_version), event.type, event.object))


def violations(history: History) -> list[str]:
    """Pods whose nodeName changed once set, and moments when a ReplicaSet had more active
    pods than its spec asked for, replaying pods and ReplicaSets in revision order."""
    found: list[str] = []
    bound: dict[str, str] = {}
    replicas: dict[str, int] = {}
    active: dict[str, set[str]] = {}
    for rv, kind, obj in sorted(history.events, key=lambda e: e[0]):
        uid = obj.metadata.uid
        if isinstance(obj, v1.ReplicaSet):
            if kind == "DELETED":
                replicas.pop(uid, None)
            else:
                replicas[uid] = obj.spec.replicas
            continue
        node = obj.spec.node_name
        if node and bound.setdefault(uid, node) != node:
            found.append(f"pod {obj.metadata.name} moved {bound[uid]} -> {node} at {rv}")
        owners = [o.uid for o in obj.metadata.owner_references if o.controller]
        if not owners:
            continue
        owner = owners[0]
        counted = active.setdefault(owner, set())
        if kind == "DELETED" or obj.metadata.deletion_timestamp or obj.status.phase in (
                "Succeeded", "Failed"):
            counted.discard(uid)
        else:
            counted.add(uid)
        if owner in replicas and len(counted) > replicas[owner]:
            found.append(f"ReplicaSet {owner} had {len(counted)} > {replicas[owner]} pods "
                         f"at {rv}")
    return found


async def scale(client: ApiClient, name: str, replicas: int, attempts: int = 20) -> None:
    """Sets a ReplicaSet's replicas with get -> update, again on Conflict (the new controller
    manager writes the ReplicaSet's status meanwhile), as client-go's RetryOnConflict."""
    for _ in range(attempts):
        rs = await client.get(v1.ReplicaSet, name, "default")
        rs.spec.replicas = replicas
        try:
            await client.update(rs)
            return
        except Conflict:
            continue
    raise AssertionError(f"ReplicaSet {name} kept changing: {attempts} updates were Conflict")


def takeover(history: History, lease: str, holder: str, since: float) -> float | None:
    return next((t - since for t, name, who in history.leases
                 if name == lease and who == holder and t >= since), None)


@NEEDS_CM
@pytest.mark.parametrize("run", range(RUNS))
async def test_scheduler_and_controller_manager_failover(cluster: MultiHostCluster, run: int,
                                                         e2e_report: E2EReport) -> None:
    pair = {"scheduler": "scheduler-standby", "scheduler-standby": "scheduler",
            "controller-manager": "controller-manager-standby",
            "controller-manager-standby": "controller-manager"}
    name = f"failover-{run}-{random.randrange(1 << 16):04x}"
    history = History()
    async with ApiClient(cluster.admin, timeout=10) as client:
        leases = {lease: (await client.get(v1.Lease, lease, "kube-system")).spec.holder_identity
                  for lease in ("kube-scheduler", "kube-controller-manager")}
        active = list(leases.values())
        assert set(active) <= set(pair), leases
        tasks = [asyncio.create_task(record(client, kind, ns, history), name=f"record-{kind}")
                 for kind, ns in ((v1.Pod, "default"), (v1.ReplicaSet, "default"),
                                  (v1.Lease, "kube-system"))]
        acked = 0
        try:
            await eventually(lambda: len(history.leases) > 0, "the lease watch", 10)
            waiting = {n: cluster.log_count(n, "waiting to acquire leadership") for n in active}
            started = time.monotonic()
            for component in active:
                cluster.kill(component)
            # Work that only the new leaders can do: a ReplicaSet and bare pods.
            rs = v1.ReplicaSet(metadata=v1.ObjectMeta(name=name, namespace="default"))
            rs.spec.replicas = 3
            rs.spec.selector.match_labels["app"] = name
            rs.spec.template.metadata.labels["app"] = name
            rs.spec.template.spec.termination_grace_period_seconds = 1
            rs.spec.template.spec.containers.add(name="main", image="busybox",
                                                 command=["sleep", "3600"])
            rs = await client.create(rs)
            acked += 1
            for i in range(2):
                pod = v1.Pod(metadata=v1.ObjectMeta(name=f"{name}-bare-{i}", namespace="default",
                                                    labels={"bare": name}))
                pod.spec.termination_grace_period_seconds = 1
                pod.spec.containers.add(name="main", image="busybox", command=["sleep", "3600"])
                await client.create(pod)
                acked += 1
            times = {}
            for lease, holder in leases.items():
                times[lease] = await eventually(
                    lambda: takeover(history, lease, pair[holder], started),
                    f"{pair[holder]} to take {lease} over", 20, interval=0.05)

            async def running(selector: str, count: int) -> bool:
                pods = (await client.list(v1.Pod, "default", label_selector=selector)).items
                return len(pods) == count and all(p.status.phase == "Running" for p in pods)

            await eventually(lambda: running(f"app={name}", 3), "the ReplicaSet's 3 pods", 30)
            await eventually(lambda: running(f"bare={name}", 2), "the bare pods running", 30)
            await scale(client, name, 5)
            acked += 1
            await eventually(lambda: running(f"app={name}", 5), "the scaled ReplicaSet", 30)
            settled = time.monotonic() - started
            # The killed ones come back as standbys.
            for component in active:
                cluster.start_component(component)
            for component in active:
                await eventually(
                    lambda: cluster.log_count(component, "waiting to acquire leadership")
                    > waiting[component], f"{component} back as a standby", 20)
            # Everything that happened up to now is in the history once the watches reach the
            # current revision.
            now = int((await client.list(v1.Pod, "default")).resource_version)
            await eventually(lambda: min(history.revision.get(k, 0) for k in
                                         ("Pod", "ReplicaSet")) >= now,
                             "the watches to catch up", 10)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        problems = violations(history)
        # Clean up so later runs do not carry these pods.
        await client.delete(v1.ReplicaSet, name, "default", propagation_policy="Background")
        for i in range(2):
            await client.delete(v1.Pod, f"{name}-bare-{i}", "default")
    limit = SETTINGS.leader_elect_lease_duration + SETTINGS.leader_elect_retry_period + 1.5
    e2e_report.faults.append(FaultRecord(
        "kill -9 active scheduler + controller manager", acked, len(problems),
        max(times.values()),
        note=f"recovery = Lease takeover (lease {SETTINGS.leader_elect_lease_duration:g}s)"))
    e2e_report.add(f"failover run {run}: takeover " + ", ".join(
        f"{k} {v:.1f}s" for k, v in times.items()) + f"; ReplicaSet and pods running, then "
        f"scaled, {settled:.1f}s after the kill")
    assert not problems, problems
    for lease, seconds in times.items():
        assert seconds <= limit, f"{lease} taken over after {seconds:.1f}s (limit {limit}s)"


@pytest.mark.parametrize("run", range(RUNS))
async def test_api_server_kill_9_and_restart(cluster: MultiHostCluster, write_run: WriteRun,
                                             run: int, e2e_report: E2EReport) -> None:
    await run_storage_fault(cluster, write_run, "apiserver", "kill -9 API server, restart",
                            e2e_report)
    assert write_run.informer.stats.watches >= 2, "the informer resumed its watch"


@pytest.mark.parametrize("run", range(RUNS))
async def test_etcd_kill_9_and_restart(cluster: MultiHostCluster, write_run: WriteRun,
                                       run: int, e2e_report: E2EReport) -> None:
    await run_storage_fault(cluster, write_run, "etcd", "kill -9 etcd, restart (same data dir)",
                            e2e_report)


# --------------------------------------------------------------------------- kubelet restart


@pytest.fixture(scope="module")
def pinned_pods(cluster: MultiHostCluster) -> list[str]:
    names = [f"pinned-{i}" for i in range(2)]
    for i, name in enumerate(names):
        cluster.apply(f"""
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeSelector:
    kubernetes.io/hostname: worker-1
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: busybox
      command: ["sleep", "{3700 + i}"]
""")
    return names


def pod_state(cluster: MultiHostCluster, name: str) -> tuple[str, int, bool]:
    pod = cluster.get_json("pod", name)
    status = pod["status"].get("containerStatuses", [{}])[0]
    return (pod["status"].get("phase", ""), int(status.get("restartCount", -1)),
            "running" in status.get("state", {}))


@pytest.mark.parametrize("run", range(RUNS))
def test_kubelet_restart_keeps_its_pods(cluster: MultiHostCluster, pinned_pods: list[str],
                                        run: int, e2e_report: E2EReport) -> None:
    kubelet = "kubelet-worker-1"
    for name in pinned_pods:
        cluster.wait_for(lambda: pod_state(cluster, name)[::2] == ("Running", True),
                         f"{name} Running", 30)
    before = {n: cluster.pod_pids("worker-1", n) for n in pinned_pods}
    assert all(len(p) == 1 for p in before.values()), before
    counts = {n: pod_state(cluster, n)[1] for n in pinned_pods}
    started_logs = cluster.log_count(kubelet, "kubelet running")
    started = time.monotonic()
    cluster.kill(kubelet)
    cluster.start_component(kubelet)
    cluster.wait_for(lambda: cluster.log_count(kubelet, "kubelet running") > started_logs,
                     "the restarted kubelet", 30)
    cluster.wait_for(lambda: cluster.node_ready("worker-1") == "True", "worker-1 Ready", 30)
    back = time.monotonic() - started
    # Several housekeeping passes (0.2 s) and a full sync (2 s) with the same processes.
    steady_since = time.monotonic()
    problems: list[str] = []

    def steady() -> bool:
        """True after three seconds with the same processes, or as soon as they differ."""
        for n in pinned_pods:
            now = cluster.pod_pids("worker-1", n)
            if now != before[n]:
                problems.append(f"{n}: processes {before[n]} -> {now}")
        sleeps = cluster.host_pids("worker-1", r"^sleep 37[0-9][0-9]$")
        if len(sleeps) != len(pinned_pods):
            problems.append(f"sleep processes on worker-1: {sleeps}")
        return bool(problems) or time.monotonic() - steady_since > 3

    cluster.wait_for(steady, "three steady seconds", 20)
    assert not problems, problems
    for n in pinned_pods:
        phase, restarts, is_running = pod_state(cluster, n)
        if (phase, restarts, is_running) != ("Running", counts[n], True):
            problems.append(f"{n}: {phase}, restartCount {counts[n]} -> {restarts}")
    e2e_report.faults.append(FaultRecord(
        "kill -9 kubelet, restart", 0, len(problems), back,
        note=f"{len(pinned_pods)} pods: same processes, restartCount unchanged"))
    assert not problems, problems


LEADERSHIP_EVENTS = ("waiting to acquire leadership", "became leader", "lost leadership",
                     "leader task failed")
OUT = ("lost leadership", "leader task failed")


def last_leadership_event(cluster: MultiHostCluster, name: str) -> str:
    text = cluster.component(name).process.log_path.read_text(errors="replace")
    found = [(text.rfind(f'"{e}"'), e) for e in LEADERSHIP_EVENTS]
    return max(found)[1] if max(found)[0] >= 0 else ""


@NEEDS_CM
def test_leader_elected_components_stand_again_after_storage_faults(
        cluster: MultiHostCluster) -> None:
    """After the API server and etcd faults above, every scheduler and controller manager
    leads or waits to lead again: none stays out after losing its Lease."""
    names = [n for n in ("scheduler", "scheduler-standby", "controller-manager",
                         "controller-manager-standby") if n in cluster.components]

    def standing() -> bool:
        return all(last_leadership_event(cluster, n) not in OUT for n in names)

    try:
        cluster.wait_for(standing, "every leader-elected component to stand again", 10)
    except AssertionError:
        states = {n: last_leadership_event(cluster, n) for n in names}
        raise AssertionError(f"still out after losing the Lease: {states}") from None
