"""The API's semantics over storage: what create, update, patch, delete and watch mean.

The gRPC servicer only decodes requests and encodes answers; everything Kubernetes-specific
(system fields, generation, defaults and validation, finalizers and graceful deletion,
namespaces, selectors, bind) lives here so tests can drive it in-process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import posixpath
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import structlog
from google.protobuf.message import Message

from apiserver.admission import Admission, AdmissionSettings
from apiserver.allocator import ServiceAllocator
from apiserver.consistent_read import CurrentRevision, progress_notify_is_reliable
from apiserver.event_leases import EventLeases
from apiserver.kind_hooks import EventHooks, KindHooks, NamespaceHooks, PodHooks, ServiceHooks
from apiserver.storage import Storage, conflict, not_found
from apiserver.watch_cache import (
    ADDED,
    BOOKMARK,
    DELETED,
    WATCH_BATCH,
    NotCached,
    ResourceWatchCache,
    WatchBatch,
    WatchCacheSettings,
    WatchItem,
)
from kubelite.api import convert, fields, labels, patches, pods, validation
from kubelite.api import meta as m
from kubelite.api.errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    MethodNotAllowed,
    NotFound,
)
from kubelite.api.field_errors import FieldPath
from kubelite.api.registry import RESOURCES, ResourceType, by_kind
from kubelite.api.strategies.base import MAX_GRACE_PERIOD_SECONDS, has_spec
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
PROPAGATION_POLICIES = ("Background", "Foreground", "Orphan")
FOREGROUND_FINALIZER = "foregroundDeletion"
ORPHAN_FINALIZER = "orphan"
GENERATE_NAME_ATTEMPTS = 8
NAMESPACES = by_kind("Namespace")
PODS = by_kind("Pod")


@dataclass(frozen=True)
class ApiSettings:
    storage_prefix: str = "/registry"
    """Key prefix of every object in etcd."""
    watch_cache: WatchCacheSettings = WatchCacheSettings()
    """Window size and timers of the per-resource watch caches."""
    max_request_bytes: int = 3 * 1024 * 1024
    """Largest request the API takes (Kubernetes' MaxRequestBodyBytes, 3 MiB: twice etcd's
    1.5 MiB request limit); a larger one is RequestEntityTooLarge and changes nothing."""
    default_pod_grace_seconds: int = 30
    """Grace period of a pod deletion when neither the request nor the pod names one."""
    service_cluster_ip_range: str = "127.96.0.0/16"
    """CIDR that Service ClusterIPs are allocated from. A loopback block, so that every
    node's proxy can bind the ClusterIPs without privileges (Kubernetes: 10.96.0.0/12)."""
    service_node_port_range: str = "30000-32767"
    """Ports that NodePort and LoadBalancer Services get their nodePorts from."""
    default_toleration_seconds: int = 300
    """tolerationSeconds of the not-ready/unreachable NoExecute tolerations added to every
    pod that does not tolerate those taints already (DefaultTolerationSeconds admission)."""
    event_ttl: int = 3600
    """Seconds an Event lives before etcd removes it (Kubernetes' --event-ttl); 0: forever."""
    admission: AdmissionSettings = AdmissionSettings()
    """Which admission plugins check writes (apiserver.admission)."""


def _parse_revision(text: str, what: str = "resourceVersion") -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f'{what}: Invalid value: "{text}": must be an integer') from None
    if value < 0:
        raise BadRequest(f'{what}: Invalid value: "{text}": must not be negative')
    return value


@dataclass(frozen=True)
class Selectors:
    label: labels.Selector | None
    field: fields.FieldSelector | None

    def matches(self, obj: Message) -> bool:
        if self.label is not None and not self.label.matches(m.meta(obj).labels):
            return False
        return self.field is None or self.field.matches(obj)

    @property
    def empty(self) -> bool:
        return self.label is None and self.field is None


def parse_selectors(rtype: ResourceType, label_selector: str, field_selector: str) -> Selectors:
    try:
        label = labels.parse_selector(label_selector) if label_selector.strip() else None
    except ValueError as e:
        raise BadRequest(f"unable to parse requirement: {e}") from e
    try:
        field = (
            fields.parse_field_selector(field_selector, rtype.kind)
            if field_selector.strip()
            else None
        )
    except ValueError as e:
        raise BadRequest(str(e)) from e
    return Selectors(label, field)


