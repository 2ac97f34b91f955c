"""A multi-host cluster on one machine for e2e tests: every host is a Linux network namespace
with a veth into a bridge and its own address from a private test block.

    with MultiHostCluster(workdir, workers=3) as cluster:
        cluster.klctl("get", "nodes")
        cluster.link_down("worker-2")           # cut a host off the bridge
        cluster.kill("kubelet-worker-1")        # SIGKILL one component, as a crash
        cluster.restart("kubelet-worker-1")     # same argv, same data dir
        cluster.run("worker-3", ["curl", "-s", "http://127.96.0.10/"])

The control-plane host (``cp``, address .1) runs etcd (its own data dir), the API server, the
scheduler and the controller manager (and optionally a standby of each); every worker host
(``worker-N``, address .N+1) runs a kubelet and a proxy. The root namespace holds .254 on the
bridge, so the test process reaches every host (klctl, NodePorts) and nothing else is ever
sent anywhere: the block is 10.213.<k>.0/24 with a per-run random ``k`` that no other address
on this machine uses. Every component is started through its console script inside its host
(``ip netns exec``), with short timers.

With ``MultiHostSettings(runtime="containerd")`` the workers run pods in containerd instead:
the test images are built once (umoci, from the node's busybox) and pushed to a registry on
the control-plane host (``CP:5000``: library/busybox, library/nginx, kubelite/testserver,
kubelite/pause), every worker runs its own containerd (root, state and config under the
workdir, started in the host's network namespace with ``nsenter --net``, docker.io mirrored to
that registry in plain HTTP, the pause image imported so sandboxes never pull), and its kubelet
uses it: pods get addresses on the host's ``cni0`` bridge from the podCIDR node IPAM gave its
Node (cluster CIDR 10.244.0.0/16), the kubelets' route agents route the other hosts' podCIDRs
via their addresses, and the proxies put ClusterIPs (10.96.0.0/16) on ``kube-ipvs0`` so pods
reach them through their gateway. Pods' cgroups live under ``/klt<run>-<host>``.

Names of devices, namespaces and cgroups start with ``klt<run>-`` (``klt`` + 4 hex digits). The
run holds an flock on /run/kubelite-netns/<run>.lock while it lives (its containerds' sockets
are in /run/kubelite-netns/<run>.d); a later run that can take that lock (or finds names
without a lock file) knows the owner died and removes what it left: processes inside its
namespaces and cgroups, mounts under its workdir, the cgroups, namespaces, veths and bridge.
``stop()`` always tears down everything this run made, also when a test failed, and reports
processes that outlived the orderly stop (they are killed).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import fcntl
import json
import os
import random
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubelite.client.config import ClientConfig, load_kubeconfig
from kubelite.cluster_security import apiserver_security, etcd_tls
from kubelite.components import (
    ApiServer,
    ControllerManager,
    ControllerManagerTimers,
    Etcd,
    Kubelet,
    KubeletTimers,
    LeaderElection,
    Proxy,
    Scheduler,
    SchedulerTimers,
    Spec,
    installed_script,
)
from kubelite.containerd_process import ContainerdProcess, ContainerdSettings
from kubelite.etcd_process import FAST_ELECTION_TIMEOUT, FAST_HEARTBEAT_INTERVAL, find_etcd
from kubelite.pki import ClusterPki, init_cluster
from kubelite.processes import ManagedProcess
from kubelite.registry import LocalRegistry, LocalRegistrySettings
from kubelite.testing.images import (
    build_test_images,
    import_node_images,
    missing_containerd_tools,
    push_test_images,
    registry_mirrors,
)

PREFIX = "klt"
"""Every namespace and device this harness makes is named ``klt<4 hex>-...``."""
STATE_DIR = Path("/run/kubelite-netns")
"""Run lock files (flock held by the live owner) and the allocation lock."""
SUBNET_BASE = "10.213"
"""Hosts get 10.213.<k>.0/24 addresses; ``k`` is chosen per run."""
ROOT_HOST_OCTET = 254
"""The root namespace's address on the bridge (where the test process talks from)."""
ETCD_CLIENT_PORT = Etcd.CLIENT_PORT
ETCD_PEER_PORT = Etcd.PEER_PORT
API_PORT = ApiServer.PORT
KUBELET_PORT = Kubelet.PORT
CGROUP_ROOT = Path("/sys/fs/cgroup")
RUNTIMES = ("process", "containerd")
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
"""The CNI plugins the kubelet's pod network configuration uses."""
CNI_BIN_DIR = Path("/usr/lib/cni")

_NAME_RE = re.compile(rf"^{PREFIX}([0-9a-f]{{4}})-")

REQUIRED_SCRIPTS = (ApiServer.script, Scheduler.script, Kubelet.script, "klctl")
OPTIONAL_SCRIPTS = (ControllerManager.script, Proxy.script)


class HarnessUnavailable(RuntimeError):
    """This machine cannot run the harness (not root, no iproute2, a script missing)."""


def has_script(name: str) -> bool:
    return installed_script(name).exists()


def _argv(spec: Spec) -> list[str]:
    """The component's command through its console script beside this interpreter."""
    return spec.argv(str(installed_script(spec.script)))


