"""Pods in their own network namespaces reach a ClusterIP that the proxy keeps on
--cluster-ip-interface (root only: the test makes network namespaces); and, with an interface
in memory and no root, a ClusterIP listener waits for its address.

The test builds a node as CNI's bridge plugin does, all inside namespaces it makes: a host
namespace with a bridge (the pods' gateway, which is also the node's IP) and one namespace per
pod on a veth into it, each with a pod IP and a default route to the gateway. Two proxies (two
nodes sharing the host, as in a local cluster) run as real kubelite-proxy processes inside the
host namespace and reach the in-process API server through a Unix socket relayed to its
loopback port. Backends are processes in two pod namespaces; a client process in a third one
connects to the ClusterIP through its gateway, as a pod does. Nothing is sent outside loopback
and these namespaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from apiserver.server import ApiServer
from kubelite.client.client import ApiClient
from kubelite.client.informer import InformerSettings
from kubelite.components import Proxy, installed_script
from kubelite.processes import ManagedProcess
from kubelite.testing.apiserver import server_settings, start_api_server
from kubelite.testing.etcd import EtcdProcess
from kubelite.testing.netns import netns_pids
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1
from proxy.addresses import ClusterIPInterfaceSettings, parse_host_addresses
from proxy.proxier import Proxier, ProxySettings


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, a bridge, veth pairs)"
    if shutil.which("ip") is None:
        return "needs iproute2's ip"
    if not installed_script(Proxy.script).exists():
        return f"{Proxy.script} is not installed beside {sys.executable} (pip install -e .)"
    return None


needs_netns = pytest.mark.skipif(_unavailable() is not None, reason=_unavailable() or "")

SERVICE_RANGE = "10.96.0.0/12"
CLUSTER_IP = "10.96.0.10"
KUBERNETES_CLUSTER_IP = "10.96.0.1"
"""The API server gives its kubernetes Service the range's first address."""
FOREIGN = "10.200.0.1"
"""An address outside the service range that someone else keeps on the interface."""
INTERFACE = "kube-ipvs0"
GATEWAY = "10.244.0.1"
"""The bridge's address in the host namespace: the pods' gateway and node-1's IP."""
PODS = {"client": "10.244.0.2", "web-a": "10.244.0.3", "web-b": "10.244.0.4"}
BACKEND_PORT = 8080
NS = "default"


# ----------------------------------------------------------------------------- the network


def ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


async def run(*argv: str, timeout: float = 20) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a command, without blocking the loop (the API server
    runs on it)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@dataclass
class Network:
    """The host namespace and the pods' namespaces."""

    host: str
    pods: dict[str, str]
    """Pod name -> its namespace."""

    @property
    def namespaces(self) -> list[str]:
        return [self.host, *self.pods.values()]

    def exec_in(self, netns: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", netns, *argv]

    async def interface_addresses(self) -> set[str]:
        code, out, err = await run("ip", "-n", self.host, "-j", "address", "show", "dev",
                                   INTERFACE)
        if code != 0:
            raise AssertionError(f"ip address show dev {INTERFACE}: {err.strip()}")
        return parse_host_addresses(out)

    async def interface(self) -> dict[str, object]:
        code, out, err = await run("ip", "-n", self.host, "-d", "-j", "link", "show", "dev",
                                   INTERFACE)
        if code != 0:
            raise AssertionError(f"ip link show dev {INTERFACE}: {err.strip()}")
        link: dict[str, object] = json.loads(out)[0]
        return link


@pytest.fixture
def network() -> Iterator[Network]:
    run_id = secrets.token_hex(2)
    net = Network(host=f"klpx{run_id}-host",
                  pods={name: f"klpx{run_id}-{name}" for name in PODS})
    made: list[str] = []
    try:
        for netns in net.namespaces:
            ip("netns", "add", netns)
            made.append(netns)
            ip("-n", netns, "link", "set", "lo", "up")
        ip("-n", net.host, "link", "add", "cni0", "type", "bridge")
        ip("-n", net.host, "address", "add", f"{GATEWAY}/24", "dev", "cni0")
        ip("-n", net.host, "link", "set", "cni0", "up")
        for i, (name, netns) in enumerate(net.pods.items()):
            veth = f"veth{i}"
            ip("-n", net.host, "link", "add", veth, "type", "veth", "peer", "name", "eth0",
               "netns", netns)
            ip("-n", net.host, "link", "set", veth, "master", "cni0")
            ip("-n", net.host, "link", "set", veth, "up")
            ip("-n", netns, "address", "add", f"{PODS[name]}/24", "dev", "eth0")
            ip("-n", netns, "link", "set", "eth0", "up")
            ip("-n", netns, "route", "add", "default", "via", GATEWAY)
        yield net
    finally:
        leftovers = []
        for netns in made:
            for pid in netns_pids(netns):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
                leftovers.append(f"{netns}: {pid}")
        for netns in made:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False,
                           timeout=30)
    assert not leftovers, f"processes left in the test's namespaces: {leftovers}"


