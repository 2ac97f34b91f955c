"""Pod IPs from the node's podCIDR: distinct, kept across restarts, released, bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubelet.pod_ips import PodIPAllocator, PodIPsExhausted, parse_pod_cidr


def test_each_pod_gets_its_own_address_and_keeps_it(tmp_path: Path) -> None:
    ips = PodIPAllocator("127.244.1.0/24", str(tmp_path))
    a, b, c = (ips.allocate(uid) for uid in ("a", "b", "c"))
    assert len({a, b, c}) == 3
    assert all(ip.startswith("127.244.1.") and ip not in ("127.244.1.0", "127.244.1.255")
               for ip in (a, b, c))
    assert ips.allocate("a") == a  # idempotent


def test_allocations_survive_a_restart_and_are_released(tmp_path: Path) -> None:
    first = PodIPAllocator("127.244.1.0/24", str(tmp_path))
    a = first.allocate("a")
    b = first.allocate("b")
    restarted = PodIPAllocator("127.244.1.0/24", str(tmp_path))
    assert restarted.ip_of("a") == a and restarted.allocate("b") == b
    restarted.release("a")
    assert restarted.ip_of("a") is None
    # Round robin: the address just released is not handed out again at once.
    assert restarted.allocate("d") not in (a, b)
    restarted.release_all_but({"d"})
    assert set(restarted.allocations()) == {"d"}


def test_a_full_block_is_an_error_and_the_node_ip_is_skipped(tmp_path: Path) -> None:
    ips = PodIPAllocator("127.244.9.0/30", str(tmp_path), reserved=("127.244.9.1",))
    assert ips.allocate("a") == "127.244.9.2"
    with pytest.raises(PodIPsExhausted, match="no IP addresses available"):
        ips.allocate("b")
    ips.release("a")
    assert ips.allocate("b") == "127.244.9.2"


@pytest.mark.parametrize(("cidr", "rule"), [
    ("10.244.1.0/24", "loopback range 127.0.0.0/8"),
    ("127.244.1.0/31", "at most /30"),
    ("127.244.1.7/24", "has host bits set"),
    ("not-a-cidr", "does not appear to be an IPv4 or IPv6 network"),
    ("::1/128", "loopback range"),
])
def test_bad_pod_cidrs_are_refused_with_the_rule(cidr: str, rule: str) -> None:
    with pytest.raises(ValueError, match=rule):
        parse_pod_cidr(cidr)
