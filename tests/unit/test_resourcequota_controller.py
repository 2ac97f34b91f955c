"""The resource quota controller, driven with filled informer stores and a fake client."""

from __future__ import annotations

from controller_manager.resourcequota import ResourceQuotaController, status_current
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1
from tests.unit.fakes import FakeClient, deliver, fill_cache, make_context

NS = "team"


def resource_quota(hard: dict[str, str], used: dict[str, str] | None = None,
                   scopes: tuple[str, ...] = ()) -> v1.ResourceQuota:
    q = v1.ResourceQuota(metadata=v1.ObjectMeta(name="q", namespace=NS, resource_version="5"))
    q.spec.hard.update(hard)
    q.spec.scopes.extend(scopes)
    if used is not None:
        q.status.hard.update(hard)
        q.status.used.update(used)
    return q


def pod(name: str, cpu: str = "", phase: str = "Running", namespace: str = NS) -> v1.Pod:
    p = v1.Pod(metadata=v1.ObjectMeta(name=name, namespace=namespace, resource_version="1"))
    c = p.spec.containers.add(name="app", image="busybox")
    if cpu:
        c.resources.requests["cpu"] = cpu
        c.resources.limits["cpu"] = cpu
    p.status.phase = phase
    return p


async def test_usage_is_counted_from_what_exists() -> None:
    client = FakeClient()
    ctx = make_context(client)
    controller = ResourceQuotaController(ctx)
    q = client.put(resource_quota({"pods": "10", "requests.cpu": "4", "count/pods": "20",
                                   "configmaps": "5", "services.nodeports": "2",
                                   "example.com/unknown": "1"}))
    fill_cache(ctx, q, pod("a", "500m"), pod("b", "250m"), pod("done", "1", "Succeeded"),
               pod("elsewhere", "1", namespace="other"))
    client.put(v1.ConfigMap(metadata=v1.ObjectMeta(name="c", namespace=NS)))
    await controller.reconcile(f"{NS}/q")
    written = client.last_status_write(v1.ResourceQuota)
    assert dict(written.status.hard) == dict(q.spec.hard)
    # Finished pods keep their object count only; what nothing counts stays out.
    assert dict(written.status.used) == {
        "pods": "2", "requests.cpu": "750m", "count/pods": "3", "configmaps": "1",
        "services.nodeports": "0",
    }
    assert status_current(written)


async def test_an_unchanged_status_is_not_written() -> None:
    client = FakeClient()
    ctx = make_context(client)
    controller = ResourceQuotaController(ctx)
    q = client.put(resource_quota({"pods": "10"}, {"pods": "1"}))
    fill_cache(ctx, q, pod("a"))
    await controller.reconcile(f"{NS}/q")
    assert client.status_updates == []


async def test_scopes_limit_what_is_counted() -> None:
    client = FakeClient()
    ctx = make_context(client)
    controller = ResourceQuotaController(ctx)
    q = client.put(resource_quota({"pods": "10"}, scopes=("BestEffort",)))
    fill_cache(ctx, q, pod("besteffort"), pod("burstable", "1"))
    await controller.reconcile(f"{NS}/q")
    assert dict(client.last_status_write(v1.ResourceQuota).status.used) == {"pods": "1"}


async def test_deletions_and_finished_pods_bring_their_quotas_back() -> None:
    ctx = make_context(FakeClient())
    controller = ResourceQuotaController(ctx)
    counted = resource_quota({"pods": "10"}, {"pods": "2"})
    deliver(ctx, counted)
    controller.queue._queue.clear()
    controller.queue._dirty.clear()
    running = pod("a")
    deliver(ctx, running)
    assert len(controller.queue) == 0  # creates were charged by admission
    finished = pod("a", phase="Succeeded")
    finished.metadata.resource_version = "2"
    deliver(ctx, finished, "MODIFIED")
    assert list(controller.queue._queue) == [f"{NS}/q"]
    controller.queue._queue.clear()
    controller.queue._dirty.clear()
    deliver(ctx, finished, "DELETED")
    assert list(controller.queue._queue) == [f"{NS}/q"]
    controller.queue._queue.clear()
    controller.queue._dirty.clear()
    # A Service is not counted by this quota.
    deliver(ctx, v1.Service(metadata=v1.ObjectMeta(name="s", namespace=NS, resource_version="3")))
    deliver(ctx, v1.Service(metadata=v1.ObjectMeta(name="s", namespace=NS, resource_version="3")),
            "DELETED")
    assert len(controller.queue) == 0


async def test_a_charge_by_admission_is_not_recomputed_but_new_limits_are() -> None:
    ctx = make_context(FakeClient())
    controller = ResourceQuotaController(ctx)
    q = resource_quota({"pods": "10"}, {"pods": "2"})
    deliver(ctx, q)
    controller.queue._queue.clear()
    controller.queue._dirty.clear()
    charged = resource_quota({"pods": "10"}, {"pods": "3"})
    charged.metadata.resource_version = "6"
    deliver(ctx, charged, "MODIFIED")
    assert len(controller.queue) == 0
    raised = resource_quota({"pods": "20"}, {"pods": "3"})
    raised.status.hard["pods"] = "10"
    raised.metadata.resource_version = "7"
    deliver(ctx, raised, "MODIFIED")
    assert list(controller.queue._queue) == [f"{NS}/q"]


async def test_every_quota_is_recomputed_each_sync_period() -> None:
    ctx = make_context(FakeClient(), resource_quota_sync_period=0.01)
    controller = ResourceQuotaController(ctx)
    fill_cache(ctx, resource_quota({"pods": "10"}, {"pods": "0"}))
    await controller.start()
    try:
        await eventually(lambda: len(controller.queue) == 1, timeout=5)
    finally:
        await controller.stop()
