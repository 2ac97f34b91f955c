"""Node IPAM: the flags' rules, the range allocator (next free block, round-robin reuse after
a release, exhaustion, what a podCIDR covers) and the controller's decisions on filled caches
with a fake client."""

from __future__ import annotations

import ipaddress
from typing import cast

import pytest

from controller_manager.__main__ import parse_args
from controller_manager.node_ipam import (
    CIDR_NOT_AVAILABLE,
    POD_CIDR_OUT_OF_RANGE,
    POD_CIDR_OVERLAP,
    CIDRNotAvailableError,
    ClusterRange,
    NodeIPAMController,
    OutOfRangeError,
    OverlapError,
    RangeAllocator,
    cluster_range,
)
from kubelite.api import meta as m
from kubelite.api.errors import Conflict
from protos.v1 import objects_pb2 as v1
from tests.unit.fakes import FakeClient, FakeRecorder, deliver, fill_cache, make_context


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


# ---------------------------------------------------------------- flags


def test_mask_size_defaults_by_family_as_kubernetes() -> None:
    assert cluster_range("10.244.0.0/16") == ClusterRange(net("10.244.0.0/16"), 24)
    assert cluster_range("fd00:10:244::/56") == ClusterRange(net("fd00:10:244::/56"), 64)
    assert cluster_range("10.244.0.0/16", 26).mask_size == 26
    # Equal to the cluster prefix is one block, as upstream allows.
    assert RangeAllocator(*_fields(cluster_range("10.244.0.0/24", 24))).size == 1


def _fields(r: ClusterRange) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int]:
    return r.cluster, r.mask_size


@pytest.mark.parametrize(("cidr", "mask", "message"), [
    ("", 0, "--cluster-cidr is required when --allocate-node-cidrs is true"),
    ("10.244.0.0", 0, "--cluster-cidr '10.244.0.0' has no prefix length"),
    ("10.244.0.0/33", 0, "--cluster-cidr '10.244.0.0/33' is not a CIDR"),
    ("cluster", 0, "--cluster-cidr 'cluster' is not a CIDR"),
    ("10.244.1.0/16", 0, "--cluster-cidr 10.244.1.0/16 has host bits set; the range it names "
                         "is 10.244.0.0/16"),
    ("10.244.0.0/16", 8, "--node-cidr-mask-size 8 must be at least the prefix length of "
                         "--cluster-cidr 10.244.0.0/16 (16)"),
    ("10.244.0.0/26", 0, "--node-cidr-mask-size 24 must be at least the prefix length of "
                         "--cluster-cidr 10.244.0.0/26 (26)"),
    ("10.244.0.0/16", 33, "--node-cidr-mask-size 33 must be between 1 and 32 for an IPv4"),
    ("10.244.0.0/16", -1, "--node-cidr-mask-size -1 must be between 1 and 32"),
])
def test_bad_flags_name_the_flag_and_the_rule(cidr: str, mask: int, message: str) -> None:
    with pytest.raises(ValueError) as e:
        cluster_range(cidr, mask)
    assert str(e.value).startswith(message), str(e.value)


def test_controller_manager_flags(capsys: pytest.CaptureFixture[str]) -> None:
    settings, _ = parse_args(["--allocate-node-cidrs", "--cluster-cidr", "10.244.0.0/16",
                              "--node-cidr-mask-size", "25"])
    assert (settings.allocate_node_cidrs, settings.cluster_cidr,
            settings.node_cidr_mask_size) == (True, "10.244.0.0/16", 25)
    assert parse_args([])[0].allocate_node_cidrs is False  # off by default, as upstream
    with pytest.raises(SystemExit):
        parse_args(["--allocate-node-cidrs=true"])
    assert "--cluster-cidr is required" in capsys.readouterr().err


# ---------------------------------------------------------------- the allocator


def test_next_free_block_in_order_skipping_used_ones() -> None:
    a = RangeAllocator(net("10.244.0.0/16"), 24)
    assert a.size == 256
    a.occupy("old", net("10.244.1.0/24"))
    assert [str(a.allocate(n)) for n in ("n0", "n1", "n2")] == [
        "10.244.0.0/24", "10.244.2.0/24", "10.244.3.0/24"]
    assert a.allocate("n1") == net("10.244.2.0/24")  # what it holds, not another
    assert a.used == 4


