"""DeploymentController.reconcile on filled stores, and the arithmetic it rests on.

A small simulated world stands in for the ReplicaSet controller: after each sync every
ReplicaSet's status catches up with its spec, and pods that existed at the previous step
become available, so a rolling update can be driven step by step and its bounds checked at
every step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

import pytest

from controller_manager import deployment_util as du
from controller_manager.deployment import DeploymentController
from kubelite.api import defaults, podtemplate
from kubelite.api import meta as m
from protos.v1 import objects_pb2 as v1
from tests.unit.fakes import FakeClient, FakeRecorder, make_context
from tests.unit.objects import NS, ago

KEY = f"{NS}/web"


def ios(value: str) -> v1.IntOrString:
    return v1.IntOrString(str_val=value) if value.endswith("%") else v1.IntOrString(
        int_val=int(value))


def deployment(replicas: int = 3, image: str = "nginx:1", *, strategy: str = "RollingUpdate",
               surge: str = "25%", unavailable: str = "25%", history: int = 10,
               deadline: int = 600) -> v1.Deployment:
    d = v1.Deployment(metadata=v1.ObjectMeta(name="web", namespace=NS, uid="uid-deploy",
                                             generation=1, resource_version="1",
                                             creation_timestamp=ago(1000)))
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = "web"
    d.spec.template.metadata.labels["app"] = "web"
    d.spec.template.spec.containers.add(name="main", image=image)
    d.spec.strategy.type = strategy
    if strategy == "RollingUpdate":
        d.spec.strategy.rolling_update.max_surge.CopyFrom(ios(surge))
        d.spec.strategy.rolling_update.max_unavailable.CopyFrom(ios(unavailable))
    d.spec.revision_history_limit = history
    d.spec.progress_deadline_seconds = deadline
    defaults.apply_defaults(d)
    return d


class World:
    def __init__(self, controller: DeploymentController, client: FakeClient) -> None:
        self.controller = controller
        self.client = client

    @property
    def d(self) -> v1.Deployment:
        d = self.controller.d_store.get(KEY)
        assert d is not None
        return d

    def rss(self) -> list[v1.ReplicaSet]:
        return du.by_creation(self.controller.rs_store.items())

    def by_image(self, image: str) -> v1.ReplicaSet:
        [rs] = [r for r in self.rss() if r.spec.template.spec.containers[0].image == image]
        return rs

    def put(self, d: v1.Deployment) -> None:
        self.controller.d_store.put(d)

    def change(self, **spec: object) -> None:
        """A user's spec change: the API server bumps the generation."""
        d = m.copy(self.d)
        for name, value in spec.items():
            if name == "image":
                d.spec.template.spec.containers[0].image = str(value)
            else:
                setattr(d.spec, name, value)
        d.metadata.generation += 1
        self.put(d)

    async def sync(self) -> None:
        await self.controller.reconcile(KEY)

    def settle(self) -> None:
        """The ReplicaSet controller's part: pods exist for spec.replicas, and those that
        existed at the previous step are now available."""
        for rs in self.rss():
            updated = m.copy(rs)
            previous = rs.status.replicas
            updated.status.replicas = rs.spec.replicas
            available = min(rs.spec.replicas, previous)
            updated.status.ready_replicas = updated.status.available_replicas = available
            updated.status.observed_generation = rs.metadata.generation
            self.controller.rs_store.put(updated)

    async def run_to_completion(self, steps: int = 40) -> list[tuple[int, int]]:
        """Syncs and settles until nothing changes; returns (total, available) after each
        sync, where available counts what each set can keep after its deletions."""
        history = []
        for _ in range(steps):
            before = [(r.metadata.name, r.spec.replicas, r.status.available_replicas)
                      for r in self.rss()]
            await self.sync()
            rss = self.rss()
            history.append((du.replica_count(rss), du.safe_available_count(rss)))
            self.settle()
            await self.sync()
            after = [(r.metadata.name, r.spec.replicas, r.status.available_replicas)
                     for r in self.rss()]
            if before == after and du.deployment_complete(self.d, self.d.status):
                return history
        raise AssertionError(f"no convergence: {history}")


@pytest.fixture
async def world() -> AsyncIterator[World]:
    client = FakeClient(from_cache=True, write_through=True)
    controller = DeploymentController(make_context(client))
    yield World(controller, client)
    await controller.queue.shut_down()


def condition(d: v1.Deployment, type_: str) -> v1.DeploymentCondition:
    c = du.get_condition(d.status, type_)
    assert c is not None, f"no {type_} condition in {d.status}"
    return c


# ---------------------------------------------------------------- arithmetic