def unavailable_reason() -> str | None:
    """Why the harness cannot run here, or None when it can: tests skip with this reason."""
    if os.geteuid() != 0:
        return "the multi-host harness needs root (network namespaces, veth pairs, a bridge)"
    if shutil.which("ip") is None:
        return "the multi-host harness needs iproute2's `ip` on PATH"
    if shutil.which("curl") is None:
        return "the multi-host harness needs curl (requests from inside a host)"
    for name in REQUIRED_SCRIPTS:
        if not has_script(name):
            return f"{name} is not installed beside {sys.executable} (pip install -e .)"
    try:
        find_etcd()
    except FileNotFoundError as e:
        return str(e)
    return None


def containerd_unavailable_reason() -> str | None:
    """Why the harness cannot run containerd workers here (everything missing, in one
    reason), or None when it can."""
    reason = unavailable_reason()
    missing = [reason] if reason is not None else []
    missing += [m for m in missing_containerd_tools() if m != "root" or reason is None]
    missing += [f"{CNI_BIN_DIR / name} (Debian's containernetworking-plugins)"
                for name in CNI_PLUGINS if not (CNI_BIN_DIR / name).exists()]
    if shutil.which("nsenter") is None:
        missing.append("nsenter (Debian's util-linux)")
    if shutil.which("wget") is None:
        missing.append("wget (requests to pods from a host)")
    if not missing:
        return None
    return "containerd workers need: " + "; ".join(missing)


@dataclass(frozen=True)
class MultiHostSettings:
    """Timers and extras of a multi-host test cluster (short values: tests run in seconds)."""

    workers: int = 3
    """Worker hosts, each running a kubelet and a proxy."""
    standbys: bool = False
    """Also run a second scheduler and controller manager on the control-plane host, which
    take over when the active ones die (failover tests)."""
    controller_manager: bool = True
    """Run kubelite-controller-manager (when installed)."""
    proxy: bool = True
    """Run kubelite-proxy on every worker (when installed)."""
    node_cpu: str = "4"
    """Capacity cpu each kubelet reports."""
    node_memory: str = "8Gi"
    """Capacity memory each kubelet reports."""
    node_monitor_period: float = 0.5
    """Controller manager: seconds between node health checks."""
    node_monitor_grace_period: float = 3.0
    """Controller manager: a node unheard of for this long is Ready=Unknown, seconds."""
    leader_elect_lease_duration: float = 2.0
    """Scheduler and controller manager Lease duration, seconds."""
    leader_elect_renew_deadline: float = 1.5
    """A leader that could not renew for this long steps down, seconds."""
    leader_elect_retry_period: float = 0.2
    """Seconds between tries to acquire or renew the Lease."""
    node_lease_duration: int = 2
    """Kubelet: its node Lease's duration (renewed every quarter of it), seconds."""
    node_status_update_frequency: float = 1.0
    """Kubelet: seconds between node status updates."""
    sync_frequency: float = 2.0
    """Kubelet: seconds between full pod syncs."""
    housekeeping_interval: float = 0.2
    """Kubelet: seconds between housekeeping passes (container exits, probes)."""
    watch_progress_interval: float = 0.2
    """API server: seconds between bookmarks on quiet watches."""
    scheduler_initial_backoff: float = 0.5
    """Scheduler: first retry delay of an unschedulable pod, seconds."""
    scheduler_max_backoff: float = 2.0
    """Scheduler: cap on that delay, seconds."""
    start_timeout: float = 60.0
    """Seconds each stage of start() may take before it fails with the components' logs."""
    stop_timeout: float = 15.0
    """Seconds a component gets after SIGTERM before its process group is SIGKILLed."""
    runtime: str = "process"
    """The kubelets' container runtime: ``process`` (pods are the host's processes) or
    ``containerd`` (a containerd per worker, a registry on the control-plane host, pod
    addresses from node IPAM; see the module docstring)."""
    cluster_cidr: str = "10.244.0.0/16"
    """containerd runtime: the controller manager's --cluster-cidr; each Node gets a /24."""
    service_cluster_ip_range: str = "10.96.0.0/16"
    """containerd runtime: the ClusterIP range of the API server and the proxies."""
    cluster_ip_interface: str = "kube-ipvs0"
    """containerd runtime: the dummy interface each proxy puts ClusterIPs on."""
    cni_bridge: str = "cni0"
    """containerd runtime: each worker's pod bridge (every host has its own namespace)."""
    images_dir: Path | None = None
    """containerd runtime: where the test images are built and cached (share one directory
    between runs to build them once); None: WORKDIR/images."""
    registry_port: int = 5000
    """containerd runtime: the registry's port on the control-plane host's address."""
    secure: bool = True
    """Run secured, as `kubelite up` does (`kubelite init` in the workdir: TLS everywhere,
    x509 and token authentication, RBAC, admission, Secrets encrypted); False: --insecure."""

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime: {self.runtime!r} is not one of {', '.join(RUNTIMES)}")
        if len(self.cni_bridge.encode()) > 15:
            raise ValueError(f"cni_bridge: {self.cni_bridge!r} is longer than 15 bytes")
        if not 0 < self.registry_port < 65536:
            raise ValueError(f"registry_port: {self.registry_port} is not a port")


@dataclass
class Host:
    """One network namespace on the bridge."""

    name: str
    """``cp`` or ``worker-N`` (workers' names are their Node names)."""
    tag: str
    """Short tag used in device names (``cp``, ``w1``, ...)."""
    netns: str
    """The network namespace's name."""
    address: str
    """The host's address on the bridge."""
    veth_root: str
    """The root-side end of its veth pair, enslaved to the bridge."""
    veth_ns: str = "eth0"
    """The end inside the namespace."""

    def argv(self, command: Sequence[str]) -> list[str]:
        """``command`` run inside this host's network namespace."""
        return ["ip", "netns", "exec", self.netns, *command]


