"""The /etc/resolv.conf and /etc/hosts a pod's containers see, written as Kubernetes writes
them: resolv.conf from the pod's DNS configuration (as containerd renders CRI's DNSConfig),
/etc/hosts as the kubelet's managed hosts file (its pod directory's ``etc-hosts``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from kubelet.runtime.interface import DnsConfig, HostAlias, PodSandboxConfig

RESOLV_CONF = "/etc/resolv.conf"
ETC_HOSTS = "/etc/hosts"
MANAGED_HOSTS_HEADER = "# Kubernetes-managed hosts file.\n"
MANAGED_HOSTS_HEADER_HOST_NETWORK = "# Kubernetes-managed hosts file (host network).\n"


def resolv_conf(dns: DnsConfig) -> str:
    """resolv.conf for ``dns``: the search line, the nameservers, the options line."""
    text = ""
    if dns.searches:
        text += f"search {' '.join(dns.searches)}\n"
    text += "".join(f"nameserver {server}\n" for server in dns.nameservers)
    if dns.options:
        text += f"options {' '.join(dns.options)}\n"
    return text


def _alias_entries(aliases: Sequence[HostAlias]) -> str:
    if not aliases:
        return ""
    lines = "".join(a.ip + "\t" + "\t".join(a.hostnames) + "\n" for a in aliases)
    return "\n# Entries added by HostAliases.\n" + lines


def managed_hosts(pod_ips: Sequence[str], hostname: str, domain: str,
                  aliases: Sequence[HostAlias] = ()) -> str:
    """A pod's own /etc/hosts: localhost, the IPv6 names, each pod IP as
    ``<hostname>.<domain> <hostname>`` (just ``<hostname>`` without a domain), its aliases."""
    text = (MANAGED_HOSTS_HEADER
            + "127.0.0.1\tlocalhost\n"
            + "::1\tlocalhost ip6-localhost ip6-loopback\n"
            + "fe00::0\tip6-localnet\n"
            + "fe00::0\tip6-mcastprefix\n"
            + "fe00::1\tip6-allnodes\n"
            + "fe00::2\tip6-allrouters\n")
    names = f"{hostname}.{domain}\t{hostname}" if domain else hostname
    text += "".join(f"{ip}\t{names}\n" for ip in pod_ips)
    return text + _alias_entries(aliases)


def node_hosts(node_hosts_text: str, aliases: Sequence[HostAlias] = ()) -> str:
    """/etc/hosts of a pod on the node's network: the node's own, then the pod's aliases."""
    return MANAGED_HOSTS_HEADER_HOST_NETWORK + node_hosts_text + _alias_entries(aliases)


def pod_hosts(config: PodSandboxConfig, pod_ip: str, node_hosts_path: str = ETC_HOSTS
              ) -> str | None:
    """The pod's /etc/hosts; None while a pod off the node's network has no IP yet (then the
    kubelet mounts none, as Kubernetes')."""
    if config.host_network:
        with open(node_hosts_path, encoding="utf-8", errors="surrogateescape") as f:
            return node_hosts(f.read(), config.host_aliases)
    if not pod_ip:
        return None
    return managed_hosts([pod_ip], config.hostname or config.name, config.domain,
                         config.host_aliases)


def write_in_place(path: str, content: str) -> None:
    """Writes ``content`` to ``path`` unless it already holds it. The file keeps its inode,
    so containers that have it bind-mounted see the new content, as with the kubelet's."""
    data = content.encode("utf-8", errors="surrogateescape")
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.truncate()
    os.chmod(path, 0o644)


def mounts_path(mount_paths: Sequence[str], target: str) -> bool:
    """Whether one of the container's own mounts is at ``target`` (then it wins)."""
    return any(os.path.normpath(p) == target for p in mount_paths)