# ----------------------------------------------------------------------------- pods

BACKEND = """
import os, socket, sys, threading
name, address, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((address, port))
server.listen(64)
print("ready", flush=True)
# Ends when the test closes stdin (or dies).
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
while True:
    conn, _ = server.accept()
    conn.sendall(name.encode() + b"\\n")
    conn.close()
"""

CLIENT = """
import socket, sys
host, port, count, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
for _ in range(count):
    with socket.create_connection((host, port), timeout=timeout) as conn:
        data = b""
        while chunk := conn.recv(1024):
            data += chunk
    print(data.decode().strip(), flush=True)
"""


@pytest.fixture
async def backends(network: Network) -> AsyncIterator[list[str]]:
    """Name servers in the pods web-a and web-b on their pod IPs; their names."""
    names = ["web-a", "web-b"]
    procs = []
    try:
        for name in names:
            proc = await asyncio.create_subprocess_exec(
                *network.exec_in(network.pods[name], sys.executable, "-I", "-c", BACKEND,
                                 name, PODS[name], str(BACKEND_PORT)),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            procs.append(proc)
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert line == b"ready\n", f"backend {name} did not start: {line!r}"
        yield names
    finally:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def fetch_names(network: Network, host: str, port: int, count: int,
                      timeout: float = 2.0) -> list[str]:
    """The names ``count`` connections from the client pod to host:port were answered with
    (one after the other); raises when one failed."""
    code, out, err = await run(*network.exec_in(
        network.pods["client"], sys.executable, "-I", "-c", CLIENT, host, str(port),
        str(count), str(timeout)), timeout=count * timeout + 20)
    if code != 0:
        raise AssertionError(f"client pod -> {host}:{port}: {err.strip().splitlines()[-1:]}")
    return out.split()


def alternating(names: Sequence[str]) -> bool:
    """Whether the names alternate exactly between two backends."""
    return (len(set(names)) == 2
            and all(a != b for a, b in itertools.pairwise(names)))


# ----------------------------------------------------------------------------- the cluster


@pytest.fixture
async def pod_api_server(etcd: EtcdProcess) -> AsyncIterator[ApiServer]:
    """An API server allocating ClusterIPs from a range pods route to (not loopback)."""
    settings = server_settings(etcd.endpoint)
    settings = replace(settings, api=replace(settings.api,
                                             service_cluster_ip_range=SERVICE_RANGE))
    server = await start_api_server(settings)
    yield server
    await server.stop()


@pytest.fixture
async def pod_client(pod_api_server: ApiServer) -> AsyncIterator[ApiClient]:
    async with ApiClient(pod_api_server.address, timeout=10) as c:
        yield c


class UnixRelay:
    """A Unix socket whose connections are relayed to host:port on loopback: processes in
    other network namespaces reach the in-process API server through the file system."""

    def __init__(self, path: Path, host: str, port: int) -> None:
        self.path = path
        self.host = host
        self.port = port
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._handle, str(self.path))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        self.writers.add(writer)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                self.host, self.port)
            self.writers.add(upstream_writer)
            await asyncio.gather(self._pipe(reader, upstream_writer),
                                 self._pipe(upstream_reader, writer))
        except OSError:
            pass  # one side went away: the other is closed below
        finally:
            for w in (writer, upstream_writer):
                if w is not None:
                    self.writers.discard(w)
                    w.close()
            self.handlers.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for writer in list(self.writers):
            writer.close()
        if self.handlers:
            await asyncio.wait(set(self.handlers), timeout=5)


@pytest.fixture
async def relay(pod_api_server: ApiServer) -> AsyncIterator[str]:
    """The API server's address for processes in the test's namespaces (``unix:PATH``)."""
    # A short path: a Unix socket's is limited to 107 bytes.
    directory = Path(tempfile.mkdtemp(prefix="klpx-"))
    host, _, port = pod_api_server.address.rpartition(":")
    r = UnixRelay(directory / "api.sock", host, int(port))
    await r.start()
    try:
        yield f"unix:{r.path}"
    finally:
        await r.stop()
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Proxies:
    processes: list[ManagedProcess]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.tail(60)}" for p in self.processes)

    def count(self, process: ManagedProcess, event: str) -> int:
        """How many log events of ``process`` start with ``event``."""
        return sum(1 for e in self.events() if e["process"] == process.name
                   and str(e.get("event", "")).startswith(event))

    def events(self) -> list[dict[str, object]]:
        events = []
        for p in self.processes:
            for line in p.log_path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    event["process"] = p.name
                    events.append(event)
        return events


