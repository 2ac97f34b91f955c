"""The proxier: Services and Endpoints from informers -> listeners and balancers.

For each port of each Service that has a ClusterIP (not headless, not ExternalName) the proxy
keeps a balancer (proxy.loadbalancer) and listeners: one on ClusterIP:port and, when the port
has a nodePort, one on NodeIP:nodePort. A listener is open exactly while its service port has
at least one ready endpoint, so a client of a Service without endpoints is refused at once
(as kube-proxy's REJECT rule does) instead of being accepted and left hanging; a deleted
Service's listeners are closed. Connections already relayed are left alone in both cases.

Informer handlers only mark the ``namespace/name`` key dirty; one callback scheduled on the
loop then re-reads the Service and its Endpoints from the caches and makes listeners and
balancers match (level-triggered), so an Endpoints change reaches new connections as soon as
its watch event arrives. A listener that cannot bind is retried later.

One proxy per host owns each address. Listeners bind without SO_REUSEPORT, so where several
nodes' proxies share one host (``kubelite up``: every node on its own loopback address, the
ClusterIPs shared), the first proxy to bind a ClusterIP:port serves it alone and one balancer
sees every connection to it: round robin is exact from any client. The others find the address
in use (EADDRINUSE) and stand by, trying again every ``takeover_interval``; when the owner
stops (or closes the listener), one of them takes the address over. Connections the owner
had relayed end with it; new ones are refused until the takeover, at most one interval. Hosts
with their own network namespace (one node per host, docker-compose, the multi-host harness)
each have their own loopback, so every host's proxy owns its ClusterIPs there.

Pods in their own network namespaces reach ClusterIPs through the node, which must hold them
as local addresses off loopback: with ``cluster_ip_interface`` set, proxy.addresses keeps
every ClusterIP on that interface (upstream's kube-ipvs0), and a ClusterIP listener opens only
once its address is there (the NodeIP listener does not wait). Endpoints are dialled wherever
they are (pod IPs, node addresses, loopback).
"""

from __future__ import annotations

import asyncio
import errno
from dataclasses import dataclass, field

import structlog

from kubelite.client.client import ApiClient
from kubelite.client.informer import Informer, InformerFactory, InformerSettings
from kubelite.health import Readiness, all_ready, informers_readiness
from protos.v1 import objects_pb2 as v1
from proxy.addresses import (
    AddressManager,
    ClusterIPAddresses,
    ClusterIPInterfaceSettings,
    IpCommand,
    service_cluster_ip,
)
from proxy.loadbalancer import (
    DEFAULT_AFFINITY_SECONDS,
    Balancer,
    LoadBalancerRR,
    ServicePortName,
    endpoints_for_port,
)
from proxy.tcp import TcpContext, TcpListener, TcpSettings
from proxy.udp import UdpListener, UdpSettings

log = structlog.get_logger(__name__)

Listener = TcpListener | UdpListener


@dataclass(frozen=True)
class ProxySettings:
    """Settings of one node's proxy."""

    node_name: str = ""
    """This node's name (for logs)."""
    node_ip: str = "127.0.0.1"
    """Address that NodePort listeners bind (NodeIP:nodePort)."""
    tcp: TcpSettings = field(default_factory=TcpSettings)
    """Dial timeouts, buffers and splice for TCP service ports."""
    udp: UdpSettings = field(default_factory=UdpSettings)
    """Idle timeout of UDP client associations (--udp-timeout)."""
    shuffle_endpoints: bool = True
    """Serve a new endpoint set in a random order (upstream's), so that many proxies do not
    all start on the same endpoint; False keeps the Endpoints object's order."""
    bind_retry_interval: float = 1.0
    """Seconds before retrying a listener that could not bind (other than EADDRINUSE)."""
    takeover_interval: float = 0.5
    """Seconds between attempts to bind an address that another process on this host holds
    (another node's proxy, when several nodes share a host): when that proxy stops, this one
    takes the address over within this time."""
    affinity_cleanup_interval: float = 60.0
    """Seconds between sweeps of expired ClientIP affinity records."""
    informer: InformerSettings = field(default_factory=InformerSettings)
    """Watch resume backoff of the Service and Endpoints informers."""
    health_address: str = ""
    """host:port of the gRPC health service the process serves (empty: none)."""
    cluster_ip_interface: ClusterIPInterfaceSettings = field(
        default_factory=ClusterIPInterfaceSettings)
    """The interface that holds ClusterIPs as local addresses (--cluster-ip-interface,
    --service-cluster-ip-range); by default none: ClusterIPs are bound as they are."""


