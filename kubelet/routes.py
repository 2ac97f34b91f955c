"""Host-gw routes: pods on other nodes are reached through those nodes.

For nodes on one L2 network whose pods have IPs of their own (flannel's host-gw backend), every
node keeps one kernel route per other Node: ``<its spec.podCIDR> via <its InternalIP>``, replaced
when either changes and deleted when the Node goes or loses its podCIDR. The agent marks the
routes it makes with its own route protocol number (``proto N``) and only ever lists, replaces
or deletes routes carrying it, so routes made by anyone else are left alone; a foreign route
to a podCIDR it would route wins, with a log line.

Nodes whose InternalIP cannot be a next hop (loopback, unspecified, multicast, IPv6
link-local: nodes of a local cluster on 127.0.0.x) or that the kernel refuses as a gateway (no
directly connected route to it) get no route and one log line saying why. Routes are changed
with iproute2's ``ip`` (``ip -json route show ... proto N`` to list), optionally inside a named
network namespace. The whole table is compared at each Node change and every resync_interval,
so routes removed behind the agent's back come back; a route to the node's own podCIDR is never
made. Routes stay when the agent stops: pods keep their traffic across kubelet restarts, and
the next start removes what is stale.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from kubelite.client.client import ApiClient
from kubelite.client.controller import Controller
from kubelite.client.informer import Informer, InformerSettings
from kubelite.client.workqueue import RateLimit
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_ROUTE_PROTOCOL = 211
"""``proto`` of the routes the agent makes: a number iproute2 names no protocol for."""
RESERVED_PROTOCOLS = {0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static"}
"""The kernel's and the administrator's own route protocols: never the agent's."""
SYNC_KEY = "routes"
"""The one work-queue key: every sync compares the whole table."""
_UNREACHABLE_NEXT_HOP = ("invalid gateway", "network is unreachable")
"""What the kernel answers (``ip`` prints) for a gateway with no directly connected route."""
_GONE = "no such process"
"""What ``ip route del`` prints for a route that is not there."""


@dataclass(frozen=True)
class RouteAgentSettings:
    enabled: bool = False
    """Keep a route to every other node's podCIDR via its InternalIP (host-gw), for nodes on
    one L2 network whose pods have addresses of their own."""
    route_protocol: int = DEFAULT_ROUTE_PROTOCOL
    """Kernel route protocol number marking the routes the agent made; it lists, replaces and
    deletes only routes carrying it (5-255: 0-4 belong to the kernel and the administrator)."""
    resync_interval: float = 30.0
    """Seconds between full comparisons of the kernel's routes with the Nodes (routes removed
    by something else come back)."""
    netns: str = ""
    """Network namespace (a name under /run/netns) whose routes are managed; empty: the
    process's own. Tests use one they made."""
    command_timeout: float = 10.0
    """Seconds an ``ip`` command may take before it is killed and the sync retried."""
    retry_base_delay: float = 0.2
    """First retry delay after a failed sync, seconds; it doubles per failure."""
    retry_max_delay: float = 30.0
    """Cap on that delay, seconds."""

    def __post_init__(self) -> None:
        if not 0 <= self.route_protocol <= 255:
            raise ValueError(f"route_protocol {self.route_protocol}: must be 5-255 (a kernel "
                             "route protocol number is one byte)")
        if self.route_protocol in RESERVED_PROTOCOLS:
            raise ValueError(
                f"route_protocol {self.route_protocol}: must be 5-255; 0-4 "
                f"({', '.join(RESERVED_PROTOCOLS.values())}) mark routes the agent does not own")
        if self.resync_interval <= 0:
            raise ValueError(f"resync_interval {self.resync_interval}: must be positive")
        if self.command_timeout <= 0:
            raise ValueError(f"command_timeout {self.command_timeout}: must be positive")


# ---------------------------------------------------------------- the routes Nodes ask for


