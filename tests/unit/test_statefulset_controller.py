"""The StatefulSet controller's decisions: reconcile(key) on filled informer stores with a fake
client that records writes."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from controller_manager.statefulset import (
    POD_INDEX_LABEL,
    POD_NAME_LABEL,
    StatefulSetController,
    parse_ordinal,
)
from controller_manager.workload import REVISION_HASH_LABEL, template_hash
from protos.v1 import objects_pb2 as v1
from tests.unit.fakes import FakeClient, FakeRecorder, fill_cache, workload_context
from tests.unit.objects import NOW, owned_pod, stored

KEY = "default/web"


def stateful_set(replicas: int = 3, *, image: str = "nginx:1", parallel: bool = False,
                 partition: int | None = None, on_delete: bool = False,
                 service: str = "web", claims: tuple[str, ...] = ()) -> v1.StatefulSet:
    sts = v1.StatefulSet()
    sts.spec.replicas = replicas
    sts.spec.service_name = service
    sts.spec.selector.match_labels["app"] = "web"
    sts.spec.template.metadata.labels["app"] = "web"
    sts.spec.template.spec.containers.add(name="nginx", image=image)
    if parallel:
        sts.spec.pod_management_policy = "Parallel"
    if on_delete:
        sts.spec.update_strategy.type = "OnDelete"
    elif partition is not None:
        sts.spec.update_strategy.type = "RollingUpdate"
        sts.spec.update_strategy.rolling_update.partition = partition
    for name in claims:
        claim = sts.spec.volume_claim_templates.add()
        claim.metadata.name = name
        claim.spec.access_modes.append("ReadWriteOnce")
        claim.spec.resources.requests["storage"] = "1Gi"
    return stored(sts, "web")


def revision(sts: v1.StatefulSet) -> str:
    return f"web-{template_hash(sts.spec.template, sts.status)}"


def member(sts: v1.StatefulSet, ordinal: int, *, rev: str | None = None,
           **kwargs: Any) -> v1.Pod:
    labels = {"app": "web", REVISION_HASH_LABEL: rev or revision(sts)}
    return owned_pod(sts, "StatefulSet", f"web-{ordinal}", node="n1", labels=labels, **kwargs)


def setup(sts: v1.StatefulSet, pods: list[v1.Pod] = ()  # type: ignore[assignment]
          ) -> tuple[StatefulSetController, FakeClient, FakeRecorder]:
    ctx, client, recorder = workload_context()
    controller = StatefulSetController(ctx)
    controller.clock = lambda: NOW + dt.timedelta(minutes=5)
    fill_cache(ctx, sts, *pods)
    return controller, client, recorder


def created_names(client: FakeClient) -> list[str]:
    return [p.metadata.name for p in client.created_of(v1.Pod)]


def terminating(pod: v1.Pod) -> v1.Pod:
    pod.metadata.deletion_timestamp = "2024-05-01T12:00:00Z"
    return pod


async def test_ordered_ready_creates_one_ordinal_at_a_time() -> None:
    sts = stateful_set()
    controller, client, _ = setup(sts)
    await controller.reconcile(KEY)
    assert created_names(client) == ["web-0"]
    pod = client.created_of(v1.Pod)[0]
    assert pod.metadata.labels[POD_NAME_LABEL] == "web-0"
    assert pod.metadata.labels[POD_INDEX_LABEL] == "0"
    assert pod.metadata.labels[REVISION_HASH_LABEL] == revision(sts)
    assert (pod.spec.hostname, pod.spec.subdomain) == ("web-0", "web")
    assert pod.metadata.owner_references[0].kind == "StatefulSet"

    # web-0 exists but is not Ready yet: nothing more.
    controller, client, _ = setup(sts, [member(sts, 0, ready=False)])
    await controller.reconcile(KEY)
    assert created_names(client) == []

    controller, client, _ = setup(sts, [member(sts, 0)])
    await controller.reconcile(KEY)
    assert created_names(client) == ["web-1"]


async def test_parallel_creates_all_at_once() -> None:
    sts = stateful_set(parallel=True)
    controller, client, _ = setup(sts, [member(sts, 1, ready=False)])
    await controller.reconcile(KEY)
    assert sorted(created_names(client)) == ["web-0", "web-2"]


async def test_scale_down_deletes_highest_ordinal_first() -> None:
    sts = stateful_set(replicas=1)
    pods = [member(sts, i) for i in range(3)]
    controller, client, recorder = setup(sts, pods)
    await controller.reconcile(KEY)
    assert client.deleted_names() == ["web-2"]
    assert "SuccessfulDelete" in recorder.reasons()

    # While web-2 terminates, web-1 waits.
    controller, client, _ = setup(sts, [*pods[:2], terminating(member(sts, 2))])
    await controller.reconcile(KEY)
    assert client.deleted_names() == []

    # Parallel deletes every condemned pod at once.
    sts = stateful_set(replicas=0, parallel=True)
    controller, client, _ = setup(sts, [member(sts, i) for i in range(3)])
    await controller.reconcile(KEY)
    assert sorted(client.deleted_names()) == ["web-0", "web-1", "web-2"]


async def test_failed_or_missing_pod_is_recreated_with_its_name() -> None:
    sts = stateful_set()
    pods = [member(sts, 0), member(sts, 1, phase="Failed"), member(sts, 2)]
    controller, client, recorder = setup(sts, pods)
    await controller.reconcile(KEY)
    assert client.deleted_names() == ["web-1"]
    assert "RecreatingFailedPod" in recorder.reasons()

    controller, client, _ = setup(sts, [pods[0], pods[2]])
    await controller.reconcile(KEY)
    assert created_names(client) == ["web-1"]


async def test_rolling_update_goes_down_from_the_highest_ordinal() -> None:
    old = stateful_set(image="nginx:1")
    new = stateful_set(image="nginx:2")
    new.status.current_revision = revision(old)
    pods = [member(old, i) for i in range(3)]
    controller, client, _ = setup(new, pods)
    await controller.reconcile(KEY)
    assert client.deleted_names() == ["web-2"]

    # web-2 updated and healthy: next is web-1.
    pods = [member(old, 0), member(old, 1), member(new, 2)]
    controller, client, _ = setup(new, pods)
    await controller.reconcile(KEY)
    assert client.deleted_names() == ["web-1"]

    # An updated pod that is not ready holds the rollout.
    pods = [member(old, 0), member(old, 1), member(new, 2, ready=False)]
    controller, client, _ = setup(new, pods)
    await controller.reconcile(KEY)
    assert client.deleted_names() == []


async def test_partition_keeps_lower_ordinals_at_the_current_revision() -> None:
    old = stateful_set(image="nginx:1", partition=2)
    new = stateful_set(image="nginx:2", partition=2)
    new.status.current_revision = revision(old)
    controller, client, _ = setup(old)
    controller._revisions(old)  # the controller saw the old template before the update
    controller.sets.store.put(new)
    controller.pods.store.put(member(old, 0))
    controller.pods.store.put(member(new, 2))
    await controller.reconcile(KEY)
    # web-1 is below the partition: recreated from the old template, at the old revision.
    [pod] = client.created_of(v1.Pod)
    assert pod.metadata.name == "web-1"
    assert pod.metadata.labels[REVISION_HASH_LABEL] == revision(old)
    assert pod.spec.containers[0].image == "nginx:1"

    pods = [member(old, 0), member(old, 1), member(new, 2)]
    controller, client, _ = setup(new, pods)
    await controller.reconcile(KEY)
    assert client.deleted_names() == []
    status = cast(v1.StatefulSet, client.status_updates[-1]).status
    # Even without the old template in memory (a restart), the current revision stays.
    assert (status.current_replicas, status.updated_replicas) == (2, 1)
    assert (status.current_revision, status.update_revision) == (revision(old), revision(new))


async def test_on_delete_waits_for_the_user() -> None:
    old = stateful_set(image="nginx:1", on_delete=True)
    new = stateful_set(image="nginx:2", on_delete=True)
    controller, client, _ = setup(new, [member(old, i) for i in range(3)])
    await controller.reconcile(KEY)
    assert client.deleted_names() == [] and created_names(client) == []


async def test_volume_claim_templates_become_empty_dir_volumes() -> None:
    # No PersistentVolumeClaims are served: each claim template becomes an emptyDir volume of
    # its name (replacing a template volume of that name, as the claim would), no claim.
    sts = stateful_set(claims=("data",))
    sts.spec.template.spec.volumes.add(name="data").host_path.path = "/srv"
    sts.spec.template.spec.volumes.add(name="cache").empty_dir.SetInParent()
    controller, client, _ = setup(sts)
    await controller.reconcile(KEY)
    assert [type(o) for o in client.created] == [v1.Pod]
    [pod] = client.created_of(v1.Pod)
    assert [v.name for v in pod.spec.volumes] == ["cache", "data"]
    data = pod.spec.volumes[1]
    assert data.HasField("empty_dir")
    assert not data.HasField("persistent_volume_claim") and not data.HasField("host_path")
    assert data.empty_dir.size_limit == "1Gi"  # the claim's storage request bounds it


async def test_missing_service_name_is_reported_not_acted_on() -> None:
    sts = stateful_set(service="")
    controller, client, recorder = setup(sts)
    await controller.reconcile(KEY)
    assert client.created == []
    event = recorder.events[0]
    assert (event.type, event.reason) == ("Warning", "FailedCreate")
    assert "serviceName" in event.message


async def test_status() -> None:
    sts = stateful_set()
    pods = [member(sts, 0), member(sts, 1, ready=False)]
    controller, client, _ = setup(sts, pods)
    await controller.reconcile(KEY)
    status = cast(v1.StatefulSet, client.status_updates[-1]).status
    assert (status.replicas, status.ready_replicas, status.available_replicas,
            status.current_replicas, status.updated_replicas,
            status.observed_generation) == (2, 1, 1, 2, 2, 1)
    assert status.current_revision == status.update_revision == revision(sts)


def test_parse_ordinal() -> None:
    assert parse_ordinal("web", "web-12") == 12
    assert parse_ordinal("web", "web-01") is None
    assert parse_ordinal("web", "webx-1") is None
    assert parse_ordinal("web-1", "web-1-0") == 0
