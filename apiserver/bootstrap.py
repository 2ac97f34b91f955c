"""The ``kubernetes`` Service of ``default`` and its Endpoints, as kube-apiserver's bootstrap
controller keeps them, so pods find the API server (KUBERNETES_SERVICE_HOST/PORT) and proxies
forward to it.

- The Service: ClusterIP the first address of the service range, allocated like any requested
  ClusterIP (so it survives restarts and nobody else gets it), port ``https`` 443/TCP with
  targetPort this server's port, labels component=apiserver and provider=kubernetes, no
  selector (the Endpoints controller leaves its Endpoints alone). Created when missing,
  repaired when its ports or type drifted.
- The Endpoints: every live API server, from upstream's lease reconciler. Each server keeps a
  key ``<prefix>/masterleases/<address>:<port>`` under an etcd lease of ``master_lease_ttl``
  seconds, renewed every ``endpoint_reconcile_interval``, and writes the Endpoints as the set
  of live keys (one subset per port, addresses sorted). Servers compute the same object from
  the same keys, so two never undo each other's writes; a server that stops takes its key out
  at once, one that dies drops out when its lease expires. targetPort is left alone while it
  is some live server's port.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from dataclasses import dataclass

import structlog
from google.protobuf.message import Message

from apiserver.api import Api
from apiserver.etcd import delete_op, prefix_end, put_op
from kubelite.api import meta as m
from kubelite.api.errors import AlreadyExists, ApiError, Conflict, NotFound
from kubelite.api.registry import by_kind
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

SERVICES = by_kind("Service")
ENDPOINTS = by_kind("Endpoints")
NAMESPACE = "default"
NAME = "kubernetes"
PORT_NAME = "https"
SERVICE_PORT = 443
LABELS = {"component": "apiserver", "provider": "kubernetes"}
LEASES_KEY = "masterleases/"
WRITE_ATTEMPTS = 3


@dataclass(frozen=True)
class BootstrapSettings:
    advertise_address: str = ""
    """IP address other components reach this API server at, published in the ``kubernetes``
    Endpoints (Kubernetes' --advertise-address). Empty: the listen host, or this host's
    address when the server listens on every address (0.0.0.0)."""
    endpoint_reconcile_interval: float = 10.0
    """Seconds between passes that keep the Service and this server's address in its
    Endpoints (Kubernetes: 10 s)."""
    master_lease_ttl: int = 15
    """Seconds a server's address stays in the Endpoints after its last pass, should it die
    without taking it out (Kubernetes: 15 s)."""


def _host_address() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def resolve_advertise_address(configured: str, listen_host: str) -> str:
    """The address to publish: the configured one, else the listen host's (a name resolved,
    an unspecified address replaced by this host's)."""
    if configured:
        return configured
    host = listen_host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        return _host_address()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return str(socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)[0][4][0])
    except OSError:
        return _host_address()


def desired_service(cluster_ip: str, target_port: int) -> v1.Service:
    svc = v1.Service(metadata=v1.ObjectMeta(name=NAME, namespace=NAMESPACE, labels=LABELS))
    svc.spec.type = "ClusterIP"
    svc.spec.cluster_ip = cluster_ip
    port = svc.spec.ports.add(name=PORT_NAME, port=SERVICE_PORT, protocol="TCP")
    port.target_port.int_val = target_port
    return svc


def desired_subsets(live: set[tuple[str, int]]) -> list[v1.EndpointSubset]:
    """One subset per port, its addresses sorted (as upstream's reconciler orders them)."""
    by_port: dict[int, list[str]] = {}
    for address, port in live:
        by_port.setdefault(port, []).append(address)
    subsets = []
    for port in sorted(by_port):
        subset = v1.EndpointSubset()
        for address in sorted(by_port[port], key=ipaddress.ip_address):
            subset.addresses.add(ip=address)
        subset.ports.add(name=PORT_NAME, port=port, protocol="TCP")
        subsets.append(subset)
    return subsets


def _same(a: Message, b: Message) -> bool:
    return a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)


