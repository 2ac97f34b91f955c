"""The proxy in-process against a real API server: Services with explicit ClusterIPs in
127.96.0.0/16 and explicit nodePorts, hand-written Endpoints, real backends on loopback."""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import cast

import pytest
from structlog.testing import capture_logs

from kubelite.api.errors import NotFound
from kubelite.client.client import ApiClient
from kubelite.client.informer import InformerSettings
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1
from proxy.loadbalancer import Balancer, ServicePortName
from proxy.proxier import Proxier, ProxySettings
from proxy.tcp import TcpContext, TcpListener, TcpSettings
from proxy.udp import UdpListener, UdpSettings

NS = "default"


def cluster_ip() -> str:
    """A random ClusterIP, so concurrent runs on one host never share an address."""
    return f"127.96.{random.randint(1, 254)}.{random.randint(1, 254)}"


def node_port() -> int:
    return random.randint(30000, 32767)


# ----------------------------------------------------------------------------- backends


class _NameProtocol(asyncio.Protocol):
    """Writes the backend's name and closes."""

    def __init__(self, name: str) -> None:
        self.name = name

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t = cast(asyncio.Transport, transport)
        t.write(f"{self.name}\n".encode())
        t.close()


class _ReplyAfterEofProtocol(asyncio.Protocol):
    """Reads until the client half-closes, then answers name + everything it got, twice."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.data = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        assert self.transport is not None
        self.transport.write(f"{self.name}\n".encode())
        self.transport.write(bytes(self.data))
        self.transport.write(bytes(self.data))
        self.transport.close()
        return True


class _UdpEcho(asyncio.DatagramProtocol):
    def __init__(self, name: str) -> None:
        self.name = name
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(self.name.encode() + b":" + data, addr)


@dataclass
class Backend:
    name: str
    port: int
    server: asyncio.Server | None = None
    udp: asyncio.DatagramTransport | None = None

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.udp is not None:
            self.udp.close()
            self.udp = None


@dataclass
class Backends:
    items: list[Backend] = field(default_factory=list)

    async def start(self, names: Sequence[str], kind: str = "name") -> list[Backend]:
        loop = asyncio.get_running_loop()
        started = []
        for name in names:
            if kind == "udp":
                transport, _ = await loop.create_datagram_endpoint(
                    functools.partial(_UdpEcho, name), local_addr=("127.0.0.1", 0)
                )
                port = transport.get_extra_info("sockname")[1]
                backend = Backend(name, port, udp=transport)
            else:
                factory = _NameProtocol if kind == "name" else _ReplyAfterEofProtocol
                server = await loop.create_server(
                    functools.partial(factory, name), "127.0.0.1", 0
                )
                backend = Backend(name, server.sockets[0].getsockname()[1], server)
            started.append(backend)
        self.items.extend(started)
        return started

    def stop(self) -> None:
        for backend in self.items:
            backend.stop()


@pytest.fixture
async def backends() -> AsyncIterator[Backends]:
    b = Backends()
    yield b
    b.stop()


# ----------------------------------------------------------------------------- the proxy


NODE_IP = f"127.1.{random.randint(1, 254)}.{random.randint(1, 254)}"


def settings(**overrides: object) -> ProxySettings:
    base: dict[str, object] = {
        "node_name": "node-1",
        "node_ip": NODE_IP,
        "shuffle_endpoints": False,
        "bind_retry_interval": 0.2,
        "informer": InformerSettings(backoff_initial=0.05, backoff_max=0.5),
    }
    base.update(overrides)
    return ProxySettings(**base)  # type: ignore[arg-type]


def own_listeners(proxier: Proxier) -> dict[str, list[str]]:
    """The listeners of the test's Services (the API server's kubernetes Service aside)."""
    return {k: v for k, v in proxier.listening().items() if k != "default/kubernetes:https"}


@pytest.fixture
async def proxier(client: ApiClient) -> AsyncIterator[Proxier]:
    p = Proxier(settings(), client)
    await p.start()
    await p.wait_for_sync(10)
    yield p
    await p.stop()


async def create_service(
    client: ApiClient, name: str, *, ip: str, port: int = 80, protocol: str = "TCP",
    nodeport: int = 0, affinity_seconds: int = 0,
) -> v1.Service:
    svc = v1.Service(metadata=v1.ObjectMeta(name=name, namespace=NS))
    svc.spec.cluster_ip = ip
    svc.spec.type = "NodePort" if nodeport else "ClusterIP"
    p = svc.spec.ports.add(name="main", port=port, protocol=protocol, node_port=nodeport)
    p.target_port.int_val = 8080
    if affinity_seconds:
        svc.spec.session_affinity = "ClientIP"
        svc.spec.session_affinity_config.client_ip.timeout_seconds = affinity_seconds
    return await client.create(svc)


def endpoints_object(name: str, backends: Sequence[Backend], protocol: str = "TCP") -> v1.Endpoints:
    ep = v1.Endpoints(metadata=v1.ObjectMeta(name=name, namespace=NS))
    for backend in backends:
        subset = ep.subsets.add()
        subset.addresses.add(ip="127.0.0.1")
        subset.ports.add(name="main", port=backend.port, protocol=protocol)
    return ep


async def put_endpoints(
    client: ApiClient, name: str, backends: Sequence[Backend], protocol: str = "TCP"
) -> None:
    ep = endpoints_object(name, backends, protocol)
    try:
        current = await client.get(v1.Endpoints, name, NS)
    except NotFound:
        await client.create(ep)
        return
    ep.metadata.resource_version = current.metadata.resource_version
    await client.update(ep)


async def fetch(
    host: str, port: int, timeout: float = 3.0, local_ip: str | None = None
) -> str:
    """Connects, reads until EOF, returns the text (a name server's name)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, local_addr=(local_ip, 0) if local_ip else None),
        timeout,
    )
    try:
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
    return data.decode().strip()