@pytest.mark.parametrize(("surge", "unavailable", "desired", "expected"), [
    ("25%", "25%", 4, (1, 1)),
    ("25%", "25%", 3, (1, 0)),       # surge rounds up, unavailable down
    ("25%", "25%", 1, (1, 0)),
    ("0%", "0%", 10, (0, 1)),        # both 0: unavailable becomes 1
    ("0", "0", 0, (0, 1)),
    ("0", "25%", 3, (0, 1)),         # 0.75 floors to 0, then the fencepost
    ("30%", "20%", 10, (3, 2)),
    ("2", "3", 10, (2, 3)),
    ("100%", "0", 5, (5, 0)),
])
def test_resolve_fenceposts(surge: str, unavailable: str, desired: int,
                            expected: tuple[int, int]) -> None:
    assert du.resolve_fenceposts(ios(surge), ios(unavailable), desired) == expected


def test_max_unavailable_is_capped_and_zero_for_recreate() -> None:
    assert du.max_unavailable(deployment(2, unavailable="5")) == 2
    assert du.max_unavailable(deployment(0)) == 0
    assert du.max_unavailable(deployment(4, strategy="Recreate")) == 0
    assert du.max_surge(deployment(4, strategy="Recreate")) == 0


def test_pod_template_hash_is_stable_safe_and_moves_with_collisions() -> None:
    a = deployment(image="nginx:1").spec.template
    b = deployment(image="nginx:2").spec.template
    h = podtemplate.compute_hash(a)
    assert h == podtemplate.compute_hash(deployment(image="nginx:1").spec.template)
    assert h != podtemplate.compute_hash(b)
    assert h != podtemplate.compute_hash(a, 1)
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(h) <= 10
    labelled = v1.PodTemplateSpec()
    labelled.CopyFrom(a)
    labelled.metadata.labels[podtemplate.POD_TEMPLATE_HASH_LABEL] = h
    assert podtemplate.equal_ignore_hash(labelled, a)
    assert not podtemplate.equal_ignore_hash(labelled, b)


# ---------------------------------------------------------------- new deployments


async def test_new_deployment_gets_a_hashed_replica_set(world: World) -> None:
    world.put(deployment(3))
    await world.sync()
    [rs] = world.rss()
    h = podtemplate.compute_hash(world.d.spec.template)
    assert rs.metadata.name == f"web-{h}"
    assert rs.metadata.labels[podtemplate.POD_TEMPLATE_HASH_LABEL] == h
    assert rs.spec.selector.match_labels[podtemplate.POD_TEMPLATE_HASH_LABEL] == h
    assert rs.spec.template.metadata.labels[podtemplate.POD_TEMPLATE_HASH_LABEL] == h
    assert rs.spec.replicas == 3
    assert dict(rs.metadata.annotations) == {du.REVISION_ANNOTATION: "1",
                                             du.DESIRED_REPLICAS_ANNOTATION: "3",
                                             du.MAX_REPLICAS_ANNOTATION: "4"}
    [ref] = rs.metadata.owner_references
    assert (ref.kind, ref.name, ref.controller) == ("Deployment", "web", True)
    assert world.d.metadata.annotations[du.REVISION_ANNOTATION] == "1"
    assert condition(world.d, du.PROGRESSING).reason == du.NEW_RS_CREATED
    assert ("web", "Normal", "ScalingReplicaSet",
            f"Scaled up replica set web-{h} to 3") in [
                (e.name, e.type, e.reason, e.message)
                for e in cast(FakeRecorder, world.controller.recorder).events]

    await world.run_to_completion()
    d = world.d
    assert (d.status.replicas, d.status.updated_replicas, d.status.available_replicas,
            d.status.unavailable_replicas, d.status.observed_generation) == (3, 3, 3, 0, 1)
    assert condition(d, du.PROGRESSING).reason == du.NEW_RS_AVAILABLE
    assert condition(d, du.AVAILABLE).reason == du.MIN_AVAILABLE


# ---------------------------------------------------------------- rolling update


@pytest.mark.parametrize(("replicas", "surge", "unavailable"), [
    (4, "25%", "25%"), (3, "25%", "25%"), (3, "0", "1"), (5, "100%", "0"), (10, "30%", "20%"),
    (1, "0", "25%"),
])
async def test_rolling_update_stays_within_surge_and_unavailable(
        world: World, replicas: int, surge: str, unavailable: str) -> None:
    world.put(deployment(replicas, surge=surge, unavailable=unavailable))
    await world.run_to_completion()
    world.change(image="nginx:2")
    max_surge, max_unavailable = du.resolve_fenceposts(ios(surge), ios(unavailable), replicas)
    max_unavailable = min(max_unavailable, replicas)
    history = await world.run_to_completion()
    for total, available in history:
        assert total <= replicas + max_surge, history
        assert available >= replicas - max_unavailable, history
    old, new = world.by_image("nginx:1"), world.by_image("nginx:2")
    assert (old.spec.replicas, new.spec.replicas) == (0, replicas)
    assert du.revision(new) == 2
    assert world.d.status.updated_replicas == replicas


