"""Service ClusterIP and NodePort allocation through the API, on a real etcd."""

from __future__ import annotations

import asyncio
import ipaddress
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from apiserver.allocator import EtcdAllocator, IPRange, RangeFull
from apiserver.etcd import Etcd, EtcdSettings
from apiserver.server import ApiServer
from kubelet.env import EnvResolver
from kubelet.service_env import ServiceEnv
from kubelite.api.errors import AlreadyExists, InternalError, Invalid
from kubelite.client.client import ApiClient
from kubelite.testing.apiserver import server_settings, start_api_server
from kubelite.testing.etcd import EtcdProcess
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1

RANGE = ipaddress.ip_network("127.96.0.0/16")


def service(name: str, type_: str = "ClusterIP", *, cluster_ip: str = "", node_port: int = 0,
            port: int = 80, ports: int = 1) -> v1.Service:
    svc = v1.Service(metadata=v1.ObjectMeta(name=name))
    svc.spec.type = type_
    svc.spec.selector["app"] = name
    svc.spec.cluster_ip = cluster_ip
    for i in range(ports):
        svc.spec.ports.add(name=f"p{i}" if ports > 1 else "", port=port + i,
                           node_port=node_port if i == 0 else 0)
    return svc


def causes(error: Invalid) -> list[tuple[str, str]]:
    """(field, message) of each cause; the message leaves the field out, as Kubernetes'."""
    return [(c["field"], c["message"]) for c in error.causes]


@pytest.fixture
async def two_servers(etcd: EtcdProcess) -> AsyncIterator[tuple[ApiServer, ApiServer]]:
    prefix = f"/test-{uuid.uuid4().hex[:12]}"
    a = await start_api_server(server_settings(etcd.endpoint, prefix=prefix))
    b = await start_api_server(server_settings(etcd.endpoint, prefix=prefix))
    yield a, b
    await asyncio.gather(a.stop(), b.stop())


async def test_cluster_ip_and_node_port_are_allocated(client: ApiClient) -> None:
    plain = await client.create(service("plain"))
    assert ipaddress.ip_address(plain.spec.cluster_ip) in RANGE
    assert list(plain.spec.cluster_ips) == [plain.spec.cluster_ip]
    assert list(plain.spec.ip_families) == ["IPv4"]
    assert plain.spec.ip_family_policy == "SingleStack"
    assert plain.spec.ports[0].node_port == 0

    np = await client.create(service("np", "NodePort", ports=2))
    assert all(30000 <= p.node_port <= 32767 for p in np.spec.ports)
    assert np.spec.ports[0].node_port != np.spec.ports[1].node_port
    assert np.spec.cluster_ip != plain.spec.cluster_ip

    headless = await client.create(service("headless", cluster_ip="None"))
    assert headless.spec.cluster_ip == "None"
    assert list(headless.spec.cluster_ips) == ["None"]

    external = v1.Service(metadata=v1.ObjectMeta(name="ext"))
    external.spec.type = "ExternalName"
    external.spec.external_name = "example.com"
    external = await client.create(external)
    assert external.spec.cluster_ip == "" and not external.spec.cluster_ips

    # A requested IP from the list form is honoured and mirrored.
    listed = service("listed")
    listed.spec.cluster_ips.append("127.96.0.7")
    listed = await client.create(listed)
    assert (listed.spec.cluster_ip, list(listed.spec.cluster_ips)) == (
        "127.96.0.7", ["127.96.0.7"])


async def test_concurrent_creates_on_two_api_servers_get_distinct_values(
    two_servers: tuple[ApiServer, ApiServer],
) -> None:
    a, b = two_servers
    clients = [ApiClient(s.address, timeout=30) for s in (a, b, a, b)]
    try:
        created = await asyncio.gather(*(
            clients[i % len(clients)].create(service(f"s{i}", "NodePort"))
            for i in range(200)
        ))
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    ips = [s.spec.cluster_ip for s in created]
    ports = [s.spec.ports[0].node_port for s in created]
    assert len(set(ips)) == 200
    assert len(set(ports)) == 200
    assert all(ipaddress.ip_address(ip) in RANGE for ip in ips)
    # Both servers see one bitmap holding exactly these values (and the kubernetes Service's).
    for server in (a, b):
        snapshot = await server.api.services.ips.snapshot()
        assert sorted(snapshot.values()) == sorted([*ips, "127.96.0.1"])
        port_snapshot = await server.api.services.ports.snapshot()
        assert sorted(port_snapshot.values()) == sorted(ports)


