"""The resource quota controller, as Kubernetes' pkg/controller/resourcequota: each
ResourceQuota's status says what its namespace uses (status.used, recomputed from the objects
that exist) against its limits (status.hard, copied from spec.hard).

The API server's ResourceQuota admission charges status.used as objects are created and refuses
creates while a quota's status is unknown; this controller fills the status in when a quota is
made or its limits change, gives back what deleted pods and Services held (and pods that
finished), and recomputes every quota each ``resource_quota_sync_period`` (which also gives back
other kinds' deletions and charges of creates that then failed).
"""

from __future__ import annotations

import asyncio

import structlog
from google.protobuf.message import Message

from controller_manager.context import ControllerContext
from kubelite.api import meta as m
from kubelite.api import quota
from kubelite.api.errors import NotFound
from kubelite.api.quantity import Quantity
from kubelite.api.registry import RESOURCES, ResourceType, by_kind
from kubelite.client.controller import Controller
from kubelite.client.informer import Informer
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

COUNTED = tuple(r for r in RESOURCES if r.namespaced and r.stored)
"""The kinds whose objects quotas can count."""
PODS = by_kind("Pod")
SERVICES = by_kind("Service")


def status_current(q: v1.ResourceQuota) -> bool:
    """The status has the spec's limits and a usage for each of them this controller counts."""
    if dict(q.status.hard) != dict(q.spec.hard):
        return False
    counted = {n for r in COUNTED for n in quota.matching(r, q.spec.hard)}
    return counted <= set(q.status.used)


class ResourceQuotaController(Controller):
    name = "resourcequota-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx.settings.workers, ctx.rate_limit)
        self.client = ctx.client
        self.sync_period = ctx.settings.resource_quota_sync_period
        self.quotas: Informer[v1.ResourceQuota] = ctx.informers.informer(v1.ResourceQuota)
        self.pods: Informer[v1.Pod] = ctx.informers.informer(v1.Pod)
        self.services: Informer[v1.Service] = ctx.informers.informer(v1.Service)
        self.quotas.add_handlers(on_add=self.enqueue, on_update=self._quota_updated)
        self.pods.add_handlers(on_update=self._pod_updated,
                               on_delete=lambda pod: self._replenish(PODS, pod))
        self.services.add_handlers(on_update=self._service_updated,
                                   on_delete=lambda svc: self._replenish(SERVICES, svc))
        self._resync: asyncio.Task[None] | None = None

    def _quota_updated(self, old: v1.ResourceQuota, new: v1.ResourceQuota) -> None:
        # A charge by admission changes status.used only: nothing to recompute.
        if old.spec.hard != new.spec.hard or not status_current(new):
            self.enqueue(new)

    def _pod_updated(self, old: v1.Pod, new: v1.Pod) -> None:
        if quota.counts_against_quota(old) and not quota.counts_against_quota(new):
            self._replenish(PODS, new)

    def _service_updated(self, old: v1.Service, new: v1.Service) -> None:
        if quota.service_usage(old) != quota.service_usage(new):
            self._replenish(SERVICES, new)

    def _replenish(self, rtype: ResourceType, obj: Message) -> None:
        """Recomputes the quotas of the object's namespace that count its kind."""
        for q in self.quotas.store.by_index("namespace", m.meta(obj).namespace):
            if quota.matching(rtype, q.spec.hard):
                self.enqueue(q)

    async def start(self) -> None:
        if self.sync_period > 0:
            self._resync = asyncio.create_task(self._resync_forever(), name=f"{self.name}-resync")

    async def stop(self) -> None:
        if self._resync is not None:
            self._resync.cancel()
            await asyncio.gather(self._resync, return_exceptions=True)
            self._resync = None
        await super().stop()

    async def _resync_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sync_period)
            for q in self.quotas.store.items():
                self.enqueue(q)

    async def _objects(self, rtype: ResourceType, namespace: str) -> list[Message]:
        if rtype is PODS:
            return list(self.pods.store.by_index("namespace", namespace))
        if rtype is SERVICES:
            return list(self.services.store.by_index("namespace", namespace))
        return list((await self.client.list(rtype.message, namespace)).items)

    async def usage(self, q: v1.ResourceQuota) -> quota.Usage:
        """What the namespace's objects covered by ``q`` use of its limits (zero for every
        limit nothing uses)."""
        now = m.now()
        used: quota.Usage = {}
        for rtype in COUNTED:
            names = quota.matching(rtype, q.spec.hard)
            if not names:
                continue
            total = {n: Quantity.zero() for n in names}
            for obj in await self._objects(rtype, q.metadata.namespace):
                if quota.matches_scopes(q.spec.scopes, obj):
                    total = quota.add(total, quota.mask(quota.usage(rtype, obj, now), names))
            used.update(total)
        return used

    async def reconcile(self, key: str) -> None:
        q = self.quotas.store.get(key)
        if q is None:
            return
        try:
            previous = quota.parse_list(q.status.used)
        except ValueError:
            previous = {}  # recomputed below
        used = quota.mask({**previous, **await self.usage(q)}, q.spec.hard)
        if dict(q.status.hard) == dict(q.spec.hard) and dict(q.status.used) == (
            quota.format_list(used)
        ):
            return
        updated = m.copy(q)
        updated.status.hard.clear()
        updated.status.hard.update(q.spec.hard)
        updated.status.used.clear()
        updated.status.used.update(quota.format_list(used))
        try:
            await self.client.update_status(updated)
        except NotFound:
            return
        log.debug("quota usage", quota=key, used=dict(updated.status.used))
