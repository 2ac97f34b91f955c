"""The DNS server in-process against a real API server: Services and hand-written Endpoints
stored through the API, queries over UDP and TCP with dnspython on 127.0.0.1, and a small
upstream DNS server on 127.0.0.1 for the names outside the cluster domain."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.reversename
import dns.rrset
import pytest

from apiserver.server import ApiServer
from clusterdns.server import ClusterDns, DnsSettings
from clusterdns.upstream import Upstream
from kubelite.client.client import ApiClient
from kubelite.client.informer import InformerSettings
from kubelite.health import check_health
from kubelite.testing.ports import free_port
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1

NS = "default"
TIMEOUT = 2.0
UPSTREAM_RECORDS = {
    "upstream.test.": ["192.0.2.53"],
    "www.example.com.": ["192.0.2.80"],
    "big.test.": [f"192.0.2.{i}" for i in range(1, 61)],  # > 512 bytes: truncated over UDP
}
"""What the test's upstream knows (addresses from the documentation block: data only)."""


# ----------------------------------------------------------------------------- the upstream


class _UpstreamUdp(asyncio.DatagramProtocol):
    def __init__(self, upstream: FakeUpstream) -> None:
        self.upstream = upstream
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.upstream.udp_queries += 1
        # Always 512 bytes at most, so that large answers make the server retry over TCP.
        self.transport.sendto(self.upstream.answer(data, 512), addr)


@dataclass
class FakeUpstream:
    """A DNS server on 127.0.0.1 answering UPSTREAM_RECORDS over UDP and TCP."""

    port: int = 0
    udp_queries: int = 0
    tcp_queries: int = 0
    _udp: asyncio.DatagramTransport | None = None
    _tcp: asyncio.Server | None = None

    def answer(self, data: bytes, max_size: int) -> bytes:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        ips = UPSTREAM_RECORDS.get(question.name.to_text().lower())
        if ips is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text_list(question.name, 300, "IN", "A", ips))
        return response.to_wire(max_size=max_size, prefer_truncation=True)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.port = free_port()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UpstreamUdp(self), local_addr=("127.0.0.1", self.port))
        self._udp = transport
        self._tcp = await asyncio.start_server(self._serve_tcp, "127.0.0.1", self.port)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                         ) -> None:
        try:
            length = int.from_bytes(await reader.readexactly(2), "big")
            self.tcp_queries += 1
            wire = self.answer(await reader.readexactly(length), 65535)
            writer.write(len(wire).to_bytes(2, "big") + wire)
            await writer.drain()
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    server = FakeUpstream()
    await server.start()
    yield server
    await server.stop()


async def start_dns(client: ApiClient, *upstreams: Upstream, **settings: object) -> ClusterDns:
    server = ClusterDns(DnsSettings(
        listen_address="127.0.0.1", port=0, upstreams=upstreams,
        informer=InformerSettings(backoff_initial=0.05, backoff_max=0.5),
        **settings,  # type: ignore[arg-type]
    ), client)
    await server.start()
    await server.wait_for_sync(10)
    return server


@pytest.fixture
async def dns_server(client: ApiClient, upstream: FakeUpstream) -> AsyncIterator[ClusterDns]:
    server = await start_dns(client, Upstream("127.0.0.1", upstream.port))
    yield server
    await server.stop()


async def query(server: ClusterDns, name: str, rdtype: str = "A", *, tcp: bool = False,
                payload: int | None = None) -> dns.message.Message:
    assert server.address is not None
    host, port = server.address
    q = dns.message.make_query(name, rdtype, use_edns=payload is not None,
                               payload=payload or 512)
    if tcp:
        return await dns.asyncquery.tcp(q, host, TIMEOUT, port)
    return await dns.asyncquery.udp(q, host, TIMEOUT, port)


def records(response: dns.message.Message, rdtype: str = "A") -> list[str]:
    """The answer's records of one type as text, sorted."""
    wanted = dns.rdatatype.from_text(rdtype)
    return sorted(str(r) for rrset in response.answer if rrset.rdtype == wanted for r in rrset)


async def create_service(client: ApiClient, name: str, *, cluster_ip: str = "",
                         external_name: str = "",
                         ports: tuple[tuple[str, int], ...] = (("http", 80),)) -> v1.Service:
    svc = v1.Service(metadata=v1.ObjectMeta(name=name, namespace=NS))
    if external_name:
        svc.spec.type = "ExternalName"
        svc.spec.external_name = external_name
    else:
        if cluster_ip:
            svc.spec.cluster_ip = cluster_ip
        for port_name, port in ports:
            svc.spec.ports.add(name=port_name, port=port, protocol="TCP")
    return await client.create(svc)


