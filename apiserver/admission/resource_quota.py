"""ResourceQuota admission (plugin/pkg/admission/resourcequota): a new object is charged to
every quota of its namespace that covers it before it is stored, so concurrent creates never
take a quota past its hard limits.

The charge is a compare-and-swap of the quota's status.used on its resourceVersion: a quota that
changed meanwhile (another API server charged it, the controller recomputed it) is read again
and the object evaluated against it anew. Creates in one namespace charge one at a time on this
server, so they do not conflict with each other. The controller manager's quota controller
recomputes status.used from the objects that exist, which gives back what deleted objects (and
creates that failed after their charge) held.
"""

from __future__ import annotations

import asyncio
import weakref

from apiserver.admission.objects import Sources
from apiserver.admission.plugin import CREATE, Attributes, Plugin
from apiserver.storage import conflict
from kubelite.api import meta as m
from kubelite.api import quota
from kubelite.api.errors import Conflict, NotFound
from kubelite.api.registry import by_kind
from protos.v1 import objects_pb2 as v1

CHARGE_ATTEMPTS = 30
"""Re-reads of a quota that keeps changing under a charge before the create fails."""
RESOURCE_QUOTAS = by_kind("ResourceQuota")


class ResourceQuotaAdmission(Plugin):
    name = "ResourceQuota"

    def __init__(self, sources: Sources) -> None:
        self.quotas = sources.store("resourcequotas")
        self.storage = sources.storage
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def _lock(self, namespace: str) -> asyncio.Lock:
        lock = self._locks.get(namespace)
        if lock is None:
            lock = self._locks[namespace] = asyncio.Lock()
        return lock

    async def _quotas(self, namespace: str) -> list[v1.ResourceQuota]:
        items = await self.quotas.in_namespace(namespace)
        return sorted((q for q in items if isinstance(q, v1.ResourceQuota)),
                      key=lambda q: q.metadata.name)

    async def validate(self, a: Attributes) -> None:
        if a.operation != CREATE or a.subresource or not a.rtype.namespaced or a.obj is None:
            return
        if not await self._quotas(a.namespace):
            return  # nothing to charge: creates here need not wait for each other
        async with self._lock(a.namespace):
            # Read again: the charges made while this create waited are in the copy now.
            quotas = await self._quotas(a.namespace)
            # Every quota must take the object before any is charged.
            charged = [q for q in quotas if self.charge(a, q) is not None]
            if a.dry_run:
                return
            for resource_quota in charged:
                await self._commit(a, resource_quota)

    def charge(self, a: Attributes, resource_quota: v1.ResourceQuota) -> quota.Usage | None:
        """The quota's status.used with ``a.obj`` charged; None when the quota does not cover
        it; Forbidden when it may not take it."""
        assert a.obj is not None
        name = resource_quota.metadata.name
        if not quota.matches_scopes(resource_quota.spec.scopes, a.obj):
            return None
        try:
            hard = quota.parse_list(resource_quota.status.hard)
            used = quota.parse_list(resource_quota.status.used)
        except ValueError as e:
            raise a.forbidden(f"quota {name} is not valid: {e}") from None
        restricted = quota.matching(a.rtype, hard)
        if not restricted:
            return None
        if isinstance(a.obj, v1.Pod):
            why = quota.pod_constraints(restricted, a.obj)
            if why:
                raise a.forbidden(f"failed quota: {name}: {why}")
        if any(n not in used for n in restricted):
            # The controller has not counted what exists yet.
            raise a.forbidden(
                f"status unknown for quota: {name}, resources: {','.join(restricted)}"
            )
        requested = {
            n: q for n, q in quota.mask(quota.usage(a.rtype, a.obj), restricted).items()
            if not q.is_zero()
        }
        if not requested:
            return None
        new_used = quota.add(used, requested)
        over = quota.exceeded(quota.mask(new_used, requested), hard)
        if over:
            raise a.forbidden(
                f"exceeded quota: {name}, requested: {quota.pretty(quota.mask(requested, over))}"
                f", used: {quota.pretty(quota.mask(used, over))}"
                f", limited: {quota.pretty(quota.mask(hard, over))}"
            )
        return new_used

    async def _commit(self, a: Attributes, resource_quota: v1.ResourceQuota) -> None:
        current = resource_quota
        for _ in range(CHARGE_ATTEMPTS):
            new_used = self.charge(a, current)
            if new_used is None:
                return  # the quota changed and no longer covers the object
            updated = m.copy(current)
            updated.status.used.clear()
            updated.status.used.update(quota.format_list(new_used))
            try:
                stored = await self.storage.update(
                    RESOURCE_QUOTAS, updated, int(current.metadata.resource_version)
                )
            except Conflict:
                try:
                    fresh = await self.storage.get(RESOURCE_QUOTAS, a.namespace,
                                                   current.metadata.name)
                except NotFound:
                    return
                assert isinstance(fresh, v1.ResourceQuota)
                current = fresh
                continue
            except NotFound:
                return  # deleted meanwhile: nothing left to charge
            self.quotas.wrote(stored)
            return
        raise conflict(RESOURCE_QUOTAS, current.metadata.name)
