"""ClusterIPs as local addresses of one interface of the host (upstream IPVS mode's kube-ipvs0).

A pod in its own network namespace reaches a ClusterIP through its default route, the node:
there the ClusterIP must be a local address, and not on loopback (the kernel does not accept
127.0.0.0/8 from another namespace). With ``--cluster-ip-interface NAME`` the proxy keeps the
ClusterIP of every Service it knows as a /32 (/128) on NAME, an interface it creates when
missing (a dummy, as upstream), and opens a ClusterIP listener only once its address is there.
Without it the proxy manages no address (loopback ClusterIPs are always local).

Several proxies may share one host (several nodes of a local cluster), and so the interface.
Adding is idempotent (``ip addr replace``). An address is removed only when no Service uses it
in the API any more: the candidates are the addresses inside ``--service-cluster-ip-range``
that no Service in the informer cache uses, and a fresh list from the API server confirms
them just before removal, so a proxy whose cache lags never removes the address of a Service
that another proxy has already seen created. When several proxies remove the same address
the first one does and the others find it gone. Addresses outside the range are never
touched. What is left of the race (a Service created between that list and the removal) is
repaired by the periodic pass (``sync_period``), which every proxy runs and which re-adds every
missing address.

Address changes go through iproute2's ``ip`` (one ``ip -batch`` per pass), run as asyncio
subprocesses; each pass lists the interface's addresses afterwards, so what it reports is what
the kernel has, whoever changed it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import subprocess
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import structlog

from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_IFNAME_MAX = 15
"""Linux's IFNAMSIZ less the terminating NUL."""
_IFNAME_FORBIDDEN = re.compile(r"[/:\s]")


def check_interface_name(name: str) -> None:
    """Raises ValueError (the rule, without the field's name) unless ``name`` can name a
    Linux network interface."""
    if (not name or len(name) > _IFNAME_MAX or name in (".", "..")
            or _IFNAME_FORBIDDEN.search(name)):
        raise ValueError(f"must be a network interface name: 1-{_IFNAME_MAX} characters,"
                         " no '/', ':' or whitespace, such as kube-ipvs0")


