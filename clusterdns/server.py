"""The DNS server: Service and Endpoints informers -> the record index -> UDP and TCP answers.

Informer handlers only mark the ``namespace/name`` key dirty; one callback scheduled on the
loop then rebuilds those Services' records from the caches (level-triggered, as the proxy
does) and, when any record changed, empties the answer caches. A name therefore resolves as
soon as its Service's watch event arrives, and stops resolving as soon as the deletion's does.
No query ever reaches the API server.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from clusterdns.answer import Answerer
from clusterdns.records import DEFAULT_TTL, RecordIndex
from clusterdns.transport import Address, TcpServer, UdpServer
from clusterdns.upstream import (
    DNS_PORT,
    Forwarder,
    Upstream,
    resolv_conf_nameservers,
    without_own_address,
)
from kubelite.client.client import ApiClient
from kubelite.client.informer import Informer, InformerFactory, InformerSettings
from kubelite.health import Readiness, informers_readiness, join_host_port
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class DnsSettings:
    """Settings of one DNS server."""

    listen_address: str = ""
    """Address to serve on, UDP and TCP ("": every address of the host)."""
    port: int = DNS_PORT
    """Port to serve on, UDP and TCP (0: any free one, the same for both)."""
    cluster_domain: str = "cluster.local"
    """The zone answered from the cluster's Services and pods."""
    ttl: int = DEFAULT_TTL
    """TTL of the records of the cluster domain, seconds (CoreDNS: 5)."""
    upstreams: tuple[Upstream, ...] = ()
    """Resolvers for every other name (empty: the nameservers of resolv_conf)."""
    resolv_conf: str = "/etc/resolv.conf"
    """Where the upstreams are read when none are given (this server's own address aside)."""
    upstream_timeout: float = 2.0
    """Seconds an upstream has to answer before the next one is asked."""
    tcp_idle_timeout: float = 10.0
    """Seconds a TCP connection may stay idle between queries (CoreDNS: 10)."""
    max_concurrent_forwards: int = 1000
    """UDP queries waiting on the upstreams at once; more are REFUSED."""
    answer_cache_size: int = 10_000
    """Finished answers kept per transport (the cache is emptied when full)."""
    informer: InformerSettings = field(default_factory=InformerSettings)
    """Watch resume backoff of the Service and Endpoints informers."""
    health_address: str = ""
    """host:port of the gRPC health service the process serves (empty: none)."""


class ClusterDns:
    """One DNS server, started and stopped inside a running event loop."""

    def __init__(self, settings: DnsSettings, client: ApiClient) -> None:
        self.settings = settings
        self.client = client
        self.index = RecordIndex(settings.cluster_domain, settings.ttl)
        self.forwarder = Forwarder([], settings.upstream_timeout)
        self.answerer = Answerer(self.index, self.forwarder, self._synced,
                                 settings.answer_cache_size)
        self.address: Address | None = None
        """Where it serves (after start)."""
        self._udp: UdpServer | None = None
        self._tcp: TcpServer | None = None
        self._dirty: set[str] = set()
        self._flush_scheduled = False
        self._indexed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._factory: InformerFactory | None = None
        self.services: Informer[v1.Service] | None = None
        self.endpoints: Informer[v1.Endpoints] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Binds UDP and TCP (OSError when it cannot) and starts watching; cluster names are
        answered once both caches are listed (SERVFAIL until then)."""
        self._loop = asyncio.get_running_loop()
        self.forwarder.upstreams = self._upstreams()
        await self._listen()
        factory = self._factory = InformerFactory(self.client, self.settings.informer)
        self.services = factory.informer(v1.Service)
        self.endpoints = factory.informer(v1.Endpoints)
        for informer in (self.services, self.endpoints):
            informer.add_handlers(on_add=self._on_change, on_update=self._on_update,
                                  on_delete=self._on_change)
        factory.start()
        assert self.address is not None
        log.info("dns serving", address=f"{self.address[0]}:{self.address[1]}",
                 cluster_domain=self.index.zone,
                 upstreams=[str(u) for u in self.forwarder.upstreams])

    def _upstreams(self) -> list[Upstream]:
        s = self.settings
        upstreams = list(s.upstreams)
        if not upstreams:
            try:
                upstreams = resolv_conf_nameservers(Path(s.resolv_conf))
            except OSError as e:
                log.warning("cannot read the upstream resolvers", resolv_conf=s.resolv_conf,
                            error=str(e))
        upstreams = without_own_address(upstreams, s.listen_address, s.port)
        if not upstreams:
            log.warning("no upstream resolvers: names outside the cluster domain get SERVFAIL",
                        resolv_conf=s.resolv_conf)
        return upstreams

    async def _listen(self) -> None:
        """UDP and TCP on the same port (port 0: the one UDP got, tried a few times)."""
        host = self.settings.listen_address or "0.0.0.0"
        attempts = 20 if self.settings.port == 0 else 1
        for attempt in range(attempts):
            udp = UdpServer(self.answerer, self.settings.max_concurrent_forwards)
            try:
                address = await udp.open(host, self.settings.port)
            except OSError as e:
                raise OSError(e.errno, f"cannot serve DNS over UDP on"
                                       f" {join_host_port(host, self.settings.port)}:"
                                       f" {e.strerror}") from e
            tcp = TcpServer(self.answerer, self.settings.tcp_idle_timeout)
            try:
                await tcp.open(host, address[1])
            except OSError as e:
                await udp.close()
                if attempt + 1 == attempts:
                    raise OSError(e.errno, f"cannot serve DNS over TCP on"
                                           f" {join_host_port(host, address[1])}:"
                                           f" {e.strerror}") from e
                continue
            self._udp, self._tcp, self.address = udp, tcp, address
            return

    def readiness(self) -> Readiness:
        """Ready when its Service and Endpoints informers both watch."""
        return informers_readiness(self._factory.informers() if self._factory else [])

    def _synced(self) -> bool:
        """Both caches were listed and went into the index (then true for good: later
        changes are applied within one loop iteration of their events)."""
        if not self._indexed:
            self._indexed = self._factory is not None and not self._dirty and all(
                i.has_synced() for i in self._factory.informers())
        return self._indexed

    async def wait_for_sync(self, timeout: float | None = None) -> None:
        """Waits until both caches were listed and the index holds them."""
        assert self._factory is not None, "start() first"
        await self._factory.wait_for_sync(timeout)
        self._flush()

    async def stop(self) -> None:
        """Stops watching and closes the sockets (queries in progress are dropped)."""
        if self._factory is not None:
            await self._factory.stop()
            self._factory = None
        for server in (self._udp, self._tcp):
            if server is not None:
                await server.close()
        self._udp = self._tcp = None
        log.info("dns stopped")

    # ------------------------------------------------------------------ events

    def _on_update(self, old: v1.Service | v1.Endpoints, new: v1.Service | v1.Endpoints) -> None:
        self._on_change(new)

    def _on_change(self, obj: v1.Service | v1.Endpoints) -> None:
        self._dirty.add(f"{obj.metadata.namespace}/{obj.metadata.name}")
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, set()
        if self.services is None or self.endpoints is None:
            return
        changed = False
        for key in sorted(dirty):
            try:
                changed |= self.index.set_service(
                    key, self.services.store.get(key), self.endpoints.store.get(key))
            except Exception:
                log.exception("building a service's records failed", service=key)
        if changed:
            self.answerer.invalidate()
