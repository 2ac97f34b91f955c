"""Each pod's resolver configuration, formed as Kubernetes' kubelet forms it (its DNS
configurer): by the pod's dnsPolicy from the cluster DNS (``--cluster-dns``,
``--cluster-domain``) and the node's resolver configuration (``--resolv-conf``), with the pod's
dnsConfig merged on top and the result trimmed to libc's limits.

- ClusterFirst (and ClusterFirstWithHostNet): the cluster DNS servers only; the search list
  ``<namespace>.svc.<domain> svc.<domain> <domain>`` then the node's; ``ndots:5``. Without
  cluster DNS, the Default policy instead (with a warning). ClusterFirst on a hostNetwork pod
  is Default too.
- Default: the node's resolv.conf.
- None: the pod's dnsConfig alone.

The functions are pure but for :func:`read_resolv_conf` and :func:`dns_for_pod`, which read
the node's file.
"""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from kubelet.runtime.interface import DnsConfig, RuntimeError_
from kubelet.settings import KubeletSettings
from kubelite.api.validation.core_pod import (
    MAX_DNS_NAMESERVERS,
    MAX_DNS_SEARCH_LIST_CHARS,
    MAX_DNS_SEARCH_PATHS,
)
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

CLUSTER_FIRST_OPTIONS = ("ndots:5",)
"""The options of a pod resolving through the cluster DNS."""
MAX_SEARCH_DOMAIN_LENGTH = 253
"""A longer search domain aborts some resolvers (glibc 2.28): it is left out."""
MAX_RESOLV_CONF_BYTES = 10 << 20
MISSING_CLUSTER_DNS = ('kubelet does not have ClusterDNS IP configured and cannot create Pod'
                       ' using "ClusterFirst" policy. Falling back to "Default" policy.')


class ResolvConfError(ValueError):
    """The node's resolver configuration cannot be read or makes no sense."""


@dataclass(frozen=True)
class PodDns:
    """A pod's resolver configuration and what was changed to form it."""

    config: DnsConfig
    warnings: tuple[str, ...] = ()
    """Why the pod does not get what it asked for (as the kubelet's DNSConfigForming and
    MissingClusterDNS events say)."""


# -- the node's resolv.conf ------------------------------------------------------------------


def parse_resolv_conf(text: str) -> DnsConfig:
    """resolv.conf as the kubelet reads it: nameserver lines accumulate, the last search line
    and the last options line win; search domains lose a trailing dot."""
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith(("#", ";")):
            continue
        if fields[0] == "nameserver":
            if len(fields) < 2:
                raise ResolvConfError(f"line {number}: nameserver without an address")
            nameservers.append(fields[1])
        elif fields[0] == "search":
            searches = [s.removesuffix(".") for s in fields[1:]]
        elif fields[0] == "options":
            options = fields[1:]
    return DnsConfig(tuple(nameservers), tuple(searches), tuple(options))


_read_cache: dict[str, tuple[tuple[int, int, int], DnsConfig]] = {}


def read_resolv_conf(path: str) -> DnsConfig | None:
    """The node's resolver configuration at ``path`` (read again only when the file changes);
    None for an empty path (the kubelet's ``--resolv-conf=""``: no node configuration)."""
    if not path:
        return None
    try:
        st = os.stat(path)
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = _read_cache.get(path)
        if cached is not None and cached[0] == signature:
            return cached[1]
        with open(path, "rb") as f:
            data = f.read(MAX_RESOLV_CONF_BYTES + 1)
    except OSError as e:
        raise ResolvConfError(f"{path}: {e.strerror or e}") from e
    if len(data) > MAX_RESOLV_CONF_BYTES:
        raise ResolvConfError(f"{path}: larger than {MAX_RESOLV_CONF_BYTES} bytes")
    try:
        config = parse_resolv_conf(data.decode("utf-8", errors="replace"))
    except ResolvConfError as e:
        raise ResolvConfError(f"{path}: {e}") from None
    _read_cache[path] = (signature, config)
    return config


# -- a pod's configuration -------------------------------------------------------------------


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def pod_dns_type(pod: v1.Pod) -> str:
    """``cluster``, ``node`` or ``none``: where the pod's configuration starts from."""
    policy = pod.spec.dns_policy or "ClusterFirst"
    if policy == "None":
        return "none"
    if policy == "ClusterFirstWithHostNet":
        return "cluster"
    if policy == "ClusterFirst" and not pod.spec.host_network:
        return "cluster"
    # Default, and ClusterFirst on the node's network (it falls back to Default). An unknown
    # policy cannot pass validation; like the kubelet, treat it as ClusterFirst.
    return "node" if policy in ("Default", "ClusterFirst") else "cluster"


