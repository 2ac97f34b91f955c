"""UDP service ports, as the userspace proxy served them.

One socket per ClusterIP:port (or NodeIP:nodePort) receives every client's datagrams. Each
client address gets an *association*: a connected UDP socket to the endpoint the balancer
chose for it, through which its datagrams go out and the endpoint's replies come back (and are
sent to the client from the service address). An association that carried nothing either way
for the idle timeout (Kubernetes' ``--udp-timeout``, 250 ms) is closed; the client's next
datagram is balanced afresh. An error on the endpoint side (ICMP port unreachable) closes the
association as well.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

import structlog

from proxy.loadbalancer import Balancer, Endpoint, NoEndpoints

log = structlog.get_logger(__name__)

_AGAIN = (BlockingIOError, InterruptedError)
Address = tuple[str, int]


@dataclass(frozen=True)
class UdpSettings:
    """How UDP service ports are served."""

    idle_timeout: float = 0.25
    """Seconds without a datagram either way after which a client's association to its
    endpoint is dropped (kube-proxy's --udp-timeout, 250 ms)."""
    max_datagram: int = 65535
    """Largest datagram relayed, bytes."""
    batch: int = 64
    """Datagrams handled per readiness callback of a socket."""


class UdpListener:
    """The service socket of one UDP service port and its client associations."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, address: Endpoint, balancer: Balancer,
        settings: UdpSettings = UdpSettings(), name: str = "",
    ) -> None:
        self.loop = loop
        self.address = address
        self.balancer = balancer
        self.settings = settings
        self.name = name
        self.sock: socket.socket | None = None
        self.clients: dict[Address, _Association] = {}

    def open(self) -> None:
        """Binds; raises OSError (EADDRINUSE while another socket is bound there).

        Neither SO_REUSEADDR nor SO_REUSEPORT (for UDP, Linux lets either share the address):
        one socket per address and host, so one balancer sees every client.
        """
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind(self.address)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.loop.add_reader(sock.fileno(), self._on_datagram)

    @property
    def is_open(self) -> bool:
        return self.sock is not None

    def close(self) -> None:
        """Closes the service socket and every association (as the userspace proxy did)."""
        sock, self.sock = self.sock, None
        if sock is not None:
            self.loop.remove_reader(sock.fileno())
            sock.close()
        for association in list(self.clients.values()):
            association.close()

    def _on_datagram(self) -> None:
        sock = self.sock
        size = self.settings.max_datagram
        for _ in range(self.settings.batch):
            if sock is None:
                return
            try:
                data, client = sock.recvfrom(size)
            except _AGAIN:
                return
            except OSError as e:
                log.debug("recvfrom failed", listener=self.name, error=str(e))
                continue
            association = self.clients.get(client)
            if association is None:
                association = self._associate(client)
                if association is None:
                    continue
            association.forward(data)

    def _associate(self, client: Address) -> _Association | None:
        try:
            endpoint = self.balancer.next(client[0])
        except NoEndpoints:
            return None
        family = socket.AF_INET6 if ":" in endpoint[0] else socket.AF_INET
        backend = socket.socket(family, socket.SOCK_DGRAM)
        try:
            backend.setblocking(False)
            backend.connect(endpoint)
        except OSError as e:
            backend.close()
            log.debug("udp dial failed", listener=self.name, endpoint=endpoint, error=str(e))
            return None
        association = _Association(self, client, backend)
        self.clients[client] = association
        return association


class _Association:
    """One client's datagrams to and from its endpoint."""

    __slots__ = ("backend", "client", "last_active", "listener", "timer")

    def __init__(self, listener: UdpListener, client: Address, backend: socket.socket) -> None:
        self.listener = listener
        self.client = client
        self.backend = backend
        loop = listener.loop
        self.last_active = loop.time()
        loop.add_reader(backend.fileno(), self._on_reply)
        self.timer: asyncio.TimerHandle | None = loop.call_at(
            self.last_active + listener.settings.idle_timeout, self._on_timer
        )

    def forward(self, data: bytes) -> None:
        try:
            self.backend.send(data)
        except _AGAIN:
            return  # a full socket buffer drops the datagram, as UDP may
        except OSError:
            self.close()
            return
        self.last_active = self.listener.loop.time()

    def _on_reply(self) -> None:
        listener = self.listener
        size = listener.settings.max_datagram
        for _ in range(listener.settings.batch):
            try:
                data = self.backend.recv(size)
            except _AGAIN:
                return
            except OSError:  # ECONNREFUSED: nothing listens there (any more)
                self.close()
                return
            self.last_active = listener.loop.time()
            sock = listener.sock
            if sock is None:
                return
            try:
                sock.sendto(data, self.client)
            except _AGAIN:
                pass
            except OSError as e:
                log.debug("sendto failed", listener=listener.name, error=str(e))

    def _on_timer(self) -> None:
        loop = self.listener.loop
        deadline = self.last_active + self.listener.settings.idle_timeout
        if loop.time() < deadline:
            self.timer = loop.call_at(deadline, self._on_timer)
        else:
            self.timer = None
            self.close()

    def close(self) -> None:
        listener = self.listener
        if listener.clients.get(self.client) is self:
            del listener.clients[self.client]
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.backend.fileno() >= 0:
            listener.loop.remove_reader(self.backend.fileno())
            self.backend.close()
