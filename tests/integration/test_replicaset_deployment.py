"""ReplicaSet and Deployment controllers in a ControllerManager against a real API server,
with hollow nodes whose kubelet makes bound pods Running and Ready."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from apiserver.server import ApiServer
from kubelite.api import errors, podtemplate
from kubelite.api import pods as podutil
from kubelite.client.client import ApiClient
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1
from tests.integration.helpers import (
    NS,
    is_live,
    live_pods,
    new_deployment,
    running_cluster,
    wait_rolled_out,
)


@pytest.fixture
async def cluster(api_server: ApiServer, client: ApiClient) -> AsyncIterator[ApiClient]:
    async with running_cluster(api_server, client) as c:
        yield c


@dataclass
class PodHistory:
    """Every state of the pods of one app, as a watch delivered them."""

    client: ApiClient
    app: str
    pods: dict[str, v1.Pod] = field(default_factory=dict)
    samples: list[dict[str, v1.Pod]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        listed = await self.client.list(v1.Pod, NS, label_selector=f"app={self.app}")
        self.pods = {p.metadata.name: p for p in listed.items}
        self.samples.append(dict(self.pods))
        self._task = asyncio.create_task(self._watch(listed.resource_version),
                                         name="pod-history")

    async def _watch(self, resource_version: str) -> None:
        async for event in self.client.watch(v1.Pod, NS, label_selector=f"app={self.app}",
                                             resource_version=resource_version):
            if event.object is None:
                continue
            if event.type == "DELETED":
                self.pods.pop(event.object.metadata.name, None)
            else:
                self.pods[event.object.metadata.name] = event.object
            self.samples.append(dict(self.pods))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, errors.ApiError):
                await self._task

    def counts(self, pred: Callable[[v1.Pod], bool]) -> list[int]:
        return [sum(1 for p in sample.values() if pred(p)) for sample in self.samples]

    async def wait_for(self, pred: Callable[[dict[str, v1.Pod]], bool], what: str) -> None:
        await eventually(lambda: pred(self.pods), timeout=20, message=what)


def ready_and_live(pod: v1.Pod) -> bool:
    return is_live(pod) and podutil.is_ready(pod)


# ---------------------------------------------------------------- tests


async def test_deployment_runs_ready_pods_through_a_replica_set(cluster: ApiClient) -> None:
    client = cluster
    await client.create(new_deployment(replicas=3))
    d = await wait_rolled_out(client, "web", 3)
    rss = (await client.list(v1.ReplicaSet, NS)).items
    [rs] = rss
    hash_ = rs.metadata.labels[podtemplate.POD_TEMPLATE_HASH_LABEL]
    assert rs.metadata.name == f"web-{hash_}"
    assert rs.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    pods = await live_pods(client, "web")
    for pod in pods:
        assert pod.metadata.name.startswith(f"{rs.metadata.name}-")
        assert len(pod.metadata.name) == len(rs.metadata.name) + 6
        assert pod.metadata.labels[podtemplate.POD_TEMPLATE_HASH_LABEL] == hash_
        [ref] = pod.metadata.owner_references
        assert (ref.kind, ref.name, ref.controller, ref.block_owner_deletion) == (
            "ReplicaSet", rs.metadata.name, True, True)
    conditions = {c.type: c.reason for c in d.status.conditions}

    async def complete() -> bool:
        d = await client.get(v1.Deployment, "web", NS)
        conditions.update({c.type: c.reason for c in d.status.conditions})
        return conditions.get("Progressing") == "NewReplicaSetAvailable"

    await eventually(complete, message="Progressing=NewReplicaSetAvailable")
    assert conditions["Available"] == "MinimumReplicasAvailable"
    rs = await client.get(v1.ReplicaSet, rs.metadata.name, NS)
    assert (rs.status.replicas, rs.status.ready_replicas, rs.status.available_replicas,
            rs.status.fully_labeled_replicas) == (3, 3, 3, 3)


async def test_scale_up_and_down(cluster: ApiClient) -> None:
    client = cluster
    await client.create(new_deployment(replicas=3))
    await wait_rolled_out(client, "web", 3)
    await client.patch(v1.Deployment, "web", {"spec": {"replicas": 5}}, NS)
    await wait_rolled_out(client, "web", 5)
    await client.patch(v1.Deployment, "web", {"spec": {"replicas": 2}}, NS)
    await wait_rolled_out(client, "web", 2)
    [rs] = (await client.list(v1.ReplicaSet, NS)).items
    assert rs.spec.replicas == 2
    assert rs.metadata.annotations["deployment.kubernetes.io/desired-replicas"] == "2"


async def test_rolling_update_keeps_within_surge_and_unavailable(cluster: ApiClient) -> None:
    client = cluster
    replicas = 4  # 25% / 25%: at most 5 pods, at least 3 ready
    await client.create(new_deployment(replicas=replicas))
    await wait_rolled_out(client, "web", replicas)
    history = PodHistory(client, "web")
    await history.start()
    try:
        await client.patch(v1.Deployment, "web", {"spec": {"template": {"spec": {
            "containers": [{"name": "main", "image": "nginx:2"}]}}}}, NS)
        await wait_rolled_out(client, "web", replicas, image="nginx:2")
        await history.wait_for(
            lambda pods: len(pods) == replicas and all(
                p.spec.containers[0].image == "nginx:2" and ready_and_live(p)
                for p in pods.values()),
            "the watch to see the end of the rollout")
    finally:
        await history.stop()
    live = history.counts(is_live)
    ready = history.counts(ready_and_live)
    assert len(history.samples) > 10
    assert max(live) <= replicas + 1, live
    assert min(ready) >= replicas - 1, ready
    rss = {rs.spec.template.spec.containers[0].image: rs
           for rs in (await client.list(v1.ReplicaSet, NS)).items}
    assert rss["nginx:1"].spec.replicas == 0
    assert rss["nginx:2"].metadata.annotations["deployment.kubernetes.io/revision"] == "2"


async def test_recreate_never_overlaps_old_and_new_pods(cluster: ApiClient) -> None:
    client = cluster
    await client.create(new_deployment(replicas=3, strategy="Recreate"))
    await wait_rolled_out(client, "web", 3)
    history = PodHistory(client, "web")
    await history.start()
    try:
        await client.patch(v1.Deployment, "web", {"spec": {"template": {"spec": {
            "containers": [{"name": "main", "image": "nginx:2"}]}}}}, NS)
        await wait_rolled_out(client, "web", 3, image="nginx:2")
        await history.wait_for(
            lambda pods: len(pods) == 3 and all(
                p.spec.containers[0].image == "nginx:2" and ready_and_live(p)
                for p in pods.values()),
            "the watch to see the end of the rollout")
    finally:
        await history.stop()
    for sample in history.samples:
        images = {p.spec.containers[0].image for p in sample.values()}
        assert len(images) <= 1, f"old and new pods at once: {sorted(sample)}"
    assert any(not sample for sample in history.samples)  # all gone before new ones


async def test_replica_set_replaces_a_deleted_pod(cluster: ApiClient) -> None:
    client = cluster
    rs = v1.ReplicaSet(metadata=v1.ObjectMeta(name="cache", namespace=NS))
    rs.spec.replicas = 3
    rs.spec.selector.match_labels["app"] = "cache"
    rs.spec.template.metadata.labels["app"] = "cache"
    rs.spec.template.spec.containers.add(name="main", image="redis")
    await client.create(rs)

    async def ready_pods() -> list[v1.Pod] | None:
        live = await live_pods(client, "cache")
        return live if len(live) == 3 and all(podutil.is_ready(p) for p in live) else None

    before = await eventually(ready_pods, timeout=20, message="3 ready pods")
    victim = before[0].metadata.name
    await client.delete(v1.Pod, victim, NS)

    async def replaced() -> bool:
        live = await ready_pods()
        return live is not None and victim not in {p.metadata.name for p in live}

    await eventually(replaced, timeout=20, message="a replacement pod")

    async def created_events() -> bool:
        events = (await client.list(v1.Event, NS)).items
        return any(e.reason == "SuccessfulCreate" and e.involved_object.name == "cache"
                   and e.message.startswith("Created pod: cache-") for e in events)

    await eventually(created_events, message="SuccessfulCreate events")

    async def status_caught_up() -> bool:
        status = (await client.get(v1.ReplicaSet, "cache", NS)).status
        return (status.replicas, status.ready_replicas, status.available_replicas) == (3, 3, 3)

    await eventually(status_caught_up, message="the status to count 3 ready pods")


async def test_replica_set_adopts_orphans_and_releases_relabelled_pods(
        cluster: ApiClient) -> None:
    client = cluster
    orphan = v1.Pod(metadata=v1.ObjectMeta(name="orphan", namespace=NS,
                                           labels={"app": "queue"}))
    orphan.spec.containers.add(name="main", image="busybox")
    await client.create(orphan)
    rs = v1.ReplicaSet(metadata=v1.ObjectMeta(name="queue", namespace=NS))
    rs.spec.replicas = 2
    rs.spec.selector.match_labels["app"] = "queue"
    rs.spec.template.metadata.labels["app"] = "queue"
    rs.spec.template.spec.containers.add(name="main", image="busybox")
    rs = await client.create(rs)

    async def adopted() -> bool:
        pod = await client.get(v1.Pod, "orphan", NS)
        return any(r.uid == rs.metadata.uid and r.controller
                   for r in pod.metadata.owner_references)

    await eventually(adopted, timeout=20, message="the orphan adopted")
    await eventually(lambda: _count(client, "queue", 2), timeout=20, message="2 pods")
    await client.patch(v1.Pod, "orphan", {"metadata": {"labels": {"app": "elsewhere"}}}, NS)

    async def released() -> bool:
        pod = await client.get(v1.Pod, "orphan", NS)
        return not pod.metadata.owner_references

    await eventually(released, timeout=20, message="the relabelled pod released")
    await eventually(lambda: _count(client, "queue", 2), timeout=20, message="a replacement")


async def _count(client: ApiClient, app: str, n: int) -> bool:
    return len(await live_pods(client, app)) == n


@pytest.mark.parametrize(("change", "field"), [
    ("selector", "spec.template.metadata.labels"),
    ("replicas", "spec.replicas"),
    ("fenceposts", "spec.strategy.rollingUpdate.maxUnavailable"),
])
async def test_invalid_deployments_are_rejected_with_the_field(
        client: ApiClient, change: str, field: str) -> None:
    d = new_deployment()
    if change == "selector":
        d.spec.selector.match_labels["app"] = "other"
    elif change == "replicas":
        d.spec.replicas = -1
    else:
        d.spec.strategy.rolling_update.max_surge.int_val = 0
        d.spec.strategy.rolling_update.max_unavailable.int_val = 0
    with pytest.raises(errors.Invalid) as caught:
        await client.create(d)
    assert field in [c["field"] for c in caught.value.causes], caught.value.message
    assert field in caught.value.message
    with pytest.raises(errors.NotFound):
        await client.get(v1.Deployment, "web", NS)
