"""The server's sockets: DNS over UDP and over TCP (RFC 7766: two-byte length prefixes,
several queries per connection, closed after an idle time), both on the same address and
port.

A UDP query whose answer is cached is answered inside the datagram callback; one that needs
the upstreams runs as a task, at most ``max_concurrent_forwards`` at once (more are REFUSED,
as CoreDNS' forward plugin refuses past max_concurrent). A TCP connection answers its queries
in order, each before reading the next.
"""

from __future__ import annotations

import asyncio
import socket
from typing import cast

import dns.message
import dns.rcode
import structlog

from clusterdns.answer import Answerer, Pending, Reply

log = structlog.get_logger(__name__)

Address = tuple[str, int]


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _refused(pending: Pending) -> bytes:
    response = dns.message.make_response(pending.query, recursion_available=True)
    response.set_rcode(dns.rcode.REFUSED)
    return response.to_wire(max_size=pending.max_size, prefer_truncation=True)


class _Forwards:
    """Tasks completing answers through the upstreams, bounded in number."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.tasks: set[asyncio.Task[None]] = set()

    def full(self) -> bool:
        return len(self.tasks) >= self.limit

    def track(self, task: asyncio.Task[None]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("answering through the upstreams failed", exc_info=task.exception())

    async def cancel(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()


class UdpServer(asyncio.DatagramProtocol):
    """DNS over UDP on one address."""

    def __init__(self, answerer: Answerer, max_concurrent_forwards: int) -> None:
        self.answerer = answerer
        self._cache = answerer.udp_cache
        self._forwards = _Forwards(max_concurrent_forwards)
        self._transport: asyncio.DatagramTransport | None = None

    async def open(self, host: str, port: int) -> Address:
        """Binds (OSError when it cannot); returns the address bound."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(_family(host), socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
            sock.setblocking(False)
            transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
        except BaseException:
            sock.close()
            raise
        self._transport = transport
        bound = self._transport.get_extra_info("sockname")
        return (str(bound[0]), int(bound[1]))

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        await self._forwards.cancel()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        transport = self._transport
        if transport is None:
            return
        cached = self._cache.get(data[2:])
        if cached is not None:  # the hot path: a repeated query
            transport.sendto(data[:2] + cached, addr)
            return
        try:
            result = self.answerer.answer(data, tcp=False)
        except Exception:
            log.exception("answering a query failed", client=addr[0])
            return
        if isinstance(result, Reply):
            transport.sendto(result.wire, addr)
        elif isinstance(result, Pending):
            if self._forwards.full():
                transport.sendto(_refused(result), addr)
                return
            self._forwards.track(asyncio.ensure_future(self._complete(result, addr)))

    async def _complete(self, pending: Pending, addr: Address) -> None:
        wire = await self.answerer.complete(pending)
        if self._transport is not None:
            self._transport.sendto(wire, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors of earlier answers (a client gone): nothing to do but note it.
        log.debug("udp socket error", error=str(exc))


class TcpServer:
    """DNS over TCP on one address."""

    def __init__(self, answerer: Answerer, idle_timeout: float) -> None:
        self.answerer = answerer
        self.idle_timeout = idle_timeout
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def open(self, host: str, port: int) -> Address:
        """Binds and listens (OSError when it cannot); returns the address bound."""
        sock = socket.socket(_family(host), socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            self._server = await asyncio.start_server(self._serve, sock=sock)
        except BaseException:
            sock.close()
            raise
        bound = sock.getsockname()
        return (str(bound[0]), int(bound[1]))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        self._connections.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                async with asyncio.timeout(self.idle_timeout):
                    length = int.from_bytes(await reader.readexactly(2), "big")
                data = await reader.readexactly(length)
                result = self.answerer.answer(data, tcp=True)
                if result is None:
                    break  # not a query: a misbehaving peer
                if isinstance(result, Pending):
                    wire = await self.answerer.complete(result)  # one at a time per client
                else:
                    wire = result.wire
                writer.write(len(wire).to_bytes(2, "big") + wire)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass  # the client closed, went quiet or away
        except Exception:
            log.exception("dns over tcp failed", client=str(writer.get_extra_info("peername")))
        finally:
            self._connections.discard(task)
            writer.close()
