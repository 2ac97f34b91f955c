"""Service environment variables, named and valued exactly as Kubernetes' kubelet makes them."""

from __future__ import annotations

from kubelet.service_env import env_var_name, from_services, services_for
from protos.v1 import objects_pb2 as v1


def service(name: str, ip: str, *ports: tuple[str, int, str], namespace: str = "default"
            ) -> v1.Service:
    svc = v1.Service(metadata=v1.ObjectMeta(name=name, namespace=namespace))
    svc.spec.cluster_ip = ip
    for port_name, port, protocol in ports:
        svc.spec.ports.add(name=port_name, port=port, protocol=protocol)
    return svc


def test_variables_of_one_service() -> None:
    svc = service("redis-master", "127.96.0.11", ("", 6379, "TCP"))
    assert from_services([svc]) == [
        ("REDIS_MASTER_SERVICE_HOST", "127.96.0.11"),
        ("REDIS_MASTER_SERVICE_PORT", "6379"),
        ("REDIS_MASTER_PORT", "tcp://127.96.0.11:6379"),
        ("REDIS_MASTER_PORT_6379_TCP", "tcp://127.96.0.11:6379"),
        ("REDIS_MASTER_PORT_6379_TCP_PROTO", "tcp"),
        ("REDIS_MASTER_PORT_6379_TCP_PORT", "6379"),
        ("REDIS_MASTER_PORT_6379_TCP_ADDR", "127.96.0.11"),
    ]


def test_named_ports_and_protocols() -> None:
    svc = service("dns", "127.96.0.10", ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"),
                  ("metrics", 9153, "TCP"))
    assert dict(from_services([svc])) == {
        "DNS_SERVICE_HOST": "127.96.0.10",
        "DNS_SERVICE_PORT": "53",
        "DNS_SERVICE_PORT_DNS": "53",
        "DNS_SERVICE_PORT_DNS_TCP": "53",
        "DNS_SERVICE_PORT_METRICS": "9153",
        "DNS_PORT": "udp://127.96.0.10:53",
        "DNS_PORT_53_UDP": "udp://127.96.0.10:53",
        "DNS_PORT_53_UDP_PROTO": "udp",
        "DNS_PORT_53_UDP_PORT": "53",
        "DNS_PORT_53_UDP_ADDR": "127.96.0.10",
        "DNS_PORT_53_TCP": "tcp://127.96.0.10:53",
        "DNS_PORT_53_TCP_PROTO": "tcp",
        "DNS_PORT_53_TCP_PORT": "53",
        "DNS_PORT_53_TCP_ADDR": "127.96.0.10",
        "DNS_PORT_9153_TCP": "tcp://127.96.0.10:9153",
        "DNS_PORT_9153_TCP_PROTO": "tcp",
        "DNS_PORT_9153_TCP_PORT": "9153",
        "DNS_PORT_9153_TCP_ADDR": "127.96.0.10",
    }


def test_ipv6_is_bracketed_in_urls() -> None:
    env = dict(from_services([service("v6", "fd00::a", ("", 80, "TCP"))]))
    assert env["V6_PORT"] == "tcp://[fd00::a]:80"
    assert env["V6_PORT_80_TCP_ADDR"] == "fd00::a"


def test_headless_and_external_services_have_no_variables() -> None:
    headless = service("headless", "None", ("", 80, "TCP"))
    external = service("ext", "", ("", 80, "TCP"))
    assert from_services([headless, external]) == []


def test_which_services_a_pod_gets() -> None:
    services = [
        service("kubernetes", "127.96.0.1", ("https", 443, "TCP")),
        service("web", "127.96.0.2", ("", 80, "TCP")),
        service("db", "127.96.0.3", ("", 5432, "TCP"), namespace="team"),
        service("kubernetes", "127.96.0.4", ("", 8443, "TCP"), namespace="shadow"),
    ]
    names = [(s.metadata.namespace, s.metadata.name) for s in services_for(services, "team")]
    assert names == [("team", "db"), ("default", "kubernetes")]
    # enableServiceLinks: false keeps only the master service.
    assert [s.metadata.name for s in services_for(services, "team", False)] == ["kubernetes"]
    # A namespace's own service of that name wins.
    chosen = services_for(services, "shadow")
    assert [(s.metadata.namespace, s.spec.cluster_ip) for s in chosen] == [
        ("shadow", "127.96.0.4")]


def test_env_var_name() -> None:
    assert env_var_name("my-svc") == "MY_SVC"