@dataclass
class Component:
    """A process that runs inside a host."""

    name: str
    host: Host
    process: ManagedProcess


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False,
                            timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({result.returncode}): "
                           f"{result.stderr.strip()}")
    return result


def _netns_names() -> list[str]:
    result = _ip("netns", "list", check=False)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def _link_names() -> list[str]:
    result = _ip("-o", "link", "show", check=False)
    names = []
    for line in result.stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@")[0])
    return names


def netns_pids(netns: str) -> list[int]:
    """Processes whose network namespace is ``netns``."""
    result = _ip("netns", "pids", netns, check=False)
    return [int(p) for p in result.stdout.split() if p.isdigit()]


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != b"Z"


def _kill_netns_processes(netns: str, timeout: float = 10.0) -> list[int]:
    """SIGKILLs every process in ``netns`` (they belong to this harness); returns them."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        pids = [p for p in netns_pids(netns) if _pid_alive(p)]
        if not pids or time.monotonic() > deadline:
            return killed
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if pid not in killed:
                killed.append(pid)
        time.sleep(0.05)


def socket_dir(run: str) -> Path:
    """Where run ``run``'s containerds keep their sockets (a unix socket's path is short)."""
    return STATE_DIR / f"{run}.d"


def _cgroup_tops(run: str = "") -> list[Path]:
    """The harness's top-level cgroups (``klt<run>-...``, all runs' without ``run``) in every
    hierarchy (cgroup v1 has one per controller)."""
    hierarchies = [d for d in [CGROUP_ROOT, *_subdirs(CGROUP_ROOT)]
                   if (d / "cgroup.procs").exists()]
    pattern = f"{PREFIX}{run}-*" if run else f"{PREFIX}*"
    return [top for hierarchy in hierarchies for top in hierarchy.glob(pattern)
            if _NAME_RE.match(top.name)]


def _cgroup_dirs(run: str) -> list[Path]:
    """Run ``run``'s cgroups (its kubelets' cgroup roots and below), deepest first."""
    found: list[Path] = []
    for top in _cgroup_tops(run):
        for directory, _, _ in os.walk(top, topdown=False):
            found.append(Path(directory))
    return found


def _subdirs(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_dir()]
    except OSError:
        return []


def _remove_cgroups(run: str, timeout: float = 10.0) -> list[int]:
    """SIGKILLs every process left in run ``run``'s cgroups (containers whose shim is gone),
    then removes the cgroups; returns the processes killed."""
    directories = _cgroup_dirs(run)
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while directories:
        pids: set[int] = set()
        for directory in directories:
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
        pids = {p for p in pids if _pid_alive(p)}
        if not pids or time.monotonic() > deadline:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if pid not in killed:
                killed.append(pid)
        time.sleep(0.05)
    for directory in directories:
        with contextlib.suppress(OSError):
            directory.rmdir()
    return killed


def _mounts_under(directory: Path) -> list[str]:
    prefix = str(directory.absolute()) + "/"
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if len(fields) > 4:
            # Octal escapes (\040 for a space) as the kernel writes them.
            point = fields[4].encode().decode("unicode_escape")
            if point.startswith(prefix):
                mounts.append(point)
    return sorted(set(mounts), key=len, reverse=True)


def _unmount_under(directory: Path) -> None:
    """Lazily unmounts everything mounted below ``directory``, deepest first (what killed
    containerd shims leave: containers' root file systems, pods' shm and netns). What stays
    mounted is for the caller to report (stop() lists it in ``leaked``)."""
    for point in _mounts_under(directory):
        subprocess.run(["umount", "--lazy", point], capture_output=True, check=False,
                       timeout=30)


def _remove_run(run: str, workdir: Path | None = None) -> None:
    """Removes every namespace, device and cgroup of run ``run`` (processes in them first)
    and, given its ``workdir``, what is still mounted there."""
    prefix = f"{PREFIX}{run}-"
    namespaces = [n for n in _netns_names() if n.startswith(prefix)]
    for netns in namespaces:
        _kill_netns_processes(netns)
    _remove_cgroups(run)
    if workdir is not None:
        _unmount_under(workdir)
    # Deleting the root-side end of a veth pair deletes both ends.
    for link in _link_names():
        if link.startswith(prefix) and not link.endswith("-br"):
            _ip("link", "del", link, check=False)
    for netns in namespaces:
        _ip("netns", "del", netns, check=False)
    for link in _link_names():
        if link.startswith(prefix):
            _ip("link", "del", link, check=False)
    shutil.rmtree(socket_dir(run), ignore_errors=True)


def _lock_is_free(path: Path) -> bool:
    """Whether nobody holds the run lock at ``path`` (its owner is gone)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops the lock we may have taken
    return True