@dataclass(frozen=True)
class PortSpec:
    """What a service port asks the proxy for (a change re-opens its listeners)."""

    protocol: str
    """TCP or UDP (SCTP ports are not proxied)."""
    cluster_ip: str
    """Address of the ClusterIP listener."""
    port: int
    """Service port of the ClusterIP listener."""
    node_port: int
    """Port of the NodeIP listener (0: none)."""
    client_ip_affinity: bool
    """sessionAffinity: ClientIP."""
    affinity_seconds: float
    """sessionAffinityConfig.clientIP.timeoutSeconds."""

    def addresses(self) -> tuple[str, str, int, int]:
        """What the listeners depend on."""
        return (self.protocol, self.cluster_ip, self.port, self.node_port)


@dataclass
class _ServicePort:
    spec: PortSpec
    balancer: Balancer
    listeners: list[Listener]


def port_specs(svc: v1.Service) -> dict[str, PortSpec]:
    """The proxied ports of a Service by port name; empty when it has no usable ClusterIP."""
    spec = svc.spec
    cluster_ip = service_cluster_ip(svc)
    if cluster_ip is None:
        return {}
    affinity = spec.session_affinity == "ClientIP"
    seconds = float(DEFAULT_AFFINITY_SECONDS)
    client_ip = spec.session_affinity_config.client_ip
    if affinity and client_ip.HasField("timeout_seconds") and client_ip.timeout_seconds > 0:
        seconds = float(client_ip.timeout_seconds)
    result = {}
    for port in spec.ports:
        protocol = port.protocol or "TCP"
        if protocol not in ("TCP", "UDP"):
            continue
        node_port = port.node_port if spec.type in ("NodePort", "LoadBalancer") else 0
        result[port.name] = PortSpec(
            protocol, cluster_ip, port.port, node_port, affinity, seconds
        )
    return result


