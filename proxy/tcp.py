"""TCP listeners and the byte relay between a client and its endpoint.

Everything runs as plain callbacks on the event loop over non-blocking sockets (no task per
connection): a listener accepts in batches, dials the balancer's next endpoint with a
non-blocking connect (retrying the next endpoint on failure with the userspace proxy's
250 ms, 500 ms, 1 s, 2 s dial timeouts), then relays both directions.

Each direction starts by copying through one buffer shared by the loop (``recv_into`` then
``send``: two copies, no allocation); once a read fills that buffer the direction is bulk and
switches to ``os.splice`` through a pipe, so its bytes move socket -> pipe -> socket inside the
kernel. Pipes come from a small pool, so short connections never pay for them. A direction
whose destination is full stops reading its source until the destination drains (flow
control). A direction's EOF becomes ``shutdown(SHUT_WR)`` on the other socket once everything
before it was written (half-close); the connection is closed when both directions ended. An
I/O error on either side resets both (SO_LINGER 0), so the peer sees an error, not an EOF.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from proxy.loadbalancer import Balancer, Endpoint, NoEndpoints

log = structlog.get_logger(__name__)

DIAL_TIMEOUTS = (0.25, 0.5, 1.0, 2.0)
"""The userspace proxy's dial timeouts: one attempt (on the next endpoint) per entry."""

_F_SETPIPE_SZ = 1031
_HAVE_SPLICE = hasattr(os, "splice")
_SPLICE_FLAGS = (os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK) if _HAVE_SPLICE else 0
_LINGER_RESET = struct.pack("ii", 1, 0)
_AGAIN = (BlockingIOError, InterruptedError)


@dataclass(frozen=True)
class TcpSettings:
    """How TCP service ports are served."""

    dial_timeouts: tuple[float, ...] = DIAL_TIMEOUTS
    """Seconds allowed for each connect attempt; one attempt per entry, each on the next
    endpoint (the userspace proxy's 250 ms, 500 ms, 1 s, 2 s)."""
    buffer_size: int = 256 * 1024
    """Bytes per read while copying through user space (one buffer shared by the loop)."""
    splice: bool = True
    """Move bulk directions with os.splice through a pipe (Linux) instead of copying."""
    pipe_size: int = 1024 * 1024
    """Requested capacity of splice pipes (F_SETPIPE_SZ; capped by fs.pipe-max-size)."""
    pipe_pool: int = 128
    """Empty pipes kept for reuse by later bulk connections."""
    accept_batch: int = 64
    """Connections accepted per readiness callback of a listener."""
    backlog: int = 4096
    """listen() backlog of every listener."""
    nodelay: bool = True
    """Set TCP_NODELAY on both sockets, so small writes are forwarded at once."""


class _PipePool:
    """Pipes for splice, reused while empty."""

    def __init__(self, size: int, keep: int) -> None:
        self.size = size
        self.keep = keep
        self.free: list[tuple[int, int]] = []

    def get(self) -> tuple[int, int]:
        if self.free:
            return self.free.pop()
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            self.size = fcntl_setpipe_sz(w, self.size)
        except OSError:
            pass
        return r, w

    def put(self, pipe: tuple[int, int], empty: bool) -> None:
        if empty and len(self.free) < self.keep:
            self.free.append(pipe)
        else:
            os.close(pipe[0])
            os.close(pipe[1])

    def close(self) -> None:
        for r, w in self.free:
            os.close(r)
            os.close(w)
        self.free.clear()


def fcntl_setpipe_sz(fd: int, size: int) -> int:
    """Grows a pipe to ``size`` bytes (or the largest allowed); returns its capacity."""
    import fcntl

    try:
        return fcntl.fcntl(fd, _F_SETPIPE_SZ, size)
    except PermissionError:
        with open("/proc/sys/fs/pipe-max-size") as f:
            limit = int(f.read())
        return fcntl.fcntl(fd, _F_SETPIPE_SZ, min(size, limit))


class TcpContext:
    """What every listener and connection of one event loop shares."""

    def __init__(self, loop: asyncio.AbstractEventLoop, settings: TcpSettings) -> None:
        self.loop = loop
        self.settings = settings
        self.buffer = bytearray(settings.buffer_size)
        self.view = memoryview(self.buffer)
        self.splice = settings.splice and _HAVE_SPLICE
        self.pipes = _PipePool(settings.pipe_size, settings.pipe_pool)
        self.connections: set[_Dial | Relay] = set()
        self.stats = {"dial_failures": 0, "dial_timeouts": 0, "no_endpoint": 0}
        """Dials that failed (refused, unreachable or timed out), those of them that timed
        out, and connections closed for want of an endpoint."""

    def close(self) -> None:
        """Closes every connection (listeners are closed by their owners)."""
        for conn in list(self.connections):
            conn.abort()
        self.pipes.close()


