"""The DNS record index from Service and Endpoints objects (clusterdns.records), and the
answers built from it (clusterdns.answer) without sockets."""

from __future__ import annotations

from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from clusterdns.answer import Answerer, Pending, Reply
from clusterdns.records import SCHEMA_VERSION, RecordIndex, normalize_zone
from clusterdns.upstream import Forwarder, Upstream, parse_upstream, resolv_conf_nameservers
from protos.v1 import objects_pb2 as v1

ZONE = "cluster.local"
A = dns.rdatatype.A
AAAA = dns.rdatatype.AAAA
SRV = dns.rdatatype.SRV
PTR = dns.rdatatype.PTR
CNAME = dns.rdatatype.CNAME
TXT = dns.rdatatype.TXT
SOA = dns.rdatatype.SOA
ANY = dns.rdatatype.ANY
NOERROR = dns.rcode.NOERROR
NXDOMAIN = dns.rcode.NXDOMAIN


def service(name: str, namespace: str = "default", *, cluster_ip: str = "10.96.0.10",
            ports: tuple[tuple[str, int, str], ...] = (("http", 80, "TCP"),),
            external_name: str = "", publish_not_ready: bool = False) -> v1.Service:
    svc = v1.Service(metadata=v1.ObjectMeta(name=name, namespace=namespace))
    if external_name:
        svc.spec.type = "ExternalName"
        svc.spec.external_name = external_name
    else:
        svc.spec.type = "ClusterIP"
        svc.spec.cluster_ip = cluster_ip
        if cluster_ip != "None":
            svc.spec.cluster_ips.append(cluster_ip)
    for port_name, port, protocol in ports:
        svc.spec.ports.add(name=port_name, port=port, protocol=protocol)
    svc.spec.publish_not_ready_addresses = publish_not_ready
    return svc


def endpoints(name: str, namespace: str = "default", *,
              ready: tuple[tuple[str, str], ...] = (), not_ready: tuple[str, ...] = (),
              ports: tuple[tuple[str, int, str], ...] = (("http", 8080, "TCP"),)
              ) -> v1.Endpoints:
    """Endpoints with one subset: ``ready`` as (ip, hostname)."""
    ep = v1.Endpoints(metadata=v1.ObjectMeta(name=name, namespace=namespace))
    subset = ep.subsets.add()
    for ip, hostname in ready:
        subset.addresses.add(ip=ip, hostname=hostname)
    for ip in not_ready:
        subset.not_ready_addresses.add(ip=ip)
    for port_name, port, protocol in ports:
        subset.ports.add(name=port_name, port=port, protocol=protocol)
    return ep


def lookup(index: RecordIndex, name: str, rdtype: dns.rdatatype.RdataType = A
           ) -> tuple[dns.rcode.Rcode, list[str]]:
    """(rcode, answer records as text, one per record, owner first)."""
    found = index.lookup(dns.name.from_text(name), rdtype)
    assert not found.forward, f"{name} was forwarded"
    records = [f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rdata}"
               for rrset in found.answer for rdata in rrset]
    return found.rcode, records


def index_with(*objects: tuple[v1.Service, v1.Endpoints | None]) -> RecordIndex:
    index = RecordIndex(ZONE, ttl=5)
    for svc, eps in objects:
        index.set_service(f"{svc.metadata.namespace}/{svc.metadata.name}", svc, eps)
    return index


# ------------------------------------------------------------------ services with a ClusterIP


def test_a_service_with_a_cluster_ip_has_an_a_record_srv_per_named_port_and_ptr() -> None:
    svc = service("web", ports=(("http", 80, "TCP"), ("dns", 53, "UDP"), ("", 81, "TCP")))
    index = index_with((svc, None))
    assert lookup(index, "web.default.svc.cluster.local.") == (
        NOERROR, ["web.default.svc.cluster.local. A 10.96.0.10"])
    assert lookup(index, "_http._tcp.web.default.svc.cluster.local.", SRV) == (
        NOERROR, ["_http._tcp.web.default.svc.cluster.local. SRV 0 100 80"
                  " web.default.svc.cluster.local."])
    assert lookup(index, "_dns._udp.web.default.svc.cluster.local.", SRV)[1] == [
        "_dns._udp.web.default.svc.cluster.local. SRV 0 100 53 web.default.svc.cluster.local."]
    # The SRV answer carries the target's address in the additional section.
    found = index.lookup(dns.name.from_text("_http._tcp.web.default.svc.cluster.local."), SRV)
    assert [str(r) for r in found.additional] == ["web.default.svc.cluster.local. 5 IN A"
                                                  " 10.96.0.10"]
    assert lookup(index, "10.0.96.10.in-addr.arpa.", PTR) == (
        NOERROR, ["10.0.96.10.in-addr.arpa. PTR web.default.svc.cluster.local."])
    # Unnamed ports have no SRV record; the wrong protocol names nothing.
    assert lookup(index, "_http._udp.web.default.svc.cluster.local.", SRV)[0] == NXDOMAIN


