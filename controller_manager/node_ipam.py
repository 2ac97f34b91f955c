"""Node IPAM, as Kubernetes' nodeipam controller with its range allocator: every Node without
a podCIDR gets the next free block of ``--cluster-cidr`` (``--node-cidr-mask-size`` bits
long), written to spec.podCIDR and spec.podCIDRs. Off unless ``--allocate-node-cidrs``.

The allocator lives in memory. Before any block is handed out, the blocks of every Node that
already has a podCIDR are marked used (so a restarted controller never hands one out twice);
a deleted Node frees its block. Like upstream's cidrset, the search for a free block goes round
from just after the last block handed out, so a freed block is not reused at once while others
are free (stale routes to a deleted node may still point at it). When no block is left the
Node gets upstream's ``CIDRNotAvailable`` event and is retried with the queue's back-off, and
at once when a block is freed. A Node whose podCIDR lies outside the cluster CIDR, or overlaps
another Node's, is left as it is with a Warning event (upstream refuses to start instead).
The Node is written with its resourceVersion: on a conflict it is read again, and a podCIDR
someone else set meanwhile wins (the API allows setting it once).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import structlog

from controller_manager.context import ControllerContext
from kubelite.api import meta as m
from kubelite.api.errors import Conflict, NotFound
from kubelite.client.controller import Controller
from kubelite.client.events import NORMAL, WARNING, EventRecorder
from kubelite.client.informer import Informer
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_MASK_SIZES = {4: 24, 6: 64}
"""--node-cidr-mask-size when not given, by the cluster CIDR's IP version (Kubernetes')."""
CIDR_NOT_AVAILABLE = "CIDRNotAvailable"
"""Event reason when the cluster CIDR has no free block (Kubernetes')."""
POD_CIDR_OUT_OF_RANGE = "PodCIDROutOfRange"
"""Warning reason: the Node's podCIDR is not inside the cluster CIDR; it is left as it is."""
POD_CIDR_OVERLAP = "PodCIDROverlap"
"""Warning reason: the Node's podCIDR overlaps another Node's; it is left as it is."""
UPDATE_ATTEMPTS = 3
"""Writes of one assignment before a conflict goes back to the queue."""


class CIDRNotAvailableError(Exception):
    """The cluster CIDR has no free block left."""


class OutOfRangeError(ValueError):
    """A CIDR that is not inside the cluster CIDR."""


class OverlapError(ValueError):
    """A CIDR whose blocks another node holds."""

    def __init__(self, cidr: Network, owner: str) -> None:
        super().__init__(f"{cidr} overlaps the podCIDR of node {owner}")
        self.owner = owner


# ---------------------------------------------------------------- flags


@dataclass(frozen=True)
class ClusterRange:
    """The validated --cluster-cidr and --node-cidr-mask-size."""

    cluster: Network
    mask_size: int


def cluster_range(cluster_cidr: str, node_cidr_mask_size: int = 0) -> ClusterRange:
    """Parses and checks the flags; a ValueError names the flag and the rule it breaks."""
    if not cluster_cidr:
        raise ValueError("--cluster-cidr is required when --allocate-node-cidrs is true")
    try:
        loose = ipaddress.ip_network(cluster_cidr, strict=False)
    except ValueError:
        raise ValueError(f"--cluster-cidr {cluster_cidr!r} is not a CIDR "
                         "(e.g. 10.244.0.0/16 or fd00:10:244::/56)") from None
    if "/" not in cluster_cidr:
        raise ValueError(f"--cluster-cidr {cluster_cidr!r} has no prefix length "
                         "(e.g. 10.244.0.0/16)")
    if loose.network_address != ipaddress.ip_address(cluster_cidr.split("/")[0]):
        raise ValueError(f"--cluster-cidr {cluster_cidr} has host bits set; "
                         f"the range it names is {loose}")
    bits = loose.max_prefixlen
    mask = node_cidr_mask_size or DEFAULT_MASK_SIZES[loose.version]
    if not 0 < mask <= bits:
        raise ValueError(f"--node-cidr-mask-size {mask} must be between 1 and {bits} "
                         f"for an IPv{loose.version} --cluster-cidr")
    if mask < loose.prefixlen:
        raise ValueError(
            f"--node-cidr-mask-size {mask} must be at least the prefix length of "
            f"--cluster-cidr {loose} ({loose.prefixlen}): each node's block is carved from it")
    return ClusterRange(loose, mask)


# ---------------------------------------------------------------- the allocator


class RangeAllocator:
    """Blocks of ``mask_size`` bits carved from ``cluster``, each free or held by one node."""

    def __init__(self, cluster: Network, mask_size: int) -> None:
        if not cluster.prefixlen <= mask_size <= cluster.max_prefixlen:
            raise ValueError(f"a /{mask_size} block does not fit in {cluster}")
        self.cluster = cluster
        self.mask_size = mask_size
        self.size = 1 << (mask_size - cluster.prefixlen)
        """How many blocks the cluster CIDR holds."""
        self._shift = cluster.max_prefixlen - mask_size
        self._owners: dict[int, str] = {}
        self._held: dict[str, tuple[Network, range]] = {}
        self._next = 0

    @property
    def used(self) -> int:
        return len(self._owners)

    def block(self, index: int) -> Network:
        address = int(self.cluster.network_address) + (index << self._shift)
        return ipaddress.ip_network((address, self.mask_size))

    def indices(self, cidr: Network) -> range:
        """The blocks ``cidr`` covers (a larger CIDR covers several, a smaller one the block
        it lies in); OutOfRangeError when it is not inside the cluster CIDR."""
        if cidr.version != self.cluster.version or not (
            int(self.cluster.network_address) <= int(cidr.network_address)
            and int(cidr.broadcast_address) <= int(self.cluster.broadcast_address)
        ):
            raise OutOfRangeError(f"{cidr} is outside the cluster CIDR {self.cluster}")
        base = int(self.cluster.network_address)
        first = (int(cidr.network_address) - base) >> self._shift
        last = (int(cidr.broadcast_address) - base) >> self._shift
        return range(first, last + 1)

    def held_by(self, node: str) -> Network | None:
        """The CIDR ``node`` holds, if any."""
        held = self._held.get(node)
        return held[0] if held is not None else None

    def allocate(self, node: str) -> Network:
        """What ``node`` holds, or the next free block, now held by it."""
        held = self.held_by(node)
        if held is not None:
            return held
        if self.used >= self.size:
            raise CIDRNotAvailableError(
                f"no free /{self.mask_size} left in the cluster CIDR {self.cluster}")
        index = self._next
        while index in self._owners:
            index = (index + 1) % self.size
        self._next = (index + 1) % self.size
        self._hold(node, self.block(index), range(index, index + 1))
        return self.block(index)

    def occupy(self, node: str, cidr: Network) -> None:
        """Marks ``cidr`` as held by ``node`` (which gives up anything else it held);
        OutOfRangeError or OverlapError (naming the holder) leave everything as it was."""
        blocks = self.indices(cidr)
        for index in blocks:
            owner = self._owners.get(index)
            if owner is not None and owner != node:
                raise OverlapError(cidr, owner)
        self.release(node)
        self._hold(node, cidr, blocks)

    def release(self, node: str) -> Network | None:
        """Frees what ``node`` held; returns it."""
        held = self._held.pop(node, None)
        if held is None:
            return None
        for index in held[1]:
            if self._owners.get(index) == node:
                del self._owners[index]
        return held[0]

    def _hold(self, node: str, cidr: Network, blocks: range) -> None:
        for index in blocks:
            self._owners[index] = node
        self._held[node] = (cidr, blocks)


# ---------------------------------------------------------------- the controller


def node_pod_cidrs(node: v1.Node) -> list[str]:
    return list(node.spec.pod_cidrs) or ([node.spec.pod_cidr] if node.spec.pod_cidr else [])


class NodeIPAMController(Controller):
    name = "node-ipam-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx.settings.workers, ctx.rate_limit)
        self.enabled = ctx.settings.allocate_node_cidrs
        self.client = ctx.client
        self.recorder: EventRecorder = ctx.recorder
        self.allocator: RangeAllocator | None = None
        self._warned: dict[str, str] = {}
        """Nodes left alone, with why: looked at again whenever a block is freed."""
        self._waiting: dict[str, int] = {}
        """Nodes that found no free block, with how often: their retry back-off."""
        if not self.enabled:
            return  # as upstream: listed among the controllers, idle without the flag
        r = cluster_range(ctx.settings.cluster_cidr, ctx.settings.node_cidr_mask_size)
        self.allocator = RangeAllocator(r.cluster, r.mask_size)
        self.nodes: Informer[v1.Node] = ctx.informers.informer(v1.Node)
        self.nodes.add_handlers(on_add=self.enqueue, on_update=self._node_updated,
                                on_delete=self.enqueue)

    def _node_updated(self, old: v1.Node, new: v1.Node) -> None:
        # Status heartbeats change nothing here: only a podCIDR appearing or still missing.
        if not node_pod_cidrs(new) or node_pod_cidrs(old) != node_pod_cidrs(new):
            self.enqueue(new)

    async def start(self) -> None:
        if self.allocator is None:
            return
        # Every block in use is marked before the first one is handed out.
        for node in sorted(self.nodes.store.items(), key=lambda n: n.metadata.name):
            if node_pod_cidrs(node):
                self._occupy(node)
        log.info("allocating node CIDRs", cluster_cidr=str(self.allocator.cluster),
                 node_cidr_mask_size=self.allocator.mask_size, blocks=self.allocator.size,
                 used=self.allocator.used)

    def run(self) -> None:
        if self.enabled:
            super().run()

    async def reconcile(self, key: str) -> None:
        assert self.allocator is not None
        node = self.nodes.store.get(key)
        if node is None:
            self._warned.pop(key, None)
            self._waiting.pop(key, None)
            freed = self.allocator.release(key)
            if freed is not None:
                log.info("node deleted; its podCIDR is free", node=key, cidr=str(freed))
                self._retry_waiting()
            return
        if node_pod_cidrs(node):
            self._waiting.pop(key, None)
            self._occupy(node)
        else:
            await self._assign(node)

    def _retry_waiting(self) -> None:
        """A block was freed: nodes without one, or left alone, may fit now."""
        for node in self.nodes.store.items():
            if not node_pod_cidrs(node) or node.metadata.name in self._warned:
                self.queue.add(node.metadata.name)

    def _occupy(self, node: v1.Node) -> None:
        """Marks the node's podCIDR (of the cluster CIDR's family) as used; a podCIDR that
        cannot be marked is left alone with a Warning event."""
        assert self.allocator is not None
        name = node.metadata.name
        cidrs = [ipaddress.ip_network(c, strict=False) for c in node_pod_cidrs(node)]
        ours = [c for c in cidrs if c.version == self.allocator.cluster.version]
        if self.allocator.held_by(name) in ours:
            return
        reason = message = ""
        if not ours:
            reason = POD_CIDR_OUT_OF_RANGE
            message = (f"Node {name} podCIDRs {', '.join(map(str, cidrs))} have none inside "
                       f"the cluster CIDR {self.allocator.cluster}; left as they are")
        else:
            before = self.allocator.held_by(name)
            try:
                self.allocator.occupy(name, ours[0])
            except OutOfRangeError:
                reason = POD_CIDR_OUT_OF_RANGE
                message = (f"Node {name} podCIDR {ours[0]} is outside the cluster CIDR "
                           f"{self.allocator.cluster}; left as it is")
            except OverlapError as e:
                reason = POD_CIDR_OVERLAP
                message = (f"Node {name} podCIDR {ours[0]} overlaps the podCIDR of node "
                           f"{e.owner}; left as it is")
            else:
                if before is not None:
                    self._retry_waiting()  # its reservation gave way to the podCIDR it has
        if not reason:
            self._warned.pop(name, None)
            return
        # A reservation made for it is no longer needed: its podCIDR is set.
        if self.allocator.release(name) is not None:
            self._retry_waiting()
        if self._warned.get(name) != message:
            self._warned[name] = message
            log.warning("node podCIDR left alone", node=name, reason=reason, detail=message)
            self.recorder.record(node, WARNING, reason, message)

    async def _assign(self, node: v1.Node) -> None:
        assert self.allocator is not None
        name = node.metadata.name
        try:
            block = self.allocator.allocate(name)
        except CIDRNotAvailableError as e:
            # An expected state, not a failure: retried with the queue's back-off (and at
            # once when a block is freed), with one log line and upstream's event each time.
            attempts = self._waiting.get(name, 0)
            self._waiting[name] = attempts + 1
            delay = self.queue.rate_limit.delay(attempts)
            log.warning("no podCIDR free for node", node=name, detail=str(e),
                        retry_in=round(delay, 3))
            self.recorder.record(node, NORMAL, CIDR_NOT_AVAILABLE,
                                 f"Node {name} status is now: {CIDR_NOT_AVAILABLE}")
            self.queue.add_after(name, delay)
            return
        self._waiting.pop(name, None)
        # The block stays held by this node until it is written or the node goes: a write
        # that failed may still have reached the server.
        current = node
        for attempt in range(UPDATE_ATTEMPTS):
            updated = m.copy(current)
            updated.spec.pod_cidr = str(block)
            del updated.spec.pod_cidrs[:]
            updated.spec.pod_cidrs.append(str(block))
            try:
                await self.client.update(updated)
            except NotFound:
                self.allocator.release(name)
                return
            except Conflict:
                if attempt + 1 == UPDATE_ATTEMPTS:
                    raise
                try:
                    current = await self.client.get(v1.Node, name)
                except NotFound:
                    self.allocator.release(name)
                    return
                if node_pod_cidrs(current):
                    self._occupy(current)  # set by someone else meanwhile: theirs stands
                    return
                continue
            log.info("assigned node podCIDR", node=name, cidr=str(block))
            return
