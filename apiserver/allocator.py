"""Service ClusterIPs and NodePorts: bitmaps of a range, kept in etcd, changed by compare-and-swap.

As Kubernetes' ipallocator and portallocator: each range is one bitmap (a RangeAllocation) at
``<prefix>/ranges/serviceips`` and ``<prefix>/ranges/servicenodeports``. An allocation reads
the bitmap, sets a bit and writes it back in a transaction guarded by the mod_revision it read;
another API server writing in between makes the transaction fail, and it is retried on what
that server wrote. So two API servers on one etcd never hand out the same IP or port.

Within one process the requests of a moment are applied together and written once (a group
commit), so 200 concurrent creates cost a handful of etcd writes, not 200 contended ones.
Dynamic allocations start at a random offset in the upper part of the range and requested
values are expected in the lower part, as Kubernetes does, so the two rarely collide.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, NoReturn, Protocol, TypeVar

import structlog

from apiserver.etcd import Etcd, KeyValue, absent, get_op, mod_revision_is, put_op
from kubelite.api.errors import ApiError, InternalError, Invalid, Unavailable
from kubelite.api.field_errors import FieldError, FieldPath
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

V = TypeVar("V", str, int)

SERVICE_IPS_KEY = "ranges/serviceips"
NODE_PORTS_KEY = "ranges/servicenodeports"
CAS_ATTEMPTS = 100


# ---------------------------------------------------------------- errors


class AllocationError(Exception):
    """An allocation that cannot be made; carries the offending values."""

    def __init__(self, values: Sequence[str | int] = ()) -> None:
        super().__init__(", ".join(map(str, values)) or type(self).__name__)
        self.values = list(values)


class NotInRange(AllocationError):
    """A requested value outside the range."""


class AlreadyAllocated(AllocationError):
    """A requested value someone holds already."""


class RangeFull(AllocationError):
    """No free value left."""


# ---------------------------------------------------------------- ranges


class Range(Protocol[V]):
    """Values of one kind (IPs, ports) numbered 0..size-1."""

    @property
    def size(self) -> int:
        """How many values."""

    @property
    def band(self) -> int:
        """Offsets below this are left to requested values while others are free."""

    def offset(self, value: V) -> int | None:
        """The value's position in the range, None when outside it."""

    def value(self, offset: int) -> V:
        """The value at a position."""

    def __str__(self) -> str: ...


