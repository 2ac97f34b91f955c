"""From a query's bytes to the answer's bytes: the record index for the cluster domain, the
upstreams for everything else, and a cache of finished answers.

The cache maps a query's bytes after its ID (flags, question, EDNS) to the answer's bytes
after its ID, one map per transport (a UDP answer may be truncated where the TCP one is not).
A repeated query is answered by splicing its ID onto the cached bytes: no parsing, no
rendering. Only answers from the index alone are cached, and the caches are emptied whenever
the index changes, so no answer outlives the records it came from. Forwarded answers are not
cached (their TTLs belong to the upstreams).

Before the informers have listed everything, names in the cluster domain get SERVFAIL (a
client tries again) rather than an NXDOMAIN it would believe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import structlog

from clusterdns.records import RecordIndex
from clusterdns.upstream import Forwarder, UpstreamError

log = structlog.get_logger(__name__)

HEADER = 12
"""Bytes of a DNS header."""
MIN_UDP_PAYLOAD = 512
"""What a UDP answer may always be (RFC 1035); EDNS lets a client ask for more."""
TCP_MAX = 65535


@dataclass(frozen=True)
class Reply:
    """An answer ready to send."""

    wire: bytes


@dataclass(frozen=True)
class Pending:
    """An answer that needs the upstreams: the whole of it, or the records of a CNAME's
    target that is outside the cluster domain."""

    query: dns.message.Message
    max_size: int
    tcp: bool
    partial: dns.message.Message | None = None
    """The answer so far (ends in a CNAME to ``chase``); None: forward the query as is."""
    chase: dns.name.Name | None = None


def max_size(query: dns.message.Message, tcp: bool) -> int:
    """The largest answer the client takes over its transport."""
    if tcp:
        return TCP_MAX
    return max(MIN_UDP_PAYLOAD, query.payload) if query.edns >= 0 else MIN_UDP_PAYLOAD


class Answerer:
    """Answers queries for one server (both transports share it)."""

    def __init__(
        self, index: RecordIndex, forwarder: Forwarder, synced: Callable[[], bool],
        cache_size: int = 10_000,
    ) -> None:
        self.index = index
        self.forwarder = forwarder
        self.synced = synced
        self.cache_size = cache_size
        self.udp_cache: dict[bytes, bytes] = {}
        self.tcp_cache: dict[bytes, bytes] = {}
        """Answer bytes after the ID by query bytes after the ID (see the module docstring);
        emptied in place, so holders of a reference stay current."""

    def invalidate(self) -> None:
        """Forgets every cached answer (the records changed)."""
        self.udp_cache.clear()
        self.tcp_cache.clear()

    def answer(self, data: bytes, tcp: bool) -> Reply | Pending | None:
        """The answer to one query: ready, pending on the upstreams, or None to drop it
        (not a query: too short, or a response)."""
        cache = self.tcp_cache if tcp else self.udp_cache
        cached = cache.get(data[2:])
        if cached is not None:
            return Reply(data[:2] + cached)
        if len(data) < HEADER or data[2] & 0x80:
            return None
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException as e:
            log.debug("malformed query", error=str(e))
            return Reply(_error(data, dns.rcode.FORMERR))
        if query.opcode() != dns.opcode.QUERY:
            return Reply(self._render(_response(query, dns.rcode.NOTIMP), query, tcp))
        if len(query.question) != 1:
            return Reply(self._render(_response(query, dns.rcode.FORMERR), query, tcp))
        question = query.question[0]
        if not self.index.in_zone(question.name) and not self._maybe_ours(question.name):
            return Pending(query, max_size(query, tcp), tcp)
        if question.rdclass != dns.rdataclass.IN:
            return Reply(self._render(_response(query, dns.rcode.REFUSED), query, tcp))
        if not self.synced():
            if self.index.in_zone(question.name):
                return Reply(self._render(_response(query, dns.rcode.SERVFAIL), query, tcp))
            return Pending(query, max_size(query, tcp), tcp)
        found = self.index.lookup(question.name, question.rdtype)
        if found.forward:
            return Pending(query, max_size(query, tcp), tcp)
        response = _response(query, found.rcode)
        response.flags |= dns.flags.AA
        response.answer += found.answer
        response.authority += found.authority
        response.additional += found.additional
        if found.chase is not None:
            return Pending(query, max_size(query, tcp), tcp, response, found.chase)
        wire = self._render(response, query, tcp)
        if len(cache) >= self.cache_size:
            cache.clear()
        cache[data[2:]] = wire[2:]
        return Reply(wire)

    @staticmethod
    def _maybe_ours(name: dns.name.Name) -> bool:
        """Reverse names: the index holds those of ClusterIPs and endpoint addresses."""
        labels = name.labels
        return len(labels) > 2 and labels[-2].lower() == b"arpa"

    async def complete(self, pending: Pending) -> bytes:
        """The answer of a query that needs the upstreams (SERVFAIL when none answers; a
        CNAME answer without its target's records)."""
        query = pending.query
        try:
            if pending.partial is None:
                upstream = await self.forwarder.query(query, pending.tcp)
                upstream.id = query.id
                return upstream.to_wire(max_size=pending.max_size, prefer_truncation=True)
            assert pending.chase is not None
            question = query.question[0]
            chased = dns.message.make_query(pending.chase, question.rdtype)
            answer = await self.forwarder.query(chased, pending.tcp)
            pending.partial.answer += answer.answer
        except UpstreamError as e:
            log.debug("upstreams did not answer", name=str(query.question[0].name),
                      error=str(e))
            if pending.partial is None:
                return self._render(_response(query, dns.rcode.SERVFAIL), query, pending.tcp)
        return self._render(pending.partial, query, pending.tcp)

    @staticmethod
    def _render(response: dns.message.Message, query: dns.message.Message, tcp: bool) -> bytes:
        return response.to_wire(max_size=max_size(query, tcp), prefer_truncation=True)


def _response(query: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
    response = dns.message.make_response(query, recursion_available=True)
    response.set_rcode(rcode)
    return response


def _error(data: bytes, rcode: dns.rcode.Rcode) -> bytes:
    """An answer with ``rcode`` and no question to a query that does not parse."""
    response = dns.message.Message(id=int.from_bytes(data[:2], "big"))
    response.flags = dns.flags.QR | (int.from_bytes(data[2:4], "big") & dns.flags.RD)
    response.set_rcode(rcode)
    return response.to_wire()