@dataclass(frozen=True)
class Route:
    destination: Network
    gateway: Address
    node: str = field(default="", compare=False)
    """The Node it leads to (for log lines)."""

    def __str__(self) -> str:
        return f"{self.destination} via {self.gateway}"


@dataclass(frozen=True)
class Skipped:
    """A Node (or one podCIDR of it) that gets no route, and why."""

    node: str
    reason: str


def pod_cidrs(node: v1.Node) -> list[str]:
    return list(node.spec.pod_cidrs) or ([node.spec.pod_cidr] if node.spec.pod_cidr else [])


def internal_ips(node: v1.Node) -> list[str]:
    return [a.address for a in node.status.addresses if a.type == "InternalIP"]


def next_hop_problem(address: Address) -> str:
    """Why ``address`` cannot be a next hop on a link ('' when it can)."""
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address == ipaddress.IPv4Address(
        "255.255.255.255"
    ):
        return "the broadcast address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_link_local:
        return "an IPv6 link-local address (it needs a device)"
    return ""


def desired_routes(nodes: Iterable[v1.Node], own_name: str
                   ) -> tuple[dict[Network, Route], list[Skipped]]:
    """One route per podCIDR of every other Node, via that Node's InternalIP of the same IP
    family; and the Nodes (or podCIDRs) that get none, with why. Nodes are taken by name, so
    when two claim overlapping podCIDRs the first keeps its route."""
    ordered = sorted(nodes, key=lambda n: n.metadata.name)
    own = [_network(c) for n in ordered if n.metadata.name == own_name for c in pod_cidrs(n)]
    routes: dict[Network, Route] = {}
    skipped: list[Skipped] = []
    for node in ordered:
        name = node.metadata.name
        if name == own_name:
            continue
        for text in pod_cidrs(node):
            cidr = _network(text)
            if cidr is None:
                skipped.append(Skipped(name, f"podCIDR {text!r} is not a CIDR"))
                continue
            gateway, why = _gateway(node, cidr.version)
            if gateway is None:
                skipped.append(Skipped(name, why))
                continue
            mine = next((o for o in own if o is not None and _overlap(o, cidr)), None)
            if mine is not None:
                skipped.append(Skipped(name, f"podCIDR {cidr} overlaps this node's own "
                                             f"podCIDR {mine}"))
                continue
            taken = next((r for r in routes.values() if _overlap(r.destination, cidr)), None)
            if taken is not None:
                skipped.append(Skipped(name, f"podCIDR {cidr} overlaps node {taken.node}'s "
                                             f"podCIDR {taken.destination}"))
                continue
            routes[cidr] = Route(cidr, gateway, name)
    return routes, skipped


def _network(text: str) -> Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _overlap(a: Network, b: Network) -> bool:
    return a.version == b.version and a.overlaps(b)


def _gateway(node: v1.Node, version: int) -> tuple[Address | None, str]:
    addresses = []
    for text in internal_ips(node):
        try:
            addresses.append(ipaddress.ip_address(text))
        except ValueError:
            continue
    same_family = [a for a in addresses if a.version == version]
    if not same_family:
        return None, f"no IPv{version} InternalIP to route its IPv{version} podCIDR through"
    problem = next_hop_problem(same_family[0])
    if problem:
        return None, (f"InternalIP {same_family[0]} is {problem}: not reachable as a next hop "
                      "from another host")
    return same_family[0], ""


# ---------------------------------------------------------------- the kernel's table