async def test_first_rolling_steps(world: World) -> None:
    world.put(deployment(4))  # maxSurge 1, maxUnavailable 1
    await world.run_to_completion()
    world.change(image="nginx:2")

    async def step(settle: bool = False) -> tuple[int, int]:
        if settle:
            world.settle()
        await world.sync()
        return (world.by_image("nginx:1").spec.replicas,
                world.by_image("nginx:2").spec.replicas)

    # One new pod (surge) and one old pod less (unavailable) at once, then the room left
    # under maxSurge goes to the new set.
    assert await step() == (3, 1)
    assert condition(world.d, du.PROGRESSING).reason == du.NEW_RS_CREATED
    assert await step() == (3, 2)
    assert await step() == (3, 2)  # 5 pods, 3 available: no move
    assert await step(settle=True) == (3, 2)  # new pods run, not yet available
    assert await step(settle=True) == (1, 2)  # 2 new available: 2 old may go
    assert await step() == (1, 4)
    assert condition(world.d, du.PROGRESSING).reason == du.RS_UPDATED


async def test_surge_counts_pods_that_are_still_running(world: World) -> None:
    """An old ReplicaSet scaled down whose pods are still active leaves no room to surge."""
    world.put(deployment(2, surge="1", unavailable="0"))
    await world.run_to_completion()
    old = world.by_image("nginx:1")
    for i in range(2):
        pod = v1.Pod(metadata=v1.ObjectMeta(name=f"old-{i}", namespace=NS, uid=f"p{i}"))
        pod.metadata.owner_references.append(v1.OwnerReference(
            api_version="apps/v1", kind="ReplicaSet", name=old.metadata.name,
            uid=old.metadata.uid, controller=True))
        pod.status.phase = "Running"
        world.controller.pod_store.put(pod)
    extra = v1.Pod()
    extra.CopyFrom(pod)
    extra.metadata.name, extra.metadata.uid = "old-extra", "p-extra"
    world.controller.pod_store.put(extra)  # 3 active pods, spec says 2
    world.change(image="nginx:2")
    await world.sync()
    assert world.by_image("nginx:2").spec.replicas == 0


# ---------------------------------------------------------------- recreate


async def test_recreate_scales_old_to_zero_and_waits_for_their_pods(world: World) -> None:
    world.put(deployment(3, strategy="Recreate"))
    await world.run_to_completion()
    old = world.by_image("nginx:1")
    for i in range(3):
        pod = v1.Pod(metadata=v1.ObjectMeta(name=f"old-{i}", namespace=NS, uid=f"p{i}"))
        pod.metadata.owner_references.append(v1.OwnerReference(
            api_version="apps/v1", kind="ReplicaSet", name=old.metadata.name,
            uid=old.metadata.uid, controller=True))
        pod.status.phase = "Running"
        world.controller.pod_store.put(pod)
    world.change(image="nginx:2")
    await world.sync()
    assert world.by_image("nginx:1").spec.replicas == 0
    assert len(world.rss()) == 1
    await world.sync()
    assert len(world.rss()) == 1  # the old set still reports pods
    world.settle()
    for i in range(3):  # terminating, but still there
        pod = m.copy(world.controller.pod_store.get(f"{NS}/old-{i}") or v1.Pod())
        pod.metadata.deletion_timestamp = ago(0)
        world.controller.pod_store.put(pod)
    await world.sync()
    assert len(world.rss()) == 1
    for i in range(3):
        world.controller.pod_store.remove(f"{NS}/old-{i}")
    await world.sync()
    new = world.by_image("nginx:2")
    assert new.spec.replicas == 3 and du.revision(new) == 2
    await world.run_to_completion()
    assert world.d.status.updated_replicas == 3


# ---------------------------------------------------------------- revisions


async def test_going_back_to_an_old_template_reuses_its_replica_set(world: World) -> None:
    world.put(deployment(2))
    await world.run_to_completion()
    world.change(image="nginx:2")
    await world.run_to_completion()
    assert [du.revision(rs) for rs in world.rss()] == [1, 2]
    world.change(image="nginx:1")  # what `rollout undo` does
    await world.run_to_completion()
    assert len(world.rss()) == 2
    first = world.by_image("nginx:1")
    assert du.revision(first) == 3
    assert first.metadata.annotations[du.REVISION_HISTORY_ANNOTATION] == "1"
    assert first.spec.replicas == 2 and world.by_image("nginx:2").spec.replicas == 0
    assert world.d.metadata.annotations[du.REVISION_ANNOTATION] == "3"
    world.change(image="nginx:3")
    await world.sync()
    assert du.revision(world.by_image("nginx:3")) == 4