@pytest.fixture
async def proxies(network: Network, relay: str, tmp_path: Path) -> AsyncIterator[Proxies]:
    """Two nodes' proxies sharing the host namespace, and so the interface: node-1 with the
    gateway as its node IP, node-2 on the host's loopback."""
    processes = []
    for name, node_ip in (("node-1", GATEWAY), ("node-2", "127.0.0.2")):
        spec = Proxy(node_name=name, node_ip=node_ip, server=relay, health_address="")
        argv = [*spec.argv(str(installed_script(Proxy.script))),
                "--cluster-ip-interface", INTERFACE,
                "--service-cluster-ip-range", SERVICE_RANGE,
                "--cluster-ip-interface-sync-period", "1s", "--takeover-interval", "200ms",
                "--log-level", "debug"]
        process = ManagedProcess(f"proxy-{name}", network.exec_in(network.host, *argv),
                                 tmp_path / f"proxy-{name}.log")
        process.start()
        processes.append(process)
    result = Proxies(processes)
    try:
        yield result
    finally:
        codes = await asyncio.gather(*(asyncio.to_thread(p.stop, 10) for p in processes))
        if any(code != 0 for code in codes):
            print(result.logs(), file=sys.stderr)
        assert codes == [0, 0], f"proxies exited with {codes}"


# ----------------------------------------------------------------------------- the test


async def create_web(client: ApiClient, node_port: int) -> None:
    svc = v1.Service(metadata=v1.ObjectMeta(name="web", namespace=NS))
    svc.spec.type = "NodePort"
    svc.spec.cluster_ip = CLUSTER_IP
    port = svc.spec.ports.add(name="http", port=80, protocol="TCP", node_port=node_port)
    port.target_port.int_val = BACKEND_PORT
    await client.create(svc)
    ep = v1.Endpoints(metadata=v1.ObjectMeta(name="web", namespace=NS))
    subset = ep.subsets.add()
    for name in ("web-a", "web-b"):
        subset.addresses.add(ip=PODS[name])
    subset.ports.add(name="http", port=BACKEND_PORT, protocol="TCP")
    await client.create(ep)


@needs_netns
async def test_a_pod_reaches_a_cluster_ip_on_the_interface_through_its_gateway(
    pod_client: ApiClient, network: Network, backends: list[str], proxies: Proxies
) -> None:
    try:
        # The proxies make the interface; an address outside the range is not theirs.
        link = await eventually(lambda: _up(network), timeout=30,
                                message=f"{INTERFACE} made and up")
        assert link["linkinfo"]["info_kind"] in ("dummy", "bridge"), link
        await run("ip", "-n", network.host, "address", "add", f"{FOREIGN}/32", "dev",
                  INTERFACE)
        await eventually(lambda: _has(network, KUBERNETES_CLUSTER_IP), timeout=30,
                         message="the kubernetes Service's ClusterIP on the interface")

        node_port = random.randint(30000, 32767)
        await create_web(pod_client, node_port)
        await eventually(lambda: _has(network, CLUSTER_IP), timeout=30,
                         message=f"{CLUSTER_IP} on {INTERFACE}")

        # From the client pod, through its gateway: exact round robin over the pod IPs (one
        # proxy owns the listener, the other stands by).
        await eventually(lambda: fetch_names(network, CLUSTER_IP, 80, 1), timeout=30,
                         message=f"{CLUSTER_IP}:80 serving the client pod")
        names = await fetch_names(network, CLUSTER_IP, 80, 10)
        assert set(names) == set(backends) and alternating(names), names
        # The NodePort on the node's IP, a real address of the host.
        await eventually(lambda: fetch_names(network, GATEWAY, node_port, 1), timeout=30,
                         message=f"the NodePort {GATEWAY}:{node_port}")
        names = await fetch_names(network, GATEWAY, node_port, 10)
        assert set(names) == set(backends) and alternating(names), names

        # Deleting the Service takes its address away (whichever proxy gets there first);
        # the kubernetes Service's and the foreign one stay.
        await pod_client.delete(v1.Service, "web", NS)
        await eventually(lambda: _lacks(network, CLUSTER_IP), timeout=30,
                         message=f"{CLUSTER_IP} removed from {INTERFACE}")
        assert {KUBERNETES_CLUSTER_IP, FOREIGN} <= await network.interface_addresses()
        await eventually(lambda: _unreachable(network, CLUSTER_IP, 80), timeout=10,
                         message=f"{CLUSTER_IP}:80 no longer reachable")
        # Once both proxies have seen the deletion, two more address passes of each: the
        # one that found the address already gone reports no failure, and the foreign
        # address outlives them.
        await eventually(lambda: all(proxies.count(p, "service port removed") >= 1
                                     for p in proxies.processes),
                         timeout=10, message="both proxies seeing the deletion")
        seen = {p.name: proxies.count(p, "ClusterIP address pass") for p in proxies.processes}
        await eventually(lambda: all(proxies.count(p, "ClusterIP address pass") >= seen[p.name] + 2
                                     for p in proxies.processes),
                         timeout=10, message="two address passes of each proxy")
        assert FOREIGN in await network.interface_addresses()
        # (A kernel without the dummy driver gets an empty bridge, with a warning.)
        problems = [e for e in proxies.events()
                    if e.get("level") in ("warning", "error", "critical")
                    and not str(e["event"]).startswith("made the ClusterIP interface")]
        assert not problems, problems
    except BaseException:
        print(proxies.logs(), file=sys.stderr)
        raise


