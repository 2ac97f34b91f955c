"""Node IPAM in a real ControllerManager against a real API server and etcd: Nodes get
distinct podCIDRs from the cluster CIDR, a restarted controller hands out none twice, a
deleted Node's block goes to a new one, and an exhausted range says so on the Node."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from controller_manager.settings import ControllerManagerSettings
from kubelite.api.errors import Invalid
from kubelite.client.client import ApiClient
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1
from tests.integration.helpers import running_manager

SETTINGS = ControllerManagerSettings(
    controllers=("nodeipam",), leader_elect=False, workers=2,
    allocate_node_cidrs=True, cluster_cidr="10.244.0.0/16",
)


async def create_node(client: ApiClient, name: str) -> v1.Node:
    return await client.create(v1.Node(metadata=v1.ObjectMeta(name=name)))


async def pod_cidrs(client: ApiClient, *names: str) -> dict[str, str]:
    """Each node's podCIDR once every one has one (else {}), checked against podCIDRs."""
    found = {}
    for name in names:
        node = await client.get(v1.Node, name)
        if not node.spec.pod_cidr:
            return {}
        assert list(node.spec.pod_cidrs) == [node.spec.pod_cidr]
        found[name] = node.spec.pod_cidr
    return found


async def test_distinct_blocks_kept_across_a_restart_and_freed_by_a_delete(
    client: ApiClient,
) -> None:
    names = ["node-1", "node-2", "node-3"]
    async with running_manager(client, SETTINGS):
        for name in names:
            await create_node(client, name)
        first = await eventually(lambda: pod_cidrs(client, *names), message="three podCIDRs")
    blocks = {ipaddress.IPv4Network(c) for c in first.values()}
    assert len(blocks) == 3
    assert all(b.prefixlen == 24 and b.subnet_of(ipaddress.IPv4Network("10.244.0.0/16"))
               for b in blocks)
    # Once set, a podCIDR stays: the API refuses to change it.
    node = await client.get(v1.Node, "node-1")
    node.spec.pod_cidr = "10.244.200.0/24"
    node.spec.pod_cidrs[:] = ["10.244.200.0/24"]
    try:
        await client.update(node)
        raise AssertionError("the API let a podCIDR change")
    except Invalid as e:
        assert "may not change podCIDR" in str(e)

    async with running_manager(client, SETTINGS):
        # The restarted controller starts its search from the range's first block again: only
        # marking the blocks in use keeps it from handing out node-1's or node-3's, and the
        # first free one is the block node-2 gave back.
        await client.delete(v1.Node, "node-2")
        await create_node(client, "node-4")
        after = await eventually(lambda: pod_cidrs(client, "node-1", "node-3", "node-4"),
                                 message="node-4's podCIDR")
    assert after["node-1"] == first["node-1"] and after["node-3"] == first["node-3"]
    assert after["node-4"] == first["node-2"]


async def not_available_events(client: ApiClient, node: str) -> list[v1.Event]:
    events = await client.list(v1.Event, "default")
    return [e for e in events.items
            if e.involved_object.name == node and e.reason == "CIDRNotAvailable"]


async def test_exhausted_range_is_reported_and_a_freed_block_goes_to_the_waiting_node(
    client: ApiClient,
) -> None:
    settings = replace(SETTINGS, cluster_cidr="10.244.0.0/23", retry_max_delay=60.0)
    async with running_manager(client, settings):
        await create_node(client, "node-1")
        await create_node(client, "node-2")
        full = await eventually(lambda: pod_cidrs(client, "node-1", "node-2"),
                                message="both blocks handed out")
        assert sorted(full.values()) == ["10.244.0.0/24", "10.244.1.0/24"]
        await create_node(client, "node-3")
        events = await eventually(lambda: not_available_events(client, "node-3"),
                                  message="a CIDRNotAvailable event on node-3")
        assert (events[0].type, events[0].message) == (
            "Normal", "Node node-3 status is now: CIDRNotAvailable")
        assert not (await client.get(v1.Node, "node-3")).spec.pod_cidr
        await client.delete(v1.Node, "node-1")
        # Queued again as the block is freed, not after the retry back-off.
        got = await eventually(lambda: pod_cidrs(client, "node-3"), timeout=5.0,
                               message="node-3 gets node-1's block")
        assert got == {"node-3": full["node-1"]}