async def test_duplicates_are_rejected_with_the_field(client: ApiClient) -> None:
    first = await client.create(service("first", "NodePort"))
    with pytest.raises(Invalid) as e:
        await client.create(service("second", cluster_ip=first.spec.cluster_ip))
    assert causes(e.value) == [(
        "spec.clusterIP",
        f'Invalid value: "{first.spec.cluster_ip}": provided IP is already'
        " allocated",
    )]
    with pytest.raises(Invalid) as e:
        await client.create(service("third", "NodePort", node_port=first.spec.ports[0].node_port))
    assert causes(e.value) == [(
        "spec.ports[0].nodePort",
        f"Invalid value: {first.spec.ports[0].node_port}: provided port"
        " is already allocated",
    )]
    # The failed creates took nothing: only the first service's values are held.
    assert await _held(client) == ({first.spec.cluster_ip}, {first.spec.ports[0].node_port})


async def _held(client: ApiClient) -> tuple[set[str], set[int]]:
    """What the test's Services hold (the API server's own kubernetes Service aside)."""
    items = [s for s in (await client.list(v1.Service, "default")).items
             if s.metadata.name != "kubernetes"]
    ips = {s.spec.cluster_ip for s in items if s.spec.cluster_ip not in ("", "None")}
    return ips, {p.node_port for s in items for p in s.spec.ports if p.node_port}


async def test_out_of_range_values_are_rejected(client: ApiClient) -> None:
    with pytest.raises(Invalid) as e:
        await client.create(service("ip", cluster_ip="10.0.0.1"))
    assert causes(e.value) == [(
        "spec.clusterIP",
        'Invalid value: "10.0.0.1": provided IP is not in the valid range.'
        " The range of valid IPs is 127.96.0.0/16",
    )]
    for edge in ("127.96.0.0", "127.96.255.255"):  # network and broadcast addresses
        with pytest.raises(Invalid, match="not in the valid range"):
            await client.create(service("edge", cluster_ip=edge))
    with pytest.raises(Invalid) as e:
        await client.create(service("port", "NodePort", node_port=20000))
    assert causes(e.value) == [(
        "spec.ports[0].nodePort",
        "Invalid value: 20000: provided port is not in the valid range."
        " The range of valid ports is 30000-32767",
    )]
    with pytest.raises(Invalid) as e:
        await client.create(service("big", port=70000))
    assert ("spec.ports[0].port", "Invalid value: 70000: must be between 1"
            " and 65535, inclusive") in causes(e.value)
    with pytest.raises(Invalid) as e:
        await client.create(service("cip", node_port=30080))
    assert [f for f, _ in causes(e.value)] == ["spec.ports[0].nodePort"]
    assert await _held(client) == (set(), set())


async def test_delete_frees_the_ip_and_port(client: ApiClient) -> None:
    await client.create(service("a", "NodePort", cluster_ip="127.96.1.1", node_port=30100))
    await client.delete(v1.Service, "a", "default")
    again = await client.create(service("b", "NodePort", cluster_ip="127.96.1.1",
                                        node_port=30100))
    assert (again.spec.cluster_ip, again.spec.ports[0].node_port) == ("127.96.1.1", 30100)


async def test_finalized_service_frees_on_removal(client: ApiClient) -> None:
    svc = service("fin", "NodePort", cluster_ip="127.96.1.2", node_port=30101)
    svc.metadata.finalizers.append("example.com/hold")
    await client.create(svc)
    await client.delete(v1.Service, "fin", "default")
    with pytest.raises(Invalid, match="already allocated"):  # still held while terminating
        await client.create(service("other", cluster_ip="127.96.1.2"))
    await client.patch(v1.Service, "fin", {"metadata": {"finalizers": None}}, "default")
    again = await client.create(service("other", "NodePort", cluster_ip="127.96.1.2",
                                         node_port=30101))
    assert again.spec.cluster_ip == "127.96.1.2"