async def _has(network: Network, address: str) -> bool:
    return address in await network.interface_addresses()


async def _up(network: Network) -> dict[str, object] | None:
    link = await network.interface()
    return link if "UP" in link["flags"] else None  # type: ignore[operator]


async def _lacks(network: Network, address: str) -> bool:
    return not await _has(network, address)


async def _unreachable(network: Network, host: str, port: int) -> bool:
    try:
        await fetch_names(network, host, port, 1, timeout=1.0)
    except AssertionError:
        return True
    return False


# ----------------------------------------------------------------------------- without root


class GatedInterface:
    """An interface in memory whose address changes wait for the test's go-ahead (loopback
    ClusterIPs are local anyway, so the listeners can bind once it is given)."""

    def __init__(self) -> None:
        self.present: set[str] = set()
        self.gate = asyncio.Event()

    async def ensure_interface(self) -> None:
        pass

    async def addresses(self) -> set[str]:
        return set(self.present)

    async def apply(self, add: Iterable[str], remove: Iterable[str]) -> str:
        await self.gate.wait()
        self.present |= set(add)
        self.present -= set(remove)
        return ""


async def test_a_cluster_ip_listener_opens_only_once_its_address_is_added(
    client: ApiClient,
) -> None:
    interface = GatedInterface()
    cluster_ip = f"127.96.{random.randint(1, 254)}.{random.randint(1, 254)}"
    node_ip = f"127.1.{random.randint(1, 254)}.{random.randint(1, 254)}"
    node_port = random.randint(30000, 32767)
    settings = ProxySettings(
        node_name="node-1", node_ip=node_ip,
        informer=InformerSettings(backoff_initial=0.05, backoff_max=0.5),
        cluster_ip_interface=ClusterIPInterfaceSettings(
            name=INTERFACE, service_cluster_ip_range="127.96.0.0/16", retry_interval=0.05),
    )
    backend = await asyncio.start_server(_say_backend, "127.0.0.1", 0)
    proxier = Proxier(settings, client, address_manager=interface)
    await proxier.start()
    try:
        svc = v1.Service(metadata=v1.ObjectMeta(name="web", namespace=NS))
        svc.spec.type = "NodePort"
        svc.spec.cluster_ip = cluster_ip
        port = svc.spec.ports.add(name="http", port=80, protocol="TCP", node_port=node_port)
        port.target_port.int_val = BACKEND_PORT
        await client.create(svc)
        ep = v1.Endpoints(metadata=v1.ObjectMeta(name="web", namespace=NS))
        subset = ep.subsets.add()
        subset.addresses.add(ip="127.0.0.1")
        subset.ports.add(name="http", port=backend.sockets[0].getsockname()[1])
        await client.create(ep)

        # The NodePort listener does not wait; the ClusterIP one waits for its address.
        nodeport_only = [f"TCP {node_ip}:{node_port}"]
        await eventually(lambda: proxier.listening().get("default/web:http") == nodeport_only,
                         message="the NodePort listener")
        interface.gate.set()
        await eventually(lambda: len(proxier.listening()["default/web:http"]) == 2,
                         message="the ClusterIP listener once its address is there")
        assert cluster_ip in interface.present
        reader, writer = await asyncio.open_connection(cluster_ip, 80)
        assert await reader.read() == b"backend\n"
        writer.close()
        await writer.wait_closed()
        assert proxier.readiness()[0], proxier.readiness()

        await client.delete(v1.Service, "web", NS)
        await eventually(lambda: cluster_ip not in interface.present,
                         message="the address removed with its Service")
        assert "127.96.0.1" in interface.present  # the kubernetes Service's stays
    finally:
        await proxier.stop()
        backend.close()
        await backend.wait_closed()


async def _say_backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"backend\n")
    writer.close()
    await writer.wait_closed()