class RouteCommandError(Exception):
    """An ``ip`` command that failed, with what it printed."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stderr: str) -> None:
        status = "timed out" if returncode is None else f"exit {returncode}"
        super().__init__(f"{' '.join(argv)}: {status}: {stderr.strip()}")
        self.stderr = stderr

    @property
    def unreachable_next_hop(self) -> bool:
        return any(s in self.stderr.lower() for s in _UNREACHABLE_NEXT_HOP)

    @property
    def gone(self) -> bool:
        return _GONE in self.stderr.lower()


def parse_routes(output: str) -> list[tuple[Network, Address | None, int]]:
    """``ip -json route show`` output as (destination, gateway, metric); the default route
    and multipath routes (no single gateway) keep gateway None. A destination printed without
    a prefix length is a host route."""
    text = output.strip()
    if not text:
        return []
    found: list[tuple[Network, Address | None, int]] = []
    entries: list[dict[str, Any]] = json.loads(text)
    for entry in entries:
        dst = entry.get("dst", "")
        if dst == "default":
            continue
        network = ipaddress.ip_network(dst, strict=False)
        gateway = ipaddress.ip_address(entry["gateway"]) if "gateway" in entry else None
        found.append((network, gateway, int(entry.get("metric", 0))))
    return found


class RouteTable:
    """The kernel's main routing table through ``ip``, in ``netns`` (empty: our own)."""

    def __init__(self, protocol: int, netns: str = "", timeout: float = 10.0) -> None:
        self.protocol = protocol
        self.netns = netns
        self.timeout = timeout

    def argv(self, *args: str) -> list[str]:
        return ["ip", *(["-n", self.netns] if self.netns else []), *args]

    async def ours(self, version: int) -> dict[Network, Address | None]:
        """The routes carrying our protocol number."""
        out = await self._run(f"-{version}", "-json", "route", "show", "table", "main",
                              "proto", str(self.protocol))
        return {dst: gw for dst, gw, _ in parse_routes(out)}

    async def destinations(self, version: int) -> set[Network]:
        """Destinations of every route in the table with metric 0 (where ours go)."""
        out = await self._run(f"-{version}", "-json", "route", "show", "table", "main")
        return {dst for dst, _, metric in parse_routes(out) if metric == 0}

    async def replace(self, route: Route) -> None:
        await self._run("route", "replace", str(route.destination), "via", str(route.gateway),
                        "proto", str(self.protocol))

    async def delete(self, destination: Network, gateway: Address | None) -> None:
        """Deletes our route to ``destination`` (the protocol number guards it); one that is
        gone already is fine."""
        via = ["via", str(gateway)] if gateway is not None else []
        try:
            await self._run("route", "del", str(destination), *via, "proto", str(self.protocol))
        except RouteCommandError as e:
            if not e.gone:
                raise

    async def _run(self, *args: str) -> str:
        argv = self.argv(*args)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            raise RouteCommandError(argv, None, f"no answer in {self.timeout}s") from None
        finally:
            if proc.returncode is None:  # timed out or cancelled: leave no child behind
                proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            raise RouteCommandError(argv, proc.returncode, err.decode(errors="replace"))
        return out.decode()


# ---------------------------------------------------------------- the agent


class RouteSyncError(Exception):
    """Some route changes failed; the sync is retried."""