def test_a_freed_block_is_reused_once_the_search_comes_round() -> None:
    a = RangeAllocator(net("10.0.0.0/22"), 24)
    for name in ("a", "b", "c"):
        a.allocate(name)
    assert a.release("b") == net("10.0.1.0/24")
    # As upstream's cidrset: the search goes on past the last block handed out first...
    assert a.allocate("d") == net("10.0.3.0/24")
    # ...and comes round to the freed one.
    assert a.allocate("e") == net("10.0.1.0/24")


def test_exhaustion_then_a_release_makes_room() -> None:
    a = RangeAllocator(net("10.0.0.0/23"), 24)
    a.allocate("a")
    a.allocate("b")
    with pytest.raises(CIDRNotAvailableError, match="no free /24 left in the cluster CIDR"):
        a.allocate("c")
    a.release("a")
    assert a.allocate("c") == net("10.0.0.0/24")


def test_what_a_pod_cidr_covers() -> None:
    a = RangeAllocator(net("10.244.0.0/16"), 24)
    assert a.indices(net("10.244.4.0/23")) == range(4, 6)
    assert a.indices(net("10.244.7.128/25")) == range(7, 8)
    for outside in ("10.245.0.0/24", "10.0.0.0/8", "fd00::/64"):
        with pytest.raises(OutOfRangeError):
            a.indices(net(outside))
    a.occupy("big", net("10.244.4.0/23"))
    with pytest.raises(OverlapError) as e:
        a.occupy("small", net("10.244.5.0/25"))
    assert e.value.owner == "big"
    # A node's reservation gives way to the podCIDR it turns out to have.
    a.allocate("n")
    a.occupy("n", net("10.244.9.0/24"))
    assert (a.held_by("n"), a.used) == (net("10.244.9.0/24"), 3)


def test_ipv6_blocks() -> None:
    a = RangeAllocator(net("fd00:10:244::/56"), 64)
    assert a.size == 256
    assert [str(a.allocate(n)) for n in ("a", "b")] == [
        "fd00:10:244::/64", "fd00:10:244:1::/64"]


# ---------------------------------------------------------------- the controller


SETTINGS = {"allocate_node_cidrs": True, "cluster_cidr": "10.244.0.0/22"}


def node(name: str, cidr: str = "") -> v1.Node:
    n = v1.Node(metadata=v1.ObjectMeta(name=name, uid=f"uid-{name}"))
    if cidr:
        n.spec.pod_cidr = cidr
        n.spec.pod_cidrs.append(cidr)
    return n


async def controller(client: FakeClient, *nodes: v1.Node, **settings: object
                     ) -> tuple[NodeIPAMController, FakeRecorder]:
    """A started controller whose cache and server hold ``nodes``."""
    ctx = make_context(client, **{**SETTINGS, **settings})
    c = NodeIPAMController(ctx)
    for n in nodes:
        fill_cache(ctx, client.put(n))
    await c.start()
    return c, cast(FakeRecorder, ctx.recorder)


def cidr_of(client: FakeClient, name: str) -> tuple[str, list[str]]:
    n = cast(v1.Node, client.objects[("nodes", "", name)])
    return n.spec.pod_cidr, list(n.spec.pod_cidrs)


async def test_existing_blocks_are_marked_before_any_is_handed_out() -> None:
    client = FakeClient()
    c, _ = await controller(client, node("a", "10.244.0.0/24"), node("b", "10.244.1.0/24"),
                            node("new"))
    await c.reconcile("new")
    assert cidr_of(client, "new") == ("10.244.2.0/24", ["10.244.2.0/24"])
    assert client.calls == [("update", "Node", "new")]
    await c.reconcile("a")  # already has one: nothing to write
    assert len(client.updates) == 1


async def test_exhausted_range_records_cidr_not_available_and_retries() -> None:
    client = FakeClient()
    c, recorder = await controller(client, node("a"), node("b"), node("c"),
                                   cluster_cidr="10.244.0.0/23")
    await c.reconcile("a")
    await c.reconcile("b")
    await c.reconcile("c")
    await c.reconcile("c")
    assert [(e.name, e.type, e.reason, e.message) for e in recorder.events] == 2 * [
        ("c", "Normal", CIDR_NOT_AVAILABLE, "Node c status is now: CIDRNotAvailable")]
    # Retried after the queue's back-off (not raised: an expected state, no failure logged).
    assert list(c.queue._delayed) == ["c"] and c._waiting == {"c": 2}
    # A deleted node frees its block, and the waiting node is queued at once.
    c.nodes.store.remove("a")
    await c.reconcile("a")
    assert "c" in c.queue._queue
    await c.reconcile("c")
    assert cidr_of(client, "c")[0] == "10.244.0.0/24"
    assert c._waiting == {}
    await c.queue.shut_down()