async def test_history_limit_deletes_the_oldest_unused_replica_sets(world: World) -> None:
    world.put(deployment(1, history=2))
    for image in ("v1", "v2", "v3", "v4", "v5", "v6"):
        world.change(image=image)
        await world.run_to_completion()
    names = {du.revision(rs): rs.metadata.name for rs in world.rss()}
    assert sorted(names) == [4, 5, 6]
    deleted = [d.name for d in world.client.deletes]
    assert len(deleted) == 3 and not set(deleted) & set(names.values())


async def test_history_limit_keeps_sets_that_still_have_pods(world: World) -> None:
    world.put(deployment(1, history=0))
    await world.run_to_completion()
    world.change(image="v2")
    await world.sync()  # v1 still has its pod while v2 surges
    assert world.client.deletes == []
    await world.run_to_completion()
    assert [rs.spec.template.spec.containers[0].image for rs in world.rss()] == ["v2"]


# ---------------------------------------------------------------- scaling and pausing


async def test_resize_mid_rollout_is_proportional(world: World) -> None:
    d = deployment(20, surge="25%", unavailable="25%")
    d.status.replicas = 13
    world.put(d)
    template_old = deployment(image="nginx:0").spec.template

    def rs(name: str, template: v1.PodTemplateSpec, replicas: int, rev: int,
           age: float) -> v1.ReplicaSet:
        r = v1.ReplicaSet(metadata=v1.ObjectMeta(name=name, namespace=NS, uid=f"uid-{name}",
                                                 creation_timestamp=ago(age),
                                                 resource_version="1", generation=1))
        r.metadata.owner_references.append(v1.OwnerReference(
            api_version="apps/v1", kind="Deployment", name="web", uid="uid-deploy",
            controller=True))
        r.metadata.labels["app"] = "web"
        r.metadata.annotations.update({du.REVISION_ANNOTATION: str(rev),
                                       du.DESIRED_REPLICAS_ANNOTATION: "10",
                                       du.MAX_REPLICAS_ANNOTATION: "13"})
        r.spec.replicas = replicas
        r.spec.selector.match_labels["app"] = "web"
        r.spec.template.CopyFrom(template)
        r.status.replicas = r.status.available_replicas = replicas
        return r

    world.controller.rs_store.put(rs("web-old", template_old, 8, 1, 500))
    world.controller.rs_store.put(rs("web-new", d.spec.template, 5, 2, 100))
    await world.sync()
    sizes = {r.metadata.name: r.spec.replicas for r in world.rss()}
    assert sizes == {"web-old": 15, "web-new": 10}
    for r in world.rss():
        assert r.metadata.annotations[du.DESIRED_REPLICAS_ANNOTATION] == "20"
        assert r.metadata.annotations[du.MAX_REPLICAS_ANNOTATION] == "25"


async def test_paused_deployment_scales_but_does_not_roll_out(world: World) -> None:
    world.put(deployment(2))
    await world.run_to_completion()
    world.change(paused=True)
    await world.sync()
    assert condition(world.d, du.PROGRESSING).reason == du.PAUSED
    world.change(image="nginx:2", replicas=4)
    await world.sync()
    [rs] = world.rss()
    assert rs.spec.replicas == 4
    assert rs.spec.template.spec.containers[0].image == "nginx:1"
    world.change(paused=False)
    await world.sync()  # resumed, and the rollout starts at once
    assert condition(world.d, du.PROGRESSING).reason == du.NEW_RS_CREATED
    await world.run_to_completion()
    assert world.by_image("nginx:2").spec.replicas == 4


async def test_progress_deadline_exceeded(world: World) -> None:
    world.put(deployment(3, deadline=10))
    await world.sync()
    [rs] = world.rss()
    stuck = m.copy(rs)
    stuck.status.replicas = 3  # pods exist but never become available
    stuck.status.observed_generation = rs.metadata.generation
    world.controller.rs_store.put(stuck)
    await world.sync()
    d = m.copy(world.d)
    c = condition(d, du.PROGRESSING)
    assert c.reason == du.RS_UPDATED
    c.last_update_time = ago(60)
    world.put(d)
    await world.sync()
    c = condition(world.d, du.PROGRESSING)
    assert (c.status, c.reason) == ("False", du.TIMED_OUT)
    assert condition(world.d, du.AVAILABLE).reason == du.MIN_UNAVAILABLE