CONTINUE_VERSION = "meta.k8s.io/v1"
MAX_REVISION = 2**63 - 1


def _encode_continue(
    rtype: ResourceType, namespace: str, revision: int, prefix: bytes, next_key: bytes
) -> str:
    """Where the next page starts: the list's revision and its next key relative to the list's
    prefix, bound to the list's resource and namespace (as Kubernetes keys it: a relative key
    can only ever continue inside the prefix of the list that gets it)."""
    payload = {
        "v": CONTINUE_VERSION, "rv": revision, "start": next_key[len(prefix):].decode(),
        "resource": rtype.plural, "namespace": namespace,
    }
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


def _decode_continue(
    token: str, rtype: ResourceType, namespace: str, prefix: bytes
) -> tuple[int, bytes]:
    """The revision and the absolute start key of a continue token given with this list;
    BadRequest for a token that is malformed or comes from another list."""
    def invalid(why: str) -> BadRequest:
        return BadRequest(f"continue key is not valid: {why}")

    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError as e:
        raise invalid(str(e)) from None
    if not isinstance(payload, dict) or payload.get("v") != CONTINUE_VERSION:
        raise invalid(f'not a version "{CONTINUE_VERSION}" continue token')
    revision, start = payload.get("rv"), payload.get("start")
    if type(revision) is not int or not 0 < revision <= MAX_REVISION:
        raise invalid(f"incorrect encoded start resourceVersion: {revision!r}")
    if not isinstance(start, str) or not start:
        raise invalid("encoded start key empty")
    if payload.get("resource") != rtype.plural or payload.get("namespace") != namespace:
        raise invalid(
            f'it continues a list of {payload.get("resource")!r} in namespace'
            f' {payload.get("namespace")!r}, not this list of {rtype.plural!r} in namespace'
            f" {namespace!r}"
        )
    if posixpath.normpath("/" + start) != "/" + start:
        raise invalid(f"start key {start!r} is not a plain key below the list's prefix")
    return revision, prefix + start.encode()