async def test_failed_create_releases_what_it_took(client: ApiClient) -> None:
    await client.create(service("dup", cluster_ip="127.96.2.1"))
    with pytest.raises(AlreadyExists):
        await client.create(service("dup", "NodePort", cluster_ip="127.96.2.2",
                                    node_port=30200))
    taken = await client.create(service("next", "NodePort", cluster_ip="127.96.2.2",
                                         node_port=30200))
    assert taken.spec.ports[0].node_port == 30200


async def test_updates_keep_release_and_allocate(client: ApiClient) -> None:
    created = await client.create(service("web", "NodePort", ports=2))
    ip = created.spec.cluster_ip
    node_ports = [p.node_port for p in created.spec.ports]

    # A manifest without the assigned values (as `apply` sends) keeps them: no change at all.
    same = await client.update(service("web", "NodePort", ports=2))
    assert same.metadata.resource_version == created.metadata.resource_version
    assert same.spec.cluster_ip == ip and [p.node_port for p in same.spec.ports] == node_ports

    with pytest.raises(Invalid, match="field is immutable"):
        await client.update(service("web", "NodePort", ports=2, cluster_ip="127.96.3.3"))

    # NodePort -> ClusterIP clears and frees the node ports.
    plain = await client.update(service("web", ports=2))
    assert [p.node_port for p in plain.spec.ports] == [0, 0]
    assert plain.spec.cluster_ip == ip
    taken = await client.create(service("taker", "NodePort", node_port=node_ports[0]))
    assert taken.spec.ports[0].node_port == node_ports[0]

    # ClusterIP -> NodePort allocates again; a requested port that is taken is refused.
    with pytest.raises(Invalid, match=r"spec.ports\[0\].nodePort.*already allocated"):
        await client.update(service("web", "NodePort", ports=2, node_port=node_ports[0]))
    back = await client.update(service("web", "NodePort", ports=2))
    assert all(p.node_port for p in back.spec.ports)

    # -> ExternalName frees the IP; back to ClusterIP allocates one.
    ext = service("web", "ExternalName", ports=2)
    ext.spec.external_name = "example.com"
    for p in ext.spec.ports:
        p.node_port = 0
    ext = await client.update(ext)
    assert ext.spec.cluster_ip == "" and not ext.spec.cluster_ips
    reuse = await client.create(service("reuse", cluster_ip=ip))
    assert reuse.spec.cluster_ip == ip
    again = await client.update(service("web", ports=2))
    assert again.spec.cluster_ip not in ("", ip)


async def test_full_range_is_an_internal_error(etcd: EtcdProcess) -> None:
    settings = server_settings(etcd.endpoint)
    tiny = replace(settings.api, service_cluster_ip_range="127.97.0.0/30")
    settings = replace(settings, api=tiny)
    server = await start_api_server(settings)
    try:
        async with ApiClient(server.address, timeout=10) as c:
            # The kubernetes Service holds the first address, 127.97.0.1.
            kubernetes = await c.get(v1.Service, "kubernetes", "default")
            assert kubernetes.spec.cluster_ip == "127.97.0.1"
            first = await c.create(service("one"))
            assert first.spec.cluster_ip == "127.97.0.2"
            with pytest.raises(InternalError, match="range is full"):
                await c.create(service("two"))
            await c.delete(v1.Service, "one", "default")
            third = await c.create(service("three"))
            assert third.spec.cluster_ip == first.spec.cluster_ip
    finally:
        await server.stop()


