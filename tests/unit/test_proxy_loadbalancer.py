"""The proxy's round-robin balancer, ClientIP affinity and Endpoints -> endpoint lists."""

from __future__ import annotations

import pytest

from protos.v1 import objects_pb2 as v1
from proxy.loadbalancer import (
    DEFAULT_AFFINITY_SECONDS,
    LoadBalancerRR,
    NoEndpoints,
    ServicePortName,
    endpoints_by_port_name,
    endpoints_for_port,
)
from proxy.proxier import port_specs
from tests.unit.fakes import ManualClock

SVC = ServicePortName("default", "web", "http")
A, B, C, D = ("10.0.0.1", 80), ("10.0.0.2", 80), ("10.0.0.3", 80), ("10.0.0.4", 80)


def balancer(clock: ManualClock | None = None) -> LoadBalancerRR:
    return LoadBalancerRR(clock=clock or ManualClock(), shuffle=None)


def take(lb: LoadBalancerRR, n: int, client: str = "1.2.3.4") -> list[tuple[str, int]]:
    return [lb.next_endpoint(SVC, client) for _ in range(n)]


def test_round_robin_order() -> None:
    lb = balancer()
    assert lb.set_endpoints(SVC, [A, B, C])
    assert take(lb, 7) == [A, B, C, A, B, C, A]


def test_no_endpoints_raise() -> None:
    lb = balancer()
    with pytest.raises(NoEndpoints):
        lb.next_endpoint(SVC, "1.2.3.4")
    lb.set_endpoints(SVC, [A])
    lb.set_endpoints(SVC, [])
    assert not lb.has_endpoints(SVC)
    with pytest.raises(NoEndpoints):
        lb.next_endpoint(SVC, "1.2.3.4")


def test_changed_set_resets_the_index() -> None:
    lb = balancer()
    lb.set_endpoints(SVC, [A, B, C])
    assert take(lb, 2) == [A, B]
    assert lb.set_endpoints(SVC, [A, B, C, D])
    assert take(lb, 5) == [A, B, C, D, A]
    assert lb.set_endpoints(SVC, [B, D])
    assert take(lb, 3) == [B, D, B]


def test_same_set_in_another_order_changes_nothing() -> None:
    lb = balancer()
    lb.set_endpoints(SVC, [A, B, C])
    assert take(lb, 1) == [A]
    assert not lb.set_endpoints(SVC, [C, A, B])
    assert not lb.set_endpoints(SVC, [C, A, B, A])  # duplicates collapse
    assert take(lb, 2) == [B, C]


def test_shuffled_order_still_visits_each_endpoint_once_per_round() -> None:
    lb = LoadBalancerRR()
    lb.set_endpoints(SVC, [A, B, C, D])
    for _ in range(3):
        assert sorted(take(lb, 4)) == [A, B, C, D]


def test_client_ip_affinity_pins_a_client() -> None:
    lb = balancer()
    lb.new_service(SVC, client_ip_affinity=True, ttl_seconds=60)
    lb.set_endpoints(SVC, [A, B, C])
    assert take(lb, 5, "1.1.1.1") == [A] * 5
    assert take(lb, 5, "2.2.2.2") == [B] * 5
    assert take(lb, 1, "3.3.3.3") == [C]
    assert take(lb, 1, "1.1.1.1") == [A]


def test_affinity_expires_after_idle_timeout() -> None:
    clock = ManualClock()
    lb = balancer(clock)
    lb.new_service(SVC, client_ip_affinity=True, ttl_seconds=10)
    lb.set_endpoints(SVC, [A, B, C])
    assert take(lb, 1, "1.1.1.1") == [A]
    clock.now += 9.9  # used again before expiry: the timeout restarts
    assert take(lb, 1, "1.1.1.1") == [A]
    clock.now += 9.9
    assert take(lb, 1, "1.1.1.1") == [A]
    clock.now += 10.0
    assert take(lb, 1, "1.1.1.1") == [B]
    assert take(lb, 1, "1.1.1.1") == [B]


def test_cleanup_forgets_idle_clients() -> None:
    clock = ManualClock()
    lb = balancer(clock)
    state = lb.new_service(SVC, client_ip_affinity=True, ttl_seconds=10)
    lb.set_endpoints(SVC, [A, B])
    take(lb, 1, "1.1.1.1")
    clock.now += 5
    take(lb, 1, "2.2.2.2")
    clock.now += 5
    assert lb.cleanup_stale_sticky_sessions() == 1
    assert list(state.affinity_map) == ["2.2.2.2"]


def test_affinity_reset_moves_the_client_on() -> None:
    lb = balancer()
    lb.new_service(SVC, client_ip_affinity=True, ttl_seconds=60)
    lb.set_endpoints(SVC, [A, B, C])
    assert lb.next_endpoint(SVC, "1.1.1.1") == A
    assert lb.next_endpoint(SVC, "1.1.1.1", reset_affinity=True) == B
    assert take(lb, 3, "1.1.1.1") == [B] * 3


