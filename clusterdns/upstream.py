"""The upstream resolvers that answer names outside the cluster domain.

They come from ``--upstream`` or else from the nameservers of a resolv.conf (the node's, as
CoreDNS' ``forward . /etc/resolv.conf``), less the server's own address, which would loop.
A query goes to the upstream that answered last, over UDP (again over TCP when the answer is
truncated) or TCP as the client asked; an upstream that does not answer within the timeout is
skipped for the next one. When none answers, the client gets SERVFAIL.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message
import structlog

from kubelite.health import join_host_port

log = structlog.get_logger(__name__)

DNS_PORT = 53


@dataclass(frozen=True)
class Upstream:
    """One upstream resolver."""

    host: str
    """Its IP address."""
    port: int = DNS_PORT
    """Its port."""

    def __str__(self) -> str:
        return join_host_port(self.host, self.port)


class UpstreamError(Exception):
    """No upstream answered."""


def parse_upstream(text: str) -> Upstream:
    """``IP``, ``IP:PORT``, ``[IPv6]:PORT`` or a bare IPv6 address; ValueError saying why."""
    value = text.strip()
    host, port_text = value, ""
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: expected [IPv6]:PORT")
        port_text = rest[1:]
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: the host must be an IP address (names cannot be resolved"
                         " before there is a resolver)") from None
    port = DNS_PORT
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
        port = int(port_text)
    return Upstream(str(ip), port)


def parse_upstreams(text: str) -> tuple[Upstream, ...]:
    """A comma-separated list of upstreams (empty: none)."""
    return tuple(parse_upstream(item) for item in text.split(",") if item.strip())


def resolv_conf_nameservers(path: Path) -> list[Upstream]:
    """The ``nameserver`` lines of a resolv.conf, in order (port 53; malformed ones skipped
    with a warning, as the C library skips them)."""
    result = []
    for line in path.read_text().splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "nameserver":
            continue
        try:
            result.append(Upstream(str(ipaddress.ip_address(words[1].split("%")[0]))))
        except ValueError:
            log.warning("resolv.conf nameserver is not an IP address; skipped",
                        path=str(path), nameserver=words[1])
    return result


def is_local_address(ip: str) -> bool:
    """Whether this host has address ``ip`` (a socket can bind it)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.bind((ip, 0))
        except OSError as e:
            if e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EINVAL):
                return False
            raise
    return True


def without_own_address(
    upstreams: Iterable[Upstream], listen_address: str, port: int
) -> list[Upstream]:
    """``upstreams`` less those that are this server itself: its listen address and port,
    or any address of this host on its port when it listens on all of them."""
    any_address = listen_address in ("", "0.0.0.0", "::")
    result = []
    for upstream in upstreams:
        ours = upstream.port == port and (
            upstream.host == listen_address or (any_address and is_local_address(upstream.host))
        )
        if ours:
            log.info("upstream is this server itself; skipped", upstream=str(upstream))
        else:
            result.append(upstream)
    return result


class Forwarder:
    """Sends queries to the upstreams, failing over from one to the next."""

    def __init__(self, upstreams: Sequence[Upstream], timeout: float) -> None:
        self.upstreams = list(upstreams)
        self.timeout = timeout
        self._preferred = 0

    async def query(self, query: dns.message.Message, tcp: bool) -> dns.message.Message:
        """The first upstream answer to ``query`` (same id and question); UpstreamError when
        none answered within the timeout each."""
        if not self.upstreams:
            raise UpstreamError("no upstream resolvers configured")
        errors = []
        count = len(self.upstreams)
        for i in range(count):
            index = (self._preferred + i) % count
            upstream = self.upstreams[index]
            try:
                if tcp:
                    answer = await dns.asyncquery.tcp(query, upstream.host, self.timeout,
                                                      upstream.port)
                else:
                    answer, _ = await dns.asyncquery.udp_with_fallback(
                        query, upstream.host, self.timeout, upstream.port,
                        ignore_unexpected=True)
            except (dns.exception.DNSException, OSError, EOFError) as e:
                errors.append(f"{upstream}: {type(e).__name__}: {e}".rstrip(": "))
                continue
            self._preferred = index
            return answer
        raise UpstreamError("; ".join(errors))