class Api:
    def __init__(self, storage: Storage, settings: ApiSettings = ApiSettings()) -> None:
        self.storage = storage
        self.settings = settings
        self.caches = {
            r.plural: ResourceWatchCache(storage, r, settings.watch_cache)
            for r in RESOURCES
            if r.stored
        }
        # name -> terminating?, from the namespaces watch: spares creates an etcd read.
        self._namespaces: dict[str, bool] = {}
        self._namespace_task: asyncio.Task[None] | None = None
        self._event_leases = EventLeases(storage.etcd, settings.event_ttl)
        self.services = ServiceAllocator(
            storage.etcd, storage.prefix, settings.service_cluster_ip_range,
            settings.service_node_port_range,
        )
        self.hooks: dict[str, KindHooks] = {
            "Pod": PodHooks(settings.default_toleration_seconds),
            "Namespace": NamespaceHooks(SYSTEM_NAMESPACES[:3], self._mark_terminating),
            "Event": EventHooks(self._event_leases),
            "Service": ServiceHooks(self.services, storage, by_kind("Service")),
        }
        """The server's part per kind (by kind); other kinds get ``KindHooks``."""
        self.admission = Admission(settings.admission, storage, self.caches)
        self.current_revision = CurrentRevision(
            storage.etcd, settings.watch_cache.consistent_read_linger)
        """etcd's revision for consistent reads from the caches, one request per burst."""
        self.stale_update_retries = 0
        """Updates whose attempt on the watch cache's copy was made again on the current
        object (a stale copy, or an answer without a write)."""

    async def start(self) -> None:
        version = (await self.storage.etcd.status()).version
        trust = progress_notify_is_reliable(version)
        if not trust:
            log.info("etcd's progress notifications are not relied on for reads from the"
                     " watch cache (they are from 3.4.31 and 3.5.13)", etcd_version=version)
        for cache in self.caches.values():
            cache.trust_progress = trust
            await cache.start()
        await self.admission.start()
        await self.ensure_system_namespaces()
        self._namespace_task = asyncio.create_task(self._track_namespaces(), name="namespaces")

    async def stop(self) -> None:
        if self._namespace_task is not None:
            self._namespace_task.cancel()
            await asyncio.gather(self._namespace_task, return_exceptions=True)
        await self.admission.stop()
        await self.services.close()
        for cache in self.caches.values():
            await cache.stop()
        await self.current_revision.close()

    async def _track_namespaces(self) -> None:
        while True:
            try:
                result = await self.storage.list(NAMESPACES)
                self._namespaces = {
                    m.meta(ns).name: bool(m.meta(ns).deletion_timestamp) for ns in result.items
                }
                async for item in self.caches["namespaces"].watch(result.revision, "", None):
                    if item.type == BOOKMARK:
                        continue
                    ns = NAMESPACES.decode(item.data)
                    name = m.meta(ns).name
                    if item.type == DELETED:
                        self._namespaces.pop(name, None)
                    else:
                        # Terminating is for good (this server's delete may have said so
                        # before the watch did): an older event does not undo it.
                        terminating = bool(m.meta(ns).deletion_timestamp)
                        self._namespaces[name] = self._namespaces.get(name, False) or terminating
            except Exception as e:
                # Never the end of tracking: until the relist, every namespace is unknown
                # here, so creates ask etcd.
                self._namespaces = {}
                if isinstance(e, ApiError):
                    log.warning("namespace tracking interrupted; relisting", error=str(e))
                else:
                    log.exception("namespace tracking failed; relisting")
                await asyncio.sleep(0.5)

    def _mark_terminating(self, namespace: str) -> None:
        self._namespaces[namespace] = True

    @staticmethod
    def _stored(rtype: ResourceType) -> None:
        """Refuses every verb but create on kinds that are evaluated, never stored."""
        if not rtype.stored:
            raise MethodNotAllowed(
                "the server does not allow this method on the requested resource"
                f" ({rtype.plural} are only ever created)")

    def _hooks(self, rtype: ResourceType) -> KindHooks:
        return self.hooks.get(rtype.kind, _NO_HOOKS)

    async def ensure_system_namespaces(self) -> None:
        for name in SYSTEM_NAMESPACES:
            try:
                await self.create(NAMESPACES, "", v1.Namespace(metadata=v1.ObjectMeta(name=name)))
            except AlreadyExists:
                pass

    # ------------------------------------------------------------ reads

    async def get(self, rtype: ResourceType, namespace: str, name: str) -> Message:
        self._stored(rtype)
        return rtype.decode(await self.get_serialized(rtype, namespace, name))

    async def get_serialized(self, rtype: ResourceType, namespace: str, name: str) -> bytes:
        """The object as stored, with its resourceVersion, as of now: from the watch cache
        once it has caught up with etcd's current revision, else from etcd."""
        self._stored(rtype)
        namespace = self._namespace_for(rtype, namespace)
        return await self._read(rtype, namespace, name)

    async def _read(self, rtype: ResourceType, namespace: str, name: str) -> bytes:
        """A consistent read of one object (apiserver/consistent_read.py)."""
        cache = self.caches[rtype.plural]
        data = await cache.read(self.storage.key(rtype, namespace, name),
                                await self.current_revision.get())
        if data is None:
            raise not_found(rtype, name)
        if isinstance(data, NotCached):
            return await self.storage.get_raw(rtype, namespace, name)
        return data

    async def _read_object(self, rtype: ResourceType, namespace: str, name: str) -> Message:
        return rtype.decode(await self._read(rtype, namespace, name))

    def _cached_object(self, rtype: ResourceType, namespace: str, name: str) -> Message | None:
        """The watch cache's newest copy of the object, perhaps stale (None: it has none):
        where to start a write whose condition on the resourceVersion finds out."""
        data = self.caches[rtype.plural].latest(self.storage.key(rtype, namespace, name))
        return None if isinstance(data, NotCached) else rtype.decode(data)

    async def list(
        self,
        rtype: ResourceType,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
    ) -> tuple[list[Message], int, str]:
        self._stored(rtype)
        selectors = parse_selectors(rtype, label_selector, field_selector)
        namespace = self._namespace_for(rtype, namespace)
        prefix = self.storage.resource_prefix(rtype, namespace)
        revision, start = (0, None)
        if continue_token:
            revision, start = _decode_continue(continue_token, rtype, namespace, prefix)
        if limit < 0:
            raise BadRequest(f"limit: Invalid value: {limit}: must not be negative")
        result = await self.storage.list(
            rtype, namespace, revision=revision, limit=limit, start_key=start
        )
        items = [o for o in result.items if selectors.matches(o)]
        token = ""
        if result.next_key:
            token = _encode_continue(rtype, namespace, result.revision, prefix, result.next_key)
        return items, result.revision, token

    async def watch(
        self,
        rtype: ResourceType,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
    ) -> AsyncIterator[WatchItem]:
        batches = self.watch_batches(rtype, namespace, label_selector, field_selector,
                                     resource_version)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                for item in batch:
                    yield item

    async def watch_batches(
        self,
        rtype: ResourceType,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
    ) -> AsyncGenerator[WatchBatch, None]:
        """The watch's items in lists of those ready at once (see ResourceWatchCache)."""
        self._stored(rtype)
        selectors = parse_selectors(rtype, label_selector, field_selector)
        matches = None if selectors.empty else selectors.matches
        namespace = namespace if rtype.namespaced else ""
        cache = self.caches[rtype.plural]
        if resource_version in ("", "0"):
            # Kubernetes' "start at most recent": the current objects as ADDED, then changes.
            result = await self.storage.list(rtype, namespace)
            added = [WatchItem(ADDED, result.revision, obj.SerializeToString())
                     for obj in result.items if matches is None or matches(obj)]
            for start in range(0, len(added), WATCH_BATCH):
                yield added[start:start + WATCH_BATCH]
            after = result.revision
        else:
            after = _parse_revision(resource_version)
        batches = cache.watch_batches(after, namespace, matches)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                yield batch

    # ------------------------------------------------------------ writes

    def _namespace_for(self, rtype: ResourceType, namespace: str) -> str:
        return namespace if rtype.namespaced else ""

    async def _check_namespace(self, rtype: ResourceType, namespace: str) -> None:
        if not rtype.namespaced or self._namespaces.get(namespace) is False:
            return
        # Unknown or terminating here: etcd decides (a namespace created a moment ago may
        # not have reached the watch yet).
        try:
            ns = await self.storage.get(NAMESPACES, "", namespace)
        except NotFound:
            raise NotFound(f'namespaces "{namespace}" not found') from None
        if m.meta(ns).deletion_timestamp:
            raise Forbidden(
                f"{rtype.plural} \"{m.meta(ns).name}\" is forbidden: unable to create new content"
                f" in namespace {namespace} because it is being terminated"
            )

    def _validate(self, rtype: ResourceType, obj: Message, old: Message | None = None) -> None:
        errors = validation.validate(obj, old)
        if errors:
            name = m.meta(obj).name or m.meta(obj).generate_name
            raise Invalid.from_field_errors(rtype.qualified_kind, name, errors)

    async def create(
        self, rtype: ResourceType, namespace: str, obj: Message, dry_run: bool = False
    ) -> Message:
        meta = m.meta(obj)
        if rtype.namespaced:
            if meta.namespace and namespace and meta.namespace != namespace:
                raise BadRequest(
                    "the namespace of the provided object does not match the namespace sent"
                    " on the request"
                )
            meta.namespace = meta.namespace or namespace or "default"
        else:
            meta.namespace = ""
        if meta.resource_version:
            raise BadRequest("resourceVersion should not be set on objects to be created")
        if not meta.name and not meta.generate_name:
            raise Invalid.from_field_errors(
                rtype.qualified_kind, "",
                [FieldPath("metadata.name").required("name or generateName is required")],
            )
        meta.uid = m.new_uid()
        meta.creation_timestamp = m.now_rfc3339()
        meta.ClearField("deletion_timestamp")
        meta.ClearField("deletion_grace_period_seconds")
        meta.generation = 1 if has_spec(obj) else 0
        strategy, hooks = rtype.strategy, self._hooks(rtype)
        strategy.prepare_for_create(obj)
        hooks.admit_create(obj)
        strategy.default(obj)
        generate = not meta.name
        if generate:
            meta.name = m.generated_name(meta.generate_name)
        await self._check_namespace(rtype, meta.namespace)
        attributes = await self.admission.admit_create(rtype, obj, dry_run)
        self._validate(rtype, obj)
        strategy.complete_create(obj)
        await self.admission.validate(attributes)
        if dry_run:
            return obj
        return await hooks.create(obj, lambda lease: self._store_new(rtype, obj, generate, lease))

    async def _store_new(
        self, rtype: ResourceType, obj: Message, generate: bool, lease: int
    ) -> Message:
        meta = m.meta(obj)
        for _ in range(GENERATE_NAME_ATTEMPTS):
            try:
                return await self.storage.create(rtype, obj, lease)
            except AlreadyExists:
                if not generate:
                    raise
                meta.name = m.generated_name(meta.generate_name)
        raise AlreadyExists(f"could not find a free name for generateName {meta.generate_name!r}")

    async def update(
        self, rtype: ResourceType, namespace: str, obj: Message, dry_run: bool = False
    ) -> Message:
        return await self._replace(rtype, namespace, obj, status_only=False, dry_run=dry_run)

    async def update_status(
        self, rtype: ResourceType, namespace: str, obj: Message, dry_run: bool = False
    ) -> Message:
        if not rtype.has_status:
            raise NotFound(f"{rtype.plural} have no status subresource")
        return await self._replace(rtype, namespace, obj, status_only=True, dry_run=dry_run)

    async def _replace(
        self, rtype: ResourceType, namespace: str, obj: Message, *, status_only: bool,
        dry_run: bool,
    ) -> Message:
        meta = m.meta(obj)
        self._stored(rtype)
        namespace = self._namespace_for(rtype, meta.namespace or namespace or "default")
        if not meta.name:
            raise Invalid.from_field_errors(
                rtype.qualified_kind, "", [FieldPath("metadata.name").required()]
            )
        # As Kubernetes' GuaranteedUpdate: first from the watch cache's copy, which the
        # write's condition verifies; an attempt on it that fails before writing, conflicts,
        # or would answer without a write, is made again on the current object.
        current = self._cached_object(rtype, namespace, meta.name)
        while True:
            fresh = current is None
            if current is None:
                current = await self._read_object(rtype, namespace, meta.name)
            try:
                updated = await self._updated(rtype, current, obj, status_only, dry_run)
                if (updated is None or dry_run) and not fresh:
                    raise _NeedsCurrent  # nothing written would verify the cached copy
            except (ApiError, _NeedsCurrent):
                if fresh:
                    raise
                self.stale_update_retries += 1
                current = None
                continue
            if dry_run:
                return current if updated is None else updated
            if updated is None:
                # No change, but a value under an old encryption key is written again.
                return await self.storage.rewrite_if_stale(rtype, current)
            try:
                return await self._write_update(rtype, current, updated)
            except Conflict:
                if fresh:
                    raise
                self.stale_update_retries += 1
                current = None

    async def _updated(
        self, rtype: ResourceType, current: Message, obj: Message, status_only: bool,
        dry_run: bool,
    ) -> Message | None:
        """``current`` updated to ``obj``, checked and admitted; None when nothing changes."""
        meta = m.meta(obj)
        if meta.resource_version and meta.resource_version != m.meta(current).resource_version:
            raise conflict(rtype, meta.name)
        updated = self._merge_update(rtype, current, obj, status_only)
        if updated is not None:
            subresource = "status" if status_only else ""
            await self.admission.update(rtype, current, updated, subresource, dry_run)
        return updated

    def _merge_update(
        self, rtype: ResourceType, current: Message, obj: Message, status_only: bool
    ) -> Message | None:
        """The object to store for an update of ``current`` to ``obj``, None if no change."""
        if status_only:
            updated = m.copy(current)
            updated.ClearField("status")
            updated.status.CopyFrom(obj.status)  # type: ignore[attr-defined]
        else:
            updated = m.copy(obj)
            new_meta, old_meta = m.meta(updated), m.meta(current)
            new_meta.namespace = old_meta.namespace
            for name in ("uid", "creation_timestamp", "deletion_timestamp", "generation"):
                setattr(new_meta, name, getattr(old_meta, name))
            if old_meta.HasField("deletion_grace_period_seconds"):
                new_meta.deletion_grace_period_seconds = old_meta.deletion_grace_period_seconds
            else:
                new_meta.ClearField("deletion_grace_period_seconds")
            rtype.strategy.prepare_for_update(updated, current)
            rtype.strategy.default(updated)
            self._hooks(rtype).prepare_update(updated, current)
            rtype.strategy.bump_generation(updated, current)
        m.meta(updated).resource_version = m.meta(current).resource_version
        self._validate(rtype, updated, current)
        if updated.SerializeToString(deterministic=True) == current.SerializeToString(
            deterministic=True
        ):
            return None
        return updated

    async def _write_update(
        self, rtype: ResourceType, current: Message, updated: Message
    ) -> Message:
        meta = m.meta(updated)
        revision = int(m.meta(current).resource_version)
        # An object in its grace period (a pod: only kinds with graceful deletion have one) is
        # removed by its confirmation, not by the last finalizer going (as Kubernetes: only
        # with deletionGracePeriodSeconds 0).
        in_grace = meta.deletion_grace_period_seconds > 0
        hooks = self._hooks(rtype)
        if meta.deletion_timestamp and rtype.strategy.finalized(updated) and not in_grace:
            await self.storage.delete(rtype, meta.namespace, meta.name, revision)
            await hooks.removed(current)
            return updated
        return await hooks.update(
            current, updated, lambda: self.storage.update(rtype, updated, revision)
        )

    async def patch(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        patch: bytes,
        patch_type: str = "merge",
        subresource: str = "",
    ) -> Message:
        """Applies a strategic merge, JSON merge or JSON patch (kubelite.api.patches) to the
        live object, re-reading and re-applying it when another write lands in between."""
        self._stored(rtype)
        kind = patches.patch_type(patch_type)
        if subresource not in ("", "status"):
            raise BadRequest(f'subresource "{subresource}" is not supported by patch')
        document = patches.decode(patch, kind)
        namespace = self._namespace_for(rtype, namespace or "default")
        # The first round patches the watch cache's copy (see _replace); a round on it that
        # fails before its write or would write nothing is made again on etcd's object.
        current = self._cached_object(rtype, namespace, name)
        for _ in range(20):
            fresh = current is None
            if current is None:
                current = await self._read_object(rtype, namespace, name)
            try:
                updated = await self._patched(rtype, current, document, name, subresource)
                if updated is None and not fresh:
                    raise _NeedsCurrent
            except (ApiError, _NeedsCurrent):
                if fresh:
                    raise
                self.stale_update_retries += 1
                current = None
                continue
            if updated is None:
                return await self.storage.rewrite_if_stale(rtype, current)
            try:
                return await self._write_update(rtype, current, updated)
            except Conflict:
                # Another write landed: the next round patches the new object. A patch that
                # names a resourceVersion (or tests a value) then fails on its own terms.
                current = None
                continue
        raise conflict(rtype, name)

    async def _patched(self, rtype: ResourceType, current: Message,
                       document: patches.Patch, name: str, subresource: str) -> Message | None:
        """``current`` with the patch applied, defaulted, validated and admitted; None when
        that changes nothing."""
        patched = document.apply(convert.to_dict(rtype, current), rtype.message)
        try:
            _, obj = convert.from_dict(patched)
        except convert.ConversionError as e:
            raise Invalid.from_field_errors(rtype.qualified_kind, name, e.errors) from e
        requested_rv = m.meta(obj).resource_version
        if requested_rv != m.meta(current).resource_version:
            raise conflict(rtype, name)
        if m.meta(obj).name != name:
            raise BadRequest("the name of the object does not match the name on the request")
        updated = self._merge_update(rtype, current, obj, status_only=subresource == "status")
        if updated is not None:
            await self.admission.update(rtype, current, updated, subresource, False)
        return updated

    async def delete(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        grace_period_seconds: int | None = None,
        propagation_policy: str = "",
        precondition_uid: str = "",
        precondition_resource_version: str = "",
    ) -> Message:
        self._stored(rtype)
        if propagation_policy and propagation_policy not in PROPAGATION_POLICIES:
            raise BadRequest(
                f'propagationPolicy: Unsupported value: "{propagation_policy}": supported'
                ' values: "Background", "Foreground", "Orphan"'
            )
        if grace_period_seconds is not None and grace_period_seconds > MAX_GRACE_PERIOD_SECONDS:
            raise Invalid.from_field_errors("DeleteOptions.meta.k8s.io", "", [
                FieldPath("gracePeriodSeconds").invalid(
                    grace_period_seconds, f"must be no more than {MAX_GRACE_PERIOD_SECONDS}"
                )
            ])
        if grace_period_seconds is not None and grace_period_seconds < 0:
            grace_period_seconds = 0
        namespace = self._namespace_for(rtype, namespace or "default")
        hooks = self._hooks(rtype)
        hooks.admit_delete(name)
        # The first round starts from the watch cache's copy (see _replace); a round on it
        # that fails before its write or would write nothing is made again on etcd's object.
        current = self._cached_object(rtype, namespace, name)
        for _ in range(20):
            fresh = current is None
            if current is None:
                current = await self._read_object(rtype, namespace, name)
            meta = m.meta(current)
            try:
                if precondition_uid and precondition_uid != meta.uid:
                    raise Conflict(
                        f"Precondition failed: UID in precondition: {precondition_uid}, UID in"
                        f" object meta: {meta.uid}"
                    )
                if precondition_resource_version and (
                    precondition_resource_version != meta.resource_version
                ):
                    raise conflict(rtype, name)
                await self.admission.delete(rtype, current)
                updated = self._mark_deleted(rtype, current, grace_period_seconds,
                                             propagation_policy)
                unchanged = (updated is not None
                             and updated.SerializeToString() == current.SerializeToString())
                if unchanged and not fresh:
                    raise _NeedsCurrent
            except (ApiError, _NeedsCurrent):
                if fresh:
                    raise
                self.stale_update_retries += 1
                current = None
                continue
            revision = int(meta.resource_version)
            try:
                if updated is None:
                    await self.storage.delete(rtype, namespace, name, revision)
                    await hooks.removed(current)
                    return current
                if unchanged:
                    return current
                stored = await self.storage.update(rtype, updated, revision)
                hooks.marked_deleted(stored)
                return stored
            except Conflict:
                if precondition_resource_version:
                    raise
                current = None
        raise conflict(rtype, name)

    def _mark_deleted(
        self, rtype: ResourceType, current: Message, grace: int | None, policy: str
    ) -> Message | None:
        """The object marked for deletion, or None to delete it from storage now."""
        obj = m.copy(current)
        meta = m.meta(obj)
        if policy == "Foreground" and FOREGROUND_FINALIZER not in meta.finalizers:
            meta.finalizers.append(FOREGROUND_FINALIZER)
        elif policy == "Orphan" and ORPHAN_FINALIZER not in meta.finalizers:
            meta.finalizers.append(ORPHAN_FINALIZER)
        strategy = rtype.strategy
        strategy.prepare_for_delete(obj)
        grace = strategy.grace_period(obj, grace, self.settings.default_pod_grace_seconds)
        if grace is not None:
            if grace == 0 and not meta.finalizers:
                return None
            deadline = m.now() + dt.timedelta(seconds=grace)
            if not meta.deletion_timestamp or (
                meta.deletion_grace_period_seconds > grace
            ):
                meta.deletion_timestamp = m.format_time(deadline)
                meta.deletion_grace_period_seconds = grace
            return obj
        if strategy.finalized(obj):
            return None
        if not meta.deletion_timestamp:
            meta.deletion_timestamp = m.now_rfc3339()
            meta.deletion_grace_period_seconds = 0
        return obj

    async def bind(self, namespace: str, name: str, node_name: str, pod_uid: str = "") -> Message:
        if not node_name:
            raise Invalid.from_field_errors(
                "Binding", name, [FieldPath("target.name").required()]
            )

        async def assign(pod: Message) -> Message:
            assert isinstance(pod, v1.Pod)
            if pod_uid and pod.metadata.uid != pod_uid:
                raise Conflict(
                    f"Precondition failed: UID in precondition: {pod_uid}, UID in object meta:"
                    f" {pod.metadata.uid}"
                )
            if pod.metadata.deletion_timestamp:
                raise Conflict(f"pod {name} is being deleted, cannot be assigned to a host")
            if pod.spec.node_name:
                raise Conflict(f'pod {name} is already assigned to node "{pod.spec.node_name}"')
            pod.spec.node_name = node_name
            pods.set_condition(pod, "PodScheduled", "True")
            return pod

        namespace = namespace or "default"
        return await self.storage.guaranteed_update(
            PODS, namespace, name, assign, cached=self._cached_object(PODS, namespace, name))


class _NeedsCurrent(Exception):
    """An update attempt on the watch cache's copy would answer without a write that
    verifies the copy: it is made again on the current object."""


_NO_HOOKS = KindHooks()

__all__ = ["Api", "ApiSettings", "not_found"]