def cluster_searches(namespace: str, cluster_domain: str, node_searches: Sequence[str]
                     ) -> tuple[str, ...]:
    """``<namespace>.svc.<domain> svc.<domain> <domain>``, then the node's search domains."""
    if not cluster_domain:
        return tuple(node_searches)
    cluster = (f"{namespace}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain)
    return _unique([*cluster, *node_searches])


def merge_options(base: Sequence[str], extra: Sequence[v1.PodDNSConfigOption]
                  ) -> tuple[str, ...]:
    """``base`` options (``name[:value]``) with the pod's on top: a name given again takes the
    pod's value; new names follow, in the pod's order."""
    merged: dict[str, str] = {}
    for option in base:
        name, _, value = option.partition(":")
        merged[name] = value
    for pod_option in extra:
        merged[pod_option.name] = pod_option.value if pod_option.HasField("value") else ""
    return tuple(f"{name}:{value}" if value else name for name, value in merged.items())


def fit_limits(config: DnsConfig) -> tuple[DnsConfig, tuple[str, ...]]:
    """``config`` within libc's limits (3 nameservers, 32 search domains of at most 253
    characters, 2048 characters of search list), and what was left out."""
    warnings: list[str] = []
    nameservers = config.nameservers
    if len(nameservers) > MAX_DNS_NAMESERVERS:
        nameservers = nameservers[:MAX_DNS_NAMESERVERS]
        warnings.append("Nameserver limits were exceeded, some nameservers have been omitted,"
                        f" the applied nameserver line is: {' '.join(nameservers)}")
    searches = list(config.searches)
    exceeded = len(searches) > MAX_DNS_SEARCH_PATHS
    searches = searches[:MAX_DNS_SEARCH_PATHS]
    kept = [s for s in searches if len(s) <= MAX_SEARCH_DOMAIN_LENGTH]
    exceeded = exceeded or len(kept) != len(searches)
    # The last domains go until the line fits.
    while len(" ".join(kept)) > MAX_DNS_SEARCH_LIST_CHARS:
        kept.pop()
        exceeded = True
    if exceeded:
        warnings.append("Search Line limits were exceeded, some search paths have been omitted,"
                        f" the applied search line is: {' '.join(kept)}")
    return DnsConfig(nameservers, tuple(kept), config.options), tuple(warnings)


def pod_dns_config(pod: v1.Pod, *, cluster_dns: Sequence[str], cluster_domain: str,
                   node: DnsConfig | None, node_ip: str = "") -> PodDns:
    """The pod's resolver configuration (the kubelet's GetPodDNS). ``node``: the node's
    resolv.conf, None when the kubelet has none (then the node's policy means the resolver on
    the node itself, at ``node_ip``'s loopback address, with no search domains)."""
    warnings: list[str] = []
    kind = pod_dns_type(pod)
    base = node or DnsConfig()
    if kind == "none":
        base = DnsConfig()
    elif kind == "cluster" and cluster_dns:
        # The cluster DNS is the pod's only nameserver: it forwards what it does not serve.
        base = DnsConfig(
            nameservers=tuple(cluster_dns),
            searches=cluster_searches(pod.metadata.namespace, cluster_domain, base.searches),
            options=CLUSTER_FIRST_OPTIONS,
        )
    else:
        if kind == "cluster":
            warnings.append(MISSING_CLUSTER_DNS)
        if node is None:
            loopback = "::1" if _is_ipv6(node_ip) else "127.0.0.1"
            base = DnsConfig(nameservers=(loopback,), searches=(".",))
    if pod.spec.HasField("dns_config"):
        extra = pod.spec.dns_config
        base = DnsConfig(
            nameservers=_unique([*base.nameservers, *extra.nameservers]),
            searches=_unique([*base.searches, *extra.searches]),
            options=merge_options(base.options, extra.options),
        )
    config, limited = fit_limits(base)
    return PodDns(config, (*warnings, *limited))


def _is_ipv6(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 6
    except ValueError:
        return False


def pod_domain(pod: v1.Pod, cluster_domain: str) -> str:
    """The pod's domain, ``<subdomain>.<namespace>.svc.<cluster domain>``, when it has a
    subdomain (empty otherwise): its hostname's FQDN is ``<hostname>.<domain>``."""
    if not pod.spec.subdomain:
        return ""
    return f"{pod.spec.subdomain}.{pod.metadata.namespace}.svc.{cluster_domain}"


# -- the kubelet's use -----------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _warn_once(subject: str, message: str) -> None:
    """Logs each warning once per subject (pod workers form the configuration on every
    sync)."""
    log.warning("pod DNS configuration", subject=subject, warning=message)


def dns_for_pod(pod: v1.Pod, settings: KubeletSettings) -> DnsConfig:
    """The pod's resolver configuration on this kubelet. Raises RuntimeError_
    (CreatePodSandboxError) when the node's resolv.conf cannot be read, as the kubelet fails
    the pod's sandbox then."""
    try:
        node = read_resolv_conf(settings.resolv_conf)
    except ResolvConfError as e:
        raise RuntimeError_("CreatePodSandboxError",
                            f"cannot form the pod's DNS configuration: --resolv-conf {e}") from e
    dns = pod_dns_config(pod, cluster_dns=settings.cluster_dns,
                         cluster_domain=settings.cluster_domain, node=node,
                         node_ip=settings.address)
    subject = f"{pod.metadata.namespace}/{pod.metadata.name} ({pod.metadata.uid})"
    for warning in dns.warnings:
        # Without cluster DNS every ClusterFirst pod falls back: said once for the node.
        _warn_once(f"node {settings.node_name}" if warning == MISSING_CLUSTER_DNS else subject,
                   warning)
    return dns.config
