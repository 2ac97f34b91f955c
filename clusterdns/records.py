"""The cluster domain's records, kept in memory from Services and Endpoints.

As the Kubernetes DNS specification (schema 1.0.1) and CoreDNS' kubernetes plugin define
them, with ``<zone>`` the cluster domain (cluster.local):

- ``dns-version.<zone>`` TXT: the schema version;
- a Service with a ClusterIP: A (AAAA for an IPv6 one) ``<svc>.<ns>.svc.<zone>`` -> each
  ClusterIP, SRV ``_<port>._<proto>.<svc>.<ns>.svc.<zone>`` for each named port (priority 0,
  weight 100, the Service port, target the Service's name), PTR from each ClusterIP;
- a headless Service (clusterIP None): A/AAAA ``<svc>.<ns>.svc.<zone>`` -> each ready
  endpoint address (none: the name does not exist), A/AAAA
  ``<hostname>.<svc>.<ns>.svc.<zone>`` for each, where the hostname is the address'
  ``hostname`` (a pod whose spec.subdomain names the Service: StatefulSet pods) or else its
  IP with dashes (``10-244-1-5``), SRV per named endpoint port and address (the endpoint's
  port, target the address' name), PTR from each address to its name. Not-ready addresses
  count when the Service sets publishNotReadyAddresses;
- an ExternalName Service: CNAME ``<svc>.<ns>.svc.<zone>`` -> the external name; a query of
  another type answers the CNAME and the target's records (resolved in the index when the
  target is in the zone, else upstream: ``Lookup.chase``);
- ``<a>-<b>-<c>-<d>.<ns>.pod.<zone>`` A -> a.b.c.d for any such name (CoreDNS'
  ``pods insecure``, kube-dns' behaviour, which the specification still requires).

Names compare case-insensitively; the answer's owner is the question's name as asked. A name
under the zone that has no record is NXDOMAIN, with the zone's SOA in the authority section; a
name that exists (or has names below it, like ``<ns>.svc.<zone>``) without records of the type
asked is NODATA (NOERROR, no answer, the SOA). Names outside the zone, and reverse names of
addresses that are not a Service's, are not ours (``Lookup.forward``): they go upstream.

Records are built per Service when its Service or Endpoints object changes (never per query)
and merged into one map of name -> type -> rdata.
"""

from __future__ import annotations

import ipaddress
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdatatype import RdataType
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.SOA import SOA
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA
from dns.rdtypes.IN.SRV import SRV

from protos.v1 import objects_pb2 as v1

SCHEMA_VERSION = "1.0.1"
"""The version of the Kubernetes DNS schema served at dns-version.<zone>."""
DEFAULT_TTL = 5
"""Seconds clients may keep an answer (CoreDNS' kubernetes plugin: 5)."""
SRV_PRIORITY = 0
SRV_WEIGHT = 100
"""SRV priority and weight: the specification leaves them open; every target is equal."""
MAX_CHASE = 8
"""CNAMEs followed inside the zone before the answer stops (a loop of ExternalNames)."""

IN = dns.rdataclass.IN
Record = tuple[str, RdataType, dns.rdata.Rdata]
"""(owner name in lowercase with the final dot, type, data)."""


def normalize_zone(zone: str) -> str:
    """The cluster domain in lowercase with the final dot; ValueError naming the rule broken."""
    text = zone.strip().lower().rstrip(".")
    if not text:
        raise ValueError("must not be empty")
    for label in text.split("."):
        if not label or len(label) > 63:
            raise ValueError(f"label {label!r} must be 1 to 63 characters")
        if not all(c.isascii() and (c.isalnum() or c == "-") for c in label) or (
                label.startswith("-") or label.endswith("-")):
            raise ValueError(f"label {label!r} must consist of a-z, 0-9 and '-', and start"
                             " and end with a letter or digit")
    return text + "."


def dashed(ip: str) -> str:
    """An address as one DNS label (10.0.0.1 -> 10-0-0-1, fd00::1 -> fd00--1)."""
    return ip.replace(".", "-").replace(":", "-")


