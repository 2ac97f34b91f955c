"""Pod IPs from the node's podCIDR: one loopback address per pod, kept on disk.

Until pods have network namespaces of their own, a node with a podCIDR (a block of the
loopback range, 127.0.0.0/8, which every Linux host routes to itself) gives each pod its own
address from it, so two pods on one node can both listen on containerPort 8080. As CNI's
host-local IPAM, each allocation is a file named after the address holding the pod's uid,
created exclusively, so it survives a kubelet restart (the pods it adopts keep their IPs) and
no address is handed out twice; addresses are handed out round robin after the last one, so a
released address is not reused at once.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os

import structlog

log = structlog.get_logger(__name__)

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
_LAST = ".last"


class PodIPsExhausted(Exception):
    """Every address of the block is in use."""


def parse_pod_cidr(text: str) -> ipaddress.IPv4Network:
    """The podCIDR ``text`` as a network; ValueError naming the rule when it is not a block of
    the loopback range with room for pods."""
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as e:
        raise ValueError(f"invalid pod CIDR {text!r}: {e}") from None
    if not isinstance(network, ipaddress.IPv4Network) or not network.subnet_of(LOOPBACK):
        raise ValueError(
            f"invalid pod CIDR {text!r}: must be a block of the loopback range 127.0.0.0/8 "
            "(pods share the host's network namespace; its loopback addresses are theirs)"
        )
    if network.prefixlen > 30:
        raise ValueError(f"invalid pod CIDR {text!r}: the prefix must be at most /30 "
                         "(room for two pods)")
    return network


class PodIPAllocator:
    """The node's pod IPs; the kubelet that owns ``state_dir`` is its only writer."""

    def __init__(self, cidr: str, state_dir: str, reserved: tuple[str, ...] = ()) -> None:
        self.network = parse_pod_cidr(cidr)
        self.state_dir = state_dir
        self._reserved = {ipaddress.IPv4Address(ip) for ip in reserved if _is_ipv4(ip)}
        os.makedirs(state_dir, exist_ok=True)
        self._by_uid = self._load()

    def _path(self, ip: str) -> str:
        return os.path.join(self.state_dir, ip)

    def _load(self) -> dict[str, str]:
        result = {}
        for name in os.listdir(self.state_dir):
            if name.startswith(".") or not _is_ipv4(name):
                continue
            uid = _read(self._path(name))
            if uid:
                result[uid] = name
        return result

    def allocations(self) -> dict[str, str]:
        """Pod uid -> its IP."""
        return dict(self._by_uid)

    def ip_of(self, uid: str) -> str | None:
        """The IP pod ``uid`` holds, None when it holds none."""
        return self._by_uid.get(uid)

    def allocate(self, uid: str) -> str:
        """The pod's IP: the one it holds, else the next free one (PodIPsExhausted if none)."""
        held = self._by_uid.get(uid)
        if held is not None:
            return held
        hosts = list(self.network.hosts())
        start = 0
        last = _read(os.path.join(self.state_dir, _LAST))
        if last and _is_ipv4(last) and ipaddress.IPv4Address(last) in self.network:
            with contextlib.suppress(ValueError):
                start = hosts.index(ipaddress.IPv4Address(last)) + 1
        for i in range(len(hosts)):
            candidate = hosts[(start + i) % len(hosts)]
            if candidate in self._reserved:
                continue
            ip = str(candidate)
            try:
                fd = os.open(self._path(ip), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w") as f:
                f.write(uid)
            _write(os.path.join(self.state_dir, _LAST), ip)
            self._by_uid[uid] = ip
            log.info("allocated pod IP", uid=uid, ip=ip)
            return ip
        raise PodIPsExhausted(
            f"no IP addresses available in the node's pod CIDR {self.network} "
            f"({len(self._by_uid)} pods hold one)"
        )

    def release(self, uid: str) -> None:
        """Frees the pod's IP (no-op when it holds none)."""
        ip = self._by_uid.pop(uid, None)
        if ip is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(ip))
        log.info("released pod IP", uid=uid, ip=ip)

    def release_all_but(self, uids: set[str]) -> None:
        """Frees the IPs of every pod not in ``uids`` (pods gone while the kubelet was away)."""
        for uid in set(self._by_uid) - uids:
            self.release(uid)


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