async def test_service_env_for_pods_from_a_real_api_server(client: ApiClient) -> None:
    redis = service("redis-master", port=6379)
    redis.spec.ports[0].name = ""
    redis = await client.create(redis)
    await client.create(service("headless", cluster_ip="None"))
    other = v1.Namespace(metadata=v1.ObjectMeta(name="other"))
    await client.create(other)
    elsewhere = service("elsewhere")
    elsewhere.metadata.namespace = "other"
    await client.create(elsewhere)

    services = ServiceEnv(client)
    services.start()
    try:
        await services.wait_for_sync(10)
        ip = redis.spec.cluster_ip
        await eventually(lambda: "REDIS_MASTER_SERVICE_HOST" in services("default"),
                         timeout=5, message="redis-master in the informer")
        pod = v1.Pod(metadata=v1.ObjectMeta(name="client", namespace="default"))
        container = pod.spec.containers.add(name="main", image="busybox")
        container.env.add(name="REDIS_MASTER_SERVICE_PORT", value="override")
        container.env.add(name="URL", value="$(REDIS_MASTER_PORT)/0")
        env = await EnvResolver(client, {}).resolve(pod, container, services("default"))
        assert {k: v for k, v in env.items() if k.startswith("REDIS_MASTER")} == {
            "REDIS_MASTER_SERVICE_HOST": ip,
            "REDIS_MASTER_SERVICE_PORT": "override",  # the pod's own env wins
            "REDIS_MASTER_PORT": f"tcp://{ip}:6379",
            "REDIS_MASTER_PORT_6379_TCP": f"tcp://{ip}:6379",
            "REDIS_MASTER_PORT_6379_TCP_PROTO": "tcp",
            "REDIS_MASTER_PORT_6379_TCP_PORT": "6379",
            "REDIS_MASTER_PORT_6379_TCP_ADDR": ip,
        }
        assert env["URL"] == f"tcp://{ip}:6379/0"
        assert not any(k.startswith(("HEADLESS_", "ELSEWHERE_")) for k in env)
        assert "ELSEWHERE_SERVICE_HOST" in services("other")
        pod.spec.enable_service_links = False
        # Only the master service's variables are left (the kubernetes Service).
        assert sorted(services.for_pod(pod)) == sorted(
            k for k in services("default") if k.startswith("KUBERNETES_"))
        assert "KUBERNETES_SERVICE_HOST" in services.for_pod(pod)
    finally:
        await services.stop()


async def test_allocators_sharing_a_key_never_hand_out_a_value_twice(etcd: EtcdProcess) -> None:
    # Three "API servers" race for a whole /24, one value at a time: every compare-and-swap
    # conflict must be retried on the winner's bitmap.
    client = Etcd(EtcdSettings(endpoints=(etcd.endpoint,)))
    key = f"/test-{uuid.uuid4().hex[:12]}/ranges/serviceips".encode()
    r = IPRange.parse("10.1.0.0/24")
    allocators = [EtcdAllocator(client, key, r, IPRange.parse) for _ in range(3)]
    try:
        got = await asyncio.gather(*(allocators[i % 3].allocate([], 1) for i in range(r.size)))
        values = [v for batch in got for v in batch]
        assert len(values) == len(set(values)) == r.size
        for allocator in allocators:
            with pytest.raises(RangeFull):
                await allocator.allocate([], 1)
        await allocators[0].release(values[:10])
        again = await asyncio.gather(*(allocators[i % 3].allocate([], 1) for i in range(10)))
        assert sorted(v for batch in again for v in batch) == sorted(values[:10])
    finally:
        await asyncio.gather(*(a.close() for a in allocators))
        await client.close()


async def test_load_balancer_ports(client: ApiClient) -> None:
    lb = service("lb", "LoadBalancer")
    lb.spec.external_traffic_policy = "Local"
    lb = await client.create(lb)
    node_port, health = lb.spec.ports[0].node_port, lb.spec.health_check_node_port
    assert node_port and health and node_port != health
    lb.spec.external_traffic_policy = "Cluster"
    lb = await client.update(lb)
    assert lb.spec.health_check_node_port == 0
    assert lb.spec.ports[0].node_port == node_port
    reuse = await client.create(service("reuse", "NodePort", node_port=health))
    assert reuse.spec.ports[0].node_port == health

    # allocateLoadBalancerNodePorts: false takes no node port.
    bare = service("bare", "LoadBalancer")
    bare.spec.allocate_load_balancer_node_ports = False
    bare = await client.create(bare)
    assert bare.spec.ports[0].node_port == 0 and bare.spec.cluster_ip