def test_removed_endpoint_drops_its_clients_affinity() -> None:
    lb = balancer()
    lb.new_service(SVC, client_ip_affinity=True, ttl_seconds=60)
    lb.set_endpoints(SVC, [A, B, C])
    assert take(lb, 1, "1.1.1.1") == [A]
    assert take(lb, 1, "2.2.2.2") == [B]
    lb.set_endpoints(SVC, [A, C])
    assert take(lb, 2, "1.1.1.1") == [A, A]
    # 2.2.2.2 lost B: balanced afresh from the reset index (1.1.1.1 kept A by affinity).
    assert take(lb, 2, "2.2.2.2") == [A, A]
    assert take(lb, 1, "3.3.3.3") == [C]


def test_default_affinity_timeout_and_switching_affinity_off() -> None:
    lb = balancer()
    state = lb.new_service(SVC, client_ip_affinity=True, ttl_seconds=0)
    assert state.ttl == DEFAULT_AFFINITY_SECONDS
    lb.set_endpoints(SVC, [A, B])
    assert take(lb, 2, "1.1.1.1") == [A, A]
    lb.new_service(SVC, client_ip_affinity=False)
    assert not state.affinity_map
    assert take(lb, 2, "1.1.1.1") == [B, A]


def endpoints() -> v1.Endpoints:
    ep = v1.Endpoints(metadata=v1.ObjectMeta(name="web", namespace="default"))
    s1 = ep.subsets.add()
    s1.addresses.add(ip="10.0.0.1")
    s1.addresses.add(ip="10.0.0.2")
    s1.not_ready_addresses.add(ip="10.0.0.9")
    s1.ports.add(name="http", port=8080, protocol="TCP")
    s1.ports.add(name="metrics", port=9090, protocol="TCP")
    s2 = ep.subsets.add()
    s2.addresses.add(ip="10.0.0.3")
    s2.ports.add(name="http", port=8081, protocol="TCP")
    s2.ports.add(name="dns", port=53, protocol="UDP")
    return ep


def test_endpoints_are_selected_by_port_name() -> None:
    by_name = endpoints_by_port_name(endpoints())
    assert by_name == {
        "http": [("10.0.0.1", 8080), ("10.0.0.2", 8080), ("10.0.0.3", 8081)],
        "metrics": [("10.0.0.1", 9090), ("10.0.0.2", 9090)],
        "dns": [("10.0.0.3", 53)],
    }
    assert endpoints_for_port(endpoints(), "metrics") == [("10.0.0.1", 9090), ("10.0.0.2", 9090)]
    assert endpoints_for_port(endpoints(), "nope") == ()
    assert endpoints_for_port(None, "http") == ()


def test_unnamed_single_port() -> None:
    ep = v1.Endpoints()
    subset = ep.subsets.add()
    subset.addresses.add(ip="10.0.0.1")
    subset.ports.add(port=8080)
    assert endpoints_for_port(ep, "") == [("10.0.0.1", 8080)]


def service(**spec: object) -> v1.Service:
    svc = v1.Service(metadata=v1.ObjectMeta(name="web", namespace="default"))
    svc.spec.cluster_ip = "127.96.0.10"
    svc.spec.type = "ClusterIP"
    svc.spec.ports.add(name="http", port=80, protocol="TCP")
    svc.spec.ports.add(name="dns", port=53, protocol="UDP")
    for key, value in spec.items():
        setattr(svc.spec, key, value)
    return svc


def test_port_specs() -> None:
    specs = port_specs(service())
    assert set(specs) == {"http", "dns"}
    assert (specs["http"].cluster_ip, specs["http"].port, specs["http"].protocol) == (
        "127.96.0.10", 80, "TCP")
    assert specs["dns"].protocol == "UDP"
    assert specs["http"].node_port == 0 and not specs["http"].client_ip_affinity
    assert port_specs(service(cluster_ip="None")) == {}
    assert port_specs(service(cluster_ip="")) == {}
    assert port_specs(service(type="ExternalName")) == {}


def test_port_specs_node_port_and_affinity() -> None:
    svc = service(type="NodePort", session_affinity="ClientIP")
    svc.spec.ports[0].node_port = 30080
    assert port_specs(svc)["http"].node_port == 30080
    assert port_specs(svc)["http"].affinity_seconds == DEFAULT_AFFINITY_SECONDS
    svc.spec.session_affinity_config.client_ip.timeout_seconds = 30
    assert port_specs(svc)["http"].client_ip_affinity
    assert port_specs(svc)["http"].affinity_seconds == 30