def test_records_carry_the_configured_ttl() -> None:
    index = RecordIndex(ZONE, ttl=30)
    index.set_service("default/web", service("web"), None)
    found = index.lookup(dns.name.from_text("web.default.svc.cluster.local."), A)
    assert found.answer[0].ttl == 30


def test_an_ipv6_cluster_ip_is_an_aaaa_record_and_an_ip6_arpa_ptr() -> None:
    index = index_with((service("v6", cluster_ip="fd00::a"), None))
    assert lookup(index, "v6.default.svc.cluster.local.", AAAA)[1] == [
        "v6.default.svc.cluster.local. AAAA fd00::a"]
    assert lookup(index, "v6.default.svc.cluster.local.", A) == (NOERROR, [])
    reverse = "a.0.0.0." + "0." * 24 + "0.0.d.f.ip6.arpa."
    assert lookup(index, reverse, PTR)[1] == [f"{reverse} PTR v6.default.svc.cluster.local."]


# ------------------------------------------------------------------ headless services


def test_a_headless_service_answers_every_ready_endpoint() -> None:
    svc = service("db", cluster_ip="None", ports=(("pg", 5432, "TCP"),))
    eps = endpoints("db", ready=(("10.244.1.5", "db-0"), ("10.244.2.7", "")),
                    not_ready=("10.244.3.9",), ports=(("pg", 5432, "TCP"),))
    index = index_with((svc, eps))
    rcode, records = lookup(index, "db.default.svc.cluster.local.")
    assert rcode == NOERROR
    assert sorted(records) == ["db.default.svc.cluster.local. A 10.244.1.5",
                               "db.default.svc.cluster.local. A 10.244.2.7"]
    # A hostname (a StatefulSet pod's) names its address; others go by their dashed IP.
    assert lookup(index, "db-0.db.default.svc.cluster.local.")[1] == [
        "db-0.db.default.svc.cluster.local. A 10.244.1.5"]
    assert lookup(index, "10-244-2-7.db.default.svc.cluster.local.")[1] == [
        "10-244-2-7.db.default.svc.cluster.local. A 10.244.2.7"]
    # Not-ready addresses are not served.
    assert lookup(index, "10-244-3-9.db.default.svc.cluster.local.")[0] == NXDOMAIN
    assert sorted(lookup(index, "_pg._tcp.db.default.svc.cluster.local.", SRV)[1]) == [
        "_pg._tcp.db.default.svc.cluster.local. SRV 0 100 5432"
        " 10-244-2-7.db.default.svc.cluster.local.",
        "_pg._tcp.db.default.svc.cluster.local. SRV 0 100 5432"
        " db-0.db.default.svc.cluster.local.",
    ]
    assert lookup(index, "5.1.244.10.in-addr.arpa.", PTR)[1] == [
        "5.1.244.10.in-addr.arpa. PTR db-0.db.default.svc.cluster.local."]


def test_publish_not_ready_addresses_serves_not_ready_endpoints_too() -> None:
    svc = service("db", cluster_ip="None", publish_not_ready=True)
    eps = endpoints("db", ready=(("10.244.1.5", ""),), not_ready=("10.244.3.9",))
    records = lookup(index_with((svc, eps)), "db.default.svc.cluster.local.")[1]
    assert sorted(records) == ["db.default.svc.cluster.local. A 10.244.1.5",
                               "db.default.svc.cluster.local. A 10.244.3.9"]


def test_a_headless_service_without_ready_endpoints_does_not_exist() -> None:
    svc = service("db", cluster_ip="None")
    for eps in (None, endpoints("db", not_ready=("10.244.3.9",))):
        assert lookup(index_with((svc, eps)), "db.default.svc.cluster.local.")[0] == NXDOMAIN