class RouteAgent(Controller):
    """Keeps this node's host-gw routes; see the module docstring.

    Give it an ApiClient (it then runs a Node informer of its own) or an existing Node
    informer of all Nodes (started and stopped by its owner; ``start()`` waits for it to
    sync). ``start()`` returns once the first sync is queued; ``stop()`` leaves the routes in
    place.
    """

    name = "route-agent"

    def __init__(self, node_name: str, settings: RouteAgentSettings,
                 client: ApiClient | None = None, nodes: Informer[v1.Node] | None = None,
                 table: RouteTable | None = None) -> None:
        super().__init__(1, RateLimit(settings.retry_base_delay, settings.retry_max_delay))
        if client is None and nodes is None:
            raise ValueError("RouteAgent needs an ApiClient or a Node informer")
        self.node_name = node_name
        self.settings = settings
        self._owns_informer = nodes is None
        self.nodes: Informer[v1.Node] | None = nodes
        if self.nodes is None and settings.enabled:
            assert client is not None
            self.nodes = Informer(client, v1.Node, settings=InformerSettings(
                backoff_initial=0.2, backoff_max=2.0))
        self.table = table or RouteTable(settings.route_protocol, settings.netns,
                                         settings.command_timeout)
        self.versions = (4, 6) if os.path.exists("/proc/net/if_inet6") else (4,)
        """IP versions whose tables are managed (6 only where the kernel has IPv6)."""
        self.syncs = 0
        """Completed syncs (tests wait on it)."""
        self._reported: dict[str, str] = {}
        """What was last logged about each node or destination, so each says it once."""

    @property
    def informer(self) -> Informer[v1.Node] | None:
        """The Node informer it reads (for readiness checks)."""
        return self.nodes

    async def start(self) -> None:
        if not self.settings.enabled:
            log.info("host-gw routes off")
            return
        assert self.nodes is not None
        self.nodes.add_handlers(on_add=self._changed, on_update=self._updated,
                                on_delete=self._changed)
        if self._owns_informer:
            self.nodes.start()
        # Never before the cache is complete: a partial one would delete live routes.
        await self.nodes.wait_for_sync()
        self.run()
        self._tasks.append(asyncio.create_task(self._resync_forever(),
                                               name=f"{self.name}-resync"))
        self.queue.add(SYNC_KEY)
        log.info("host-gw routes on", node=self.node_name, protocol=self.settings.route_protocol,
                 netns=self.settings.netns or None)

    async def stop(self) -> None:
        await super().stop()
        if self._owns_informer and self.nodes is not None:
            await self.nodes.stop()

    def _changed(self, _node: v1.Node) -> None:
        self.queue.add(SYNC_KEY)

    def _updated(self, old: v1.Node, new: v1.Node) -> None:
        # Heartbeats change neither: only podCIDRs and InternalIPs matter here.
        if pod_cidrs(old) != pod_cidrs(new) or internal_ips(old) != internal_ips(new):
            self.queue.add(SYNC_KEY)

    async def _resync_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resync_interval)
            self.queue.add(SYNC_KEY)

    async def reconcile(self, key: str) -> None:
        assert self.nodes is not None
        desired, skipped = desired_routes(self.nodes.store.items(), self.node_name)
        reports = {s.node: s.reason for s in skipped}
        failures: list[RouteCommandError] = []
        for version in self.versions:
            want = {d: r for d, r in desired.items() if d.version == version}
            have = await self.table.ours(version)
            for destination, gateway in have.items():
                if destination not in want:
                    await self._delete(destination, gateway, failures)
            changes = [r for d, r in want.items() if have.get(d) != r.gateway]
            if not changes:
                continue
            foreign = await self.table.destinations(version) - set(have)
            for route in changes:
                if route.destination in foreign:
                    reports[route.node] = (f"a route to {route.destination} that this agent "
                                           "did not make is in place; left alone")
                    continue
                try:
                    await self.table.replace(route)
                except RouteCommandError as e:
                    if not e.unreachable_next_hop:
                        failures.append(e)
                        continue
                    reports[route.node] = (f"InternalIP {route.gateway} is not reachable as a "
                                           "next hop from this host (no directly connected "
                                           f"route to it): {e.stderr.strip()}")
                    continue
                log.info("route set", node=route.node, route=str(route))
        self._report(reports)
        self.syncs += 1
        if failures:
            raise RouteSyncError("; ".join(map(str, failures)))

    async def _delete(self, destination: Network, gateway: Address | None,
                      failures: list[RouteCommandError]) -> None:
        try:
            await self.table.delete(destination, gateway)
        except RouteCommandError as e:
            failures.append(e)
            return
        log.info("route removed", destination=str(destination), gateway=str(gateway))

    def _report(self, reports: dict[str, str]) -> None:
        """One log line per node when why it has no route changes."""
        for node, reason in sorted(reports.items()):
            if self._reported.get(node) != reason:
                log.warning("no route to node's pods", node=node, reason=reason)
        self._reported = reports
