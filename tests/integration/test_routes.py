"""Host-gw routes for real: the route agent, fed by a real API server, changes the kernel's
routing table of a network namespace this test makes (a veth pair inside it gives the nodes'
InternalIPs a directly connected route). Needs root and iproute2."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator

import pytest

from kubelet.routes import RouteAgent, RouteAgentSettings
from kubelite.client.client import ApiClient
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2's `ip` (it makes a network namespace)",
)

PROTOCOL = 211
SUBNET = "198.51.100"
"""TEST-NET-2, only ever inside the namespace: this host's address is .1."""


def ip(*args: str) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


@pytest.fixture
async def netns() -> AsyncIterator[str]:
    """A network namespace with lo up and a veth pair (rt0 holding .1/24): removed after."""
    name = f"kl-routes-{secrets.token_hex(3)}"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "link", "add", "rt0", "type", "veth", "peer", "name", "rt1")
        ip("-n", name, "link", "set", "rt0", "up")
        ip("-n", name, "link", "set", "rt1", "up")
        ip("-n", name, "addr", "add", f"{SUBNET}.1/24", "dev", "rt0")
        yield name
    finally:
        ip("netns", "del", name)


def table(ns: str) -> dict[str, tuple[str, str]]:
    """The namespace's IPv4 routes with a gateway: destination -> (gateway, protocol)."""
    entries = json.loads(ip("-n", ns, "-4", "-json", "route", "show", "table", "main") or "[]")
    return {e["dst"]: (e["gateway"], e.get("protocol", "boot"))
            for e in entries if "gateway" in e}


async def routes(ns: str) -> dict[str, tuple[str, str]]:
    return await asyncio.to_thread(table, ns)


async def agent_routes(ns: str) -> dict[str, str]:
    return {d: gw for d, (gw, proto) in (await routes(ns)).items() if proto == str(PROTOCOL)}


async def has_routes(ns: str, want: dict[str, str]) -> bool:
    """Whether the agent's routes are exactly ``want`` (destination -> gateway)."""
    return await agent_routes(ns) == want


async def create_node(client: ApiClient, name: str, cidr: str, address: str) -> None:
    node = v1.Node(metadata=v1.ObjectMeta(name=name))
    node.spec.pod_cidr = cidr
    node.spec.pod_cidrs.append(cidr)
    node.status.addresses.add(type="InternalIP", address=address)
    await client.create(node)


async def test_routes_follow_the_nodes_and_foreign_routes_are_left_alone(
    client: ApiClient, netns: str,
) -> None:
    ip("-n", netns, "route", "add", "10.99.0.0/24", "via", f"{SUBNET}.9")
    ip("-n", netns, "route", "add", "10.244.9.0/24", "via", f"{SUBNET}.99", "proto", "static")
    foreign = {"10.99.0.0/24": (f"{SUBNET}.9", "boot"),
               "10.244.9.0/24": (f"{SUBNET}.99", "static")}
    await create_node(client, "node-self", "10.244.0.0/24", f"{SUBNET}.1")
    agent = RouteAgent("node-self", RouteAgentSettings(
        enabled=True, route_protocol=PROTOCOL, netns=netns, resync_interval=0.3,
        retry_base_delay=0.05, retry_max_delay=0.5,
    ), client=client)
    await agent.start()
    try:
        # Two other Nodes with podCIDRs: two routes.
        await create_node(client, "node-a", "10.244.1.0/24", f"{SUBNET}.2")
        await create_node(client, "node-b", "10.244.2.0/24", f"{SUBNET}.3")
        want = {"10.244.1.0/24": f"{SUBNET}.2", "10.244.2.0/24": f"{SUBNET}.3"}
        await eventually(lambda: has_routes(netns, want), message="two routes")

        # One whose podCIDR has a foreign route, one on a loopback address, one the kernel
        # refuses as a gateway (not on a connected network): no route; a later node's route
        # shows the agent has seen all three.
        await create_node(client, "node-static", "10.244.9.0/24", f"{SUBNET}.4")
        await create_node(client, "node-local", "10.244.5.0/24", "127.0.0.5")
        await create_node(client, "node-far", "10.244.6.0/24", "203.0.113.5")
        await create_node(client, "node-d", "10.244.4.0/24", f"{SUBNET}.5")
        want["10.244.4.0/24"] = f"{SUBNET}.5"
        await eventually(lambda: has_routes(netns, want), message="node-d's route")
        current = await routes(netns)
        assert {d: current[d] for d in foreign} == foreign
        assert "10.244.5.0/24" not in current and "10.244.6.0/24" not in current
        # The reasons are recorded when a sync ends, which may be after node-d's route is in.
        await eventually(
            lambda: agent._reported.get("node-far", "").startswith(
                "InternalIP 203.0.113.5 is not reachable as a next hop from this host"),
            message="node-far reported as unreachable")

        # A deleted Node's route goes; nothing else moves.
        await client.delete(v1.Node, "node-a")
        del want["10.244.1.0/24"]
        await eventually(lambda: has_routes(netns, want), message="node-a's route gone")

        # A route removed behind the agent's back is back at the next resync.
        ip("-n", netns, "route", "del", "10.244.2.0/24", "proto", str(PROTOCOL))
        await eventually(lambda: has_routes(netns, want), message="resynced")
        current = await routes(netns)
        assert {d: current[d] for d in foreign} == foreign
    finally:
        await agent.stop()
    # Stopping leaves the routes: pods keep their traffic across a kubelet restart.
    assert await agent_routes(netns) == want