def test_an_address_in_two_subsets_is_answered_once() -> None:
    svc = service("db", cluster_ip="None")
    eps = endpoints("db", ready=(("10.244.1.5", "db-0"),))
    second = eps.subsets.add()
    second.addresses.add(ip="10.244.1.5", hostname="db-0")
    second.ports.add(name="metrics", port=9090, protocol="TCP")
    assert lookup(index_with((svc, eps)), "db.default.svc.cluster.local.")[1] == [
        "db.default.svc.cluster.local. A 10.244.1.5"]


# ------------------------------------------------------------------ ExternalName, pods, version


def test_an_external_name_service_is_a_cname_that_the_answer_follows() -> None:
    index = index_with((service("ext", external_name="www.example.com"), None),
                       (service("alias", external_name="web.default.svc.cluster.local"), None),
                       (service("web"), None))
    found = index.lookup(dns.name.from_text("ext.default.svc.cluster.local."), A)
    assert [str(r) for r in found.answer] == [
        "ext.default.svc.cluster.local. 5 IN CNAME www.example.com."]
    assert found.chase == dns.name.from_text("www.example.com.")  # resolved upstream
    assert lookup(index, "ext.default.svc.cluster.local.", CNAME)[1] == [
        "ext.default.svc.cluster.local. CNAME www.example.com."]
    # A target inside the cluster domain is followed in the index.
    alias = index.lookup(dns.name.from_text("alias.default.svc.cluster.local."), A)
    assert alias.chase is None
    assert [str(r) for r in alias.answer] == [
        "alias.default.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local.",
        "web.default.svc.cluster.local. 5 IN A 10.96.0.10"]


def test_external_names_that_loop_end() -> None:
    index = index_with(
        (service("a", external_name="b.default.svc.cluster.local"), None),
        (service("b", external_name="a.default.svc.cluster.local"), None))
    found = index.lookup(dns.name.from_text("a.default.svc.cluster.local."), A)
    assert found.rcode == NOERROR and len(found.answer) > 2


def test_pod_names_answer_the_address_they_spell() -> None:
    index = RecordIndex(ZONE)
    assert lookup(index, "10-244-1-5.default.pod.cluster.local.") == (
        NOERROR, ["10-244-1-5.default.pod.cluster.local. A 10.244.1.5"])
    assert lookup(index, "fd00--5.default.pod.cluster.local.", AAAA)[1] == [
        "fd00--5.default.pod.cluster.local. AAAA fd00::5"]
    assert lookup(index, "10-244-1-5.default.pod.cluster.local.", AAAA) == (NOERROR, [])
    assert lookup(index, "10-244-1-500.default.pod.cluster.local.")[0] == NXDOMAIN
    assert lookup(index, "web.default.pod.cluster.local.")[0] == NXDOMAIN
    assert lookup(index, "default.pod.cluster.local.") == (NOERROR, [])


def test_the_schema_version_and_the_zone_soa() -> None:
    index = RecordIndex(ZONE)
    assert lookup(index, "dns-version.cluster.local.", TXT)[1] == [
        f'dns-version.cluster.local. TXT "{SCHEMA_VERSION}"']
    rcode, records = lookup(index, "cluster.local.", SOA)
    assert rcode == NOERROR
    assert records[0].startswith("cluster.local. SOA ns.dns.cluster.local."
                                 " hostmaster.cluster.local. ")
    assert records[0].endswith(" 7200 1800 86400 5")


# ------------------------------------------------------------------ names and negative answers


def test_names_compare_case_insensitively_and_answer_as_asked() -> None:
    index = index_with((service("web"), None))
    assert lookup(index, "WeB.DeFault.SVC.Cluster.Local.") == (
        NOERROR, ["WeB.DeFault.SVC.Cluster.Local. A 10.96.0.10"])
    assert lookup(index, "_HTTP._TCP.web.default.svc.CLUSTER.local.", SRV)[0] == NOERROR