def _band(size: int, minimum: int, maximum: int, step: int) -> int:
    """Kubernetes' calculateRangeOffset: the lower part kept for requested values."""
    if size < minimum:
        return 0
    return max(minimum, min(maximum, size // step))


@dataclass(frozen=True)
class IPRange:
    """The usable addresses of a CIDR: without the network address, and for IPv4 without the
    broadcast address (Kubernetes never hands either out)."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    """The configured CIDR."""

    @classmethod
    def parse(cls, text: str) -> IPRange:
        try:
            network = ipaddress.ip_network(text.strip(), strict=True)
        except ValueError as e:
            raise ValueError(f"service IP range {text!r} is not a valid CIDR: {e}") from e
        r = cls(network)
        if r.size < 1:
            raise ValueError(f"service IP range {text!r} has no usable addresses")
        return r

    @property
    def base(self) -> int:
        return int(self.network.network_address) + 1

    @property
    def size(self) -> int:
        if self.network.version == 4:
            return max(0, self.network.num_addresses - 2)
        # As Kubernetes: an IPv6 bitmap is capped at 2^16 addresses.
        return min(self.network.num_addresses - 1, 1 << 16)

    @property
    def band(self) -> int:
        return _band(self.size, 16, 256, 16)

    def offset(self, value: str) -> int | None:
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            return None
        if ip.version != self.network.version:
            return None
        offset = int(ip) - self.base
        return offset if 0 <= offset < self.size else None

    def value(self, offset: int) -> str:
        return str(ipaddress.ip_address(self.base + offset))

    def __str__(self) -> str:
        return str(self.network)


@dataclass(frozen=True)
class PortRange:
    """Ports ``base`` .. ``base + size - 1``, written as Kubernetes' ``30000-32767``."""

    base: int
    """The first port."""
    size: int
    """How many ports."""

    @classmethod
    def parse(cls, text: str) -> PortRange:
        first, sep, last = text.strip().partition("-")
        try:
            lo = int(first)
            hi = int(last) if sep else lo
        except ValueError:
            raise ValueError(f"node port range {text!r} is not of the form 30000-32767") from None
        if not 1 <= lo <= hi <= 65535:
            raise ValueError(f"node port range {text!r} is not within 1-65535")
        return cls(lo, hi - lo + 1)

    @property
    def band(self) -> int:
        return _band(self.size, 16, 128, 32)

    def offset(self, value: int) -> int | None:
        offset = value - self.base
        return offset if 0 <= offset < self.size else None

    def value(self, offset: int) -> int:
        return self.base + offset

    def __str__(self) -> str:
        return f"{self.base}-{self.base + self.size - 1}"


# ---------------------------------------------------------------- bitmap


class Bitmap:
    """Allocated offsets of a range as the bits of one integer (bit i = offset i)."""

    def __init__(self, size: int, bits: int = 0) -> None:
        self.size = size
        self.bits = bits & ((1 << size) - 1)

    def has(self, offset: int) -> bool:
        return bool(self.bits >> offset & 1)

    def set(self, offset: int) -> None:
        self.bits |= 1 << offset

    def clear(self, offset: int) -> None:
        self.bits &= ~(1 << offset)

    def count(self) -> int:
        return self.bits.bit_count()

    def offsets(self) -> list[int]:
        result, bits = [], self.bits
        while bits:
            low = bits & -bits
            result.append(low.bit_length() - 1)
            bits ^= low
        return result

    def _first_free(self, lo: int, hi: int) -> int | None:
        if lo >= hi:
            return None
        mask = ((1 << hi) - 1) ^ ((1 << lo) - 1)
        free = ~self.bits & mask
        return (free & -free).bit_length() - 1 if free else None

    def next_free(self, rng: random.Random, band: int) -> int | None:
        """A free offset: from a random start in ``[band, size)`` onwards (wrapping), then in
        ``[0, band)`` the same way (Kubernetes' AllocateNextWithOffset)."""
        for lo, hi in ((band, self.size), (0, band)):
            if lo >= hi:
                continue
            start = rng.randrange(lo, hi)
            found = self._first_free(start, hi)
            if found is None:
                found = self._first_free(lo, start)
            if found is not None:
                return found
        return None

    def to_bytes(self) -> bytes:
        return self.bits.to_bytes((self.bits.bit_length() + 7) // 8, "little")

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> Bitmap:
        return cls(size, int.from_bytes(data, "little"))


class RangeAllocator(Generic[V]):
    """One range's allocations in memory; the etcd allocator keeps one of these per snapshot."""

    def __init__(self, range_: Range[V], bitmap: Bitmap | None = None,
                 rng: random.Random | None = None) -> None:
        self.range: Range[V] = range_
        self.bitmap = bitmap or Bitmap(range_.size)
        self.rng = rng or random.Random()

    def _offset(self, value: V) -> int:
        offset = self.range.offset(value)
        if offset is None:
            raise NotInRange([value])
        return offset

    def has(self, value: V) -> bool:
        offset = self.range.offset(value)
        return offset is not None and self.bitmap.has(offset)

    def allocate(self, value: V) -> None:
        offset = self._offset(value)
        if self.bitmap.has(offset):
            raise AlreadyAllocated([value])
        self.bitmap.set(offset)

    def allocate_next(self) -> V:
        offset = self.bitmap.next_free(self.rng, self.range.band)
        if offset is None:
            raise RangeFull()
        self.bitmap.set(offset)
        return self.range.value(offset)

    def release(self, value: V) -> None:
        """Frees a value; one outside the range or not allocated is ignored."""
        offset = self.range.offset(value)
        if offset is not None:
            self.bitmap.clear(offset)

    def used(self) -> int:
        return self.bitmap.count()

    def free(self) -> int:
        return self.range.size - self.bitmap.count()

    def values(self) -> list[V]:
        return [self.range.value(o) for o in self.bitmap.offsets()]

    def snapshot(self) -> bytes:
        """The stored form, shaped as Kubernetes' RangeAllocation (range + data)."""
        return json.dumps({
            "range": str(self.range),
            "data": base64.b64encode(self.bitmap.to_bytes()).decode(),
        }).encode()

    @classmethod
    def restore(cls, range_: Range[V], data: bytes, parse: Callable[[str], Range[V]],
                rng: random.Random | None = None) -> RangeAllocator[V]:
        """Reads a snapshot. One written for another range (the flag changed) keeps the
        values that are still in the new range."""
        doc = json.loads(data)
        raw = base64.b64decode(doc.get("data", ""))
        stored_range = doc.get("range", "")
        if stored_range == str(range_):
            return cls(range_, Bitmap.from_bytes(range_.size, raw), rng)
        allocator = cls(range_, rng=rng)
        try:
            old = parse(stored_range)
        except ValueError:
            log.warning("ignoring allocations stored for an unreadable range", range=stored_range)
            return allocator
        log.warning("allocation range changed; keeping the values still in range",
                    stored=stored_range, configured=str(range_))
        for offset in Bitmap.from_bytes(old.size, raw).offsets():
            new_offset = range_.offset(old.value(offset))
            if new_offset is not None:
                allocator.bitmap.set(new_offset)
        return allocator


# ---------------------------------------------------------------- etcd


@dataclass
class _Op(Generic[V]):
    apply: Callable[[RangeAllocator[V]], list[V]]
    future: asyncio.Future[list[V]]


class EtcdAllocator(Generic[V]):
    """A range's bitmap in etcd, shared by every API server on the same prefix."""

    def __init__(self, etcd: Etcd, key: bytes, range_: Range[V],
                 parse: Callable[[str], Range[V]], attempts: int = CAS_ATTEMPTS) -> None:
        self.etcd = etcd
        self.key = key
        self.range: Range[V] = range_
        self.parse: Callable[[str], Range[V]] = parse
        self.attempts = attempts
        self.rng = random.Random()
        self._cache: tuple[RangeAllocator[V], int] | None = None
        """The last snapshot seen and its mod_revision (0: key absent); may be stale, the
        guarded write finds out."""
        self._pending: list[_Op[V]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def allocate(self, requested: Sequence[V], count: int) -> list[V]:
        """All of ``requested`` plus ``count`` free values, or none of them."""
        outside = [v for v in requested if self.range.offset(v) is None]
        if outside:
            raise NotInRange(outside)
        wanted: list[V] = list(dict.fromkeys(requested))

        def apply(state: RangeAllocator[V]) -> list[V]:
            taken = [v for v in wanted if state.has(v)]
            if taken:
                raise AlreadyAllocated(taken)
            for v in wanted:
                state.allocate(v)
            result = list(wanted)
            for _ in range(count):
                result.append(state.allocate_next())
            return result

        if not wanted and count == 0:
            return []
        future = self._submit(apply)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The caller is gone but the write may still land: give back what it gets.
            future.add_done_callback(self._release_abandoned)
            raise

    def _release_abandoned(self, future: asyncio.Future[list[V]]) -> None:
        if not future.cancelled() and future.exception() is None and future.result():
            self._submit(self._release_op(future.result()))

    @staticmethod
    def _release_op(values: Iterable[V]) -> Callable[[RangeAllocator[V]], list[V]]:
        frozen = list(values)

        def apply(state: RangeAllocator[V]) -> list[V]:
            for v in frozen:
                state.release(v)
            return frozen

        return apply

    async def release(self, values: Iterable[V]) -> None:
        frozen = list(values)
        if frozen:
            await asyncio.shield(self._submit(self._release_op(frozen)))

    async def snapshot(self) -> RangeAllocator[V]:
        """The current allocations, read from etcd."""
        await self._read()
        assert self._cache is not None
        return self._cache[0]

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)

    def _submit(self, apply: Callable[[RangeAllocator[V]], list[V]]) -> asyncio.Future[list[V]]:
        future: asyncio.Future[list[V]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Op(apply, future))
        if self._flusher is None or self._flusher.done():
            # Its own task: one caller's cancellation must not abort everyone's batch.
            self._flusher = asyncio.create_task(
                self._flush(), name=f"allocator-{self.key.decode(errors='replace')}"
            )
        return future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._commit(batch)
            except BaseException as e:
                error = e if isinstance(e, ApiError) else Unavailable(
                    f"allocating from {self.range} failed: {type(e).__name__}: {e}")
                for op in batch:
                    if not op.future.done():
                        op.future.set_exception(error)
                if not isinstance(e, Exception):
                    for op in self._pending:
                        op.future.set_exception(error)
                    self._pending.clear()
                    raise

    async def _read(self) -> None:
        response = await self.etcd.range(self.key)
        self._remember(response.kvs[0] if response.kvs else None)

    def _remember(self, kv: KeyValue | None) -> None:
        if kv is None:
            self._cache = (RangeAllocator(self.range, rng=self.rng), 0)
            return
        state = RangeAllocator.restore(self.range, kv.value, self.parse, self.rng)
        self._cache = (state, int(kv.mod_revision))

    async def _commit(self, batch: list[_Op[V]]) -> None:
        fresh = False
        for _ in range(self.attempts):
            if self._cache is None:
                await self._read()
                fresh = True
            assert self._cache is not None
            state, revision = self._cache
            working = RangeAllocator(self.range, Bitmap(self.range.size, state.bitmap.bits),
                                     self.rng)
            outcomes: list[tuple[_Op[V], list[V] | None, AllocationError | None]] = []
            for op in batch:
                before = working.bitmap.bits
                try:
                    outcomes.append((op, op.apply(working), None))
                except AllocationError as e:
                    working.bitmap.bits = before  # each request is all or nothing
                    outcomes.append((op, None, e))
            unchanged = working.bitmap.bits == state.bitmap.bits
            if not fresh and (unchanged or any(e is not None for _, _, e in outcomes)):
                # A refusal (taken, full) or a release that found nothing to free must not
                # rest on a stale cache: another API server may have written since.
                await self._read()
                fresh = True
                continue
            if not unchanged:
                guard = absent(self.key) if revision == 0 else mod_revision_is(self.key, revision)
                response = await self.etcd.txn(
                    [guard], [put_op(self.key, working.snapshot())], [get_op(self.key)]
                )
                if not response.succeeded:
                    kvs = response.responses[0].response_range.kvs
                    self._remember(kvs[0] if kvs else None)
                    fresh = True
                    continue  # another API server wrote first: redo the batch on its bitmap
                self._cache = (working, int(response.header.revision))
            for op, result, error in outcomes:
                if op.future.done():
                    continue
                if error is not None:
                    op.future.set_exception(error)
                else:
                    assert result is not None
                    op.future.set_result(result)
            return
        raise Unavailable(
            f"could not update the allocations of {self.range} after {self.attempts} attempts"
        )


# ---------------------------------------------------------------- services


@dataclass(frozen=True)
class Held:
    """What a Service holds in the ranges."""

    ips: tuple[str, ...] = ()
    """Cluster IPs."""
    ports: tuple[int, ...] = ()
    """Node ports, the health check node port included."""

    def __bool__(self) -> bool:
        return bool(self.ips or self.ports)


def needs_cluster_ip(svc: v1.Service) -> bool:
    """Every type but ExternalName has a clusterIP field ("None" for headless)."""
    return svc.spec.type != "ExternalName"


def needs_node_ports(svc: v1.Service) -> bool:
    spec = svc.spec
    if spec.type == "NodePort":
        return True
    return spec.type == "LoadBalancer" and not (
        spec.HasField("allocate_load_balancer_node_ports")
        and not spec.allocate_load_balancer_node_ports
    )


def needs_health_check_node_port(svc: v1.Service) -> bool:
    return svc.spec.type == "LoadBalancer" and svc.spec.external_traffic_policy == "Local"


def held_by(svc: v1.Service) -> Held:
    ips = tuple(ip for ip in ([svc.spec.cluster_ip] if svc.spec.cluster_ip else [])
                if ip != "None")
    ports = {p.node_port for p in svc.spec.ports if p.node_port}
    if svc.spec.health_check_node_port:
        ports.add(svc.spec.health_check_node_port)
    return Held(ips, tuple(sorted(ports)))


@dataclass
class _PortPlan:
    requested: dict[int, list[FieldPath]] = field(default_factory=dict)
    """Specific ports to allocate, with the fields that asked for each."""
    dynamic: list[tuple[int, int]] = field(default_factory=list)
    """(index into spec.ports or -1 for the health check port, service port) needing one."""


class ServiceAllocator:
    """The Service strategy's part of allocation: which IPs and ports a Service create or
    update takes and gives back, and the Invalid errors Kubernetes reports for them."""

    def __init__(self, etcd: Etcd, prefix: str, cluster_ip_range: str,
                 node_port_range: str) -> None:
        prefix = prefix.rstrip("/")
        self.ip_range = IPRange.parse(cluster_ip_range)
        self.port_range = PortRange.parse(node_port_range)
        self.ips: EtcdAllocator[str] = EtcdAllocator(
            etcd, f"{prefix}/{SERVICE_IPS_KEY}".encode(), self.ip_range, IPRange.parse
        )
        self.ports: EtcdAllocator[int] = EtcdAllocator(
            etcd, f"{prefix}/{NODE_PORTS_KEY}".encode(), self.port_range, PortRange.parse
        )

    async def close(self) -> None:
        await asyncio.gather(self.ips.close(), self.ports.close())

    # ------------------------------------------------------------ create

    async def allocate_create(self, svc: v1.Service) -> Held:
        """Fills clusterIP(s) and nodePorts of a new Service; returns what it took."""
        spec = svc.spec
        if not spec.cluster_ip and spec.cluster_ips:
            spec.cluster_ip = spec.cluster_ips[0]
        ip_held = await self._allocate_ip(svc) if needs_cluster_ip(svc) else ()
        try:
            ports_held = await self._allocate_ports(svc, Held())
        except BaseException:
            await self.release(Held(ip_held))
            raise
        return Held(ip_held, ports_held)

    async def _allocate_ip(self, svc: v1.Service) -> tuple[str, ...]:
        spec = svc.spec
        path = FieldPath("spec").child("clusterIP")
        if len(spec.cluster_ips) > 1:
            self._invalid(svc, [FieldPath("spec").child("clusterIPs").index(1).invalid(
                spec.cluster_ips[1], "only one IP family is configured on this cluster")])
        self._default_ip_families(svc)
        if spec.cluster_ip == "None":
            spec.cluster_ips[:] = ["None"]
            return ()
        requested = [spec.cluster_ip] if spec.cluster_ip else []
        try:
            got = await self.ips.allocate(requested, 0 if requested else 1)
        except NotInRange:
            self._invalid(svc, [path.invalid(
                spec.cluster_ip, "provided IP is not in the valid range. The range of valid IPs"
                f" is {self.ip_range}")])
        except AlreadyAllocated:
            self._invalid(svc, [path.invalid(spec.cluster_ip,
                                             "provided IP is already allocated")])
        except RangeFull:
            raise InternalError(
                "Internal error occurred: failed to allocate a serviceIP: range is full"
            ) from None
        spec.cluster_ip = got[0]
        spec.cluster_ips[:] = [got[0]]
        return (got[0],)

    def _default_ip_families(self, svc: v1.Service) -> None:
        spec = svc.spec
        if not spec.ip_families:
            spec.ip_families.append("IPv4" if self.ip_range.network.version == 4 else "IPv6")
        if not spec.HasField("ip_family_policy"):
            spec.ip_family_policy = "SingleStack"

    def _plan_ports(self, svc: v1.Service, keep: set[int]) -> _PortPlan:
        """Ports to take for ``svc``; those in ``keep`` are already held by it."""
        plan = _PortPlan()
        ports_path = FieldPath("spec").child("ports")
        for i, port in enumerate(svc.spec.ports):
            if port.node_port:
                if port.node_port not in keep:
                    plan.requested.setdefault(port.node_port, []).append(
                        ports_path.index(i).child("nodePort"))
            elif needs_node_ports(svc):
                plan.dynamic.append((i, port.port))
        hc = svc.spec.health_check_node_port
        if hc and hc not in keep:
            plan.requested.setdefault(hc, []).append(
                FieldPath("spec").child("healthCheckNodePort"))
        elif not hc and needs_health_check_node_port(svc):
            plan.dynamic.append((-1, 0))
        return plan

    async def _allocate_ports(self, svc: v1.Service, old: Held) -> tuple[int, ...]:
        """Takes the node ports ``svc`` asks for beyond ``old``'s and fills the zero ones."""
        plan = self._plan_ports(svc, set(old.ports))
        # One service port number served over TCP and UDP shares one node port (Kubernetes).
        shared: dict[int, int] = {}
        for port in svc.spec.ports:
            if port.node_port:
                shared.setdefault(port.port, port.node_port)
        dynamic = [(i, n) for i, n in plan.dynamic if i < 0 or n not in shared]
        distinct = {n for i, n in dynamic if i >= 0}
        count = len(distinct) + sum(1 for i, _ in dynamic if i < 0)
        try:
            got = await self.ports.allocate(list(plan.requested), count)
        except NotInRange as e:
            self._invalid(svc, [p.invalid(v, "provided port is not in the valid range. The range"
                                          f" of valid ports is {self.port_range}")
                                for v in e.values for p in plan.requested[int(v)]])
        except AlreadyAllocated as e:
            self._invalid(svc, [p.invalid(v, "provided port is already allocated")
                                for v in e.values for p in plan.requested[int(v)]])
        except RangeFull:
            raise InternalError(
                "Internal error occurred: failed to allocate a nodePort: range is full"
            ) from None
        fresh = iter(got[len(plan.requested):])
        for i, number in plan.dynamic:
            if i < 0:
                svc.spec.health_check_node_port = next(fresh)
            else:
                if number not in shared:
                    shared[number] = next(fresh)
                svc.spec.ports[i].node_port = shared[number]
        return tuple(got)

    # ------------------------------------------------------------ update

    @staticmethod
    def patch_update(new: v1.Service, old: v1.Service) -> None:
        """Before validation: carry over what the API server assigned and an update left out,
        and drop values the new type does not use (Kubernetes' patchAllocatedValues and
        dropTypeDependentFields)."""
        ns, os_ = new.spec, old.spec
        if needs_cluster_ip(old) and needs_cluster_ip(new):
            if not ns.cluster_ip:
                ns.cluster_ip = ns.cluster_ips[0] if ns.cluster_ips else os_.cluster_ip
            if not ns.cluster_ips and os_.cluster_ips and ns.cluster_ip == os_.cluster_ip:
                ns.cluster_ips[:] = os_.cluster_ips
            if not ns.ip_families:
                ns.ip_families[:] = os_.ip_families
            if not ns.HasField("ip_family_policy") and os_.HasField("ip_family_policy"):
                ns.ip_family_policy = os_.ip_family_policy
        elif needs_cluster_ip(old) and (
            (ns.cluster_ip, list(ns.cluster_ips)) == (os_.cluster_ip, list(os_.cluster_ips))
        ):
            for name in ("cluster_ip", "cluster_ips", "ip_families", "ip_family_policy"):
                ns.ClearField(name)
        if needs_node_ports(old) and needs_node_ports(new):
            used = {p.node_port for p in os_.ports} & {p.node_port for p in ns.ports}
            by_name = {p.name: p.node_port for p in os_.ports}
            for port in ns.ports:
                if not port.node_port and by_name.get(port.name, 0) not in used:
                    port.node_port = by_name.get(port.name, 0)
        elif needs_node_ports(old) and not needs_node_ports(new):
            old_ports = [(p.name, p.node_port) for p in os_.ports]
            if [(p.name, p.node_port) for p in ns.ports if p.node_port] == [
                (n, np) for n, np in old_ports if np
            ]:
                for port in ns.ports:
                    port.node_port = 0
        if needs_health_check_node_port(old):
            if needs_health_check_node_port(new):
                ns.health_check_node_port = ns.health_check_node_port or os_.health_check_node_port
            elif ns.health_check_node_port == os_.health_check_node_port:
                ns.health_check_node_port = 0

    async def allocate_update(self, new: v1.Service, old: v1.Service) -> tuple[Held, Held]:
        """Takes what ``new`` needs beyond ``old``; returns (taken now, to give back once the
        update is stored)."""
        before = held_by(old)
        ips: tuple[str, ...] = ()
        if needs_cluster_ip(new) and not (needs_cluster_ip(old) and old.spec.cluster_ip):
            ips = await self._allocate_ip(new)
        try:
            ports = await self._allocate_ports(new, before)
        except BaseException:
            await self.release(Held(ips))
            raise
        after = held_by(new)
        gone = Held(tuple(ip for ip in before.ips if ip not in after.ips),
                    tuple(p for p in before.ports if p not in after.ports))
        return Held(ips, ports), gone

    # ------------------------------------------------------------ release

    async def release(self, held: Held) -> None:
        """Gives values back; a failure is logged (the value leaks rather than being handed
        out twice)."""
        try:
            await self.ips.release(held.ips)
        except ApiError as e:
            log.warning("could not release cluster IPs", ips=list(held.ips), error=str(e))
        try:
            await self.ports.release(held.ports)
        except ApiError as e:
            log.warning("could not release node ports", ports=list(held.ports), error=str(e))

    @staticmethod
    def _invalid(svc: v1.Service, errors: list[FieldError]) -> NoReturn:
        raise Invalid.from_field_errors("Service", svc.metadata.name, errors)


__all__ = [
    "AllocationError",
    "AlreadyAllocated",
    "Bitmap",
    "EtcdAllocator",
    "Held",
    "IPRange",
    "NotInRange",
    "PortRange",
    "RangeAllocator",
    "RangeFull",
    "ServiceAllocator",
    "held_by",
]