async def send_then_read(host: str, payload: bytes, port: int = 80) -> bytes:
    """Sends ``payload``, shuts the write side down, reads the reply to EOF."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 3)
    try:
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


async def names(host: str, port: int, n: int, local_ip: str | None = None) -> Counter[str]:
    return Counter([await fetch(host, port, local_ip=local_ip) for _ in range(n)])


async def serving(host: str, port: int) -> None:
    await eventually(lambda: fetch(host, port, 1.0), timeout=10, message=f"{host}:{port} serves")


async def refused(host: str, port: int) -> bool:
    try:
        await fetch(host, port, timeout=0.5)
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    return False


async def web(client: ApiClient, backends: Backends, **kwargs: object) -> tuple[
    v1.Service, list[Backend]
]:
    """A Service 'web' with three name backends behind it, serving."""
    started = await backends.start(["a", "b", "c"])
    svc = await create_service(client, "web", ip=cluster_ip(), **kwargs)  # type: ignore[arg-type]
    await put_endpoints(client, "web", started)
    await serving(svc.spec.cluster_ip, 80)
    return svc, started


# ----------------------------------------------------------------------------- tests


async def test_cluster_ip_round_robin(
    client: ApiClient, proxier: Proxier, backends: Backends
) -> None:
    svc, _ = await web(client, backends)
    assert await names(svc.spec.cluster_ip, 80, 30) == {"a": 10, "b": 10, "c": 10}
    assert own_listeners(proxier) == {"default/web:main": [f"TCP {svc.spec.cluster_ip}:80"]}


async def test_an_address_it_may_not_bind_is_reported_once(
    client: ApiClient, proxier: Proxier, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a proxy without root meets the kubernetes Service's port 443: it keeps retrying, but
    # says so once, not once a second; once it may bind, it serves.
    ip = cluster_ip()
    attempts: list[float] = []
    real_open = TcpListener.open

    def refuse(self: TcpListener) -> None:
        if self.address == (ip, 80):
            attempts.append(time.monotonic())
            raise PermissionError(errno.EACCES, "Permission denied")
        real_open(self)

    monkeypatch.setattr(TcpListener, "open", refuse)
    with capture_logs() as logs:
        started = await backends.start(["a"])
        await create_service(client, "web", ip=ip)
        await put_endpoints(client, "web", started)
        await eventually(lambda: len(attempts) >= 4, message="four bind attempts")
    refused = [e for e in logs if e["event"].startswith("cannot listen")]
    assert len(refused) == 1, refused
    assert "Permission denied" in refused[0]["error"]
    monkeypatch.setattr(TcpListener, "open", real_open)
    await serving(ip, 80)


async def test_node_port_round_robin(
    client: ApiClient, proxier: Proxier, backends: Backends
) -> None:
    port = node_port()
    svc, _ = await web(client, backends, nodeport=port)
    await serving(NODE_IP, port)
    assert await names(NODE_IP, port, 30) == {"a": 10, "b": 10, "c": 10}
    assert sorted(proxier.listening()["default/web:main"]) == [
        f"TCP {NODE_IP}:{port}", f"TCP {svc.spec.cluster_ip}:80"
    ]


async def test_removed_endpoint_leaves_the_rotation(
    client: ApiClient, proxier: Proxier, backends: Backends
) -> None:
    svc, (a, b, _) = await web(client, backends)
    ip = svc.spec.cluster_ip
    assert set(await names(ip, 80, 6)) == {"a", "b", "c"}
    await put_endpoints(client, "web", [a, b])

    async def c_gone() -> bool:
        return "c" not in await names(ip, 80, 3)

    await eventually(c_gone, timeout=10, interval=0.01, message="c out of rotation")
    assert await names(ip, 80, 20) == {"a": 10, "b": 10}


async def test_client_ip_affinity_pins_each_client(
    client: ApiClient, proxier: Proxier, backends: Backends
) -> None:
    svc, _ = await web(client, backends, affinity_seconds=60)
    ip = svc.spec.cluster_ip
    first = await names(ip, 80, 10, local_ip="127.0.0.1")
    second = await names(ip, 80, 10, local_ip="127.0.0.2")
    assert len(first) == 1 and sum(first.values()) == 10
    assert len(second) == 1 and sum(second.values()) == 10
    assert first.keys() != second.keys()


async def test_refused_endpoint_is_skipped(
    client: ApiClient, proxier: Proxier, backends: Backends
) -> None:
    svc, (_, b, _) = await web(client, backends)
    b.stop()
    got = await names(svc.spec.cluster_ip, 80, 30)
    assert set(got) == {"a", "c"} and sum(got.values()) == 30
    # b's refusals were seen as refusals and the next endpoint dialled at once: no dial
    # waited out its timeout.
    stats = proxier.tcp_stats()
    assert stats["dial_failures"] >= 1 and stats["dial_timeouts"] == 0, stats


async def test_deleting_the_service_closes_its_listener(
    client: ApiClient, proxier: Proxier, backends: Backends
) -> None:
    port = node_port()
    svc, _ = await web(client, backends, nodeport=port)
    await client.delete(v1.Service, "web", NS)
    await eventually(lambda: refused(svc.spec.cluster_ip, 80), timeout=2, message="refused")
    await eventually(lambda: refused(NODE_IP, port), timeout=2, message="nodeport refused")
    assert own_listeners(proxier) == {}


async def test_changed_service_port_moves_the_listener(
    client: ApiClient, proxier: Proxier, backends: Backends
) -> None:
    svc, _ = await web(client, backends)
    ip = svc.spec.cluster_ip
    svc.spec.ports[0].port = 81
    await client.update(svc)
    await serving(ip, 81)
    await eventually(lambda: refused(ip, 80), timeout=1.0, message="old port refused")
    assert set(await names(ip, 81, 3)) == {"a", "b", "c"}


async def test_service_without_endpoints_refuses_promptly(
    client: ApiClient, proxier: Proxier, backends: Backends
) -> None:
    svc, _ = await web(client, backends)
    ip = svc.spec.cluster_ip
    await put_endpoints(client, "web", [])
    await eventually(lambda: refused(ip, 80), timeout=1.0, message="refused")
    for _ in range(5):
        # Refused or reset, not left hanging: a hang would end in fetch's TimeoutError.
        with pytest.raises((ConnectionRefusedError, ConnectionResetError)):
            await fetch(ip, 80, timeout=5)
    # ... and a Service whose Endpoints were never written does not listen at all.
    other = await create_service(client, "empty", ip=cluster_ip())
    await eventually(lambda: proxier.listening().get("default/empty:main") == [],
                     message="the proxy knows the service")
    with pytest.raises((ConnectionRefusedError, ConnectionResetError)):
        await fetch(other.spec.cluster_ip, 80, timeout=0.5)


async def test_all_endpoints_refusing_resets_promptly(
    client: ApiClient, proxier: Proxier, backends: Backends
) -> None:
    svc, started = await web(client, backends)
    for backend in started:
        backend.stop()
    # Reset, not left hanging: a hang would end in fetch's TimeoutError.
    with pytest.raises((ConnectionResetError, ConnectionRefusedError, asyncio.IncompleteReadError)):
        text = await fetch(svc.spec.cluster_ip, 80, timeout=5)
        if not text:  # an orderly close would also be prompt; make it an error for the test
            raise ConnectionResetError("closed without data")


async def test_half_close_gets_the_full_reply(
    client: ApiClient, proxier: Proxier, backends: Backends
) -> None:
    (backend,) = await backends.start(["echo"], kind="reply-after-eof")
    svc = await create_service(client, "echo", ip=cluster_ip())
    await put_endpoints(client, "echo", [backend])
    payload = os.urandom(3 * 1024 * 1024)  # large enough for the splice path
    data = await eventually(lambda: send_then_read(svc.spec.cluster_ip, payload), timeout=10,
                            message="echo through the proxy")
    assert data == b"echo\n" + payload + payload


async def test_udp_echo(client: ApiClient, backends: Backends) -> None:
    started = await backends.start(["u1", "u2"], kind="udp")
    p = Proxier(settings(udp=UdpSettings(idle_timeout=0.2)), client)
    await p.start()
    try:
        await p.wait_for_sync(10)
        svc = await create_service(client, "dns", ip=cluster_ip(), port=53, protocol="UDP")
        await put_endpoints(client, "dns", started, protocol="UDP")
        address = (svc.spec.cluster_ip, 53)
        loop = asyncio.get_running_loop()

        def udp_client() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            s.bind(("127.0.0.1", 0))
            s.connect(address)
            return s

        async def ask(s: socket.socket, text: bytes) -> bytes:
            s.send(text)
            return await asyncio.wait_for(loop.sock_recv(s, 65535), 0.5)

        one, two = udp_client(), udp_client()
        try:
            first = await eventually(lambda: ask(one, b"hello"), timeout=5, message="udp reply")
            name = first.split(b":")[0]
            assert first == name + b":hello"
            # The association holds while the client keeps talking ...
            for i in range(5):
                assert await ask(one, b"x%d" % i) == name + b":x%d" % i
            # ... another client is balanced to the other endpoint ...
            other = (await ask(two, b"hi")).split(b":")[0]
            assert {name, other} == {b"u1", b"u2"}
            # ... and an idle association expires: the next datagram is balanced afresh.
            await eventually(lambda: _idle(p), timeout=2, message="associations expired")
            again = (await ask(one, b"again")).split(b":")[0]
            assert again in (b"u1", b"u2")
        finally:
            one.close()
            two.close()
    finally:
        await p.stop()


def _idle(p: Proxier) -> bool:
    return all(
        not lst.clients
        for entry in p.ports.values() for lst in entry.listeners if isinstance(lst, UdpListener)
    )


def spread(rounds: Sequence[Counter[str]]) -> str:
    return " | ".join(",".join(str(c[n]) for n in sorted(c)) for c in rounds)


async def exact_rounds(ip: str, rounds: int = 5) -> list[Counter[str]]:
    """``rounds`` rounds of 30 connections from one client to ip:80."""
    return [await names(ip, 80, 30) for _ in range(rounds)]


async def test_three_proxies_on_one_host_round_robin_exactly_and_take_over(
    client: ApiClient, backends: Backends
) -> None:
    """Three nodes' proxies on one host, as `kubelite up` runs them: one of them owns the
    ClusterIP listener, so 30 connections from one client over 3 endpoints give exactly 10
    each, every round; when the owner stops, another proxy takes the address over promptly
    and is exact again."""
    takeover = 0.2
    proxies = [
        Proxier(settings(node_name=f"node-{i}", node_ip=f"127.2.{NODE_IP.split('.')[3]}.{i}",
                         takeover_interval=takeover), client)
        for i in range(1, 4)
    ]
    for p in proxies:
        await p.start()
    try:
        for p in proxies:
            await p.wait_for_sync(10)
        svc, _ = await web(client, backends)
        ip = svc.spec.cluster_ip
        port = ServicePortName(NS, "web", "main")
        await eventually(lambda: all(p.lb.has_endpoints(port) for p in proxies), timeout=10,
                         message="every proxy has the endpoints")
        before = await exact_rounds(ip)
        print(f"3 proxies, 5 rounds of 30: {spread(before)}")
        assert all(c == {"a": 10, "b": 10, "c": 10} for c in before), spread(before)
        owners = [p for p in proxies if p.listening()[str(port)]]
        assert len(owners) == 1, [p.listening() for p in proxies]
        assert owners[0].listening()[str(port)] == [f"TCP {ip}:80"]

        owner = owners[0]
        await owner.stop()
        proxies.remove(owner)
        stopped = time.monotonic()
        await serving(ip, 80)
        took = time.monotonic() - stopped
        after = await exact_rounds(ip)
        print(f"after the owner stopped ({took:.2f}s to serve again): {spread(after)}")
        assert took < takeover + 1.0, f"{took:.2f}s to take the ClusterIP over"
        assert all(c == {"a": 10, "b": 10, "c": 10} for c in after), spread(after)
        assert sum(1 for p in proxies if p.listening()[str(port)]) == 1
    finally:
        for p in proxies:
            await p.stop()


async def test_one_socket_per_address_and_host() -> None:
    """A second listener on a held address fails with EADDRINUSE, TCP and UDP alike (no
    SO_REUSEPORT sharing), and binds once the first is closed."""
    loop = asyncio.get_running_loop()
    ctx = TcpContext(loop, TcpSettings())
    balancer = Balancer(time.monotonic)
    address = (cluster_ip(), node_port())
    try:
        for make in (lambda: TcpListener(ctx, address, balancer),
                     lambda: UdpListener(loop, address, balancer)):
            first, second = make(), make()
            first.open()
            with pytest.raises(OSError) as e:
                second.open()
            assert e.value.errno == errno.EADDRINUSE
            first.close()
            second.open()
            second.close()
    finally:
        ctx.close()


async def test_process_serves_on_uvloop_and_exits_cleanly_on_sigterm(
    client: ApiClient, backends: Backends
) -> None:
    """``python -m proxy`` as deployed (on uvloop): round robin, bulk half-close, SIGTERM."""
    started = await backends.start(["a", "b", "c"])
    (echo,) = await backends.start(["echo"], kind="reply-after-eof")
    svc = await create_service(client, "web", ip=cluster_ip())
    await put_endpoints(client, "web", started)
    echo_svc = await create_service(client, "echo", ip=cluster_ip())
    await put_endpoints(client, "echo", [echo])
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "--node-name", "n1", "--node-ip", NODE_IP,
         "--server", client.address, "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        ip = svc.spec.cluster_ip
        await eventually(lambda: fetch(ip, 80, 1.0), timeout=20, message="the process serves")
        assert await names(ip, 80, 30) == {"a": 10, "b": 10, "c": 10}
        payload = os.urandom(2 * 1024 * 1024)
        data = await eventually(lambda: send_then_read(echo_svc.spec.cluster_ip, payload),
                                timeout=10, message="echo through the process")
        assert data == b"echo\n" + payload + payload
        proc.send_signal(signal.SIGTERM)
        await eventually(lambda: proc.poll() is not None, timeout=10, message="exit")
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else b""
        assert await refused(ip, 80)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