def test_unknown_names_in_the_zone_are_nxdomain_with_the_soa() -> None:
    index = index_with((service("web"), None))
    for name in ("nope.default.svc.cluster.local.", "web.other.svc.cluster.local.",
                 "x.web.default.svc.cluster.local.", "nothing.cluster.local.",
                 # What a search list makes of names (ndots:5): ours to refuse, not upstream's.
                 "web.default.svc.cluster.local.default.svc.cluster.local.",
                 "www.example.com.default.svc.cluster.local."):
        found = index.lookup(dns.name.from_text(name), A)
        assert (found.rcode, found.answer, found.forward) == (NXDOMAIN, [], False), name
        assert [r.rdtype for r in found.authority] == [SOA], name


def test_names_that_exist_without_the_type_asked_are_nodata() -> None:
    index = index_with((service("web"), None),
                       (service("db", cluster_ip="None"),
                        endpoints("db", ready=(("10.244.1.5", "db-0"),))))
    for name, rdtype in (("web.default.svc.cluster.local.", AAAA),
                         ("web.default.svc.cluster.local.", TXT),
                         ("default.svc.cluster.local.", A),  # exists: names below it do
                         ("svc.cluster.local.", A), ("cluster.local.", A),
                         ("_tcp.web.default.svc.cluster.local.", A)):
        found = index.lookup(dns.name.from_text(name), rdtype)
        assert (found.rcode, found.answer) == (NOERROR, []), name
        assert [r.rdtype for r in found.authority] == [SOA], name


def test_any_answers_every_type_of_the_name() -> None:
    index = index_with((service("web"), None))
    assert lookup(index, "web.default.svc.cluster.local.", ANY)[1] == [
        "web.default.svc.cluster.local. A 10.96.0.10"]


def test_names_outside_the_zone_and_unknown_reverse_names_are_forwarded() -> None:
    index = index_with((service("web"), None))
    for name, rdtype in (("www.example.com.", A), ("web.default.", A), ("local.", SOA),
                         ("1.1.168.192.in-addr.arpa.", PTR),
                         ("10.0.96.10.in-addr.arpa.", A)):
        assert index.lookup(dns.name.from_text(name), rdtype).forward, name


# ------------------------------------------------------------------ updates


def test_changes_replace_a_services_records_and_deletion_removes_them() -> None:
    index = index_with((service("web"), None))
    generation = index.generation
    # The same records again: no change (answers cached from them stay good).
    assert not index.set_service("default/web", service("web"), None)
    assert index.generation == generation
    assert index.set_service("default/web", service("web", cluster_ip="10.96.0.11"), None)
    assert lookup(index, "web.default.svc.cluster.local.")[1] == [
        "web.default.svc.cluster.local. A 10.96.0.11"]
    assert index.lookup(dns.name.from_text("10.0.96.10.in-addr.arpa."), PTR).forward
    assert index.set_service("default/web", None, None)
    assert lookup(index, "web.default.svc.cluster.local.")[0] == NXDOMAIN
    # The namespace's name went with its last Service.
    assert lookup(index, "default.svc.cluster.local.")[0] == NXDOMAIN
    assert lookup(index, "svc.cluster.local.")[0] == NOERROR
    assert index.services() == []


def test_endpoint_changes_update_a_headless_service() -> None:
    svc = service("db", cluster_ip="None")
    index = index_with((svc, endpoints("db", ready=(("10.244.1.5", "db-0"),))))
    index.set_service("default/db", svc, endpoints("db", ready=(("10.244.1.6", "db-0"),)))
    assert lookup(index, "db-0.db.default.svc.cluster.local.")[1] == [
        "db-0.db.default.svc.cluster.local. A 10.244.1.6"]
    assert index.lookup(dns.name.from_text("5.1.244.10.in-addr.arpa."), PTR).forward


def test_another_cluster_domain() -> None:
    index = RecordIndex("Corp.Example.")
    index.set_service("default/web", service("web"), None)
    assert lookup(index, "web.default.svc.corp.example.")[1] == [
        "web.default.svc.corp.example. A 10.96.0.10"]
    assert index.lookup(dns.name.from_text("web.default.svc.cluster.local."), A).forward


@pytest.mark.parametrize("zone, rule", [("", "empty"), ("a..b", "1 to 63"),
                                        ("clu_ster.local", "a-z, 0-9"),
                                        ("-x.local", "start")])
def test_a_bad_cluster_domain_is_refused_with_the_rule(zone: str, rule: str) -> None:
    with pytest.raises(ValueError, match=rule):
        normalize_zone(zone)


# ------------------------------------------------------------------ answers without sockets