async def create_endpoints(client: ApiClient, name: str,
                           addresses: tuple[tuple[str, str], ...]) -> v1.Endpoints:
    ep = v1.Endpoints(metadata=v1.ObjectMeta(name=name, namespace=NS))
    subset = ep.subsets.add()
    for ip, hostname in addresses:
        subset.addresses.add(ip=ip, hostname=hostname)
    subset.ports.add(name="http", port=8080, protocol="TCP")
    return await client.create(ep)


async def resolves(server: ClusterDns, name: str, rdtype: str = "A") -> dns.message.Message:
    """The answer once it has records (informer latency)."""

    async def answered() -> dns.message.Message | None:
        response = await query(server, name, rdtype)
        return response if response.answer else None

    result: dns.message.Message = await eventually(answered, timeout=5, message=name)
    return result


# ----------------------------------------------------------------------------- tests


async def test_a_service_resolves_to_its_cluster_ip_over_udp_and_tcp(
    client: ApiClient, dns_server: ClusterDns
) -> None:
    svc = await create_service(client, "web")
    name = "web.default.svc.cluster.local."
    udp = await resolves(dns_server, name)
    assert records(udp) == [svc.spec.cluster_ip]
    assert udp.flags & dns.flags.AA
    assert udp.answer[0].ttl == 5
    tcp = await query(dns_server, name, tcp=True)
    assert records(tcp) == [svc.spec.cluster_ip]
    # Names compare case-insensitively and come back as asked.
    upper = await query(dns_server, "WEB.Default.SVC.cluster.local.")
    assert upper.answer[0].name.to_text() == "WEB.Default.SVC.cluster.local."
    assert records(upper) == [svc.spec.cluster_ip]
    srv = await query(dns_server, "_http._tcp.web.default.svc.cluster.local.", "SRV", tcp=True)
    assert records(srv, "SRV") == ["0 100 80 web.default.svc.cluster.local."]
    reverse = dns.reversename.from_address(svc.spec.cluster_ip)
    ptr = await query(dns_server, reverse.to_text(), "PTR")
    assert records(ptr, "PTR") == ["web.default.svc.cluster.local."]
    # The API server's own Service is there too.
    assert records(await query(dns_server, "kubernetes.default.svc.cluster.local."))


async def test_a_headless_service_answers_its_ready_endpoints_and_their_hostnames(
    client: ApiClient, dns_server: ClusterDns
) -> None:
    await create_service(client, "nginx", cluster_ip="None")
    await create_endpoints(client, "nginx", (("10.244.1.10", "web-0"), ("10.244.2.11", "web-1"),
                                             ("10.244.3.12", "")))
    response = await resolves(dns_server, "nginx.default.svc.cluster.local.")
    assert records(response) == ["10.244.1.10", "10.244.2.11", "10.244.3.12"]
    web0 = await query(dns_server, "web-0.nginx.default.svc.cluster.local.", tcp=True)
    assert records(web0) == ["10.244.1.10"]
    srv = await query(dns_server, "_http._tcp.nginx.default.svc.cluster.local.", "SRV")
    assert records(srv, "SRV") == [
        "0 100 8080 10-244-3-12.nginx.default.svc.cluster.local.",
        "0 100 8080 web-0.nginx.default.svc.cluster.local.",
        "0 100 8080 web-1.nginx.default.svc.cluster.local.",
    ]
    assert sorted(str(r[0]) for r in srv.additional) == [
        "10.244.1.10", "10.244.2.11", "10.244.3.12"]
    ptr = await query(dns_server, "11.2.244.10.in-addr.arpa.", "PTR")
    assert records(ptr, "PTR") == ["web-1.nginx.default.svc.cluster.local."]


async def test_an_external_name_is_a_cname_followed_upstream(
    client: ApiClient, dns_server: ClusterDns
) -> None:
    await create_service(client, "search", external_name="www.example.com")
    response = await resolves(dns_server, "search.default.svc.cluster.local.")
    assert records(response, "CNAME") == ["www.example.com."]
    assert records(response) == ["192.0.2.80"]  # the target's address, from upstream


