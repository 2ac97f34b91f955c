"""The namespace controller, as Kubernetes' pkg/controller/namespace: a namespace being
deleted is emptied of every namespaced kind, and once nothing is left its "kubernetes"
finalizer is removed, which lets the API server delete it.

Pods may take their grace period to go; the namespace is looked at again when one of its
pods is deleted, and otherwise after the longest remaining grace period or a short backoff.
"""

from __future__ import annotations

from collections import Counter

import structlog
from google.protobuf.message import Message

from controller_manager.context import ControllerContext
from kubelite.api import meta as m
from kubelite.api.errors import Conflict, NotFound
from kubelite.api.registry import RESOURCES, ResourceType
from kubelite.client.controller import Controller
from kubelite.client.informer import Informer
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

NAMESPACE_FINALIZER = "kubernetes"
NAMESPACED = tuple(r for r in RESOURCES if r.namespaced and r.stored)
RECHECK_INITIAL = 0.1
RECHECK_MAX = 5.0
UPDATE_ATTEMPTS = 5


def remaining_grace(obj: Message, now_seconds: float) -> float:
    """Seconds until a terminating pod's grace period ends (0 for anything else)."""
    meta = m.meta(obj)
    if not isinstance(obj, v1.Pod) or not meta.deletion_timestamp:
        return 0.0
    return max(0.0, m.parse_time(meta.deletion_timestamp).timestamp() - now_seconds)


class NamespaceController(Controller):
    name = "namespace-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx.settings.workers, ctx.rate_limit)
        self.client = ctx.client
        self.namespaces: Informer[v1.Namespace] = ctx.informers.informer(v1.Namespace)
        self.pods: Informer[v1.Pod] = ctx.informers.informer(v1.Pod)
        self._recheck: dict[str, float] = {}
        self.namespaces.add_handlers(
            on_add=self._namespace_changed,
            on_update=lambda _old, new: self._namespace_changed(new),
            on_delete=self._namespace_deleted,
        )
        self.pods.add_handlers(on_delete=self._pod_deleted)

    def _namespace_changed(self, ns: v1.Namespace) -> None:
        if ns.metadata.deletion_timestamp:
            self.enqueue(ns)

    def _namespace_deleted(self, ns: v1.Namespace) -> None:
        self._recheck.pop(ns.metadata.name, None)

    def _pod_deleted(self, pod: v1.Pod) -> None:
        ns = self.namespaces.store.get(pod.metadata.namespace)
        if ns is not None and ns.metadata.deletion_timestamp:
            self.enqueue(ns)

    async def reconcile(self, key: str) -> None:
        ns = self.namespaces.store.get(key)
        if ns is None or not ns.metadata.deletion_timestamp:
            return
        if NAMESPACE_FINALIZER not in ns.spec.finalizers:
            return
        remaining, wait = await self._delete_content(key)
        if remaining:
            delay = self._recheck.get(key, RECHECK_INITIAL)
            self._recheck[key] = min(delay * 2, RECHECK_MAX)
            log.info("namespace content remaining", namespace=key,
                     remaining=dict(remaining), recheck_in=round(max(delay, wait), 2))
            self.queue.add_after(key, max(delay, wait))
            return
        self._recheck.pop(key, None)
        await self._finalize(ns)

    async def _delete_content(self, namespace: str) -> tuple[Counter[str], float]:
        """Deletes what is not yet being deleted; returns what is still there, by resource,
        and how long the slowest terminating pod may still take."""
        remaining: Counter[str] = Counter()
        wait = 0.0
        now = m.now().timestamp()
        for rtype in NAMESPACED:
            items = (await self.client.list(rtype.message, namespace)).items
            if not items:
                continue
            for obj in items:
                if not m.meta(obj).deletion_timestamp:
                    await self._delete(rtype, obj)
            # Deletes without finalizers or grace are done at once; count what stays.
            left = (await self.client.list(rtype.message, namespace)).items
            if left:
                remaining[rtype.plural] = len(left)
                wait = max([wait, *(remaining_grace(o, now) for o in left)])
        return remaining, wait

    async def _delete(self, rtype: ResourceType, obj: Message) -> None:
        meta = m.meta(obj)
        try:
            await self.client.delete(rtype.message, meta.name, meta.namespace, uid=meta.uid)
        except (NotFound, Conflict):
            pass  # gone already, or replaced (the next pass sees the new one)

    async def _finalize(self, ns: v1.Namespace) -> None:
        name = ns.metadata.name
        for _ in range(UPDATE_ATTEMPTS):
            try:
                current = await self.client.get(v1.Namespace, name)
            except NotFound:
                return
            if current.metadata.uid != ns.metadata.uid:
                return
            if NAMESPACE_FINALIZER not in current.spec.finalizers:
                return
            keep = [f for f in current.spec.finalizers if f != NAMESPACE_FINALIZER]
            del current.spec.finalizers[:]
            current.spec.finalizers.extend(keep)
            try:
                await self.client.update(current)
            except Conflict:
                continue
            except NotFound:
                return
            log.info("namespace emptied; finalized", namespace=name)
            return
        raise Conflict(f"could not finalize namespace {name}: kept conflicting")