def _reset(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass
    sock.close()


class TcpListener:
    """One listening socket (ClusterIP:port or NodeIP:nodePort) of one service port."""

    def __init__(
        self, ctx: TcpContext, address: Endpoint, balancer: Balancer, name: str = ""
    ) -> None:
        self.ctx = ctx
        self.address = address
        self.balancer = balancer
        self.name = name
        self.sock: socket.socket | None = None

    def open(self) -> None:
        """Binds and listens; raises OSError (EADDRINUSE while another socket listens there).

        SO_REUSEADDR lets it bind over connections of an earlier owner (TIME_WAIT, relays
        still running); there is no SO_REUSEPORT: one listener per address and host, so that
        one balancer sees every connection to it (exact round robin from any client).
        """
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.ctx.settings.nodelay:  # accepted sockets inherit it (Linux)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind(self.address)
            sock.listen(self.ctx.settings.backlog)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.ctx.loop.add_reader(sock.fileno(), self._on_accept)

    @property
    def is_open(self) -> bool:
        return self.sock is not None

    def close(self) -> None:
        """Stops accepting; connections already relayed carry on."""
        sock, self.sock = self.sock, None
        if sock is not None:
            self.ctx.loop.remove_reader(sock.fileno())
            sock.close()

    def _on_accept(self) -> None:
        sock = self.sock
        if sock is None:
            return
        ctx = self.ctx
        family = sock.family
        for _ in range(ctx.settings.accept_batch):
            try:
                fd, addr = sock._accept()  # type: ignore[attr-defined]
            except _AGAIN:
                return
            except OSError as e:
                # EMFILE/ENFILE/ENOBUFS: leave the rest in the backlog for the next round.
                log.warning("accept failed", listener=self.name, error=str(e))
                return
            client = socket.socket(family, socket.SOCK_STREAM, 0, fd)
            client.setblocking(False)
            _Dial(ctx, self.balancer, client, addr[0]).next()


class _Dial:
    """Connecting one accepted client to an endpoint, with retries on the next ones."""

    __slots__ = ("attempt", "balancer", "client", "client_ip", "ctx", "reset_affinity",
                 "sock", "timer")

    def __init__(
        self, ctx: TcpContext, balancer: Balancer, client: socket.socket, client_ip: str
    ) -> None:
        self.ctx = ctx
        self.balancer = balancer
        self.client = client
        self.client_ip = client_ip
        self.attempt = 0
        self.reset_affinity = False
        self.sock: socket.socket | None = None
        self.timer: asyncio.TimerHandle | None = None

    def next(self) -> None:
        ctx = self.ctx
        timeouts = ctx.settings.dial_timeouts
        while self.attempt < len(timeouts):
            timeout = timeouts[self.attempt]
            self.attempt += 1
            try:
                endpoint = self.balancer.next(self.client_ip, self.reset_affinity)
            except NoEndpoints:
                ctx.stats["no_endpoint"] += 1
                break
            family = socket.AF_INET6 if ":" in endpoint[0] else socket.AF_INET
            try:
                sock = socket.socket(family, socket.SOCK_STREAM)
            except OSError as e:
                log.warning("cannot make a socket", error=str(e))
                break
            sock.setblocking(False)
            if ctx.settings.nodelay:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = sock.connect_ex(endpoint)
            if err == 0:
                self._connected(sock)
                return
            if err == errno.EINPROGRESS:
                # On loopback the handshake (or the refusal) has usually happened inside
                # connect() already: look before paying for a poll and a timer.
                try:
                    sock.getpeername()
                except OSError:
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) or err
                else:
                    self._connected(sock)
                    return
            if err == errno.EINPROGRESS:
                self.sock = sock
                ctx.connections.add(self)
                ctx.loop.add_writer(sock.fileno(), self._on_writable)
                self.timer = ctx.loop.call_later(timeout, self._on_timeout)
                return
            sock.close()
            ctx.stats["dial_failures"] += 1
            self.reset_affinity = True
        ctx.connections.discard(self)
        _reset(self.client)

    def _on_writable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        self._unwatch(sock)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            sock.close()
            self.ctx.stats["dial_failures"] += 1
            self.reset_affinity = True
            self.next()
            return
        self.ctx.connections.discard(self)
        self._connected(sock)

    def _on_timeout(self) -> None:
        sock = self.sock
        if sock is None:
            return
        self._unwatch(sock)
        sock.close()
        self.ctx.stats["dial_failures"] += 1
        self.ctx.stats["dial_timeouts"] += 1
        self.reset_affinity = True
        self.next()

    def _unwatch(self, sock: socket.socket) -> None:
        self.ctx.loop.remove_writer(sock.fileno())
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.sock = None

    def _connected(self, sock: socket.socket) -> None:
        Relay(self.ctx, self.client, sock).start()

    def abort(self) -> None:
        sock = self.sock
        if sock is not None:
            self._unwatch(sock)
            sock.close()
        self.ctx.connections.discard(self)
        _reset(self.client)


