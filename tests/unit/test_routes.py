"""Host-gw routes: which routes the Nodes ask for (and which Nodes get none, with why), how
``ip -json`` output is read, the settings' rules, and one sync against an in-memory table."""

from __future__ import annotations

import ipaddress
import json

import pytest

from kubelet.routes import (
    Route,
    RouteAgent,
    RouteAgentSettings,
    RouteCommandError,
    RouteSyncError,
    RouteTable,
    desired_routes,
    parse_routes,
)
from kubelite.client.informer import Informer
from protos.v1 import objects_pb2 as v1
from tests.unit.fakes import FakeClient

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def node(name: str, *cidrs: str, ips: tuple[str, ...] = ()) -> v1.Node:
    n = v1.Node(metadata=v1.ObjectMeta(name=name))
    n.spec.pod_cidrs.extend(cidrs)
    if cidrs:
        n.spec.pod_cidr = cidrs[0]
    for ip in ips:
        n.status.addresses.add(type="InternalIP", address=ip)
    n.status.addresses.add(type="Hostname", address=name)
    return n


def routes_of(nodes: list[v1.Node], own: str = "self") -> dict[str, str]:
    routes, _ = desired_routes(nodes, own)
    return {str(d): f"{r.gateway} ({r.node})" for d, r in routes.items()}


def skipped_of(nodes: list[v1.Node], own: str = "self") -> dict[str, str]:
    _, skipped = desired_routes(nodes, own)
    return {s.node: s.reason for s in skipped}


# ---------------------------------------------------------------- desired routes


def test_one_route_per_other_node_via_its_internal_ip() -> None:
    nodes = [
        node("self", "10.244.0.0/24", ips=("192.168.1.10",)),
        node("b", "10.244.2.0/24", ips=("192.168.1.12",)),
        node("a", "10.244.1.0/24", ips=("192.168.1.11", "192.168.9.11")),
        node("new", ips=("192.168.1.13",)),  # no podCIDR yet: no route, nothing to say
    ]
    assert routes_of(nodes) == {
        "10.244.1.0/24": "192.168.1.11 (a)",
        "10.244.2.0/24": "192.168.1.12 (b)",
    }
    assert skipped_of(nodes) == {}


def test_dual_stack_node_gets_a_route_per_family() -> None:
    nodes = [node("a", "10.244.1.0/24", "fd00:10:244:1::/64",
                  ips=("192.168.1.11", "fd00:1::11"))]
    assert routes_of(nodes) == {
        "10.244.1.0/24": "192.168.1.11 (a)",
        "fd00:10:244:1::/64": "fd00:1::11 (a)",
    }


@pytest.mark.parametrize(("ip", "why"), [
    ("127.0.0.2", "InternalIP 127.0.0.2 is a loopback address: not reachable as a next hop"),
    ("0.0.0.0", "InternalIP 0.0.0.0 is the unspecified address"),
    ("224.0.0.1", "InternalIP 224.0.0.1 is a multicast address"),
    ("fe80::1", "InternalIP fe80::1 is an IPv6 link-local address"),
    ("::1", "InternalIP ::1 is a loopback address"),
])
def test_internal_ips_that_cannot_be_a_next_hop_are_skipped_with_why(ip: str, why: str
                                                                     ) -> None:
    cidr = "fd00:10:244:1::/64" if ":" in ip else "10.244.1.0/24"
    nodes = [node("local", cidr, ips=(ip,))]
    assert routes_of(nodes) == {}
    assert skipped_of(nodes)["local"].startswith(why)


def test_nodes_without_a_usable_address_or_with_clashing_pod_cidrs_are_skipped() -> None:
    nodes = [
        node("self", "10.244.0.0/24", ips=("192.168.1.10",)),
        node("no-ip", "10.244.5.0/24"),
        node("v6-only", "10.244.6.0/24", ips=("fd00:1::6",)),
        node("mine", "10.244.0.0/25", ips=("192.168.1.20",)),
        node("a", "10.244.1.0/24", ips=("192.168.1.11",)),
        node("b", "10.244.1.0/24", ips=("192.168.1.12",)),
    ]
    assert routes_of(nodes) == {"10.244.1.0/24": "192.168.1.11 (a)"}
    assert skipped_of(nodes) == {
        "no-ip": "no IPv4 InternalIP to route its IPv4 podCIDR through",
        "v6-only": "no IPv4 InternalIP to route its IPv4 podCIDR through",
        "mine": "podCIDR 10.244.0.0/25 overlaps this node's own podCIDR 10.244.0.0/24",
        "b": "podCIDR 10.244.1.0/24 overlaps node a's podCIDR 10.244.1.0/24",
    }


# ---------------------------------------------------------------- ip -json, settings