async def test_pod_cidrs_outside_the_range_or_overlapping_are_left_alone_with_a_warning(
) -> None:
    client = FakeClient()
    c, recorder = await controller(
        client, node("a", "10.244.0.0/24"), node("outside", "10.9.0.0/24"),
        node("twin", "10.244.0.0/25"), node("v6", "fd00::/64"),
    )
    for name in ("outside", "twin", "v6"):
        await c.reconcile(name)
    assert client.updates == []
    assert sorted((e.name, e.type, e.reason) for e in recorder.events) == [
        ("outside", "Warning", POD_CIDR_OUT_OF_RANGE),
        ("twin", "Warning", POD_CIDR_OVERLAP),
        ("v6", "Warning", POD_CIDR_OUT_OF_RANGE),
    ]
    assert "overlaps the podCIDR of node a" in next(
        e.message for e in recorder.events if e.name == "twin")
    # Once "a" is gone, its twin holds the block.
    c.nodes.store.remove("a")
    await c.reconcile("a")
    await c.reconcile("twin")
    assert c.allocator is not None and c.allocator.held_by("twin") == net("10.244.0.0/25")


async def test_conflict_rereads_the_node_and_a_pod_cidr_set_meanwhile_wins() -> None:
    client = FakeClient()
    c, _ = await controller(client, node("n"))
    # The server moved on: the kubelet registered it with a podCIDR of its own.
    current = cast(v1.Node, client.objects[("nodes", "", "n")])
    current.spec.pod_cidr = "10.244.3.0/24"
    current.spec.pod_cidrs.append("10.244.3.0/24")
    client.put(current)
    await c.reconcile("n")
    assert [call[0] for call in client.calls] == ["update"]  # refused: Conflict
    assert client.gets == [("Node", "n")]
    assert c.allocator is not None and c.allocator.held_by("n") == net("10.244.3.0/24")
    assert c.allocator.used == 1


async def test_conflict_on_a_node_still_without_one_writes_again() -> None:
    client = FakeClient()
    c, _ = await controller(client, node("n"))
    current = cast(v1.Node, client.objects[("nodes", "", "n")])
    current.metadata.labels["zone"] = "a"
    client.put(current)  # a newer version than the cache holds
    await c.reconcile("n")
    assert cidr_of(client, "n")[0] == "10.244.0.0/24"
    assert cast(v1.Node, client.objects[("nodes", "", "n")]).metadata.labels["zone"] == "a"


async def test_conflicts_that_persist_go_back_to_the_queue() -> None:
    class AlwaysConflicts(FakeClient):
        async def update(self, obj: v1.Node) -> v1.Node:  # type: ignore[override]
            raise Conflict("the object has been modified")

    client = AlwaysConflicts()
    c, _ = await controller(client, node("n"))
    with pytest.raises(Conflict):
        await c.reconcile("n")
    # The block stays reserved for the node: the retry writes the same one.
    assert c.allocator is not None and c.allocator.held_by("n") == net("10.244.0.0/24")


async def test_heartbeats_do_not_queue_nodes_that_have_a_pod_cidr() -> None:
    client = FakeClient()
    ctx = make_context(client, **SETTINGS)
    c = NodeIPAMController(ctx)
    with_cidr = node("a", "10.244.0.0/24")
    deliver(ctx, with_cidr)
    await c.queue.get()
    c.queue.done("a")
    beat = m.copy(with_cidr)
    beat.status.conditions.add(type="Ready", status="True")
    deliver(ctx, beat, "MODIFIED")
    assert len(c.queue) == 0
    deliver(ctx, node("b"))
    waiting = m.copy(node("b"))
    waiting.status.conditions.add(type="Ready", status="True")
    deliver(ctx, waiting, "MODIFIED")
    assert list(c.queue._queue) == ["b"]


async def test_idle_without_allocate_node_cidrs() -> None:
    ctx = make_context(FakeClient())
    c = NodeIPAMController(ctx)
    assert ctx.informers.informers() == []
    await c.start()
    c.run()
    assert c._tasks == []
    await c.stop()