class _Flow:
    """One direction of a relay: bytes from ``src`` to ``dst``."""

    __slots__ = ("ctx", "done", "dst", "dst_fd", "eof", "in_pipe", "loop", "pending",
                 "pipe", "relay", "src", "src_fd")

    def __init__(self, relay: Relay, src: socket.socket, dst: socket.socket) -> None:
        self.relay = relay
        self.ctx = relay.ctx
        self.loop = relay.ctx.loop
        self.src = src
        self.dst = dst
        self.src_fd = src.fileno()
        self.dst_fd = dst.fileno()
        self.pending: bytes = b""
        """Copy mode: bytes read but not yet written."""
        self.pipe: tuple[int, int] | None = None
        self.in_pipe = 0
        """Splice mode: bytes in the pipe not yet written."""
        self.eof = False
        self.done = False

    def start(self) -> None:
        self.loop.add_reader(self.src_fd, self.on_readable)

    def on_readable(self) -> None:
        try:
            if self.pipe is None:
                self._copy()
            else:
                self._splice()
        except _AGAIN:
            pass
        except OSError:
            self.relay.abort()

    def _copy(self) -> None:
        ctx = self.ctx
        n = self.src.recv_into(ctx.buffer)
        if n == 0:
            self._on_eof()
            return
        view = ctx.view
        try:
            sent = self.dst.send(view[:n])
        except _AGAIN:
            sent = 0
        if sent < n:
            self.pending = bytes(view[sent:n])
            self._wait_writable()
        elif n == len(ctx.buffer) and ctx.splice:
            self.pipe = ctx.pipes.get()

    def _splice(self) -> None:
        assert self.pipe is not None
        r, w = self.pipe
        size = self.ctx.pipes.size
        while True:
            n = os.splice(self.src_fd, w, size, flags=_SPLICE_FLAGS)
            if n == 0:
                self._on_eof()
                return
            self.in_pipe = n
            try:
                self.in_pipe -= os.splice(r, self.dst_fd, n, flags=_SPLICE_FLAGS)
            except _AGAIN:
                pass
            if self.in_pipe:
                self._wait_writable()
                return
            if n < size:
                return

    def _wait_writable(self) -> None:
        self.loop.remove_reader(self.src_fd)
        self.loop.add_writer(self.dst_fd, self.on_writable)

    def on_writable(self) -> None:
        try:
            if self.pipe is not None:
                while self.in_pipe:
                    self.in_pipe -= os.splice(
                        self.pipe[0], self.dst_fd, self.in_pipe, flags=_SPLICE_FLAGS
                    )
            else:
                while self.pending:
                    sent = self.dst.send(self.pending)
                    self.pending = self.pending[sent:]
        except _AGAIN:
            return
        except OSError:
            self.relay.abort()
            return
        self.loop.remove_writer(self.dst_fd)
        if self.eof:
            self._finish()
        else:
            self.loop.add_reader(self.src_fd, self.on_readable)

    def _on_eof(self) -> None:
        self.eof = True
        self.loop.remove_reader(self.src_fd)
        if not self.pending and not self.in_pipe:
            self._finish()

    def _finish(self) -> None:
        self.done = True
        relay = self.relay
        if relay.up.done and relay.down.done:
            # The last direction: closing both sockets sends this FIN too (nothing is left
            # unread on either), one shutdown() syscall fewer per connection.
            relay.flow_done()
            return
        try:
            self.dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def unwatch(self) -> None:
        self.loop.remove_reader(self.src_fd)
        self.loop.remove_writer(self.dst_fd)

    def release_pipe(self) -> None:
        if self.pipe is not None:
            self.ctx.pipes.put(self.pipe, empty=self.in_pipe == 0)
            self.pipe = None


class Relay:
    """A client connection joined to its endpoint connection."""

    __slots__ = ("backend", "client", "closed", "ctx", "down", "up")

    def __init__(self, ctx: TcpContext, client: socket.socket, backend: socket.socket) -> None:
        self.ctx = ctx
        self.client = client
        self.backend = backend
        self.up = _Flow(self, client, backend)
        self.down = _Flow(self, backend, client)
        self.closed = False

    def start(self) -> None:
        self.ctx.connections.add(self)
        self.up.start()
        self.down.start()
        # Clients usually send right after connecting: their first bytes are waiting already.
        self.up.on_readable()

    def flow_done(self) -> None:
        if self.up.done and self.down.done:
            self._close(_close)

    def abort(self) -> None:
        self._close(_reset)

    def _close(self, closer: Callable[[socket.socket], None]) -> None:
        if self.closed:
            return
        self.closed = True
        self.ctx.connections.discard(self)
        for flow in (self.up, self.down):
            flow.unwatch()
            flow.release_pipe()
        closer(self.client)
        closer(self.backend)


def _close(sock: socket.socket) -> None:
    sock.close()
