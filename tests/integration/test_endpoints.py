"""The Endpoints controller in a real ControllerManager against a real API server and etcd;
pod statuses are written directly, as a kubelet would."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from controller_manager.manager import ControllerManager
from controller_manager.settings import ControllerManagerSettings
from kubelite.api.errors import NotFound
from kubelite.client.client import ApiClient
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1
from tests.integration.helpers import running_manager

SETTINGS = ControllerManagerSettings(controllers=("endpoints",), leader_elect=False, workers=4)


@pytest.fixture
async def manager(client: ApiClient) -> AsyncIterator[ControllerManager]:
    async with running_manager(client, SETTINGS) as manager:
        yield manager


def make_service(name: str, selector: dict[str, str] | None, *ports: tuple[str, int, int | str]
                 ) -> v1.Service:
    svc = v1.Service(metadata=v1.ObjectMeta(name=name))
    svc.spec.selector.update(selector or {})
    for port_name, port, target in ports:
        sp = svc.spec.ports.add(name=port_name, port=port)
        if isinstance(target, str):
            sp.target_port.str_val = target
        else:
            sp.target_port.int_val = target
    return svc


async def make_pod(client: ApiClient, name: str, ip: str, *, ready: bool,
                   labels: dict[str, str] | None = None,
                   ports: dict[str, int] | None = None) -> v1.Pod:
    pod = v1.Pod(metadata=v1.ObjectMeta(name=name, labels=labels or {"app": "web"}))
    pod.spec.node_name = "node-1"
    container = pod.spec.containers.add(name="main", image="busybox")
    for port_name, number in (ports or {}).items():
        container.ports.add(name=port_name, container_port=number)
    await client.create(pod)
    return await set_status(client, name, ip, ready)


async def set_status(client: ApiClient, name: str, ip: str, ready: bool) -> v1.Pod:
    status = "True" if ready else "False"
    return await client.patch(v1.Pod, name, {"status": {
        "phase": "Running", "podIP": ip, "hostIP": ip,
        "conditions": [
            {"type": "ContainersReady", "status": status},
            {"type": "Ready", "status": status},
        ],
    }}, "default", subresource="status")


async def endpoints(client: ApiClient, name: str) -> v1.Endpoints:
    return await client.get(v1.Endpoints, name, "default")


def ips(ep: v1.Endpoints) -> tuple[list[str], list[str]]:
    ready = sorted(a.ip for s in ep.subsets for a in s.addresses)
    not_ready = sorted(a.ip for s in ep.subsets for a in s.not_ready_addresses)
    return ready, not_ready


@pytest.mark.usefixtures("manager")
async def test_endpoints_follow_readiness_within_a_second(client: ApiClient) -> None:
    await client.create(make_service("web", {"app": "web"}, ("http", 80, 8080)))
    await make_pod(client, "web-1", "127.0.0.11", ready=True)
    await make_pod(client, "web-2", "127.0.0.12", ready=False)
    await make_pod(client, "other", "127.0.0.13", ready=True, labels={"app": "db"})

    async def listed() -> bool:
        return ips(await endpoints(client, "web")) == (["127.0.0.11"], ["127.0.0.12"])

    await eventually(listed, timeout=5, message="initial endpoints")
    ep = await endpoints(client, "web")
    address = ep.subsets[0].addresses[0]
    assert address.node_name == "node-1"
    assert (address.target_ref.kind, address.target_ref.name) == ("Pod", "web-1")
    assert [(p.name, p.port, p.protocol) for p in ep.subsets[0].ports] == [
        ("http", 8080, "TCP")]

    # web-2 turns Ready, web-1 stops being Ready: each reaches the Endpoints.
    await set_status(client, "web-2", "127.0.0.12", True)

    async def both_ready() -> bool:
        return ips(await endpoints(client, "web")) == (["127.0.0.11", "127.0.0.12"], [])

    await eventually(both_ready, timeout=10, message="web-2 ready in endpoints")
    await set_status(client, "web-1", "127.0.0.11", False)

    async def one_not_ready() -> bool:
        return ips(await endpoints(client, "web")) == (["127.0.0.12"], ["127.0.0.11"])

    await eventually(one_not_ready, timeout=10, message="web-1 not ready in endpoints")

    # A deleted pod leaves; a relabelled one too.
    await client.delete(v1.Pod, "web-2", "default", grace_period_seconds=0)
    await client.patch(v1.Pod, "web-1", {"metadata": {"labels": {"app": "moved"}}}, "default")

    async def empty() -> bool:
        return not (await endpoints(client, "web")).subsets

    await eventually(empty, timeout=1.5, message="endpoints emptied")

    # Deleting the Service deletes its Endpoints.
    await client.delete(v1.Service, "web", "default")

    async def gone() -> bool:
        try:
            await endpoints(client, "web")
        except NotFound:
            return True
        return False

    await eventually(gone, timeout=2, message="endpoints deleted with the service")


@pytest.mark.usefixtures("manager")
async def test_publish_not_ready_and_named_ports(client: ApiClient) -> None:
    svc = make_service("named", {"app": "named"}, ("http", 80, "web"))
    svc.spec.publish_not_ready_addresses = True
    svc = await client.create(svc)
    await make_pod(client, "n-1", "127.0.0.21", ready=False, labels={"app": "named"},
                   ports={"web": 8081})
    await make_pod(client, "n-2", "127.0.0.22", ready=True, labels={"app": "named"},
                   ports={"web": 8082})
    await make_pod(client, "n-3", "127.0.0.23", ready=True, labels={"app": "named"})

    async def resolved() -> bool:
        ep = await endpoints(client, "named")
        got = sorted((a.ip, p.port) for s in ep.subsets for a in s.addresses for p in s.ports)
        return got == [("127.0.0.21", 8081), ("127.0.0.22", 8082)] and not any(
            s.not_ready_addresses for s in ep.subsets)

    await eventually(resolved, timeout=5, message="per-pod target ports")

    async def warned() -> v1.Event | None:
        events = (await client.list(v1.Event, "default")).items
        return next((e for e in events if e.involved_object.uid == svc.metadata.uid
                     and e.type == "Warning" and "n-3" in e.message), None)

    event = await eventually(warned, timeout=5, message="a warning about n-3")
    assert '"web"' in event.message


@pytest.mark.usefixtures("manager")
async def test_selectorless_service_keeps_hand_written_endpoints(client: ApiClient) -> None:
    manual = v1.Endpoints(metadata=v1.ObjectMeta(name="external"))
    subset = manual.subsets.add()
    subset.addresses.add(ip="127.0.0.99")
    subset.ports.add(port=5432)
    manual = await client.create(manual)
    await client.create(make_service("external", None, ("", 5432, 5432)))
    await make_pod(client, "db-1", "127.0.0.31", ready=True, labels={"app": "db"})
    # A later Service with a selector is handled: by then the earlier events were too.
    await client.create(make_service("marker", {"app": "db"}, ("", 5432, 5432)))

    async def marker_done() -> bool:
        return ips(await endpoints(client, "marker"))[0] == ["127.0.0.31"]

    await eventually(marker_done, timeout=5, message="the marker service's endpoints")
    kept = await endpoints(client, "external")
    assert kept.metadata.resource_version == manual.metadata.resource_version
    assert ips(kept) == (["127.0.0.99"], [])