def parse_service_range(text: str) -> IPNetwork:
    """The CIDR of ``text``; raises ValueError (the rule, without the field's name)."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError:
        raise ValueError("must be a CIDR such as 10.96.0.0/12 (the API server's"
                         " --service-cluster-ip-range)") from None


@dataclass(frozen=True)
class ClusterIPInterfaceSettings:
    """Where the proxy keeps ClusterIPs as local addresses (nothing when ``name`` is empty)."""

    name: str = ""
    """The interface holding every ClusterIP as a /32 (/128), made when missing
    (--cluster-ip-interface; upstream's is kube-ipvs0). Empty: addresses are not managed,
    ClusterIPs are bound as they are (loopback ClusterIPs are always local)."""
    service_cluster_ip_range: str = ""
    """The ClusterIP range (--service-cluster-ip-range, as the API server's): only addresses
    inside it are added and removed, so foreign addresses on the interface are never touched.
    Required with ``name``."""
    link_kinds: tuple[str, ...] = ("dummy", "bridge")
    """Link types tried in order when the interface is missing: a dummy, as upstream; where
    the kernel has no dummy driver, an empty bridge holds local addresses the same way."""
    sync_period: float = 30.0
    """Seconds between full passes that re-add missing addresses and remove stale ones
    (upstream's --ipvs-sync-period); Service changes start a pass at once."""
    retry_interval: float = 1.0
    """Seconds before a pass that failed is tried again."""
    command_timeout: float = 10.0
    """Seconds one ``ip`` command may take before it is killed and the pass fails."""
    ip_command: str = "ip"
    """iproute2's ``ip`` (a path, or a name looked up on PATH)."""

    def __post_init__(self) -> None:
        if self.name:
            try:
                check_interface_name(self.name)
            except ValueError as e:
                raise ValueError(f"cluster_ip_interface.name: invalid value {self.name!r}:"
                                 f" {e}") from None
            if not self.service_cluster_ip_range:
                raise ValueError("cluster_ip_interface.service_cluster_ip_range: required with"
                                 " an interface (only addresses inside it are removed)")
        if self.service_cluster_ip_range:
            try:
                parse_service_range(self.service_cluster_ip_range)
            except ValueError as e:
                raise ValueError("cluster_ip_interface.service_cluster_ip_range: invalid value"
                                 f" {self.service_cluster_ip_range!r}: {e}") from None
        for what in ("sync_period", "retry_interval", "command_timeout"):
            if getattr(self, what) <= 0:
                raise ValueError(f"cluster_ip_interface.{what}: must be greater than 0,"
                                 f" got {getattr(self, what)}")

    @property
    def enabled(self) -> bool:
        return bool(self.name)

    @property
    def network(self) -> IPNetwork | None:
        if not self.service_cluster_ip_range:
            return None
        return parse_service_range(self.service_cluster_ip_range)


def service_cluster_ip(svc: v1.Service) -> str | None:
    """The Service's ClusterIP in canonical form; None when it has none (headless,
    ExternalName, not allocated) or it is not an IP address."""
    spec = svc.spec
    if spec.type == "ExternalName" or not spec.cluster_ip or spec.cluster_ip == "None":
        return None
    try:
        return str(ipaddress.ip_address(spec.cluster_ip))
    except ValueError:
        return None


def cluster_ips(services: Iterable[v1.Service]) -> set[str]:
    """The ClusterIPs the Services use."""
    return {ip for ip in map(service_cluster_ip, services) if ip is not None}


def in_range(ip: str, network: IPNetwork) -> bool:
    return ipaddress.ip_address(ip) in network


@dataclass(frozen=True)
class Plan:
    """What one pass changes on the interface."""

    add: frozenset[str]
    """Addresses of Services that the interface lacks."""
    remove_candidates: frozenset[str]
    """Addresses inside the range that no cached Service uses: removed once the API confirms
    that no Service uses them."""


def plan(wanted: set[str], present: set[str], network: IPNetwork) -> Plan:
    """Given the ClusterIPs of the known Services and the interface's addresses: what to add
    and what may be removed; addresses outside ``network`` are left out of both."""
    managed_wanted = {ip for ip in wanted if in_range(ip, network)}
    managed_present = {ip for ip in present if in_range(ip, network)}
    return Plan(
        add=frozenset(managed_wanted - present),
        remove_candidates=frozenset(managed_present - managed_wanted),
    )


# ---------------------------------------------------------------------------- the interface


class InterfaceMissing(LookupError):
    """The interface does not exist (yet, or any more)."""


class AddressCommandError(RuntimeError):
    """An ``ip`` command failed; the message has the command and what it printed."""


class AddressManager(Protocol):
    """The addresses of one interface."""

    async def ensure_interface(self) -> None:
        """Makes the interface exist and be up; raises AddressCommandError."""

    async def addresses(self) -> set[str]:
        """Its host addresses (/32, /128); raises InterfaceMissing or AddressCommandError."""

    async def apply(self, add: Iterable[str], remove: Iterable[str]) -> str:
        """Adds and removes host addresses, each on its own (one failing does not stop the
        others); returns what failed ("" when nothing did). Callers list the addresses
        afterwards to learn the outcome (another proxy may have removed one first)."""


def host_prefix(ip: str) -> str:
    """``ip`` as a host route prefix: /32 or /128."""
    return f"{ip}/{32 if ipaddress.ip_address(ip).version == 4 else 128}"


def batch_commands(add: Iterable[str], remove: Iterable[str], device: str) -> str:
    """``ip -batch`` input: adds first (``replace`` is idempotent), then removals."""
    lines = [f"address replace {host_prefix(ip)} dev {device}" for ip in sorted(add)]
    lines += [f"address del {host_prefix(ip)} dev {device}" for ip in sorted(remove)]
    return "".join(line + "\n" for line in lines)


def parse_host_addresses(ip_json: str) -> set[str]:
    """The /32 and /128 addresses in ``ip -j address show`` output."""
    result: set[str] = set()
    for link in json.loads(ip_json or "[]"):
        for info in link.get("addr_info", []):
            family, local, prefix = info.get("family"), info.get("local"), info.get("prefixlen")
            if (family, prefix) in (("inet", 32), ("inet6", 128)) and local:
                result.add(str(ipaddress.ip_address(local)))
    return result


_NO_DEVICE = ("does not exist", "Cannot find device")
_NO_KIND = ("Unknown device type", "not supported", "Operation not supported")


class IpCommand:
    """An AddressManager over iproute2's ``ip``, run as asyncio subprocesses."""

    def __init__(self, settings: ClusterIPInterfaceSettings) -> None:
        self.settings = settings
        self.device = settings.name

    async def _run(self, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) of ``ip ARGS``; killed after command_timeout."""
        proc = await asyncio.create_subprocess_exec(
            self.settings.ip_command, *args,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(self.settings.command_timeout):
                out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        except TimeoutError:
            raise AddressCommandError(
                f"{self.settings.ip_command} {' '.join(args)}: no answer within"
                f" {self.settings.command_timeout}s") from None
        finally:
            if proc.returncode is None:  # timed out or cancelled: it must not outlive the call
                proc.kill()
                await asyncio.shield(proc.wait())
        assert proc.returncode is not None
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    def _failed(self, args: tuple[str, ...], code: int, err: str) -> AddressCommandError:
        return AddressCommandError(
            f"{self.settings.ip_command} {' '.join(args)} exited {code}: {err.strip()}")

    async def ensure_interface(self) -> None:
        code, _, err = await self._run("link", "show", "dev", self.device)
        if code != 0:
            if not any(s in err for s in _NO_DEVICE):
                raise self._failed(("link", "show", "dev", self.device), code, err)
            await self._create()
        args = ("link", "set", "dev", self.device, "up")
        code, _, err = await self._run(*args)
        if code != 0:
            raise self._failed(args, code, err)

    async def _create(self) -> None:
        refused: list[str] = []
        for kind in self.settings.link_kinds:
            args = ("link", "add", self.device, "type", kind)
            code, _, err = await self._run(*args)
            if code == 0:
                if refused:
                    log.warning("made the ClusterIP interface with a fallback link type",
                                interface=self.device, kind=kind, refused="; ".join(refused))
                else:
                    log.info("made the ClusterIP interface", interface=self.device, kind=kind)
                return
            if "File exists" in err:  # another proxy on this host made it meanwhile
                return
            if not any(s in err for s in _NO_KIND):
                raise self._failed(args, code, err)
            refused.append(f"{kind}: {err.strip()}")
        raise AddressCommandError(
            f"cannot make interface {self.device}: no link type of"
            f" {', '.join(self.settings.link_kinds)} is available ({'; '.join(refused)})")

    async def addresses(self) -> set[str]:
        args = ("-j", "address", "show", "dev", self.device)
        code, out, err = await self._run(*args)
        if code != 0:
            if any(s in err for s in _NO_DEVICE):
                raise InterfaceMissing(self.device)
            raise self._failed(args, code, err)
        try:
            return parse_host_addresses(out)
        except (ValueError, AttributeError) as e:
            raise AddressCommandError(
                f"{self.settings.ip_command} {' '.join(args)}: unreadable output: {e}") from e

    async def apply(self, add: Iterable[str], remove: Iterable[str]) -> str:
        commands = batch_commands(add, remove, self.device)
        if not commands:
            return ""
        code, _, err = await self._run("-force", "-batch", "-", stdin=commands)
        return "" if code == 0 else err.strip() or f"ip -batch exited {code}"


# ---------------------------------------------------------------------------- the reconciler


class ClusterIPAddresses:
    """Keeps the interface's addresses matching the ClusterIPs of the Services (see the module
    docstring): a pass on every trigger (Service changes) and every ``sync_period``."""

    def __init__(
        self,
        settings: ClusterIPInterfaceSettings,
        manager: AddressManager,
        *,
        cached_services: Callable[[], Iterable[v1.Service]],
        cache_synced: Callable[[], bool],
        api_services: Callable[[], Awaitable[Iterable[v1.Service]]],
        on_present: Callable[[set[str]], None],
    ) -> None:
        """``cached_services``: the informer's Services (read often); ``api_services``: a
        fresh list from the API server (read only before removing addresses);
        ``on_present``: told the addresses that have appeared (listeners may bind them)."""
        network = settings.network
        assert network is not None, "a service range is required"
        self.settings = settings
        self.network = network
        self.manager = manager
        self._cached_services = cached_services
        self._cache_synced = cache_synced
        self._api_services = api_services
        self._on_present = on_present
        self.present: set[str] = set()
        """The interface's host addresses as last listed."""
        self._interface_ready = False
        self._outside: set[str] = set()
        """ClusterIPs outside the range already reported (each once)."""
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.passes = 0
        """Passes completed without error (for tests and logs)."""
        self.problem: str | None = "no pass yet"
        """What the last pass left wrong (None: every address as wanted)."""
        self._reported: str | None = None
        """The problem last logged (the same one is not logged again on every retry)."""

    def manages(self, ip: str) -> bool:
        """Whether ``ip`` is inside the range (its address is added and removed here)."""
        return in_range(ip, self.network)

    def has(self, ip: str) -> bool:
        return ip in self.present

    def trigger(self) -> None:
        """Asks for a pass soon (Service changes; repeated calls collapse into one)."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._wake.set()
            self._task = asyncio.create_task(self._run(), name="cluster-ip-addresses")

    async def stop(self) -> None:
        """Stops the passes; the addresses stay (other proxies on this host may serve them)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            ok = self.problem is None
            wait = self.settings.sync_period if ok else self.settings.retry_interval
            try:
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            await self.sync()

    async def sync(self) -> bool:
        """One pass; False when some address is not as wanted or the interface could not be
        made or read. A problem is logged when it first appears (or changes), not on every
        retry; its end is logged too."""
        async with self._lock:
            try:
                problem, details = await self._sync()
            except Exception as e:
                problem, details = f"{type(e).__name__}: {e}", {}
                if self._reported != problem:
                    log.exception("ClusterIP address pass failed; retrying",
                                  interface=self.settings.name,
                                  retry_interval=self.settings.retry_interval)
                    self._reported = problem
            else:
                key = f"{problem} {details}" if problem is not None else None
                if key is not None and key != self._reported:
                    log.warning(problem, interface=self.settings.name,
                                retry_interval=self.settings.retry_interval, **details)
                    self._reported = key
            if problem is None:
                if self._reported is not None:
                    log.info("ClusterIP addresses in order again", interface=self.settings.name)
                    self._reported = None
                self.passes += 1
            self.problem = problem
            log.debug("ClusterIP address pass", interface=self.settings.name,
                      ok=problem is None, addresses=len(self.present))
            return problem is None

    def readiness(self) -> tuple[bool, str]:
        """Ready once a pass has put every address in place; else what is wrong."""
        if self.problem is not None:
            return False, f"ClusterIP interface {self.settings.name}: {self.problem}"
        return True, f"ClusterIP interface {self.settings.name}: {len(self.present)} addresses"

    async def _list(self) -> set[str]:
        if not self._interface_ready:
            await self.manager.ensure_interface()
            self._interface_ready = True
        try:
            return await self.manager.addresses()
        except InterfaceMissing:
            log.warning("ClusterIP interface is gone; making it again",
                        interface=self.settings.name)
            self._interface_ready = False
            await self.manager.ensure_interface()
            self._interface_ready = True
            return await self.manager.addresses()

    def _wanted(self) -> set[str]:
        wanted = cluster_ips(self._cached_services())
        for ip in sorted(wanted - self._outside):
            if not self.manages(ip):
                self._outside.add(ip)
                log.warning("ClusterIP outside --service-cluster-ip-range: its address is not"
                            " managed (the listener binds only if it is local already)",
                            cluster_ip=ip, service_cluster_ip_range=str(self.network))
        return wanted

    async def _sync(self) -> tuple[str | None, dict[str, object]]:
        """One pass: (the problem left, or None; details to log with it)."""
        before = self.present
        present = self.present = await self._list()
        wanted = self._wanted()
        steps = plan(wanted, present, self.network)
        remove: set[str] = set()
        problem: str | None = None
        details: dict[str, object] = {}
        if steps.remove_candidates and self._cache_synced():
            try:
                in_api = cluster_ips(await self._api_services())
            except Exception as e:  # noqa: BLE001 - reported; nothing removed unconfirmed
                problem = ("cannot confirm in the API that stale ClusterIP addresses are"
                           " unused; keeping them for now")
                details = {"error": str(e), "addresses": sorted(steps.remove_candidates)}
            else:
                # The cache may have moved on during the list: a Service seen since stays.
                remove = set(steps.remove_candidates) - in_api - self._wanted()
        if steps.add or remove:
            error = await self.manager.apply(steps.add, remove)
            present = self.present = await self.manager.addresses()
            added, removed = steps.add & present, remove - present
            if added:
                log.info("ClusterIP addresses added", interface=self.settings.name,
                         addresses=sorted(added))
            if removed:
                log.info("ClusterIP addresses removed (their Services are gone)",
                         interface=self.settings.name, addresses=sorted(removed))
            missing, stuck = steps.add - present, remove & present
            if missing or stuck:
                problem = "could not change ClusterIP addresses; retrying"
                details = {"not_added": sorted(missing), "not_removed": sorted(stuck),
                           "error": error}
        appeared = present - before
        if appeared:
            self._on_present(appeared)
        return problem, details