async def test_unknown_names_in_the_cluster_domain_are_nxdomain(
    client: ApiClient, dns_server: ClusterDns, upstream: FakeUpstream
) -> None:
    for name in ("nope.default.svc.cluster.local.", "web.nowhere.svc.cluster.local.",
                 "upstream.test.default.svc.cluster.local."):
        for tcp in (False, True):
            response = await query(dns_server, name, tcp=tcp)
            assert response.rcode() == dns.rcode.NXDOMAIN, name
            assert [r.rdtype for r in response.authority] == [dns.rdatatype.SOA]
    assert upstream.udp_queries == upstream.tcp_queries == 0  # answered, never forwarded


async def test_other_names_are_forwarded_to_the_upstream(
    dns_server: ClusterDns, upstream: FakeUpstream
) -> None:
    response = await query(dns_server, "upstream.test.")
    assert records(response) == ["192.0.2.53"]
    assert not response.flags & dns.flags.AA
    assert (await query(dns_server, "missing.test.")).rcode() == dns.rcode.NXDOMAIN
    # A reverse name that is no Service's goes upstream as well.
    assert (await query(dns_server, "4.3.2.1.in-addr.arpa.", "PTR")).rcode() == \
        dns.rcode.NXDOMAIN
    assert upstream.udp_queries == 3
    # Truncated over UDP upstream: the server asks again over TCP and passes the whole answer
    # to a client that takes it (EDNS), truncates it for one that does not.
    big = await query(dns_server, "big.test.", payload=4096)
    assert len(records(big)) == 60 and not big.flags & dns.flags.TC
    assert upstream.tcp_queries == 1
    assert (await query(dns_server, "big.test.")).flags & dns.flags.TC
    assert len(records(await query(dns_server, "big.test.", tcp=True))) == 60


async def test_servfail_when_no_upstream_answers(client: ApiClient) -> None:
    closed = free_port()  # nothing listens there
    server = await start_dns(client, Upstream("127.0.0.1", closed), upstream_timeout=0.3)
    try:
        for tcp in (False, True):
            response = await query(server, "upstream.test.", tcp=tcp)
            assert response.rcode() == dns.rcode.SERVFAIL
        # The cluster's names do not depend on the upstreams.
        kubernetes = await query(server, "kubernetes.default.svc.cluster.local.")
        assert kubernetes.rcode() == dns.rcode.NOERROR
    finally:
        await server.stop()


async def test_a_new_service_resolves_and_a_deleted_one_stops_past_the_answer_cache(
    client: ApiClient, dns_server: ClusterDns
) -> None:
    name = "fresh.default.svc.cluster.local."
    # The NXDOMAIN is now in the answer cache, which has no expiry of its own: only a change
    # to the records empties it, so the name resolving at all shows the change did.
    assert (await query(dns_server, name)).rcode() == dns.rcode.NXDOMAIN
    svc = await create_service(client, "fresh")

    async def found() -> bool:
        return records(await query(dns_server, name)) == [svc.spec.cluster_ip]

    await eventually(found, timeout=10, interval=0.01, message="the new Service's name")
    await client.delete(v1.Service, "fresh", NS)

    async def gone() -> bool:
        return (await query(dns_server, name)).rcode() == dns.rcode.NXDOMAIN

    await eventually(gone, timeout=10, interval=0.01, message="the deleted Service's name gone")


async def test_readiness_follows_the_informers(
    client: ApiClient, dns_server: ClusterDns
) -> None:
    ready, reason = dns_server.readiness()
    assert ready, reason


async def test_the_daemon_serves_and_stops_cleanly_on_sigterm(
    api_server: ApiServer, upstream: FakeUpstream, client: ApiClient
) -> None:
    port, health = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "clusterdns", "--server", api_server.address,
         "--listen-address", "127.0.0.1", "--port", str(port),
         "--upstream", f"127.0.0.1:{upstream.port}",
         "--health-address", f"127.0.0.1:{health}", "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        async def serving() -> bool:
            return await check_health(f"127.0.0.1:{health}", "dns") == "SERVING"

        await eventually(serving, timeout=20, message="dns SERVING")
        svc = await create_service(client, "daemon")
        q = dns.message.make_query("daemon.default.svc.cluster.local.", "A")

        async def answered() -> bool:
            response = await dns.asyncquery.udp(q, "127.0.0.1", TIMEOUT, port)
            return records(response) == [svc.spec.cluster_ip]

        await eventually(answered, timeout=5, message="the daemon answering")
        forwarded = await dns.asyncquery.tcp(
            dns.message.make_query("upstream.test.", "A"), "127.0.0.1", TIMEOUT, port)
        assert records(forwarded) == ["192.0.2.53"]
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 10)
        assert code == 0, proc.stderr.read().decode() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