def test_parse_ip_json_routes() -> None:
    output = json.dumps([
        {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0", "flags": []},
        {"dst": "10.244.1.0/24", "gateway": "198.51.100.2", "dev": "rt0", "flags": []},
        {"dst": "10.244.9.7", "gateway": "198.51.100.3", "dev": "rt0", "flags": []},
        {"dst": "10.99.0.0/24", "dev": "rt0", "protocol": "kernel", "metric": 100,
         "flags": []},
        {"dst": "fd00:10:244:1::/64", "gateway": "fd00:1::2", "dev": "rt0", "flags": []},
    ])
    assert [(str(d), str(g) if g else None, metric) for d, g, metric in parse_routes(output)] == [
        ("10.244.1.0/24", "198.51.100.2", 0),
        ("10.244.9.7/32", "198.51.100.3", 0),
        ("10.99.0.0/24", None, 100),
        ("fd00:10:244:1::/64", "fd00:1::2", 0),
    ]
    assert parse_routes("") == [] and parse_routes("[]\n") == []


def test_commands_carry_the_protocol_and_the_namespace() -> None:
    table = RouteTable(211, netns="test-ns")
    assert table.argv("route", "show") == ["ip", "-n", "test-ns", "route", "show"]
    assert RouteTable(211).argv("route", "show") == ["ip", "route", "show"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"route_protocol": 4}, "route_protocol 4: must be 5-255; 0-4 (unspec, redirect, kernel, "
                            "boot, static)"),
    ({"route_protocol": 256}, "route_protocol 256: must be 5-255"),
    ({"resync_interval": 0}, "resync_interval 0: must be positive"),
    ({"command_timeout": -1}, "command_timeout -1: must be positive"),
])
def test_settings_rules_name_the_field(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as e:
        RouteAgentSettings(**kwargs)  # type: ignore[arg-type]
    assert str(e.value).startswith(message)


# ---------------------------------------------------------------- one sync


class MemoryTable(RouteTable):
    """The main table in memory: ``ours`` carry the protocol, ``others`` do not."""

    def __init__(self) -> None:
        super().__init__(211)
        self.routes: dict[Network, tuple[Address | None, bool]] = {}
        self.unreachable: set[Address] = set()
        self.commands: list[str] = []

    def add(self, dst: str, via: str, ours: bool) -> None:
        self.routes[ipaddress.ip_network(dst)] = (ipaddress.ip_address(via), ours)

    async def ours(self, version: int) -> dict[Network, Address | None]:
        return {d: gw for d, (gw, mine) in self.routes.items() if mine and d.version == version}

    async def destinations(self, version: int) -> set[Network]:
        return {d for d in self.routes if d.version == version}

    async def replace(self, route: Route) -> None:
        self.commands.append(f"replace {route}")
        if route.gateway in self.unreachable:
            raise RouteCommandError(["ip"], 2, "Error: Nexthop has invalid gateway.\n")
        self.routes[route.destination] = (route.gateway, True)

    async def delete(self, destination: Network, gateway: Address | None) -> None:
        self.commands.append(f"del {destination}")
        self.routes.pop(destination)


def agent_on(table: MemoryTable, *nodes: v1.Node) -> RouteAgent:
    informer: Informer[v1.Node] = Informer(FakeClient(), v1.Node)  # type: ignore[arg-type]
    for n in nodes:
        informer.store.put(n)
    agent = RouteAgent("self", RouteAgentSettings(enabled=True), nodes=informer, table=table)
    agent.versions = (4, 6)
    return agent


async def test_a_sync_sets_changed_routes_removes_stale_ones_and_leaves_foreign_ones() -> None:
    table = MemoryTable()
    table.add("10.244.1.0/24", "198.51.100.2", ours=True)      # current
    table.add("10.244.2.0/24", "198.51.100.9", ours=True)      # node b moved
    table.add("10.244.7.0/24", "198.51.100.7", ours=True)      # node gone
    table.add("10.244.3.0/24", "198.51.100.99", ours=False)    # the administrator's
    table.add("10.99.0.0/24", "198.51.100.1", ours=False)      # unrelated
    agent = agent_on(
        table,
        node("self", "10.244.0.0/24", ips=("198.51.100.1",)),
        node("a", "10.244.1.0/24", ips=("198.51.100.2",)),
        node("b", "10.244.2.0/24", ips=("198.51.100.3",)),
        node("c", "10.244.3.0/24", ips=("198.51.100.4",)),
        node("d", "10.244.4.0/24", ips=("203.0.113.5",)),
    )
    table.unreachable.add(ipaddress.ip_address("203.0.113.5"))
    await agent.reconcile("routes")
    assert sorted(table.commands) == [
        "del 10.244.7.0/24",
        "replace 10.244.2.0/24 via 198.51.100.3",
        "replace 10.244.4.0/24 via 203.0.113.5",
    ]
    assert {str(d): (str(gw), mine) for d, (gw, mine) in table.routes.items()} == {
        "10.244.1.0/24": ("198.51.100.2", True),
        "10.244.2.0/24": ("198.51.100.3", True),
        "10.244.3.0/24": ("198.51.100.99", False),
        "10.99.0.0/24": ("198.51.100.1", False),
    }
    assert agent._reported["c"].startswith("a route to 10.244.3.0/24 that this agent did not")
    assert agent._reported["d"].startswith("InternalIP 203.0.113.5 is not reachable as a next "
                                           "hop from this host")
    table.commands.clear()
    await agent.reconcile("routes")  # settled: only the unreachable one is tried again
    assert table.commands == ["replace 10.244.4.0/24 via 203.0.113.5"]


async def test_other_failures_fail_the_sync_for_the_queue_to_retry() -> None:
    class Broken(MemoryTable):
        async def replace(self, route: Route) -> None:
            raise RouteCommandError(["ip", "route", "replace"], 2, "RTNETLINK answers: busy")

    agent = agent_on(Broken(), node("a", "10.244.1.0/24", ips=("198.51.100.2",)))
    with pytest.raises(RouteSyncError, match="RTNETLINK answers: busy"):
        await agent.reconcile("routes")


async def test_off_it_watches_nothing_and_changes_nothing() -> None:
    table = MemoryTable()
    agent = RouteAgent("self", RouteAgentSettings(), client=FakeClient(),  # type: ignore[arg-type]
                       table=table)
    await agent.start()
    assert agent.informer is None and agent._tasks == []
    await agent.stop()
    assert table.commands == []
