"""Endpoints subsets as Kubernetes' endpoints controller builds them (pure functions)."""

from __future__ import annotations

from controller_manager.endpoints import (
    HEADLESS_LABEL,
    desired_labels,
    desired_subsets,
    find_port,
    selects,
)
from kubelite.api import convert
from kubelite.api import pods as podutil
from protos.v1 import objects_pb2 as v1


def pod(name: str, ip: str, *, ready: bool = True, ports: dict[str, int] | None = None,
        phase: str = "Running", deleting: bool = False, node: str = "n1") -> v1.Pod:
    p = v1.Pod(metadata=v1.ObjectMeta(name=name, namespace="default", uid=f"uid-{name}",
                                      labels={"app": "web"}))
    p.spec.node_name = node
    c = p.spec.containers.add(name="main", image="x")
    for port_name, number in (ports or {}).items():
        c.ports.add(name=port_name, container_port=number, protocol="TCP")
    p.status.phase = phase
    p.status.pod_ip = ip
    podutil.set_condition(p, "Ready", "True" if ready else "False")
    if deleting:
        p.metadata.deletion_timestamp = "2024-01-01T00:00:00Z"
    return p


def service(*ports: tuple[str, int, int | str], publish: bool = False) -> v1.Service:
    svc = v1.Service(metadata=v1.ObjectMeta(name="web", namespace="default",
                                            labels={"tier": "front"}))
    svc.spec.selector["app"] = "web"
    svc.spec.cluster_ip = "127.96.0.10"
    svc.spec.publish_not_ready_addresses = publish
    for name, port, target in ports:
        sp = svc.spec.ports.add(name=name, port=port, protocol="TCP")
        if isinstance(target, str):
            sp.target_port.str_val = target
        else:
            sp.target_port.int_val = target
    return svc


def as_dicts(subsets: list[v1.EndpointSubset]) -> list[dict[str, object]]:
    return [convert.message_to_dict(s) for s in subsets]


def test_ready_and_not_ready_addresses() -> None:
    pods = [
        pod("b", "10.0.0.2"),
        pod("a", "10.0.0.1"),
        pod("slow", "10.0.0.3", ready=False),
        pod("gone", "10.0.0.4", deleting=True),
        pod("done", "10.0.0.5", phase="Succeeded"),
        pod("noip", ""),
    ]
    subsets, missing = desired_subsets(service(("http", 80, 8080)), pods)
    assert missing == []
    assert as_dicts(subsets) == [{
        "addresses": [
            {"ip": "10.0.0.1", "nodeName": "n1",
             "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"}},
            {"ip": "10.0.0.2", "nodeName": "n1",
             "targetRef": {"kind": "Pod", "namespace": "default", "name": "b", "uid": "uid-b"}},
        ],
        "notReadyAddresses": [
            {"ip": "10.0.0.3", "nodeName": "n1",
             "targetRef": {"kind": "Pod", "namespace": "default", "name": "slow",
                           "uid": "uid-slow"}},
        ],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }]


def test_publish_not_ready_addresses_lists_everything_ready() -> None:
    pods = [pod("a", "10.0.0.1"), pod("slow", "10.0.0.3", ready=False),
            pod("gone", "10.0.0.4", deleting=True), pod("done", "10.0.0.5", phase="Failed")]
    subsets, _ = desired_subsets(service(("", 80, 80), publish=True), pods)
    assert len(subsets) == 1
    assert [a.ip for a in subsets[0].addresses] == ["10.0.0.1", "10.0.0.3", "10.0.0.4"]
    assert not subsets[0].not_ready_addresses


def test_named_target_port_resolves_per_pod_and_groups_subsets() -> None:
    svc = service(("http", 80, "web"), ("metrics", 9090, 9100))
    pods = [
        pod("old", "10.0.0.1", ports={"web": 8080}),
        pod("new", "10.0.0.2", ports={"web": 8081}),
        pod("new2", "10.0.0.3", ports={"web": 8081}),
        pod("bare", "10.0.0.4"),
    ]
    subsets, missing = desired_subsets(svc, pods)
    by_ports = {tuple((p.name, p.port) for p in s.ports): [a.ip for a in s.addresses]
                for s in subsets}
    # As RepackSubsets: one subset per distinct set of addresses behind a port.
    assert by_ports == {
        (("http", 8080),): ["10.0.0.1"],
        (("http", 8081),): ["10.0.0.2", "10.0.0.3"],
        (("metrics", 9100),): ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"],
    }
    # Ports with the same addresses share a subset.
    same, _ = desired_subsets(svc, pods[1:3])
    assert [[(p.name, p.port) for p in s.ports] for s in same] == [
        [("http", 8081), ("metrics", 9100)]]
    assert [(m.pod, m.target_port, m.service_port) for m in missing] == [
        ("bare", "web", "http")]
    assert 'no container port named "web"' in missing[0].message()


def test_named_port_needs_the_same_protocol() -> None:
    p = pod("a", "10.0.0.1", ports={"dns": 53})
    sp = v1.ServicePort(name="dns", port=53, protocol="UDP")
    sp.target_port.str_val = "dns"
    assert find_port(p, sp) is None
    sp.protocol = "TCP"
    assert find_port(p, sp) == 53


def test_headless_service_without_ports_lists_addresses() -> None:
    svc = service()
    svc.spec.cluster_ip = "None"
    p = pod("a", "10.0.0.1")
    p.spec.hostname, p.spec.subdomain = "a", "web"
    subsets, _ = desired_subsets(svc, [p])
    assert as_dicts(subsets) == [{"addresses": [
        {"ip": "10.0.0.1", "hostname": "a", "nodeName": "n1",
         "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"}}]}]
    assert desired_labels(svc) == {"tier": "front", HEADLESS_LABEL: ""}
    assert desired_labels(service()) == {"tier": "front"}


def test_same_input_same_output_and_no_pods_no_subsets() -> None:
    pods = [pod(f"p{i}", f"10.0.0.{i}", ready=i % 2 == 0) for i in range(1, 9)]
    svc = service(("http", 80, 8080))
    first, _ = desired_subsets(svc, pods)
    again, _ = desired_subsets(svc, list(reversed(pods)))
    assert as_dicts(first) == as_dicts(again)
    assert desired_subsets(svc, []) == ([], [])


def test_selects() -> None:
    svc = service()
    assert selects(svc, {"app": "web", "x": "y"})
    assert not selects(svc, {"app": "db"})
    svc.spec.selector.clear()
    assert not selects(svc, {"app": "web"})  # no selector: the controller does not manage it
