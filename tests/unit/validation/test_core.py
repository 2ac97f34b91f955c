"""The core kinds besides Pod: Service, ConfigMap, Secret, Endpoints, Node, Lease, Event,
Namespace."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from google.protobuf.message import Message

from kubelite.api import meta as m
from kubelite.api.defaults import apply_defaults
from kubelite.api.field_errors import ErrorType
from kubelite.api.validation import validate
from protos.v1 import objects_pb2 as v1
from tests.unit.validation.support import (
    CONFIG_KEY_MSG,
    VALID,
    At,
    Expect,
    defaulted,
    exactly,
    make_service,
    only_at,
)

INVALID, REQUIRED, FORBIDDEN = ErrorType.INVALID, ErrorType.REQUIRED, ErrorType.FORBIDDEN
NOT_SUPPORTED, DUPLICATE, TOO_LONG = (
    ErrorType.NOT_SUPPORTED, ErrorType.DUPLICATE, ErrorType.TOO_LONG
)

# ---------------------------------------------------------------- Service


def _headless(s: v1.Service) -> None:
    s.spec.ClearField("ports")
    s.spec.cluster_ip = "None"


def _external_name(s: v1.Service) -> None:
    s.spec.type = "ExternalName"
    s.spec.external_name = "db.example.com."


def _node_port(s: v1.Service) -> None:
    s.spec.type = "NodePort"
    s.spec.ports[0].node_port = 30080


def _no_ports(s: v1.Service) -> None:
    s.spec.ClearField("ports")


def _bad_ports(s: v1.Service) -> None:
    s.spec.ports.add(port=0, protocol="ICMP")
    s.spec.ports.add(name="http", port=81, target_port=v1.IntOrString(str_val="Not_A_Name"))
    s.spec.ports.add(name="x", port=82, node_port=30001)


def _target_port_out_of_range(s: v1.Service) -> None:
    s.spec.ports[0].target_port.int_val = 70000


def _set(**spec: object) -> Callable[[v1.Service], None]:
    def mutate(s: v1.Service) -> None:
        for name, value in spec.items():
            setattr(s.spec, name, value)
    return mutate


def _client_ip_too_long(s: v1.Service) -> None:
    s.spec.session_affinity = "ClientIP"
    s.spec.session_affinity_config.client_ip.timeout_seconds = 86401


SERVICE_CASES = [
    pytest.param(None, VALID, id="cluster-ip"),
    pytest.param(_headless, VALID, id="headless"),
    pytest.param(_external_name, VALID, id="external-name"),
    pytest.param(_node_port, VALID, id="node-port"),
    pytest.param(_no_ports, exactly((REQUIRED, "spec.ports")), id="ports-required"),
    pytest.param(_bad_ports, exactly(
        (REQUIRED, "spec.ports[1].name"),
        (INVALID, "spec.ports[1].port"),
        (INVALID, "spec.ports[1].targetPort"),  # defaulted from the bad port
        (NOT_SUPPORTED, "spec.ports[1].protocol"),
        (DUPLICATE, "spec.ports[2].name"),
        (INVALID, "spec.ports[2].targetPort"),
        (FORBIDDEN, "spec.ports[3].nodePort"),
        at=(
            At("spec.ports[1].port", detail="must be between 1 and 65535, inclusive"),
            At("spec.ports[3].nodePort", detail="may not be used when `type` is 'ClusterIP'"),
        ),
    ), id="port-rules"),
    pytest.param(_target_port_out_of_range, exactly((INVALID, "spec.ports[0].targetPort")),
                 id="target-port-int-range"),
    pytest.param(_set(type="Internal"), exactly((NOT_SUPPORTED, "spec.type")), id="type"),
    pytest.param(_set(session_affinity="Cookie"), exactly((NOT_SUPPORTED, "spec.sessionAffinity")),
                 id="session-affinity"),
    pytest.param(_client_ip_too_long, only_at(At(
        "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
        detail="must be greater than 0 and less than 86400",
    )), id="client-ip-timeout"),
    pytest.param(_set(cluster_ip="10.0.0.300"), exactly((INVALID, "spec.clusterIP")),
                 id="cluster-ip-invalid"),
    pytest.param(_set(cluster_ip="fd00::10"), VALID, id="cluster-ip-v6"),
    pytest.param(_set(cluster_ip="127.96.0.10"), VALID, id="cluster-ip-v4"),
    pytest.param(_set(type="ExternalName"), Expect(has=((REQUIRED, "spec.externalName"),)),
                 id="external-name-required"),
]


@pytest.mark.parametrize(("mutate", "expect"), SERVICE_CASES)
def test_service_rules(mutate: Callable[[v1.Service], None] | None, expect: Expect) -> None:
    expect.check(validate(make_service(mutate)))


def test_service_cluster_ip_immutable() -> None:
    old = make_service(lambda s: setattr(s.spec, "cluster_ip", "127.96.0.10"))
    new = m.copy(old)
    new.spec.cluster_ip = "127.96.0.11"
    exactly((INVALID, "spec.clusterIP")).check(validate(new, old))


# ---------------------------------------------------------------- ConfigMap and Secret


def test_config_map_keys() -> None:
    cm = v1.ConfigMap()
    cm.metadata.name, cm.metadata.namespace = "cfg", "default"
    cm.data["good.key_1"] = "v"
    cm.data["bad/key"] = "v"
    cm.binary_data["good.key_1"] = b"x"
    errs = validate(cm)
    assert [(e.field, e.detail.split(" (")[0]) for e in errs] == [
        ("data[bad/key]", CONFIG_KEY_MSG),
        ("data[good.key_1]", "duplicate of key present in binaryData"),
    ]


def _secret(type_: str = "", **data: bytes) -> v1.Secret:
    secret = v1.Secret(type=type_)
    secret.metadata.name, secret.metadata.namespace = "s", "default"
    secret.data.update(data)
    return secret


@pytest.mark.parametrize(("secret", "expect"), [
    pytest.param(defaulted(_secret(big=b"x" * (1024 * 1024 + 1))),
                 only_at(At("data", type=TOO_LONG)), id="size"),
    pytest.param(_secret("kubernetes.io/tls", **{"tls.crt": b"c"}),
                 exactly((REQUIRED, "data[tls.key]")), id="tls-keys"),
])
def test_secret_rules(secret: Message, expect: Expect) -> None:
    expect.check(validate(secret))


def test_immutable_config_map() -> None:
    old = v1.ConfigMap(immutable=True)
    old.metadata.name, old.metadata.namespace = "cfg", "default"
    old.data["a"] = "1"
    new = m.copy(old)
    new.data["a"] = "2"
    exactly((FORBIDDEN, "data")).check(validate(new, old))


# ---------------------------------------------------------------- Endpoints


def _endpoints() -> Message:
    ep = v1.Endpoints()
    ep.metadata.name, ep.metadata.namespace = "web", "default"
    subset = ep.subsets.add()
    subset.addresses.add(ip="127.0.0.2")  # loopback is how the process runtime addresses pods
    subset.addresses.add(ip="not-an-ip")
    subset.ports.add(port=70000, protocol="TCP")
    return ep


def _empty_subset() -> Message:
    empty = v1.Endpoints()
    empty.metadata.name, empty.metadata.namespace = "web", "default"
    empty.subsets.add()
    return empty


@pytest.mark.parametrize(("build", "expect"), [
    pytest.param(_endpoints, exactly(
        (INVALID, "subsets[0].addresses[1].ip"), (INVALID, "subsets[0].ports[0].port"),
    ), id="addresses-and-ports"),
    pytest.param(_empty_subset, exactly((REQUIRED, "subsets[0]")), id="empty-subset"),
])
def test_endpoints(build: Callable[[], Message], expect: Expect) -> None:
    expect.check(validate(build()))


# ---------------------------------------------------------------- Node, Lease, Event, Namespace


def _node() -> Message:
    node = v1.Node()
    node.metadata.name = "node-1"
    node.spec.taints.add(key="dedicated", value="gpu", effect="NoSchedule")
    node.spec.taints.add(key="dedicated", value="x", effect="NoSchedule")
    node.spec.taints.add(key="k", effect="Sometimes")
    return node


def _lease() -> Message:
    lease = v1.Lease()
    lease.metadata.name, lease.metadata.namespace = "kube-scheduler", "kube-system"
    lease.spec.lease_duration_seconds = 0
    return lease


def _event(involved_namespace: str) -> Callable[[], Message]:
    def build() -> Message:
        ev = v1.Event()
        ev.metadata.name, ev.metadata.namespace = "web.1", "default"
        ev.involved_object.namespace = involved_namespace
        return ev
    return build


def _namespace() -> Message:
    ns = v1.Namespace()
    ns.metadata.name = "team-a"
    apply_defaults(ns)
    return ns


@pytest.mark.parametrize(("build", "expect"), [
    pytest.param(_node, exactly(
        (DUPLICATE, "spec.taints[1]"), (NOT_SUPPORTED, "spec.taints[2].effect"),
    ), id="node-taints"),
    pytest.param(_lease, only_at(At(
        "spec.leaseDurationSeconds", detail="must be greater than 0",
    )), id="lease-duration"),
    pytest.param(_event("other"), exactly((INVALID, "involvedObject.namespace")),
                 id="event-in-another-namespace"),
    pytest.param(_event("default"), VALID, id="event"),
    pytest.param(_namespace, VALID, id="namespace"),
])
def test_node_lease_event_namespace(build: Callable[[], Message], expect: Expect) -> None:
    expect.check(validate(build()))


# ---------------------------------------------------------------- Node podCIDRs


def _node_with_cidrs(*cidrs: str) -> v1.Node:
    node = v1.Node(metadata=v1.ObjectMeta(name="node-1"))
    node.spec.pod_cidrs.extend(cidrs)
    apply_defaults(node)
    return node


@pytest.mark.parametrize(("cidrs", "expect"), [
    pytest.param(("10.244.1.0/24",), VALID, id="one"),
    pytest.param(("10.244.1.0/24", "fd00:10:244:1::/64"), VALID, id="dual-stack"),
    pytest.param(("10.244.1.0/24", "10.244.2.0/24"), only_at(At(
        "spec.podCIDRs", type=INVALID,
        detail="may specify no more than one CIDR for each IP family",
    ), count=1), id="two-of-one-family"),
    pytest.param(("10.244.1.0/24", "10.244.1.0/24"), exactly(
        (INVALID, "spec.podCIDRs"), (DUPLICATE, "spec.podCIDRs[1]"),
    ), id="repeated"),
    pytest.param(("10.244.1.0",), exactly(
        (INVALID, "spec.podCIDR"), (INVALID, "spec.podCIDRs[0]"),
    ), id="not-a-cidr"),
])
def test_node_pod_cidrs(cidrs: tuple[str, ...], expect: Expect) -> None:
    expect.check(validate(_node_with_cidrs(*cidrs)))


def test_node_pod_cidr_and_pod_cidrs_default_from_each_other_and_must_agree() -> None:
    assert _node_with_cidrs("10.244.1.0/24").spec.pod_cidr == "10.244.1.0/24"
    only_pod_cidr = v1.Node(metadata=v1.ObjectMeta(name="node-1"),
                            spec=v1.NodeSpec(pod_cidr="10.244.1.0/24"))
    apply_defaults(only_pod_cidr)
    assert list(only_pod_cidr.spec.pod_cidrs) == ["10.244.1.0/24"]
    disagree = v1.Node(metadata=v1.ObjectMeta(name="node-1"), spec=v1.NodeSpec(
        pod_cidr="10.244.2.0/24", pod_cidrs=["10.244.1.0/24"]))
    only_at(At("spec.podCIDR", type=INVALID, detail="must equal podCIDRs[0] (10.244.1.0/24)"),
            count=1).check(validate(disagree))


POD_CIDR_CHANGE = 'node updates may not change podCIDR except from "" to valid'


def _set_cidr(cidr: str) -> Callable[[v1.Node], None]:
    def change(node: v1.Node) -> None:
        node.spec.pod_cidr = cidr
        del node.spec.pod_cidrs[:]
        if cidr:
            node.spec.pod_cidrs.append(cidr)
    return change


@pytest.mark.parametrize(("before", "change", "expect"), [
    pytest.param((), _set_cidr("10.244.3.0/24"), VALID, id="set-once"),
    pytest.param(("10.244.3.0/24",), _set_cidr("10.244.3.0/24"), VALID, id="unchanged"),
    pytest.param(("10.244.3.0/24",), _set_cidr("10.244.4.0/24"), only_at(At(
        "spec.podCIDRs", type=FORBIDDEN, detail=POD_CIDR_CHANGE,
    ), count=1), id="changed"),
    pytest.param(("10.244.3.0/24",), _set_cidr(""), only_at(At(
        "spec.podCIDRs", type=FORBIDDEN, detail=POD_CIDR_CHANGE,
    ), count=1), id="cleared"),
])
def test_node_update_sets_pod_cidr_once(before: tuple[str, ...],
                                        change: Callable[[v1.Node], None],
                                        expect: Expect) -> None:
    old = _node_with_cidrs(*before)
    new = m.copy(old)
    change(new)
    apply_defaults(new)
    expect.check(validate(new, old))


def test_node_update_provider_id_set_once() -> None:
    old = _node_with_cidrs()
    new = m.copy(old)
    new.spec.provider_id = "kubelite://node-1"
    VALID.check(validate(new, old))
    newer = m.copy(new)
    newer.spec.provider_id = "kubelite://other"
    only_at(At("spec.providerID", type=FORBIDDEN), count=1).check(validate(newer, new))