def answerer(index: RecordIndex, synced: bool = True) -> Answerer:
    return Answerer(index, Forwarder([], 1.0), lambda: synced)


def ask(a: Answerer, name: str, rdtype: str = "A", tcp: bool = False,
        query_id: int = 1) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    query.id = query_id
    result = a.answer(query.to_wire(), tcp)
    assert isinstance(result, Reply), result
    response = dns.message.from_wire(result.wire)
    assert response.id == query_id
    return response


def test_answers_are_authoritative_and_cached_until_the_records_change() -> None:
    index = index_with((service("web"), None))
    a = answerer(index)
    first = ask(a, "web.default.svc.cluster.local.", query_id=7)
    assert first.flags & dns.flags.AA and first.flags & dns.flags.RA
    assert len(a.udp_cache) == 1
    # The same question under another ID is answered from the cache, with its own ID.
    again = ask(a, "web.default.svc.cluster.local.", query_id=4242)
    assert again.answer == first.answer
    index.set_service("default/web", service("web", cluster_ip="10.96.0.11"), None)
    a.invalidate()
    assert str(ask(a, "web.default.svc.cluster.local.").answer[0][0]) == "10.96.0.11"


def test_negative_answers_carry_the_soa() -> None:
    a = answerer(index_with((service("web"), None)))
    response = ask(a, "nope.default.svc.cluster.local.")
    assert response.rcode() == NXDOMAIN
    assert [r.rdtype for r in response.authority] == [SOA]


def test_cluster_names_are_servfail_until_the_caches_are_listed() -> None:
    a = answerer(index_with((service("web"), None)), synced=False)
    assert ask(a, "web.default.svc.cluster.local.").rcode() == dns.rcode.SERVFAIL
    assert a.udp_cache == {}


def test_other_names_wait_on_the_upstreams() -> None:
    a = answerer(RecordIndex(ZONE))
    query = dns.message.make_query("www.example.com.", "A")
    result = a.answer(query.to_wire(), False)
    assert isinstance(result, Pending) and result.partial is None


def test_a_large_answer_over_udp_is_truncated_and_whole_over_tcp() -> None:
    ips = tuple((f"10.244.{i // 250}.{i % 250 + 1}", "") for i in range(100))
    index = index_with((service("big", cluster_ip="None"), endpoints("big", ready=ips)))
    a = answerer(index)
    udp = ask(a, "big.default.svc.cluster.local.")
    assert udp.flags & dns.flags.TC
    tcp = ask(a, "big.default.svc.cluster.local.", tcp=True)
    assert not tcp.flags & dns.flags.TC and len(tcp.answer[0]) == 100


def test_malformed_queries_are_formerr_and_responses_are_dropped() -> None:
    a = answerer(RecordIndex(ZONE))
    garbage = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff\xff"
    result = a.answer(garbage, False)
    assert isinstance(result, Reply)
    response = dns.message.from_wire(result.wire)
    assert (response.id, response.rcode()) == (0x1234, dns.rcode.FORMERR)
    reply = dns.message.make_response(dns.message.make_query("x.cluster.local.", "A"))
    assert a.answer(reply.to_wire(), False) is None
    assert a.answer(b"\x00", False) is None


# ------------------------------------------------------------------ upstream configuration


def test_upstreams_parse_with_and_without_ports() -> None:
    assert parse_upstream("10.0.0.2") == Upstream("10.0.0.2", 53)
    assert parse_upstream("127.0.0.1:5353") == Upstream("127.0.0.1", 5353)
    assert parse_upstream("[::1]:5353") == Upstream("::1", 5353)
    assert parse_upstream("fd00::2") == Upstream("fd00::2", 53)
    for bad, rule in (("dns.google", "IP address"), ("10.0.0.2:0", "1 to 65535"),
                      ("10.0.0.2:x", "1 to 65535"), ("[::1", r"\[IPv6\]:PORT")):
        with pytest.raises(ValueError, match=rule):
            parse_upstream(bad)


def test_resolv_conf_nameservers(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text("# comment\nsearch example.com\nnameserver 10.0.0.2\n"
                    "nameserver fe80::1%eth0\nnameserver not-an-ip\noptions ndots:5\n")
    assert resolv_conf_nameservers(path) == [Upstream("10.0.0.2"), Upstream("fe80::1")]
