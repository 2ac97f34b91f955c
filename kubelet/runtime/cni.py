"""The pod network's CNI configuration, written by the kubelet once its node has a podCIDR.

The container runtime (containerd's CRI plugin) reads it from its CNI conf dir and runs the
plugins for each sandbox: a bridge per node with the node as gateway, host-local addresses
from the node's podCIDR, loopback inside the pod, and portmap for hostPorts. Routes to other
nodes' podCIDRs are the route agent's (kubelet/routes.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger(__name__)

CONFIG_FILE = "10-kubelite.conflist"
"""The name the runtime finds first (it takes the lexically first file of its conf dir)."""
CNI_VERSION = "0.4.0"
"""A version every plugin of containernetworking-plugins 1.x speaks."""


@dataclass(frozen=True)
class CniSettings:
    """Where and how the kubelet writes the pod network's configuration."""

    conf_dir: str
    """The runtime's CNI conf dir (containerd's plugins.cri.cni.conf_dir)."""
    bridge: str = "cni0"
    """The node's bridge; nodes sharing a host each need their own (at most 15 bytes)."""
    network_name: str = "kubelite"
    """The network's name (the runtime's record of which network each sandbox joined)."""
    state_dir: str = "/var/lib/cni/networks"
    """host-local's record of the addresses it gave out; one per node on a shared host."""
    mtu: int = 0
    """MTU of the bridge and the pods' interfaces; 0: the plugin's default."""


def conflist(settings: CniSettings, pod_cidr: str) -> dict[str, Any]:
    """The configuration list for a node whose pods take addresses from ``pod_cidr``."""
    network = ipaddress.ip_network(pod_cidr, strict=True)
    bridge: dict[str, Any] = {
        "type": "bridge",
        "bridge": settings.bridge,
        "isGateway": True,
        # No masquerading: other nodes route podCIDRs back (host-gw), so pod IPs stay visible.
        "ipMasq": False,
        "hairpinMode": True,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": str(network)}]],
            "routes": [{"dst": "0.0.0.0/0" if network.version == 4 else "::/0"}],
            "dataDir": settings.state_dir,
        },
    }
    if settings.mtu:
        bridge["mtu"] = settings.mtu
    return {
        "cniVersion": CNI_VERSION,
        "name": settings.network_name,
        "plugins": [
            bridge,
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def write_config(settings: CniSettings, pod_cidr: str) -> str:
    """Writes (atomically, only when it changed) the node's configuration; returns its path."""
    if len(settings.bridge.encode()) > 15:
        raise ValueError(f"CNI bridge name {settings.bridge!r} is longer than 15 bytes")
    os.makedirs(settings.conf_dir, exist_ok=True)
    os.makedirs(settings.state_dir, exist_ok=True)
    path = os.path.join(settings.conf_dir, CONFIG_FILE)
    text = json.dumps(conflist(settings, pod_cidr), indent=2) + "\n"
    try:
        with open(path) as f:
            if f.read() == text:
                return path
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(dir=settings.conf_dir, prefix=".tmp-", suffix=".conflist.new")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


async def _ip(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "ip", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def remove_stale_bridge(bridge: str, pod_cidr: str) -> bool:
    """Deletes the node's bridge when it holds an address outside ``pod_cidr`` (left by an
    earlier cluster, or the node's previous podCIDR): the bridge plugin refuses to reuse it.
    True when it was deleted."""
    code, out = await _ip("-json", "addr", "show", "dev", bridge)
    if code != 0:
        return False  # no such bridge yet
    network = ipaddress.ip_network(pod_cidr, strict=True)
    addresses = [
        ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}")
        for link in json.loads(out or "[]")
        for a in link.get("addr_info", [])
        if a.get("family") == ("inet" if network.version == 4 else "inet6")
        and a.get("scope") != "link"
    ]
    if all(a.network == network for a in addresses):
        return False
    code, out = await _ip("link", "del", bridge)
    if code != 0:
        raise OSError(f"cannot delete stale bridge {bridge}: {out.strip()}")
    log.warning("deleted a stale pod bridge", bridge=bridge,
                addresses=[str(a) for a in addresses], pod_cidr=pod_cidr)
    return True