class KubernetesService:
    """Keeps the ``kubernetes`` Service and this server's place in its Endpoints."""

    def __init__(self, api: Api, settings: BootstrapSettings) -> None:
        self.api = api
        self.settings = settings
        self.etcd = api.storage.etcd
        self.leases_prefix = f"{api.storage.prefix}/{LEASES_KEY}".encode()
        self.address = ""
        self.port = 0
        self.passes = 0
        """Reconcile passes completed (tests wait on it)."""
        self._task: asyncio.Task[None] | None = None

    @property
    def _lease_key(self) -> bytes:
        return self.leases_prefix + f"{self.address}:{self.port}".encode()

    async def start(self, listen_host: str, port: int) -> None:
        """One pass now (so the Service exists when the server is up), then one per interval."""
        self.address = await asyncio.to_thread(
            resolve_advertise_address, self.settings.advertise_address, listen_host)
        self.port = port
        await self._pass_logged()
        self._task = asyncio.create_task(self._run(), name="kubernetes-service")

    async def stop(self, timeout: float) -> None:
        """Stops the passes and takes this server out of the Endpoints."""
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        try:
            async with asyncio.timeout(timeout):
                await self.etcd.txn([], [delete_op(self._lease_key)])
                await self._reconcile_endpoints(await self._live(), own=False)
        except (ApiError, TimeoutError) as e:
            log.warning("could not take this API server out of the kubernetes Endpoints",
                        address=f"{self.address}:{self.port}", error=str(e))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.endpoint_reconcile_interval)
            await self._pass_logged()

    async def _pass_logged(self) -> None:
        try:
            await self.reconcile()
        except ApiError as e:
            log.warning("could not reconcile the kubernetes Service", error=str(e))

    async def reconcile(self) -> None:
        """One pass: renew this server's lease, then make the Service and Endpoints match."""
        lease = await self.etcd.grant_lease(self.settings.master_lease_ttl)
        value = json.dumps({"ip": self.address, "port": self.port}).encode()
        await self.etcd.txn([], [put_op(self._lease_key, value, lease)])
        live = await self._live()
        live.add((self.address, self.port))
        await self._reconcile_service({port for _, port in live})
        await self._reconcile_endpoints(live, own=True)
        self.passes += 1

    async def _live(self) -> set[tuple[str, int]]:
        response = await self.etcd.range(self.leases_prefix, prefix_end(self.leases_prefix))
        live: set[tuple[str, int]] = set()
        for kv in response.kvs:
            try:
                entry = json.loads(kv.value)
                live.add((str(ipaddress.ip_address(entry["ip"])), int(entry["port"])))
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring a malformed API server lease", key=kv.key.decode())
        return live

    async def _reconcile_service(self, live_ports: set[int]) -> None:
        cluster_ip = self.api.services.ip_range.value(0)
        for _ in range(WRITE_ATTEMPTS):
            try:
                current = await self.api.get(SERVICES, NAMESPACE, NAME)
            except NotFound:
                try:
                    await self.api.create(SERVICES, NAMESPACE,
                                          desired_service(cluster_ip, self.port))
                    log.info("created the kubernetes Service", cluster_ip=cluster_ip)
                    return
                except AlreadyExists:
                    continue
            assert isinstance(current, v1.Service)
            ports = [(p.name, p.port, p.protocol) for p in current.spec.ports]
            target = current.spec.ports[0].target_port if current.spec.ports else None
            if (ports == [(PORT_NAME, SERVICE_PORT, "TCP")] and current.spec.type == "ClusterIP"
                    and target is not None and target.int_val in live_ports):
                return
            updated = m.copy(current)
            assert isinstance(updated, v1.Service)
            updated.spec.type = "ClusterIP"
            del updated.spec.ports[:]
            updated.spec.ports.extend(desired_service(cluster_ip, self.port).spec.ports)
            try:
                await self.api.update(SERVICES, NAMESPACE, updated)
                log.info("repaired the kubernetes Service's ports", target_port=self.port)
                return
            except (Conflict, NotFound):
                continue
        raise Conflict(f"the kubernetes Service kept changing over {WRITE_ATTEMPTS} attempts")

    async def _reconcile_endpoints(self, live: set[tuple[str, int]], own: bool) -> None:
        if not own:
            live.discard((self.address, self.port))
        subsets = desired_subsets(live)
        for _ in range(WRITE_ATTEMPTS):
            try:
                current = await self.api.get(ENDPOINTS, NAMESPACE, NAME)
            except NotFound:
                if not subsets:
                    return
                ep = v1.Endpoints(metadata=v1.ObjectMeta(name=NAME, namespace=NAMESPACE))
                ep.subsets.extend(subsets)
                try:
                    await self.api.create(ENDPOINTS, NAMESPACE, ep)
                    return
                except AlreadyExists:
                    continue
            assert isinstance(current, v1.Endpoints)
            wanted = v1.Endpoints()
            wanted.subsets.extend(subsets)
            have = v1.Endpoints()
            have.subsets.extend(current.subsets)
            if _same(wanted, have):
                return
            updated = m.copy(current)
            assert isinstance(updated, v1.Endpoints)
            del updated.subsets[:]
            updated.subsets.extend(subsets)
            try:
                await self.api.update(ENDPOINTS, NAMESPACE, updated)
                return
            except (Conflict, NotFound):
                continue
        raise Conflict(f"the kubernetes Endpoints kept changing over {WRITE_ATTEMPTS} attempts")


__all__ = ["BootstrapSettings", "KubernetesService", "resolve_advertise_address"]
