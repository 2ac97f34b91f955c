"""The ``kubernetes`` Service of ``default`` and its Endpoints, kept by real API servers on a
real etcd as kube-apiserver's bootstrap controller keeps them; what pods, the Endpoints
controller and the proxy make of it."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest

from apiserver.bootstrap import BootstrapSettings
from apiserver.server import ApiServer, ApiServerSettings
from controller_manager.manager import ControllerManager
from controller_manager.settings import ControllerManagerSettings
from kubelet.env import EnvResolver
from kubelet.service_env import ServiceEnv
from kubelite.api.errors import Invalid
from kubelite.client.client import ApiClient
from kubelite.client.informer import InformerSettings
from kubelite.testing.apiserver import server_settings, start_api_server
from kubelite.testing.etcd import EtcdProcess
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1
from proxy.proxier import Proxier, ProxySettings

FAST = BootstrapSettings(endpoint_reconcile_interval=0.2, master_lease_ttl=2)


def fast_settings(etcd: EtcdProcess, prefix: str, **api: object) -> ApiServerSettings:
    settings = server_settings(etcd.endpoint, prefix=prefix)
    if api:
        settings = replace(settings, api=replace(settings.api, **api))  # type: ignore[arg-type]
    return replace(settings, bootstrap=FAST)


@asynccontextmanager
async def running(settings: ApiServerSettings) -> AsyncIterator[ApiServer]:
    server = await start_api_server(settings)
    try:
        yield server
    finally:
        await server.stop()


async def kubernetes(client: ApiClient) -> tuple[v1.Service, v1.Endpoints]:
    return (await client.get(v1.Service, "kubernetes", "default"),
            await client.get(v1.Endpoints, "kubernetes", "default"))


def endpoints_of(ep: v1.Endpoints) -> set[tuple[str, int]]:
    found = set()
    for subset in ep.subsets:
        assert [(p.name, p.protocol) for p in subset.ports] == [("https", "TCP")]
        found |= {(a.ip, subset.ports[0].port) for a in subset.addresses}
    return found


async def test_kubernetes_service_and_endpoints(api_server: ApiServer,
                                                client: ApiClient) -> None:
    svc, ep = await kubernetes(client)
    assert dict(svc.metadata.labels) == {"component": "apiserver", "provider": "kubernetes"}
    assert svc.spec.type == "ClusterIP" and not svc.spec.selector
    assert svc.spec.cluster_ip == "127.96.0.1"  # the first address of 127.96.0.0/16
    [port] = svc.spec.ports
    assert (port.name, port.port, port.protocol, port.target_port.int_val) == (
        "https", 443, "TCP", api_server.port)
    assert endpoints_of(ep) == {("127.0.0.1", api_server.port)}
    # The address is allocated like any requested ClusterIP: nobody else gets it.
    taken = v1.Service(metadata=v1.ObjectMeta(name="thief"))
    taken.spec.cluster_ip = "127.96.0.1"
    taken.spec.ports.add(port=80)
    with pytest.raises(Invalid, match="provided IP is already allocated"):
        await client.create(taken)


async def test_restart_keeps_the_service_and_moves_the_endpoints(etcd: EtcdProcess) -> None:
    settings = fast_settings(etcd, f"/test-{uuid.uuid4().hex[:12]}")
    async with running(settings) as first, ApiClient(first.address, timeout=10) as c:
        before, _ = await kubernetes(c)
    # A second start on the same data: no duplicate, no failure; the endpoints follow the new
    # port (the stopped server took its own address out), and so does targetPort.
    async with running(settings) as second, ApiClient(second.address, timeout=10) as c:
        svc, ep = await kubernetes(c)
        assert svc.metadata.uid == before.metadata.uid
        assert svc.spec.cluster_ip == before.spec.cluster_ip
        assert endpoints_of(ep) == {("127.0.0.1", second.port)}
        assert svc.spec.ports[0].target_port.int_val == second.port
        services = (await c.list(v1.Service, "default")).items
        assert [s.metadata.name for s in services] == ["kubernetes"]
        # Deleted by hand, it comes back (with the same address).
        await c.delete(v1.Service, "kubernetes", "default")
        again = await eventually(lambda: c.get(v1.Service, "kubernetes", "default"),
                                 message="the kubernetes Service recreated")
        assert again.spec.cluster_ip == before.spec.cluster_ip


async def test_two_api_servers_each_add_themselves_and_do_not_fight(etcd: EtcdProcess) -> None:
    prefix = f"/test-{uuid.uuid4().hex[:12]}"
    a_settings = replace(fast_settings(etcd, prefix),
                         bootstrap=replace(FAST, advertise_address="127.0.0.5"))
    async with running(a_settings) as a, ApiClient(a.address, timeout=10) as c:
        async with running(fast_settings(etcd, prefix)) as b:
            both = {("127.0.0.5", a.port), ("127.0.0.1", b.port)}

            async def has_both() -> v1.Endpoints | None:
                _, ep = await kubernetes(c)
                return ep if endpoints_of(ep) == both else None

            await eventually(has_both, message="both API servers in the Endpoints")
            svc, ep = await kubernetes(c)
            # Three more reconcile passes of each later, neither rewrote anything.
            marks = (a.bootstrap.passes + 3, b.bootstrap.passes + 3)
            await eventually(lambda: a.bootstrap.passes >= marks[0]
                             and b.bootstrap.passes >= marks[1],
                             message="three more reconcile passes of each")
            svc_after, ep_after = await kubernetes(c)
            assert svc_after.metadata.resource_version == svc.metadata.resource_version
            assert ep_after.metadata.resource_version == ep.metadata.resource_version
        _, ep = await kubernetes(c)
        assert endpoints_of(ep) == {("127.0.0.5", a.port)}  # b took itself out on stop


async def test_pods_get_kubernetes_service_variables(client: ApiClient) -> None:
    await client.create(v1.Namespace(metadata=v1.ObjectMeta(name="other")))
    services = ServiceEnv(client)
    services.start()
    try:
        await services.wait_for_sync(10)
        pod = v1.Pod(metadata=v1.ObjectMeta(name="commands", namespace="other"))
        pod.spec.enable_service_links = False  # the master service is there all the same
        container = pod.spec.containers.add(name="main", image="busybox")
        env = await EnvResolver(client, {}).resolve(pod, container, services.for_pod(pod))
        assert {k: v for k, v in env.items() if k.startswith("KUBERNETES_")} == {
            "KUBERNETES_SERVICE_HOST": "127.96.0.1",
            "KUBERNETES_SERVICE_PORT": "443",
            "KUBERNETES_SERVICE_PORT_HTTPS": "443",
            "KUBERNETES_PORT": "tcp://127.96.0.1:443",
            "KUBERNETES_PORT_443_TCP": "tcp://127.96.0.1:443",
            "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
            "KUBERNETES_PORT_443_TCP_PORT": "443",
            "KUBERNETES_PORT_443_TCP_ADDR": "127.96.0.1",
        }
    finally:
        await services.stop()


async def test_endpoints_controller_leaves_the_endpoints_alone(api_server: ApiServer,
                                                               client: ApiClient) -> None:
    _, ep = await kubernetes(client)
    settings = ControllerManagerSettings(controllers=("endpoints",), leader_elect=False,
                                         workers=1)
    manager = ControllerManager(settings, client)
    await manager.start()
    try:
        await asyncio.wait_for(manager.leading.wait(), 10)
        # One worker takes keys in order: once the later Service has its Endpoints, the
        # kubernetes Service (changed first) has been reconciled.
        await client.patch(v1.Service, "kubernetes", {"metadata": {"labels": {"x": "y"}}},
                           "default")
        later = v1.Service(metadata=v1.ObjectMeta(name="later"))
        later.spec.selector["app"] = "later"
        later.spec.ports.add(port=80)
        await client.create(later)
        await eventually(lambda: client.get(v1.Endpoints, "later", "default"),
                         message="the later Service's Endpoints")
        _, now = await kubernetes(client)
        assert now.metadata.resource_version == ep.metadata.resource_version
        assert endpoints_of(now) == {("127.0.0.1", api_server.port)}
    finally:
        await manager.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="the proxy binds port 443 (privileged)")
async def test_the_proxy_reaches_the_api_server_through_the_service(etcd: EtcdProcess) -> None:
    # A range of its own, so no other cluster's proxy on this host owns the address.
    ip_range = f"127.98.{random.randint(0, 255)}.0/24"
    settings = fast_settings(etcd, f"/test-{uuid.uuid4().hex[:12]}",
                             service_cluster_ip_range=ip_range)
    async with running(settings) as server, ApiClient(server.address, timeout=10) as c:
        svc, _ = await kubernetes(c)
        proxier = Proxier(ProxySettings(node_name="node-1", node_ip="127.0.0.1",
                                        bind_retry_interval=0.2,
                                        informer=InformerSettings(backoff_initial=0.05,
                                                                  backoff_max=0.5)), c)
        await proxier.start()
        try:
            await proxier.wait_for_sync(10)
            async with ApiClient(f"{svc.spec.cluster_ip}:443", timeout=5) as through:

                async def listed() -> list[str]:
                    items = (await through.list(v1.Namespace)).items
                    return [n.metadata.name for n in items]

                found = await eventually(listed, message="a List through the ClusterIP")
            assert "default" in found
        finally:
            await proxier.stop()