def cleanup_stale() -> list[str]:
    """Removes what crashed earlier runs left (their lock is free or missing); returns the
    run ids cleaned. Call with the allocation lock held."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    live: set[str] = set()
    stale: set[str] = set()
    for path in STATE_DIR.glob("*.lock"):
        if path.name == "alloc.lock":
            continue
        run = path.stem
        if _lock_is_free(path):
            stale.add(run)
        else:
            live.add(run)
    cgroups = [d.name for d in _cgroup_tops()]
    for name in [*_netns_names(), *_link_names(), *cgroups]:
        match = _NAME_RE.match(name)
        if match and match.group(1) not in live:
            stale.add(match.group(1))
    for path in STATE_DIR.glob("*.d"):
        if path.stem not in live:
            stale.add(path.stem)
    for run in sorted(stale):
        workdir: Path | None = None
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            workdir = Path(json.loads((STATE_DIR / f"{run}.lock").read_text())["workdir"])
        _remove_run(run, workdir)
        (STATE_DIR / f"{run}.lock").unlink(missing_ok=True)
    return sorted(stale)


def _used_subnets() -> set[int]:
    used: set[int] = set()
    for line in _ip("-o", "-4", "addr", "show").stdout.splitlines():
        match = re.search(rf"inet {re.escape(SUBNET_BASE)}\.(\d+)\.", line)
        if match:
            used.add(int(match.group(1)))
    for line in _ip("-4", "route", "show").stdout.splitlines():
        match = re.match(rf"{re.escape(SUBNET_BASE)}\.(\d+)\.", line)
        if match:
            used.add(int(match.group(1)))
    for path in STATE_DIR.glob("*.lock"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            used.add(int(json.loads(path.read_text())["subnet"]))
    return used


@contextlib.contextmanager
def _allocation_lock() -> Iterator[None]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(STATE_DIR / "alloc.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class MultiHostCluster:
    """Hosts on a bridge running the components; see the module docstring."""

    def __init__(self, workdir: Path, workers: int | None = None,
                 settings: MultiHostSettings | None = None) -> None:
        settings = settings or MultiHostSettings()
        if workers is not None and workers != settings.workers:
            settings = dataclasses.replace(settings, workers=workers)
        self.settings = settings
        self.workdir = workdir
        self.run_id = ""
        self.subnet = -1
        self.bridge = ""
        self.hosts: dict[str, Host] = {}
        self.components: dict[str, Component] = {}
        self.leaked: list[str] = []
        """Processes that outlived the orderly stop, and cgroups or mounts that were still
        there after it (filled by stop())."""
        self.registry: LocalRegistry | None = None
        """The image registry on the control-plane host (containerd runtime)."""
        self.containerds: dict[str, ContainerdProcess] = {}
        """Each worker's containerd by host name (containerd runtime)."""
        self._lock_fd: int | None = None
        self._stopped = False

    # ------------------------------------------------------------------ addresses

    @property
    def control_plane(self) -> Host:
        return self.hosts["cp"]

    @property
    def workers(self) -> list[Host]:
        return [h for n, h in self.hosts.items() if n != "cp"]

    @property
    def server(self) -> str:
        """The API server's address as the root namespace and the workers reach it."""
        return f"{self.control_plane.address}:{API_PORT}"

    @property
    def root_address(self) -> str:
        return f"{SUBNET_BASE}.{self.subnet}.{ROOT_HOST_OCTET}"

    @property
    def etcd_endpoint(self) -> str:
        return f"{self.control_plane.address}:{ETCD_CLIENT_PORT}"

    def host(self, name: str) -> Host:
        return self.hosts[name]

    @property
    def pki(self) -> ClusterPki | None:
        """The cluster's credentials (None: an insecure cluster)."""
        return ClusterPki(self.workdir) if self.settings.secure else None

    @property
    def admin(self) -> str | ClientConfig:
        """How the tests connect as the cluster's administrator (from the root namespace)."""
        pki = self.pki
        return self.server if pki is None else load_kubeconfig(pki.admin_conf)

    def _init_credentials(self) -> None:
        init_cluster(
            self.workdir, apiserver_addresses=[self.control_plane.address, "127.0.0.1"],
            apiserver_port=API_PORT,
            nodes=[(h.name, [h.address]) for h in self.workers],
            service_cidr=self.settings.service_cluster_ip_range,
            etcd_addresses=[self.control_plane.address, "127.0.0.1"],
        )

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> MultiHostCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise HarnessUnavailable(reason)
        atexit.register(self.stop)
        try:
            self._make_network()
            self._start_components()
        except BaseException:
            print(self.logs(), file=sys.stderr)
            self.stop()
            raise

    def _make_network(self) -> None:
        with _allocation_lock():
            cleanup_stale()
            used = _used_subnets()
            free = [k for k in range(1, 255) if k not in used]
            if not free:
                raise RuntimeError(f"no free /24 left in {SUBNET_BASE}.0.0/16")
            self.subnet = random.choice(free)
            taken = {p.stem for p in STATE_DIR.glob("*.lock")}
            while True:
                self.run_id = secrets.token_hex(2)
                if self.run_id not in taken:
                    break
            # Lock first, then make it visible under its name: a scan never sees an
            # unlocked live run.
            temporary = STATE_DIR / f".{self.run_id}.{os.getpid()}.tmp"
            fd = os.open(temporary, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, json.dumps({"pid": os.getpid(), "subnet": self.subnet,
                                     "run": self.run_id,
                                     "workdir": str(self.workdir.absolute())}).encode())
            os.rename(temporary, STATE_DIR / f"{self.run_id}.lock")
            self._lock_fd = fd
            prefix = f"{PREFIX}{self.run_id}-"
            self.bridge = f"{prefix}br"
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.root_address}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        names = [("cp", "cp")] + [(f"worker-{i}", f"w{i}")
                                  for i in range(1, self.settings.workers + 1)]
        for octet, (name, tag) in enumerate(names, start=1):
            host = Host(name=name, tag=tag, netns=f"{prefix}{name}",
                        address=f"{SUBNET_BASE}.{self.subnet}.{octet}",
                        veth_root=f"{prefix}{tag}")
            self.hosts[name] = host
            peer = f"{prefix}{tag}n"
            _ip("netns", "add", host.netns)
            _ip("link", "add", host.veth_root, "type", "veth", "peer", "name", peer)
            _ip("link", "set", host.veth_root, "master", self.bridge)
            _ip("link", "set", host.veth_root, "up")
            _ip("link", "set", peer, "netns", host.netns)
            _ip("-n", host.netns, "link", "set", peer, "name", host.veth_ns)
            _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", host.veth_ns)
            _ip("-n", host.netns, "link", "set", host.veth_ns, "up")
            _ip("-n", host.netns, "link", "set", "lo", "up")

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONUNBUFFERED": "1", "KUBELITE_SERVER": self.server}

    def _add(self, name: str, host: Host, argv: list[str]) -> Component:
        process = ManagedProcess(name, host.argv(argv), self.workdir / "logs" / f"{name}.log",
                                 self._env())
        component = Component(name, host, process)
        self.components[name] = component
        return component

    def _etcd_argv(self) -> list[str]:
        cp = self.control_plane
        pki = self.pki
        scheme = "http" if pki is None else "https"
        return Etcd(
            data_dir=str(self.workdir / "etcd"),
            client_urls=(f"{scheme}://127.0.0.1:{ETCD_CLIENT_PORT}",
                         f"{scheme}://{cp.address}:{ETCD_CLIENT_PORT}"),
            advertise_client_urls=(f"{scheme}://{cp.address}:{ETCD_CLIENT_PORT}",),
            peer_url=f"{scheme}://127.0.0.1:{ETCD_PEER_PORT}",
            heartbeat_interval=FAST_HEARTBEAT_INTERVAL, election_timeout=FAST_ELECTION_TIMEOUT,
            tls=None if pki is None else etcd_tls(pki),
        ).argv(find_etcd())

    @property
    def containerd_runtime(self) -> bool:
        return self.settings.runtime == "containerd"

    def _api_server_argv(self) -> list[str]:
        pki = self.pki
        return _argv(ApiServer(
            listen=f"0.0.0.0:{API_PORT}", etcd_servers=f"127.0.0.1:{ETCD_CLIENT_PORT}",
            watch_progress_interval=self.settings.watch_progress_interval,
            service_cluster_ip_range=(self.settings.service_cluster_ip_range
                                      if self.containerd_runtime else None),
            security=None if pki is None else apiserver_security(pki)))

    def _leader_election(self) -> LeaderElection:
        s = self.settings
        return LeaderElection(lease_duration=s.leader_elect_lease_duration,
                              renew_deadline=s.leader_elect_renew_deadline,
                              retry_period=s.leader_elect_retry_period)

    def _scheduler_argv(self, identity: str) -> list[str]:
        s = self.settings
        # Active and standby share the control-plane host: any free health port.
        return _argv(Scheduler(
            server=f"127.0.0.1:{API_PORT}", health_address="127.0.0.1:0", identity=identity,
            kubeconfig=self._kubeconfig("scheduler"),
            leader_election=self._leader_election(),
            timers=SchedulerTimers(pod_initial_backoff=s.scheduler_initial_backoff,
                                   pod_max_backoff=s.scheduler_max_backoff)))

    def _controller_manager_argv(self, identity: str) -> list[str]:
        s = self.settings
        pki = self.pki
        ca = None if pki is None else str(pki.ca_cert)
        return _argv(ControllerManager(
            server=f"127.0.0.1:{API_PORT}", health_address="127.0.0.1:0", identity=identity,
            kubeconfig=self._kubeconfig("controller-manager"), cluster_signing_cert_file=ca,
            cluster_signing_key_file=None if pki is None else str(pki.ca_key), root_ca_file=ca,
            leader_election=self._leader_election(),
            timers=ControllerManagerTimers(
                node_monitor_period=s.node_monitor_period,
                node_monitor_grace_period=s.node_monitor_grace_period),
            allocate_node_cidrs=self.containerd_runtime,
            cluster_cidr=s.cluster_cidr if self.containerd_runtime else None))

    def _kubelet_argv(self, host: Host) -> list[str]:
        s = self.settings
        pki = self.pki
        return _argv(Kubelet(
            node_name=host.name, address=host.address, server=self.server,
            kubeconfig=None if pki is None else str(pki.kubelet_conf(host.name)),
            tls_cert_file=None if pki is None else str(pki.kubelet_serving_cert(host.name)),
            tls_private_key_file=None if pki is None else str(
                pki.kubelet_serving_key(host.name)),
            client_ca_file=None if pki is None else str(pki.ca_cert),
            root_dir=str(self.workdir / "hosts" / host.name / "kubelet"), port=KUBELET_PORT,
            cpu=s.node_cpu, memory=s.node_memory,
            timers=KubeletTimers(
                node_status_update_frequency=s.node_status_update_frequency,
                node_lease_duration=s.node_lease_duration, sync_frequency=s.sync_frequency,
                housekeeping_interval=s.housekeeping_interval, backoff_initial=1,
                backoff_max=8),
            stop_pods_on_exit=True, **self._kubelet_runtime_fields(host)))

    def _kubelet_runtime_fields(self, host: Host) -> dict[str, Any]:
        if not self.containerd_runtime:
            return {}
        containerd = self.containerds[host.name]
        return {
            "container_runtime": "containerd",
            "container_runtime_endpoint": containerd.endpoint,
            "cgroup_root": self.cgroup_root(host.name),
            "cni_conf_dir": str(containerd.settings.cni_conf_dir),
            "cni_bridge": self.settings.cni_bridge,
            "host_gw_routes": True,
        }

    def cgroup_root(self, host: str) -> str:
        """The cgroup the host's kubelet puts its pods' cgroups in (containerd runtime)."""
        return f"/{PREFIX}{self.run_id}-{host}"

    def _proxy_argv(self, host: Host) -> list[str]:
        s = self.settings
        kubeconfig = self._kubeconfig("proxy")
        if self.containerd_runtime:
            return _argv(Proxy(node_name=host.name, node_ip=host.address, server=self.server,
                               kubeconfig=kubeconfig,
                               cluster_ip_interface=s.cluster_ip_interface,
                               service_cluster_ip_range=s.service_cluster_ip_range))
        return _argv(Proxy(node_name=host.name, node_ip=host.address, server=self.server,
                           kubeconfig=kubeconfig))

    def _kubeconfig(self, component: str) -> str | None:
        pki = self.pki
        if pki is None:
            return None
        return str({"scheduler": pki.scheduler_conf,
                    "controller-manager": pki.controller_manager_conf,
                    "proxy": pki.proxy_conf}[component])

    # ------------------------------------------------------------------ containerd runtime

    @property
    def images_dir(self) -> Path:
        return self.settings.images_dir or self.workdir / "images"

    def _start_registry_and_containerds(self) -> None:
        """Builds the test images (cached in images_dir), serves them from a registry on the
        control-plane host, and starts every worker's containerd with the pause image."""
        s = self.settings
        cp = self.control_plane
        images = build_test_images(self.images_dir)
        self.registry = LocalRegistry(LocalRegistrySettings(
            self.workdir / "registry", host=cp.address, port=s.registry_port,
            launcher=tuple(cp.argv([])), start_timeout=s.start_timeout))
        self.registry.start()
        push_test_images(self.registry, images)
        sockets = socket_dir(self.run_id)
        sockets.mkdir(parents=True, exist_ok=True)
        for host in self.workers:
            self.containerds[host.name] = ContainerdProcess(ContainerdSettings.under(
                self.workdir / "hosts" / host.name / "containerd",
                socket=sockets / f"{host.tag}.sock",
                registry_mirrors=registry_mirrors(self.registry),
                # nsenter keeps the root mount namespace (ip netns exec would remount /sys
                # without the cgroup file systems runc needs).
                launcher=("nsenter", f"--net=/var/run/netns/{host.netns}"),
                start_timeout=s.start_timeout))
        with ThreadPoolExecutor(len(self.containerds) or 1) as pool:
            for future in [pool.submit(self._start_containerd, c)
                           for c in self.containerds.values()]:
                future.result()

    def _start_containerd(self, containerd: ContainerdProcess) -> None:
        containerd.start()
        import_node_images(containerd, self.images_dir)

    def _stop_registry_and_containerds(self) -> None:
        """Stops every containerd (with its shims and containers) and the registry."""
        errors: list[BaseException] = []
        with ThreadPoolExecutor(len(self.containerds) or 1) as pool:
            futures = [pool.submit(c.stop) for c in self.containerds.values()]
            for future in futures:
                error = future.exception()
                if error is not None:
                    errors.append(error)
        if self.registry is not None:
            self.registry.stop()
        if errors:
            raise errors[0]

    def pod_cidrs(self) -> dict[str, str]:
        """Each Node's podCIDR from node IPAM ("" before it has one), in one request."""
        return {n["metadata"]["name"]: str(n.get("spec", {}).get("podCIDR", ""))
                for n in self.get_json("nodes")["items"]}

    @property
    def has_controller_manager(self) -> bool:
        return "controller-manager" in self.components

    @property
    def has_proxy(self) -> bool:
        return any(n.startswith("proxy-") for n in self.components)

    def _start_components(self) -> None:
        s = self.settings
        cp = self.control_plane
        if self.containerd_runtime:
            self._start_registry_and_containerds()
        if s.secure:
            self._init_credentials()
        etcd = self._add("etcd", cp, self._etcd_argv())
        etcd.process.start()
        self.wait_for(self.etcd_healthy, "etcd healthy", s.start_timeout,
                      watch=["etcd"])
        api = self._add("apiserver", cp, self._api_server_argv())
        api.process.start()
        self.wait_for(self.api_ready, "the API server to answer", s.start_timeout,
                      watch=["apiserver"])
        self._add("scheduler", cp, self._scheduler_argv("scheduler")).process.start()
        with_cm = s.controller_manager and has_script(ControllerManager.script)
        if with_cm:
            self._add("controller-manager", cp,
                      self._controller_manager_argv("controller-manager")).process.start()
        for host in self.workers:
            self._add(f"kubelet-{host.name}", host, self._kubelet_argv(host)).process.start()
            if s.proxy and has_script(Proxy.script):
                self._add(f"proxy-{host.name}", host, self._proxy_argv(host)).process.start()
        everything = list(self.components)
        for host in self.workers:
            self.wait_for(lambda: self.node_ready(host.name) == "True",
                          f"node {host.name} Ready", s.start_timeout, watch=everything)
        # The first of each pair leads (deterministic "active"); standbys then queue behind.
        self.wait_for(lambda: self.lease_holder("kube-scheduler") == "scheduler",
                      "the scheduler to lead", s.start_timeout, watch=everything)
        if with_cm:
            self.wait_for(
                lambda: self.lease_holder("kube-controller-manager") == "controller-manager",
                "the controller manager to lead", s.start_timeout, watch=everything)
        if s.standbys:
            self._add("scheduler-standby", cp,
                      self._scheduler_argv("scheduler-standby")).process.start()
            if with_cm:
                self._add("controller-manager-standby", cp, self._controller_manager_argv(
                    "controller-manager-standby")).process.start()
            for name in ("scheduler-standby", "controller-manager-standby"):
                if name in self.components:
                    self.wait_for(lambda: self.log_count(
                        name, "waiting to acquire leadership") >= 1, f"{name} waiting",
                        s.start_timeout, watch=everything)

    def stop(self) -> None:
        """Stops every component (kubelets first, then proxies, containerds and the registry,
        etcd last), kills what outlived them, and removes the cgroups, namespaces, veths and
        bridge. Idempotent; safe after a failed start."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(ValueError):
            atexit.unregister(self.stop)
        try:
            for host in self.hosts.values():
                _ip("link", "set", host.veth_root, "up", check=False)
                _ip("-n", host.netns, "link", "set", host.veth_ns, "up", check=False)
            for c in self.components.values():
                if c.process.running():
                    c.process.resume()
            nodes = [
                [n for n in self.components if n.startswith("kubelet-")],
                [n for n in self.components if n.startswith("proxy-")],
            ]
            control_plane = [
                [n for n in self.components if n.startswith(("controller-manager",
                                                             "scheduler"))],
                ["apiserver"], ["etcd"],
            ]
            for tier in nodes:
                self._stop_together([n for n in tier if n in self.components])
            try:
                self._stop_registry_and_containerds()
            finally:
                for tier in control_plane:
                    self._stop_together([n for n in tier if n in self.components])
            for host in self.hosts.values():
                for pid in _kill_netns_processes(host.netns):
                    self.leaked.append(f"{host.name}: {pid} {_cmdline(pid)}")
            if self.run_id:
                for pid in _remove_cgroups(self.run_id):
                    self.leaked.append(f"cgroup: {pid} {_cmdline(pid)}")
        finally:
            if self.run_id:
                _remove_run(self.run_id, self.workdir)
                self.leaked += [f"cgroup not removed: {d}" for d in _cgroup_tops(self.run_id)]
                self.leaked += [f"still mounted: {m}" for m in _mounts_under(self.workdir)]
            if self._lock_fd is not None:
                (STATE_DIR / f"{self.run_id}.lock").unlink(missing_ok=True)
                os.close(self._lock_fd)
                self._lock_fd = None

    def _stop_together(self, names: list[str]) -> None:
        """SIGTERM to all of them at once, then wait for each (SIGKILL after the timeout)."""
        for name in names:
            p = self.components[name].process.process
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name in names:
            self.components[name].process.stop(self.settings.stop_timeout)

    # ------------------------------------------------------------------ faults

    def component(self, name: str) -> Component:
        return self.components[name]

    def kill(self, name: str) -> None:
        """SIGKILL the component's process, as a crash (its children stay as a crash
        leaves them)."""
        self.components[name].process.kill()

    def terminate(self, name: str) -> int | None:
        """SIGTERM and wait (SIGKILL of the group after stop_timeout); the exit code."""
        return self.components[name].process.stop(self.settings.stop_timeout)

    def pause(self, name: str) -> None:
        self.components[name].process.pause()

    def resume(self, name: str) -> None:
        self.components[name].process.resume()

    def start_component(self, name: str) -> None:
        """Starts a stopped component again with the same argv (same data dir, same port)."""
        process = self.components[name].process
        if process.running():
            raise RuntimeError(f"{name} is still running")
        process.start()

    def restart(self, name: str, *, kill: bool = False) -> None:
        """Stops the component (SIGTERM, or SIGKILL with ``kill``) and starts it again."""
        if kill:
            self.kill(name)
        else:
            self.terminate(name)
        self.start_component(name)

    def link_down(self, host: str, *, inside: bool = False) -> None:
        """Cuts the host off the bridge: its root-side veth (or, with ``inside``, the
        interface in its namespace) goes down."""
        h = self.hosts[host]
        if inside:
            _ip("-n", h.netns, "link", "set", h.veth_ns, "down")
        else:
            _ip("link", "set", h.veth_root, "down")

    def link_up(self, host: str, *, inside: bool = False) -> None:
        h = self.hosts[host]
        if inside:
            # IPv4 addresses stay on a downed interface; its subnet route comes back with it.
            _ip("-n", h.netns, "link", "set", h.veth_ns, "up")
        else:
            _ip("link", "set", h.veth_root, "up")

    # ------------------------------------------------------------------ commands

    def klctl(self, *args: str, check: bool = True, input: str | None = None,
              timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """klctl from the root namespace against the API server."""
        pki = self.pki
        target = (["--server", self.server] if pki is None
                  else ["--kubeconfig", str(pki.admin_conf)])
        result = subprocess.run(
            [str(installed_script("klctl")), *target, *args],
            capture_output=True, text=True, input=input, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"klctl {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}{result.stderr}")
        return result

    def apply(self, manifest: str) -> str:
        return self.klctl("apply", "-f", "-", input=manifest).stdout

    def get_json(self, *args: str) -> Any:
        """``klctl get ARGS -o json``, parsed."""
        return json.loads(self.klctl("get", *args, "-o", "json").stdout)

    def run(self, host: str, argv: Sequence[str], *, timeout: float = 30,
            check: bool = False, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Runs a command inside a host's network namespace (e.g. curl to a ClusterIP)."""
        result = subprocess.run(self.hosts[host].argv(argv), capture_output=True, text=True,
                                input=input, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} on {host} exited {result.returncode}:\n"
                                 f"{result.stdout}{result.stderr}")
        return result

    def http_get(self, host: str, url: str, timeout: float = 3.0) -> str | None:
        """The body of GET ``url`` made from inside ``host``, or None when it failed."""
        result = self.run(host, ["curl", "-sS", "--max-time", str(timeout), url],
                          timeout=timeout + 5)
        return result.stdout if result.returncode == 0 else None

    def host_pids(self, host: str, pattern: str = "") -> list[int]:
        """Processes in the host (its network namespace), optionally only those whose
        command line matches ``pattern`` (a pgrep -f regular expression)."""
        pids = set(netns_pids(self.hosts[host].netns))
        if pattern:
            found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True,
                                   check=False)
            pids &= {int(p) for p in found.stdout.split()}
        return sorted(p for p in pids if _pid_alive(p))

    def pod_pids(self, host: str, pod_name: str) -> list[int]:
        """Processes in ``host`` that belong to the pod named ``pod_name`` (the kubelet
        sets HOSTNAME to the pod's name in every container's environment)."""
        marker = f"HOSTNAME={pod_name}".encode()
        found = []
        for pid in self.host_pids(host):
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            if marker in env:
                found.append(pid)
        return found

    # ------------------------------------------------------------------ state

    def etcd_healthy(self) -> bool:
        pki = self.pki
        context = None
        if pki is not None:
            context = ssl.create_default_context(cafile=str(pki.etcd_ca_cert))
            context.load_cert_chain(str(pki.apiserver_etcd_client_cert),
                                    str(pki.apiserver_etcd_client_key))
        scheme = "http" if pki is None else "https"
        try:
            with urllib.request.urlopen(f"{scheme}://{self.etcd_endpoint}/health",
                                        timeout=1, context=context) as response:
                return b'"true"' in response.read()
        except OSError:
            return False

    def api_ready(self) -> bool:
        return self.klctl("get", "ns", check=False, timeout=10).returncode == 0

    def node_ready(self, name: str) -> str:
        """The Node's Ready condition status (True/False/Unknown), "" when there is none."""
        result = self.klctl("get", "node", name, "-o", "json", check=False, timeout=10)
        if result.returncode != 0:
            return ""
        node = json.loads(result.stdout)
        for condition in node.get("status", {}).get("conditions", []):
            if condition.get("type") == "Ready":
                return str(condition.get("status", ""))
        return ""

    def lease_holder(self, name: str, namespace: str = "kube-system") -> str:
        result = self.klctl("get", "lease", name, "-n", namespace, "-o", "json", check=False,
                            timeout=10)
        if result.returncode != 0:
            return ""
        return str(json.loads(result.stdout).get("spec", {}).get("holderIdentity", ""))

    def log_count(self, name: str, text: str) -> int:
        """How often ``text`` appears in the component's log (across its restarts)."""
        try:
            return self.components[name].process.log_path.read_text(errors="replace").count(
                text)
        except OSError:
            return 0

    def logs(self, lines: int = 40) -> str:
        parts = [f"--- {n}\n{c.process.tail(lines)}" for n, c in self.components.items()]
        for name, containerd in self.containerds.items():
            parts.append(f"--- containerd-{name}\n{_tail(containerd.settings.log_path, lines)}")
        if self.registry is not None:
            parts.append(f"--- registry\n{_tail(self.registry.log_path, lines)}")
        return "\n".join(parts)

    def wait_for(self, check: Callable[[], object], what: str, timeout: float = 30.0,
                 interval: float = 0.1, *, watch: Sequence[str] = ()) -> None:
        """Polls ``check`` until truthy; fails after ``timeout`` seconds, or at once when a
        component named in ``watch`` has exited."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while True:
            try:
                if check():
                    return
            except Exception as e:  # noqa: BLE001 - "not yet"; reported at the deadline
                last = e
            for name in watch:
                process = self.components[name].process
                if not process.running():
                    raise RuntimeError(f"{name} exited with {process.returncode} while "
                                       f"waiting for {what}:\n{process.tail(30)}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}") from last
            time.sleep(interval)


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


async def eventually(check: Callable[[], Any], what: str, timeout: float = 30.0,
                     interval: float = 0.1) -> Any:
    """Async polling with a deadline: ``check`` (sync or async) until it returns something
    truthy, which is returned; exceptions count as "not yet"."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = check()
            if isinstance(result, Awaitable):
                result = await result
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - "not yet"; reported at the deadline
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}") from last
        await asyncio.sleep(interval)
