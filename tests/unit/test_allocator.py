"""Range math and bitmap allocation (apiserver.allocator), without etcd."""

from __future__ import annotations

import random

import pytest

from apiserver.allocator import (
    AlreadyAllocated,
    Bitmap,
    IPRange,
    NotInRange,
    PortRange,
    RangeAllocator,
    RangeFull,
    ServiceAllocator,
    held_by,
)
from protos.v1 import objects_pb2 as v1


def test_ip_range_skips_network_and_broadcast() -> None:
    r = IPRange.parse("127.96.0.0/16")
    assert r.size == 65534
    assert r.value(0) == "127.96.0.1"
    assert r.value(r.size - 1) == "127.96.255.254"
    assert r.offset("127.96.0.1") == 0
    assert r.offset("127.96.1.0") == 255
    for outside in ("127.96.0.0", "127.96.255.255", "127.97.0.1", "10.0.0.1", "::1", "x"):
        assert r.offset(outside) is None
    assert str(r) == "127.96.0.0/16"
    assert IPRange.parse("10.0.0.0/30").size == 2
    # The lower band kept for requested IPs: size/16 clamped to [16, 256].
    assert r.band == 256
    assert IPRange.parse("10.0.0.0/24").band == 16
    assert IPRange.parse("10.0.0.0/29").band == 0


def test_ipv6_range_is_capped() -> None:
    r = IPRange.parse("fd00::/64")
    assert r.size == 65536
    assert r.value(0) == "fd00::1"


@pytest.mark.parametrize("text", ["127.96.0.1/16", "nonsense", "10.0.0.0/31", "10.0.0.0/32"])
def test_bad_ip_ranges(text: str) -> None:
    with pytest.raises(ValueError):
        IPRange.parse(text)


def test_port_range() -> None:
    r = PortRange.parse("30000-32767")
    assert (r.base, r.size, str(r)) == (30000, 2768, "30000-32767")
    assert r.offset(30000) == 0 and r.offset(32767) == 2767
    assert r.offset(29999) is None and r.offset(32768) is None
    assert r.band == 86  # 2768/32, within [16, 128]
    assert PortRange.parse("8080").size == 1
    for bad in ("32767-30000", "0-10", "1-70000", "a-b"):
        with pytest.raises(ValueError):
            PortRange.parse(bad)


def test_allocate_next_until_full_without_duplicates() -> None:
    allocator = RangeAllocator(IPRange.parse("10.0.0.0/24"), rng=random.Random(1))
    got = [allocator.allocate_next() for _ in range(254)]
    assert len(set(got)) == 254
    assert allocator.free() == 0
    with pytest.raises(RangeFull):
        allocator.allocate_next()
    allocator.release("10.0.0.77")
    assert allocator.allocate_next() == "10.0.0.77"


def test_dynamic_values_come_from_the_upper_band_first() -> None:
    r = PortRange.parse("30000-32767")
    allocator = RangeAllocator(r, rng=random.Random(7))
    first = [allocator.allocate_next() for _ in range(r.size - r.band)]
    assert all(p >= 30000 + r.band for p in first)
    # Then the lower band, before giving up.
    rest = [allocator.allocate_next() for _ in range(r.band)]
    assert sorted(rest) == list(range(30000, 30000 + r.band))


def test_specific_values() -> None:
    allocator = RangeAllocator(PortRange.parse("30000-30010"))
    allocator.allocate(30005)
    assert allocator.has(30005)
    with pytest.raises(AlreadyAllocated) as e:
        allocator.allocate(30005)
    assert e.value.values == [30005]
    with pytest.raises(NotInRange):
        allocator.allocate(31000)
    allocator.release(30005)
    allocator.release(30005)  # releasing twice is harmless
    allocator.release(40000)  # so is an outside value
    assert not allocator.has(30005)
    allocator.allocate(30005)
    assert allocator.used() == 1


def test_bitmap_scan_wraps_within_each_band() -> None:
    bitmap = Bitmap(10)
    for o in range(10):
        if o != 3:
            bitmap.set(o)
    assert bitmap.next_free(random.Random(0), band=5) == 3
    bitmap.set(3)
    assert bitmap.next_free(random.Random(0), band=5) is None
    assert Bitmap.from_bytes(10, bitmap.to_bytes()).bits == bitmap.bits
    assert bitmap.offsets() == list(range(10))


def test_snapshot_round_trip_and_range_change() -> None:
    r = IPRange.parse("10.0.0.0/24")
    allocator = RangeAllocator(r)
    for ip in ("10.0.0.1", "10.0.0.100", "10.0.0.254"):
        allocator.allocate(ip)
    restored = RangeAllocator.restore(r, allocator.snapshot(), IPRange.parse)
    assert sorted(restored.values()) == sorted(allocator.values())
    # A smaller configured range keeps the allocations still inside it.
    smaller = RangeAllocator.restore(IPRange.parse("10.0.0.0/25"), allocator.snapshot(),
                                     IPRange.parse)
    assert smaller.values() == ["10.0.0.1", "10.0.0.100"]


def _svc(type_: str, *ports: tuple[str, int, int]) -> v1.Service:
    svc = v1.Service(metadata=v1.ObjectMeta(name="s", namespace="default"))
    svc.spec.type = type_
    svc.spec.cluster_ip = "127.96.0.5"
    for name, port, node_port in ports:
        svc.spec.ports.add(name=name, port=port, protocol="TCP", node_port=node_port)
    return svc


def test_patch_update_keeps_assigned_values_and_drops_unused_ones() -> None:
    old = _svc("NodePort", ("http", 80, 30080), ("https", 443, 30443))
    old.spec.cluster_ips.append("127.96.0.5")
    new = _svc("NodePort", ("https", 443, 0), ("http", 80, 0), ("admin", 81, 0))
    new.spec.cluster_ip = ""
    ServiceAllocator.patch_update(new, old)
    assert new.spec.cluster_ip == "127.96.0.5" and list(new.spec.cluster_ips) == ["127.96.0.5"]
    assert [p.node_port for p in new.spec.ports] == [30443, 30080, 0]

    # NodePort -> ClusterIP with the node ports untouched: they are dropped.
    to_cluster_ip = _svc("ClusterIP", ("http", 80, 30080), ("https", 443, 30443))
    ServiceAllocator.patch_update(to_cluster_ip, old)
    assert [p.node_port for p in to_cluster_ip.spec.ports] == [0, 0]

    # -> ExternalName with the IP untouched: it is dropped.
    external = _svc("ExternalName", ("http", 80, 0))
    external.spec.cluster_ips.append("127.96.0.5")
    ServiceAllocator.patch_update(external, old)
    assert external.spec.cluster_ip == "" and not external.spec.cluster_ips


def test_held_by() -> None:
    svc = _svc("NodePort", ("a", 80, 30080), ("b", 81, 30081))
    assert held_by(svc).ips == ("127.96.0.5",)
    assert held_by(svc).ports == (30080, 30081)
    svc.spec.cluster_ip = "None"
    assert held_by(svc).ips == ()