class Proxier:
    """One node's proxy, started and stopped inside a running event loop."""

    def __init__(
        self, settings: ProxySettings, client: ApiClient,
        address_manager: AddressManager | None = None,
    ) -> None:
        """``address_manager``: how ClusterIPs are put on the cluster_ip_interface (default:
        iproute2's ``ip``); unused without one."""
        self.settings = settings
        self.client = client
        self._address_manager = address_manager
        self.addresses: ClusterIPAddresses | None = None
        """The ClusterIP addresses of the cluster_ip_interface (None: not managed)."""
        self.lb = LoadBalancerRR() if settings.shuffle_endpoints else LoadBalancerRR(shuffle=None)
        self.ports: dict[ServicePortName, _ServicePort] = {}
        self._by_service: dict[str, set[ServicePortName]] = {}
        self._bound: dict[tuple[str, str, int], ServicePortName] = {}
        self._dirty: set[str] = set()
        self._flush_scheduled = False
        self._retry: dict[str, asyncio.TimerHandle] = {}
        self._standby: dict[tuple[str, str, int], ServicePortName] = {}
        """Addresses another process holds, by (protocol, ip, port): tried every
        takeover_interval."""
        self._bind_errors: dict[tuple[str, str, int], int | None] = {}
        """Addresses that failed to bind, with the errno last reported (each said once)."""
        self._takeover: asyncio.TimerHandle | None = None
        self._cleanup: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tcp: TcpContext | None = None
        self._factory: InformerFactory | None = None
        self.services: Informer[v1.Service] | None = None
        self.endpoints: Informer[v1.Endpoints] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Starts watching; listeners follow as the caches fill (see wait_for_sync)."""
        loop = self._loop = asyncio.get_running_loop()
        self._tcp = TcpContext(loop, self.settings.tcp)
        factory = self._factory = InformerFactory(self.client, self.settings.informer)
        self.services = factory.informer(v1.Service)
        self.endpoints = factory.informer(v1.Endpoints)
        for informer in (self.services, self.endpoints):
            informer.add_handlers(
                on_add=self._on_change, on_update=self._on_update, on_delete=self._on_change
            )
        if self.settings.cluster_ip_interface.enabled:
            self.addresses = self._make_addresses(self.services)
            self.services.add_handlers(
                on_add=lambda _: self._trigger_addresses(),
                on_update=lambda _old, _new: self._trigger_addresses(),
                on_delete=lambda _: self._trigger_addresses(),
            )
            self.addresses.start()
        factory.start()
        self._cleanup = loop.call_later(
            self.settings.affinity_cleanup_interval, self._cleanup_affinity
        )
        log.info("proxy started", node=self.settings.node_name, node_ip=self.settings.node_ip,
                 cluster_ip_interface=self.settings.cluster_ip_interface.name or None)

    def _make_addresses(self, services: Informer[v1.Service]) -> ClusterIPAddresses:
        interface = self.settings.cluster_ip_interface

        async def api_services() -> list[v1.Service]:
            return (await self.client.list(v1.Service)).items

        return ClusterIPAddresses(
            interface, self._address_manager or IpCommand(interface),
            cached_services=services.store.items, cache_synced=services.has_synced,
            api_services=api_services, on_present=self._on_addresses_present,
        )

    def _trigger_addresses(self) -> None:
        if self.addresses is not None:
            self.addresses.trigger()

    def _on_addresses_present(self, ips: set[str]) -> None:
        """ClusterIPs now local: open the listeners that waited for them."""
        for svc_port, entry in self.ports.items():
            if entry.spec.cluster_ip in ips:
                self._mark(f"{svc_port.namespace}/{svc_port.name}")

    def readiness(self) -> Readiness:
        """Ready when its Service and Endpoints informers both watch (and, with a
        cluster_ip_interface, the last address pass put every address in place)."""
        informers = informers_readiness(self._factory.informers() if self._factory else [])
        if self.addresses is None:
            return informers
        return all_ready(informers, self.addresses.readiness())

    def tcp_stats(self) -> dict[str, int]:
        """Counts of the TCP relays' dials since start (``TcpContext.stats``)."""
        return dict(self._tcp.stats) if self._tcp is not None else {}

    async def wait_for_sync(self, timeout: float | None = None) -> None:
        """Waits until both caches were listed and the listeners match them (with a
        cluster_ip_interface: after one address pass, so ClusterIP listeners are open too)."""
        assert self._factory is not None, "start() first"
        await self._factory.wait_for_sync(timeout)
        if self.addresses is not None:
            async with asyncio.timeout(timeout):
                await self.addresses.sync()
        self._flush()

    async def stop(self) -> None:
        """Closes every listener and connection; stops watching."""
        if self._factory is not None:
            await self._factory.stop()
            self._factory = None
        if self.addresses is not None:
            await self.addresses.stop()
            self.addresses = None
        for handle in [*self._retry.values(), self._cleanup, self._takeover]:
            if handle is not None:
                handle.cancel()
        self._retry.clear()
        self._cleanup = None
        self._takeover = None
        for name in list(self.ports):
            self._remove_port(name)
        self._by_service.clear()
        self._standby.clear()
        if self._tcp is not None:
            self._tcp.close()
            self._tcp = None
        log.info("proxy stopped", node=self.settings.node_name)

    # ------------------------------------------------------------------ events

    def _on_update(self, old: v1.Service | v1.Endpoints, new: v1.Service | v1.Endpoints) -> None:
        self._on_change(new)

    def _on_change(self, obj: v1.Service | v1.Endpoints) -> None:
        self._mark(f"{obj.metadata.namespace}/{obj.metadata.name}")

    def _mark(self, key: str) -> None:
        self._dirty.add(key)
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, set()
        for key in sorted(dirty):
            try:
                self.sync_service(key)
            except Exception:
                log.exception("proxy sync failed", service=key)
                self._retry_later(key)

    def _retry_later(self, key: str) -> None:
        if key in self._retry or self._loop is None:
            return

        def retry() -> None:
            self._retry.pop(key, None)
            self._mark(key)

        self._retry[key] = self._loop.call_later(self.settings.bind_retry_interval, retry)

    def _cleanup_affinity(self) -> None:
        self.lb.cleanup_stale_sticky_sessions()
        if self._loop is not None:
            self._cleanup = self._loop.call_later(
                self.settings.affinity_cleanup_interval, self._cleanup_affinity
            )

    # ------------------------------------------------------------------ reconcile

    def sync_service(self, key: str) -> None:
        """Makes the listeners and balancers of Service ``key`` match the caches."""
        assert self.services is not None and self.endpoints is not None
        namespace, _, name = key.partition("/")
        svc = self.services.store.get(key)
        eps = self.endpoints.store.get(key)
        wanted = port_specs(svc) if svc is not None else {}
        current = self._by_service.get(key, set())
        for svc_port in [p for p in current if p.port not in wanted]:
            self._remove_port(svc_port)
            current.discard(svc_port)
        failed = False
        for port_name, spec in wanted.items():
            svc_port = ServicePortName(namespace, name, port_name)
            entry = self.ports.get(svc_port)
            if entry is not None and entry.spec != spec:
                if entry.spec.addresses() != spec.addresses():  # not just affinity
                    self._close_listeners(svc_port, entry)
                    entry.listeners = []
                entry.spec = spec
            if entry is None:
                balancer = self.lb.balancer(svc_port)
                entry = self.ports[svc_port] = _ServicePort(spec, balancer, [])
                current.add(svc_port)
                log.info("service port added", service=str(svc_port), cluster_ip=spec.cluster_ip,
                         port=spec.port, node_port=spec.node_port, protocol=spec.protocol)
            self.lb.new_service(svc_port, spec.client_ip_affinity, spec.affinity_seconds)
            if self.lb.set_endpoints(svc_port, endpoints_for_port(eps, port_name)):
                log.debug("endpoints changed", service=str(svc_port),
                          endpoints=len(entry.balancer.endpoints))
            if entry.balancer:
                failed |= not self._open_listeners(svc_port, entry)
            else:
                self._close_listeners(svc_port, entry)
        if current:
            self._by_service[key] = current
        else:
            self._by_service.pop(key, None)
        if failed:
            self._retry_later(key)

    def _addresses(self, spec: PortSpec) -> list[tuple[str, int]]:
        addresses = [(spec.cluster_ip, spec.port)]
        if spec.node_port:
            addresses.append((self.settings.node_ip, spec.node_port))
        return addresses

    def _open_listeners(self, svc_port: ServicePortName, entry: _ServicePort) -> bool:
        """Opens whatever is not open yet; False when some address could not be bound for
        another reason than another process holding it (those stand by)."""
        assert self._loop is not None and self._tcp is not None
        if not entry.listeners:
            for address in self._addresses(entry.spec):
                listener: Listener
                if entry.spec.protocol == "UDP":
                    listener = UdpListener(
                        self._loop, address, entry.balancer, self.settings.udp, str(svc_port)
                    )
                else:
                    listener = TcpListener(self._tcp, address, entry.balancer, str(svc_port))
                entry.listeners.append(listener)
        ok = True
        for listener in entry.listeners:
            if listener.is_open:
                continue
            if self._awaits_address(entry.spec, listener):
                continue  # opened when the address pass reports it (_on_addresses_present)
            bound_key = (entry.spec.protocol, *listener.address)
            owner = self._bound.get(bound_key)
            if owner is not None and owner != svc_port:
                log.warning("address already served by another service port",
                            service=str(svc_port), other=str(owner), address=listener.address)
                ok = False
                continue
            where = f"{listener.address[0]}:{listener.address[1]}"
            try:
                listener.open()
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    self._stand_by(bound_key, svc_port)
                    continue
                if self._bind_errors.get(bound_key, -1) != e.errno:
                    self._bind_errors[bound_key] = e.errno
                    log.warning("cannot listen; retrying quietly", service=str(svc_port),
                                protocol=entry.spec.protocol, address=where, error=str(e),
                                retry_interval=self.settings.bind_retry_interval)
                ok = False
                continue
            if self._bind_errors.pop(bound_key, -1) != -1:
                log.info("listening after all", service=str(svc_port), address=where)
            self._bound[bound_key] = svc_port
            if self._standby.pop(bound_key, None) is not None:
                log.info("took the address over", service=str(svc_port),
                         protocol=entry.spec.protocol, address=where)
        return ok

    def _awaits_address(self, spec: PortSpec, listener: Listener) -> bool:
        """Whether this is a ClusterIP listener whose address is not on the interface yet
        (the address pass is asked for it)."""
        addresses = self.addresses
        ip = listener.address[0]
        if addresses is None or ip != spec.cluster_ip or listener.address[1] != spec.port:
            return False
        if addresses.has(ip) or not addresses.manages(ip):
            return False
        addresses.trigger()
        return True

    def _stand_by(self, bound_key: tuple[str, str, int], svc_port: ServicePortName) -> None:
        """Another process (another node's proxy on this host) holds the address: try again
        every takeover_interval, so that this proxy serves it once that one stops."""
        if self._standby.get(bound_key) != svc_port:
            log.info("address held by another process on this host (another node's proxy?);"
                     " standing by to take it over", service=str(svc_port),
                     protocol=bound_key[0], address=f"{bound_key[1]}:{bound_key[2]}")
            self._standby[bound_key] = svc_port
        if self._takeover is None and self._loop is not None:
            self._takeover = self._loop.call_later(
                self.settings.takeover_interval, self._take_over
            )

    def _take_over(self) -> None:
        """Tries the addresses standing by again (only their binds, not whole syncs)."""
        self._takeover = None
        for svc_port in sorted(set(self._standby.values())):
            entry = self.ports.get(svc_port)
            if entry is None or not entry.balancer:  # closed since: nothing to take over
                for key in [k for k, p in self._standby.items() if p == svc_port]:
                    del self._standby[key]
                continue
            try:
                ok = self._open_listeners(svc_port, entry)
            except Exception:
                log.exception("takeover failed", service=str(svc_port))
                ok = False
            if not ok:
                self._retry_later(f"{svc_port.namespace}/{svc_port.name}")

    def _close_listeners(self, svc_port: ServicePortName, entry: _ServicePort) -> None:
        for listener in entry.listeners:
            bound_key = (entry.spec.protocol, *listener.address)
            if self._standby.get(bound_key) == svc_port:
                del self._standby[bound_key]
            self._bind_errors.pop(bound_key, None)
            if listener.is_open:
                listener.close()
                self._bound.pop(bound_key, None)

    def _remove_port(self, svc_port: ServicePortName) -> None:
        entry = self.ports.pop(svc_port, None)
        if entry is not None:
            self._close_listeners(svc_port, entry)
            log.info("service port removed", service=str(svc_port))
        self.lb.delete_service(svc_port)

    # ------------------------------------------------------------------ introspection

    def listening(self) -> dict[str, list[str]]:
        """Open listeners by service port: ``{"ns/name:port": ["TCP 127.96.0.1:80"]}``."""
        return {
            str(name): [
                f"{entry.spec.protocol} {lst.address[0]}:{lst.address[1]}"
                for lst in entry.listeners if lst.is_open
            ]
            for name, entry in sorted(self.ports.items())
        }