def undashed(label: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a pod label names (10-0-0-1, fd00--1); None when it names none."""
    try:
        if label.count("-") == 3:
            return ipaddress.IPv4Address(label.replace("-", "."))
        return ipaddress.IPv6Address(label.replace("-", ":"))
    except ValueError:
        return None


def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(ip)
    except ValueError:
        return None


def _address_record(name: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Record:
    if ip.version == 4:
        return (name, RdataType.A, A(IN, RdataType.A, str(ip)))  # type: ignore[no-untyped-call]
    return (name, RdataType.AAAA,
            AAAA(IN, RdataType.AAAA, str(ip)))  # type: ignore[no-untyped-call]


def _ptr(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, target: str) -> Record:
    return (ip.reverse_pointer.lower() + ".", RdataType.PTR,
            PTR(IN, RdataType.PTR, dns.name.from_text(target)))  # type: ignore[no-untyped-call]


def _srv(name: str, port: int, target: str) -> Record:
    rdata = SRV(IN, RdataType.SRV, SRV_PRIORITY, SRV_WEIGHT, port,  # type: ignore[no-untyped-call]
                dns.name.from_text(target))
    return (name, RdataType.SRV, rdata)


def _srv_name(port_name: str, protocol: str, base: str) -> str:
    return f"_{port_name.lower()}._{(protocol or 'TCP').lower()}.{base}"


def service_records(svc: v1.Service, endpoints: v1.Endpoints | None, zone: str) -> list[Record]:
    """Every record one Service (with its Endpoints) contributes, without duplicates."""
    spec = svc.spec
    base = f"{svc.metadata.name}.{svc.metadata.namespace}.svc.{zone}".lower()
    records: list[Record] = []
    if spec.type == "ExternalName":
        if spec.external_name:
            target = dns.name.from_text(spec.external_name.lower())
            cname = CNAME(IN, RdataType.CNAME, target)  # type: ignore[no-untyped-call]
            records.append((base, RdataType.CNAME, cname))
        return records
    if spec.cluster_ip == "None":
        records += _headless_records(spec, endpoints, base)
    else:
        ips = [ip for ip in map(_address, spec.cluster_ips or [spec.cluster_ip])
               if ip is not None]
        for ip in ips:
            records.append(_address_record(base, ip))
            records.append(_ptr(ip, base))
        if ips:
            for port in spec.ports:
                if port.name:
                    records.append(_srv(_srv_name(port.name, port.protocol, base), port.port,
                                        base))
    return list(dict.fromkeys(records))


def _headless_records(
    spec: v1.ServiceSpec, endpoints: v1.Endpoints | None, base: str
) -> Iterator[Record]:
    if endpoints is None:
        return
    for subset in endpoints.subsets:
        addresses = list(subset.addresses)
        if spec.publish_not_ready_addresses:
            addresses += subset.not_ready_addresses
        for address in addresses:
            ip = _address(address.ip)
            if ip is None:
                continue
            host = f"{(address.hostname or dashed(str(ip))).lower()}.{base}"
            yield _address_record(base, ip)
            yield _address_record(host, ip)
            yield _ptr(ip, host)
            for port in subset.ports:
                if port.name:
                    yield _srv(_srv_name(port.name, port.protocol, base), port.port, host)


@dataclass
class Lookup:
    """What the index says about one question."""

    rcode: dns.rcode.Rcode = dns.rcode.NOERROR
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)
    forward: bool = False
    """Not a name of ours: the upstream resolvers answer it."""
    chase: dns.name.Name | None = None
    """The answer ends in a CNAME to a name outside the zone: its records of the type asked
    come from upstream and follow the answer."""


class RecordIndex:
    """The cluster domain's records by name and type, updated per Service."""

    def __init__(self, zone: str = "cluster.local", ttl: int = DEFAULT_TTL) -> None:
        self.zone = normalize_zone(zone)
        self.ttl = ttl
        self.generation = 0
        """Increases on every change of the records (answers built before are stale)."""
        self._suffix = "." + self.zone
        self._zone_name = dns.name.from_text(self.zone)
        self._by_service: dict[str, list[Record]] = {}
        self._records: dict[str, dict[RdataType, list[dns.rdata.Rdata]]] = {}
        self._nonterminals: Counter[str] = Counter()
        """Names in the zone that exist because names below them do (empty non-terminals),
        counted per record below them."""
        self._serial = int(time.time())
        fixed = (f"svc{self._suffix}", f"pod{self._suffix}")
        self._nonterminals.update(fixed)
        version = TXT(IN, RdataType.TXT, [SCHEMA_VERSION.encode()])
        self._records[f"dns-version{self._suffix}"] = {RdataType.TXT: [version]}

    # ------------------------------------------------------------------ updates

    def set_service(
        self, key: str, svc: v1.Service | None, endpoints: v1.Endpoints | None
    ) -> bool:
        """Makes Service ``key``'s records match ``svc`` and ``endpoints`` (no Service: none);
        True when that changed any record."""
        new = service_records(svc, endpoints, self.zone) if svc is not None else []
        old = self._by_service.get(key, [])
        if new == old:
            return False
        for record in old:
            self._remove(record)
        for record in new:
            self._add(record)
        if new:
            self._by_service[key] = new
        else:
            self._by_service.pop(key, None)
        self.generation += 1
        self._serial = max(self._serial + 1, int(time.time()))
        return True

    def services(self) -> list[str]:
        """Keys of the Services that have records."""
        return sorted(self._by_service)

    def _ancestors(self, name: str) -> Iterator[str]:
        """The names strictly between ``name`` and the zone apex (names in the zone only)."""
        if not name.endswith(self._suffix):
            return
        labels = name[: -len(self._suffix)].split(".")
        for i in range(1, len(labels)):
            yield ".".join(labels[i:]) + self._suffix

    def _add(self, record: Record) -> None:
        name, rdtype, rdata = record
        self._records.setdefault(name, {}).setdefault(rdtype, []).append(rdata)
        self._nonterminals.update(self._ancestors(name))

    def _remove(self, record: Record) -> None:
        name, rdtype, rdata = record
        by_type = self._records.get(name)
        if by_type is not None and rdata in by_type.get(rdtype, ()):
            by_type[rdtype].remove(rdata)
            if not by_type[rdtype]:
                del by_type[rdtype]
            if not by_type:
                del self._records[name]
        self._nonterminals.subtract(self._ancestors(name))
        for ancestor in self._ancestors(name):
            if self._nonterminals[ancestor] <= 0:
                del self._nonterminals[ancestor]

    # ------------------------------------------------------------------ queries

    def in_zone(self, name: dns.name.Name) -> bool:
        """Whether ``name`` is the cluster domain or below it."""
        return name.is_subdomain(self._zone_name)

    def soa(self) -> dns.rrset.RRset:
        """The zone's SOA (CoreDNS' shape), its minimum the record TTL."""
        rdata = SOA(IN, RdataType.SOA,  # type: ignore[no-untyped-call]
                    dns.name.from_text("ns.dns" + self._suffix),
                    dns.name.from_text("hostmaster" + self._suffix), self._serial,
                    7200, 1800, 86400, self.ttl)
        return dns.rrset.from_rdata_list(self._zone_name, self.ttl, [rdata])

    def lookup(self, qname: dns.name.Name, rdtype: RdataType) -> Lookup:
        """The records answering (qname, rdtype); see the module docstring."""
        key = qname.to_text().lower()
        if not (key == self.zone or key.endswith(self._suffix)):
            by_type = self._records.get(key)
            if rdtype == RdataType.PTR and by_type and RdataType.PTR in by_type:
                return Lookup(answer=[self._rrset(qname, RdataType.PTR, by_type)])
            return Lookup(forward=True)
        result = Lookup()
        self._answer(qname, key, rdtype, result, MAX_CHASE)
        if result.rcode != dns.rcode.NOERROR or not result.answer:
            result.authority.append(self.soa())
        return result

    def _answer(
        self, qname: dns.name.Name, key: str, rdtype: RdataType, result: Lookup, depth: int
    ) -> None:
        """Adds the answer of (qname, rdtype) inside the zone to ``result``."""
        if key == self.zone:
            if rdtype in (RdataType.SOA, RdataType.ANY):
                result.answer.append(self.soa())
            return
        by_type = self._records.get(key)
        if by_type:
            self._from_records(qname, rdtype, by_type, result, depth)
            return
        pod = self._pod_address(key)
        if pod is not None:
            wanted = RdataType.A if pod.version == 4 else RdataType.AAAA
            if rdtype in (wanted, RdataType.ANY):
                rdata = _address_record(key, pod)[2]
                result.answer.append(dns.rrset.from_rdata_list(qname, self.ttl, [rdata]))
            return
        if key in self._nonterminals or self._is_pod_namespace(key):
            return  # NODATA
        if not result.answer:
            result.rcode = dns.rcode.NXDOMAIN

    def _from_records(
        self, qname: dns.name.Name, rdtype: RdataType,
        by_type: dict[RdataType, list[dns.rdata.Rdata]], result: Lookup, depth: int,
    ) -> None:
        if rdtype == RdataType.ANY:
            result.answer += [self._rrset(qname, t, by_type) for t in sorted(by_type)]
            return
        if rdtype in by_type:
            result.answer.append(self._rrset(qname, rdtype, by_type))
            if rdtype == RdataType.SRV:
                self._srv_additional(by_type[rdtype], result)
            return
        if RdataType.CNAME in by_type:
            result.answer.append(self._rrset(qname, RdataType.CNAME, by_type))
            target: dns.name.Name = by_type[RdataType.CNAME][0].target  # type: ignore[attr-defined]
            if not self.in_zone(target):
                result.chase = target
            elif depth > 0:
                self._answer(target, target.to_text().lower(), rdtype, result, depth - 1)

    def _srv_additional(self, rdatas: Iterable[dns.rdata.Rdata], result: Lookup) -> None:
        seen: set[str] = set()
        for srv in rdatas:
            target: dns.name.Name = srv.target  # type: ignore[attr-defined]
            key = target.to_text().lower()
            if key in seen:
                continue
            seen.add(key)
            by_type = self._records.get(key, {})
            for rdtype in (RdataType.A, RdataType.AAAA):
                if rdtype in by_type:
                    result.additional.append(self._rrset(target, rdtype, by_type))

    def _rrset(
        self, owner: dns.name.Name, rdtype: RdataType,
        by_type: dict[RdataType, list[dns.rdata.Rdata]],
    ) -> dns.rrset.RRset:
        return dns.rrset.from_rdata_list(owner, self.ttl, by_type[rdtype])

    def _pod_address(self, key: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The address of ``<a-b-c-d>.<ns>.pod.<zone>`` (None for any other name)."""
        labels = key[: -len(self._suffix)].split(".")
        if len(labels) != 3 or labels[2] != "pod":
            return None
        return undashed(labels[0])

    def _is_pod_namespace(self, key: str) -> bool:
        """``<ns>.pod.<zone>``: exists, as every pod name below it could."""
        labels = key[: -len(self._suffix)].split(".")
        return len(labels) == 2 and labels[1] == "pod"
