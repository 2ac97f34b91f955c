"""The API's semantics over storage: what create, update, patch, delete and watch mean.

The gRPC servicer only decodes requests and encodes answers; everything Kubernetes-specific
(system fields, generation, defaults and validation, finalizers and graceful deletion,
namespaces, selectors, bind) lives here so tests can drive it in-process.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import posixpath
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from google.protobuf.message import Message

from apiserver.allocator import Held, ServiceAllocator, held_by
from apiserver.event_leases import EventLeases
from apiserver.storage import Storage, conflict, not_found
from apiserver.watch_cache import (
    ADDED,
    BOOKMARK,
    DELETED,
    ResourceWatchCache,
    WatchCacheSettings,
    WatchItem,
)
from kubelite.api import convert, defaults, fields, labels, patches, pods, validation
from kubelite.api import meta as m
from kubelite.api.errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
)
from kubelite.api.field_errors import FieldPath
from kubelite.api.registry import RESOURCES, ResourceType, by_kind
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
PROPAGATION_POLICIES = ("Background", "Foreground", "Orphan")
FOREGROUND_FINALIZER = "foregroundDeletion"
ORPHAN_FINALIZER = "orphan"
NAMESPACE_FINALIZER = "kubernetes"
GENERATE_NAME_ATTEMPTS = 8
MAX_GRACE_PERIOD_SECONDS = 2**32 - 1
"""The longest grace period a deletion takes (136 years: its deadline stays a date)."""
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


def _has_spec(rtype: ResourceType) -> bool:
    return "spec" in rtype.message.DESCRIPTOR.fields_by_name


def _spec_bytes(obj: Message) -> bytes:
    """What decides whether generation moves: everything but metadata and status.

    Deterministic serialization, so maps built in another order compare equal.
    """
    rest = m.copy(obj)
    rest.ClearField("metadata")
    if "status" in rest.DESCRIPTOR.fields_by_name:
        rest.ClearField("status")
    return rest.SerializeToString(deterministic=True)


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
            r.plural: ResourceWatchCache(storage, r, settings.watch_cache) for r in RESOURCES
        }
        # name -> terminating?, from the namespaces watch: spares creates an etcd read.
        self._namespaces: dict[str, bool] = {}
        self._namespace_task: asyncio.Task[None] | None = None
        self._event_leases = EventLeases(storage.etcd, settings.event_ttl)
        self.services = ServiceAllocator(
            storage.etcd, storage.prefix, settings.service_cluster_ip_range,
            settings.service_node_port_range,
        )

    async def start(self) -> None:
        for cache in self.caches.values():
            await cache.start()
        await self.ensure_system_namespaces()
        self._namespace_task = asyncio.create_task(self._track_namespaces(), name="namespaces")

    async def stop(self) -> None:
        if self._namespace_task is not None:
            self._namespace_task.cancel()
            await asyncio.gather(self._namespace_task, return_exceptions=True)
        await self.services.close()
        for cache in self.caches.values():
            await cache.stop()

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

    async def ensure_system_namespaces(self) -> None:
        for name in SYSTEM_NAMESPACES:
            try:
                await self.create(NAMESPACES, "", v1.Namespace(metadata=v1.ObjectMeta(name=name)))
            except AlreadyExists:
                pass

    # ------------------------------------------------------------ reads

    async def get(self, rtype: ResourceType, namespace: str, name: str) -> Message:
        return await self.storage.get(rtype, self._namespace_for(rtype, namespace), name)

    async def get_serialized(self, rtype: ResourceType, namespace: str, name: str) -> bytes:
        return await self.storage.get_raw(rtype, self._namespace_for(rtype, namespace), name)

    async def list(
        self,
        rtype: ResourceType,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
    ) -> tuple[list[Message], int, str]:
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
        selectors = parse_selectors(rtype, label_selector, field_selector)
        matches = None if selectors.empty else selectors.matches
        namespace = namespace if rtype.namespaced else ""
        cache = self.caches[rtype.plural]
        if resource_version in ("", "0"):
            # Kubernetes' "start at most recent": the current objects as ADDED, then changes.
            result = await self.storage.list(rtype, namespace)
            for obj in result.items:
                if matches is None or matches(obj):
                    yield WatchItem(ADDED, result.revision, obj.SerializeToString())
            after = result.revision
        else:
            after = _parse_revision(resource_version)
        async for item in cache.watch(after, namespace, matches):
            yield item

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
        meta.generation = 1 if _has_spec(rtype) else 0
        self._prepare_for_create(rtype, obj)
        defaults.apply_defaults(obj)
        generate = not meta.name
        if generate:
            meta.name = m.generated_name(meta.generate_name)
        self._validate(rtype, obj)
        if isinstance(obj, v1.Pod):
            obj.status.qos_class = pods.qos_class(obj)  # needs valid quantities
        await self._check_namespace(rtype, meta.namespace)
        if dry_run:
            return obj
        if not isinstance(obj, v1.Service):
            return await self._store_new(rtype, obj, generate)
        held = await self.services.allocate_create(obj)
        try:
            return await self._store_new(rtype, obj, generate)
        except BaseException as e:
            await self._release_unless_stored(rtype, obj, held, e)
            raise

    async def _store_new(self, rtype: ResourceType, obj: Message, generate: bool) -> Message:
        meta = m.meta(obj)
        for _ in range(GENERATE_NAME_ATTEMPTS):
            try:
                lease = await self._event_leases.lease() if isinstance(obj, v1.Event) else 0
                return await self.storage.create(rtype, obj, lease)
            except AlreadyExists:
                if not generate:
                    raise
                meta.name = m.generated_name(meta.generate_name)
        raise AlreadyExists(f"could not find a free name for generateName {meta.generate_name!r}")

    async def _release_unless_stored(
        self, rtype: ResourceType, obj: Message, held: Held, error: BaseException
    ) -> None:
        """After a failed Service write: give back what it took, unless the outcome is unknown
        and the object did land (a leaked IP is better than one handed out twice)."""
        if not held:
            return
        if not isinstance(error, (AlreadyExists, Conflict, NotFound, Invalid)):
            meta = m.meta(obj)
            try:
                stored = await self.storage.get(rtype, meta.namespace, meta.name)
            except NotFound:
                stored = None
            except ApiError:
                log.warning("service write outcome unknown; keeping its allocations",
                            service=f"{meta.namespace}/{meta.name}")
                return
            if (isinstance(stored, v1.Service) and isinstance(obj, v1.Service)
                    and held_by(stored) == held_by(obj)):
                return
        await self.services.release(held)

    def _prepare_for_create(self, rtype: ResourceType, obj: Message) -> None:
        """Status a user may not set on create, as each Kubernetes strategy resets it."""
        if isinstance(obj, v1.Namespace):
            obj.ClearField("status")
            obj.status.phase = "Active"
            if NAMESPACE_FINALIZER not in obj.spec.finalizers:
                obj.spec.finalizers.append(NAMESPACE_FINALIZER)
        elif isinstance(obj, v1.Pod):
            obj.ClearField("status")
            obj.status.phase = "Pending"
            # DefaultTolerationSeconds admission: a pod rides out a short node outage
            # (default 300 s) before the taint manager evicts it, unless it says otherwise.
            for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
                if not any(t.key in ("", key) and t.effect in ("", "NoExecute")
                           for t in obj.spec.tolerations):
                    obj.spec.tolerations.add(
                        key=key, operator="Exists", effect="NoExecute",
                        toleration_seconds=self.settings.default_toleration_seconds,
                    )
        elif rtype.has_status and not isinstance(obj, v1.Node):
            obj.ClearField("status")
        if isinstance(obj, v1.Job):
            # As Kubernetes' Job strategy: select the job's own pods by its uid.
            defaults.generate_job_selector(obj)

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
        namespace = self._namespace_for(rtype, meta.namespace or namespace or "default")
        if not meta.name:
            raise Invalid.from_field_errors(
                rtype.qualified_kind, "", [FieldPath("metadata.name").required()]
            )
        current = await self.storage.get(rtype, namespace, meta.name)
        current_rv = m.meta(current).resource_version
        if meta.resource_version and meta.resource_version != current_rv:
            raise conflict(rtype, meta.name)
        updated = self._merge_update(rtype, current, obj, status_only)
        if updated is None or dry_run:
            return current if updated is None else updated
        return await self._write_update(rtype, current, updated)

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
            if rtype.has_status:
                updated.ClearField("status")
                if current.HasField("status"):
                    updated.status.CopyFrom(current.status)  # type: ignore[attr-defined]
            if isinstance(updated, v1.Pod) and not updated.spec.node_name:
                # nodeName is set only through binding; an update may not drop it.
                updated.spec.node_name = current.spec.node_name  # type: ignore[attr-defined]
            defaults.apply_defaults(updated)
            if isinstance(updated, v1.Service):
                assert isinstance(current, v1.Service)
                self.services.patch_update(updated, current)
            if _has_spec(rtype) and _spec_bytes(updated) != _spec_bytes(current):
                new_meta.generation = old_meta.generation + 1
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
        # A pod in its grace period is removed by its kubelet's confirmation, not by the
        # last finalizer going (as Kubernetes: only with deletionGracePeriodSeconds 0).
        graceful_pod = isinstance(updated, v1.Pod) and meta.deletion_grace_period_seconds > 0
        if meta.deletion_timestamp and self._finalized(updated) and not graceful_pod:
            await self.storage.delete(rtype, meta.namespace, meta.name, revision)
            if isinstance(current, v1.Service):
                await self.services.release(held_by(current))
            return updated
        if not isinstance(updated, v1.Service):
            return await self.storage.update(rtype, updated, revision)
        assert isinstance(current, v1.Service)
        if updated.spec == current.spec:  # a status or metadata write takes and frees nothing
            return await self.storage.update(rtype, updated, revision)
        taken, freed = await self.services.allocate_update(updated, current)
        try:
            stored = await self.storage.update(rtype, updated, revision)
        except BaseException as e:
            await self._release_unless_stored(rtype, updated, taken, e)
            raise
        await self.services.release(freed)
        return stored

    @staticmethod
    def _finalized(obj: Message) -> bool:
        if m.meta(obj).finalizers:
            return False
        return not (isinstance(obj, v1.Namespace) and obj.spec.finalizers)

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
        kind = patches.patch_type(patch_type)
        if subresource not in ("", "status"):
            raise BadRequest(f'subresource "{subresource}" is not supported by patch')
        document = patches.decode(patch, kind)
        namespace = self._namespace_for(rtype, namespace or "default")
        for _ in range(20):
            current = await self.storage.get(rtype, namespace, name)
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
            if updated is None:
                return current
            try:
                return await self._write_update(rtype, current, updated)
            except Conflict:
                # Another write landed: the next round patches the new object. A patch that
                # names a resourceVersion (or tests a value) then fails on its own terms.
                continue
        raise conflict(rtype, name)

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
        if rtype is NAMESPACES and name in SYSTEM_NAMESPACES[:3]:
            raise Forbidden(f'namespaces "{name}" is forbidden: this namespace may not be deleted')
        for _ in range(20):
            current = await self.storage.get(rtype, namespace, name)
            meta = m.meta(current)
            if precondition_uid and precondition_uid != meta.uid:
                raise Conflict(
                    f"Precondition failed: UID in precondition: {precondition_uid}, UID in"
                    f" object meta: {meta.uid}"
                )
            if precondition_resource_version and (
                precondition_resource_version != meta.resource_version
            ):
                raise conflict(rtype, name)
            updated = self._mark_deleted(current, grace_period_seconds, propagation_policy)
            revision = int(meta.resource_version)
            try:
                if updated is None:
                    await self.storage.delete(rtype, namespace, name, revision)
                    if isinstance(current, v1.Service):
                        await self.services.release(held_by(current))
                    return current
                if updated.SerializeToString() == current.SerializeToString():
                    return current
                stored = await self.storage.update(rtype, updated, revision)
                if rtype is NAMESPACES:
                    # Terminating from now on for this server's creates, before the watch
                    # brings the change round.
                    self._namespaces[name] = True
                return stored
            except Conflict:
                if precondition_resource_version:
                    raise
        raise conflict(rtype, name)

    def _mark_deleted(
        self, current: Message, grace: int | None, policy: str
    ) -> Message | None:
        """The object marked for deletion, or None to delete it from storage now."""
        obj = m.copy(current)
        meta = m.meta(obj)
        if policy == "Foreground" and FOREGROUND_FINALIZER not in meta.finalizers:
            meta.finalizers.append(FOREGROUND_FINALIZER)
        elif policy == "Orphan" and ORPHAN_FINALIZER not in meta.finalizers:
            meta.finalizers.append(ORPHAN_FINALIZER)
        if isinstance(obj, v1.Namespace):
            obj.status.phase = "Terminating"
        if isinstance(obj, v1.Pod):
            grace = self._pod_grace(obj, grace)
            if grace == 0 and not meta.finalizers:
                return None
            deadline = m.now() + dt.timedelta(seconds=grace)
            if not meta.deletion_timestamp or (
                meta.deletion_grace_period_seconds > grace
            ):
                meta.deletion_timestamp = m.format_time(deadline)
                meta.deletion_grace_period_seconds = grace
            return obj
        if self._finalized(obj):
            return None
        if not meta.deletion_timestamp:
            meta.deletion_timestamp = m.now_rfc3339()
            meta.deletion_grace_period_seconds = 0
        return obj

    def _pod_grace(self, pod: v1.Pod, requested: int | None) -> int:
        # Unbound and finished pods have no kubelet to confirm a graceful stop.
        if not pod.spec.node_name or pod.status.phase in ("Succeeded", "Failed"):
            return 0
        if requested is not None:
            return requested
        if pod.spec.HasField("termination_grace_period_seconds"):
            # Any larger is as good as forever, and beyond what a deletionTimestamp can say.
            return min(int(pod.spec.termination_grace_period_seconds), MAX_GRACE_PERIOD_SECONDS)
        return self.settings.default_pod_grace_seconds

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

        return await self.storage.guaranteed_update(PODS, namespace or "default", name, assign)


__all__ = ["Api", "ApiSettings", "not_found"]
