"""containerd for the containerd runtime: its config (version 2, with the CRI plugin), and a
managed containerd with its own root, state and socket, so several run side by side on one
host (a node each in tests). ``ctr`` against its socket imports images (the pause image is
preloaded so pod sandboxes never need a registry) and pulls.

Stopping one leaves nothing behind: shims outlive containerd by design, so ``stop()`` first
kills and deletes every task through containerd (each task's shim then exits), then stops
containerd, then kills any shim still serving its socket together with its containers'
processes, deletes what runc still has of them (cgroups, state), and unmounts whatever is
left mounted under its root and state.
A pod's network set-up (CNI DEL, IPAM leases) is undone only by CRI's StopPodSandbox, which
the kubelet or test does before stopping; the pods' network namespaces themselves live under
the state directory and are unmounted with it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import structlog

from kubelite.processes import ManagedProcess

log = structlog.get_logger(__name__)

CRI_PLUGIN = "io.containerd.grpc.v1.cri"
K8S_NAMESPACE = "k8s.io"
"""The containerd namespace CRI keeps pods, containers and images in."""
DEFAULT_SANDBOX_IMAGE = "docker.io/kubelite/pause:latest"
SNAPSHOTTERS = ("auto", "overlayfs", "native")
LOG_LEVELS = ("trace", "debug", "info", "warn", "error", "fatal", "panic")
RUNC_ROOT = "runc"
"""runc's state directory, under containerd's state: per containerd."""
UNIX_PATH_MAX = 107
"""Longest path a unix socket may have (sun_path holds 108 bytes with its NUL)."""
UNUSED_SNAPSHOTTERS = (
    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
)
"""Snapshotters that need their own file systems; disabled so they do not log at start."""


class ContainerdError(RuntimeError):
    """containerd or ctr is missing, did not start, or refused an operation."""


@dataclass(frozen=True)
class ContainerdSettings:
    """Settings of one containerd. :meth:`under` puts every path in one directory."""

    root: Path
    """Persistent data: content store, snapshots, metadata, CRI's files (containerd's root)."""
    state: Path
    """Runtime state: task bundles, fifos, runc's state, pods' network namespaces
    (containerd's state)."""
    socket: Path
    """Its gRPC socket, serving containerd's API and CRI (the kubelet's
    ``--container-runtime-endpoint``); ttrpc is served at this path plus ``.ttrpc``."""
    config_path: Path
    """Where the config.toml is written."""
    log_path: Path
    """containerd's output (its log) is appended here."""
    cni_conf_dir: Path
    """CRI reads the pod network's CNI config from here (the first ``cni_max_conf_num``
    files by name)."""
    cni_bin_dir: Path = Path("/usr/lib/cni")
    """CNI plugin binaries (Debian's containernetworking-plugins installs them here)."""
    cni_max_conf_num: int = 1
    """How many CNI configs from ``cni_conf_dir`` CRI loads: 1, as Kubernetes uses."""
    sandbox_image: str = DEFAULT_SANDBOX_IMAGE
    """The image of pod sandboxes (the pause container). Preload it with
    :meth:`ContainerdProcess.import_image` so sandboxes never need a registry."""
    registry_mirrors: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Registry host -> endpoint URLs CRI pulls that host's images from, in order, as
    ``{"docker.io": ["http://127.0.0.1:5000"]}``. An ``http://`` endpoint is spoken to in
    plain HTTP; its own host is mirrored to itself too, so references naming it directly
    (``127.0.0.1:5000/kubelite/testserver``) also pull over plain HTTP."""
    insecure_registries: Sequence[str] = ()
    """Registry hosts (``host:port``) whose TLS certificates are not verified."""
    snapshotter: str = "auto"
    """``overlayfs``, ``native`` (plain copies: works on any file system, slower), or ``auto``:
    overlayfs where an overlay mounts on ``root``'s file system, else native."""
    systemd_cgroup: bool = False
    """runc's SystemdCgroup: False manages cgroups directly (cgroupfs), as a node without
    systemd as its init needs; the kubelet's cgroup driver must match."""
    cgroup_path: str = ""
    """cgroup containerd itself runs in (its ``[cgroup] path``); empty: where it started.
    Pods' cgroups come from the kubelet's cgroup parent, not from here."""
    disable_apparmor: bool | None = None
    """CRI's disable_apparmor; None: disabled when the host has no AppArmor."""
    restrict_oom_score_adj: bool | None = None
    """CRI's restrict_oom_score_adj: containers' oom_score_adj no lower than containerd's own
    (runc fails to set a lower one without CAP_SYS_RESOURCE). None: restricted when this
    process lacks CAP_SYS_RESOURCE, as in some VMs and containers."""
    image_pull_progress_timeout: float | None = None
    """Seconds a pull may go without progress before CRI cancels it; written only when set.
    containerd reads it from 1.6.21 and 1.7 on; older ones (Debian 12's 1.6.20) ignore it."""
    stream_server_address: str = "127.0.0.1"
    """Address of CRI's streaming server (exec, attach, port-forward): loopback."""
    stream_server_port: int = 0
    """Its port; 0 picks a free one, so several containerds never collide."""
    log_level: str = "info"
    """containerd's log level: trace, debug, info, warn, error, fatal or panic."""
    binary: str = "containerd"
    """The containerd program: a path, or a name on PATH."""
    launcher: tuple[str, ...] = ()
    """A command containerd runs under, which execs it: ``("nsenter",
    "--net=/var/run/netns/NAME")`` serves from that network namespace (its pods' CNI bridge
    is made there). Not ``ip netns exec``: it remounts /sys without the cgroup file systems
    runc needs."""
    ctr: str = "ctr"
    """containerd's client, used to check readiness, import, pull and clean up."""
    start_timeout: float = 30.0
    """Seconds to wait for containerd to answer on its socket with CRI loaded."""
    stop_timeout: float = 10.0
    """Seconds for each stage of stopping (tasks, containerd, leftover shims) before force."""
    ctr_timeout: float = 120.0
    """Seconds one ctr command (an import or a pull) may take."""

    def __post_init__(self) -> None:
        if self.snapshotter not in SNAPSHOTTERS:
            raise ValueError(f"snapshotter: {self.snapshotter!r} is not one of "
                             f"{', '.join(SNAPSHOTTERS)}")
        ttrpc = f"{Path(self.socket).absolute()}.ttrpc"
        if len(ttrpc.encode()) > UNIX_PATH_MAX:
            raise ValueError(
                f"socket: {self.socket} is too long for a unix socket with its .ttrpc twin "
                f"({len(ttrpc.encode())} > {UNIX_PATH_MAX} bytes); use a shorter directory")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level: {self.log_level!r} is not one of "
                             f"{', '.join(LOG_LEVELS)}")
        if self.cni_max_conf_num < 1:
            raise ValueError(f"cni_max_conf_num: {self.cni_max_conf_num} must be 1 or more")
        if not 0 <= self.stream_server_port <= 65535:
            raise ValueError(f"stream_server_port: {self.stream_server_port} is not a port")
        for host, endpoints in self.registry_mirrors.items():
            if not host or "/" in host:
                raise ValueError(f"registry_mirrors: {host!r} is not a registry host")
            if isinstance(endpoints, str) or not endpoints:
                raise ValueError(
                    f"registry_mirrors[{host!r}]: must be a non-empty list of endpoint URLs")
            for endpoint in endpoints:
                parts = urlsplit(endpoint)
                if parts.scheme not in ("http", "https") or not parts.netloc:
                    raise ValueError(f"registry_mirrors[{host!r}]: {endpoint!r} is not an "
                                     "http:// or https:// URL")
        if self.image_pull_progress_timeout is not None and \
                self.image_pull_progress_timeout <= 0:
            raise ValueError(f"image_pull_progress_timeout: {self.image_pull_progress_timeout}"
                             " must be positive")

    @classmethod
    def under(cls, directory: Path, **overrides: Any) -> ContainerdSettings:
        """Settings with every path in ``directory``: root/, state/, containerd.sock,
        config.toml, containerd.log and net.d/ (CNI configs); ``overrides`` set other fields."""
        directory = Path(directory).absolute()
        paths: dict[str, Any] = {
            "root": directory / "root", "state": directory / "state",
            "socket": directory / "containerd.sock", "config_path": directory / "config.toml",
            "log_path": directory / "containerd.log", "cni_conf_dir": directory / "net.d",
        }
        return cls(**{**paths, **overrides})


# -- config.toml -------------------------------------------------------------------------------


def containerd_config(settings: ContainerdSettings, *, snapshotter: str | None = None,
                      disable_apparmor: bool | None = None,
                      restrict_oom_score_adj: bool | None = None) -> dict[str, Any]:
    """The config as a table. ``snapshotter``, ``disable_apparmor`` and
    ``restrict_oom_score_adj`` replace what settings would detect on this host (``auto``,
    None)."""
    root = Path(settings.root).absolute()
    state = Path(settings.state).absolute()
    socket = Path(settings.socket).absolute()
    snapshotter = snapshotter or resolve_snapshotter(settings)
    if disable_apparmor is None:
        disable_apparmor = settings.disable_apparmor
    if disable_apparmor is None:
        disable_apparmor = not apparmor_enabled()
    if restrict_oom_score_adj is None:
        restrict_oom_score_adj = settings.restrict_oom_score_adj
    if restrict_oom_score_adj is None:
        restrict_oom_score_adj = not has_capability(CAP_SYS_RESOURCE)

    mirrors: dict[str, dict[str, list[str]]] = {}
    for host, endpoints in settings.registry_mirrors.items():
        mirrors[host] = {"endpoint": list(endpoints)}
    for endpoints in list(settings.registry_mirrors.values()):
        for endpoint in endpoints:
            parts = urlsplit(endpoint)
            if parts.scheme == "http":
                mirrors.setdefault(parts.netloc, {"endpoint": [f"http://{parts.netloc}"]})
    configs = {host: {"tls": {"insecure_skip_verify": True}}
               for host in settings.insecure_registries}

    cri: dict[str, Any] = {
        "sandbox_image": settings.sandbox_image,
        "stream_server_address": settings.stream_server_address,
        "stream_server_port": str(settings.stream_server_port),
        "disable_tcp_service": True,
        "enable_selinux": False,
        "disable_apparmor": disable_apparmor,
        "restrict_oom_score_adj": restrict_oom_score_adj,
        # Pods' network namespaces under this containerd's state, not the host-wide
        # /var/run/netns: containerds side by side never see each other's.
        "netns_mounts_under_state_dir": True,
        "cni": {
            "bin_dir": str(Path(settings.cni_bin_dir).absolute()),
            "conf_dir": str(Path(settings.cni_conf_dir).absolute()),
            "max_conf_num": settings.cni_max_conf_num,
        },
        "containerd": {
            "snapshotter": snapshotter,
            "default_runtime_name": "runc",
            "runtimes": {"runc": {
                "runtime_type": "io.containerd.runc.v2",
                # runc's state per containerd, beside the rest of its state.
                "options": {"SystemdCgroup": settings.systemd_cgroup,
                            "Root": str(state / RUNC_ROOT)},
            }},
        },
        "registry": {"mirrors": mirrors, "configs": configs},
    }
    if settings.image_pull_progress_timeout is not None:
        cri["image_pull_progress_timeout"] = f"{settings.image_pull_progress_timeout:g}s"

    return {
        "version": 2,
        "root": str(root),
        "state": str(state),
        "oom_score": 0,
        # Without CRI this containerd is of no use to a kubelet: fail at start, not later.
        "required_plugins": [CRI_PLUGIN],
        "disabled_plugins": list(UNUSED_SNAPSHOTTERS),
        "grpc": {"address": str(socket), "tcp_address": "", "uid": 0, "gid": 0},
        # Every listener is this containerd's own: ttrpc beside its socket; no debug socket
        # and no metrics listener that a second containerd would collide with.
        "ttrpc": {"address": f"{socket}.ttrpc", "uid": 0, "gid": 0},
        "debug": {"address": "", "level": settings.log_level},
        "metrics": {"address": ""},
        "cgroup": {"path": settings.cgroup_path},
        "plugins": {
            "io.containerd.internal.v1.opt": {"path": str(root / "opt")},
            CRI_PLUGIN: cri,
        },
    }


def render_config(settings: ContainerdSettings, *, snapshotter: str | None = None,
                  disable_apparmor: bool | None = None,
                  restrict_oom_score_adj: bool | None = None) -> str:
    """config.toml's text (see :func:`containerd_config`)."""
    return toml_text(containerd_config(
        settings, snapshotter=snapshotter, disable_apparmor=disable_apparmor,
        restrict_oom_score_adj=restrict_oom_score_adj))


def toml_text(table: Mapping[str, Any]) -> str:
    """TOML for a table of tables, strings, numbers, booleans and lists of those."""
    lines: list[str] = []
    _toml_table(table, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_table(table: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = [(k, v) for k, v in table.items() if not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
    if path and (scalars or not tables):
        lines.append("")
        lines.append(f"[{'.'.join(_toml_key(p) for p in path)}]")
    for key, value in scalars:
        lines.append(f"{'  ' * min(len(path), 1)}{_toml_key(key)} = {_toml_value(value)}")
    for key, value in tables:
        _toml_table(value, [*path, key], lines)


def _toml_key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
    return key if bare else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string (ASCII, \uXXXX escapes) is a TOML basic string.
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


# -- host checks -------------------------------------------------------------------------------


def apparmor_enabled() -> bool:
    """AppArmor is on in this kernel (containerd applies profiles only then)."""
    try:
        return Path("/sys/module/apparmor/parameters/enabled").read_text().strip() == "Y"
    except OSError:
        return False


CAP_SYS_RESOURCE = 24
"""The capability needed to lower a process's oom_score_adj."""


def has_capability(capability: int) -> bool:
    """This process has ``capability`` in its effective set."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> capability & 1)
    return False


def resolve_snapshotter(settings: ContainerdSettings) -> str:
    if settings.snapshotter != "auto":
        return settings.snapshotter
    return "overlayfs" if overlay_works(Path(settings.root)) else "native"


def overlay_works(directory: Path) -> bool:
    """An overlay with its upper layer in ``directory``'s file system mounts (root only; an
    overlay or some network file systems below refuse it)."""
    if os.geteuid() != 0:
        return False
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / ".overlay-probe"
    shutil.rmtree(probe, ignore_errors=True)
    parts = {name: probe / name for name in ("lower", "upper", "work", "merged")}
    for path in parts.values():
        path.mkdir(parents=True)
    options = (f"lowerdir={parts['lower']},upperdir={parts['upper']},"
               f"workdir={parts['work']}").encode()
    libc = _libc()
    try:
        if libc.mount(b"overlay", str(parts["merged"]).encode(), b"overlay", 0, options) != 0:
            return False
        libc.umount2(str(parts["merged"]).encode(), 0)
        return True
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_char_p]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return libc


# -- the process -------------------------------------------------------------------------------


class ContainerdProcess:
    """``with ContainerdProcess(ContainerdSettings.under(dir, ...)) as containerd: ...``."""

    def __init__(self, settings: ContainerdSettings) -> None:
        self.settings = settings
        self.socket = Path(settings.socket).absolute()
        self.snapshotter = ""
        """The snapshotter in effect, once started."""
        self._process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        """The socket path, as ``ctr --address`` and crictl take it."""
        return str(self.socket)

    @property
    def endpoint(self) -> str:
        """``unix://SOCKET``, as the kubelet's ``--container-runtime-endpoint`` takes it."""
        return f"unix://{self.socket}"

    @property
    def runc_root(self) -> Path:
        """runc's state directory for this containerd's containers (CRI's are kept there;
        give it to ``ctr run --runc-root`` so containers with one name in two containerds
        never collide)."""
        return Path(self.settings.state).absolute() / RUNC_ROOT

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    def start(self) -> None:
        s = self.settings
        binary = shutil.which(s.binary)
        if binary is None:
            raise ContainerdError(f"{s.binary} not found: install Debian's containerd "
                                  "(apt-get install containerd runc)")
        if shutil.which(s.ctr) is None:
            raise ContainerdError(f"{s.ctr} not found: it comes with Debian's containerd")
        for directory in (s.root, s.state, s.cni_conf_dir, self.socket.parent,
                          Path(s.config_path).parent):
            Path(directory).mkdir(parents=True, exist_ok=True)
        Path(s.root).chmod(0o711)
        self.snapshotter = resolve_snapshotter(s)
        Path(s.config_path).write_text(render_config(s, snapshotter=self.snapshotter))
        self.socket.unlink(missing_ok=True)
        self._process = ManagedProcess(
            "containerd",
            [*s.launcher, binary, "--config", str(Path(s.config_path).absolute())],
            Path(s.log_path))
        self._process.start()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("containerd started", socket=str(self.socket), pid=self.pid,
                 snapshotter=self.snapshotter)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.settings.start_timeout
        last = ""
        while True:
            process = self._process
            if process is not None and not process.running():
                raise ContainerdError(
                    f"containerd exited with {process.returncode}:\n{process.tail()}")
            if self.socket.exists():
                try:
                    plugins = self.ctr("plugins", "ls", namespace=None, timeout=5)
                    status = _plugin_status(plugins, CRI_PLUGIN)
                    if status == "ok":
                        return
                    last = f"CRI plugin status {status!r}"
                except ContainerdError as e:
                    last = str(e)
            if time.monotonic() > deadline:
                tail = process.tail() if process is not None else ""
                raise ContainerdError(
                    f"containerd did not serve CRI on {self.socket} within "
                    f"{self.settings.start_timeout}s: {last}\n{tail}")
            time.sleep(0.05)

    def __enter__(self) -> ContainerdProcess:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- ctr ---------------------------------------------------------------------------------

    def ctr(self, *args: str, namespace: str | None = K8S_NAMESPACE,
            timeout: float | None = None) -> str:
        """Runs ``ctr --address SOCKET [--namespace NS] ARGS``; its output, or
        ContainerdError with its error output."""
        argv = [self.settings.ctr, "--address", str(self.socket)]
        if namespace is not None:
            argv += ["--namespace", namespace]
        argv += list(args)
        try:
            done = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL,
                                  timeout=timeout or self.settings.ctr_timeout)
        except subprocess.TimeoutExpired as e:
            raise ContainerdError(f"{' '.join(argv)} took over {e.timeout}s") from e
        if done.returncode != 0:
            raise ContainerdError(f"{' '.join(argv)} exited with {done.returncode}: "
                                  f"{done.stderr.decode(errors='replace').strip()}")
        return done.stdout.decode(errors="replace")

    def import_image(self, archive_path: Path, *, namespace: str = K8S_NAMESPACE,
                     unpack: bool = True) -> None:
        """Imports an image archive (oci-archive or docker-archive, as
        :func:`kubelite.oci_images.export_archive` writes) and unpacks it for CRI's
        snapshotter, under the names the archive gives. ``unpack=False`` leaves the unpacking
        to the first container of the image (CRI and ``ctr run`` unpack what they need)."""
        args = ["images", "import", "--snapshotter", self.snapshotter or "overlayfs"]
        if not unpack:
            args.append("--no-unpack")
        self.ctr(*args, str(Path(archive_path).absolute()), namespace=namespace)

    def pull(self, reference: str, *, plain_http: bool = False, user: str | None = None,
             namespace: str = K8S_NAMESPACE) -> None:
        """Pulls and unpacks an image with ctr (``plain_http`` for an http registry, ``user``
        as ``name:password``): what CRI's PullImage does, without CRI."""
        args = ["images", "pull", "--snapshotter", self.snapshotter or "overlayfs"]
        if plain_http:
            args.append("--plain-http")
        if user is not None:
            args += ["--user", user]
        self.ctr(*args, reference, namespace=namespace)

    def image_names(self, *, namespace: str = K8S_NAMESPACE) -> list[str]:
        return self.ctr("images", "ls", "--quiet", namespace=namespace).split()

    # -- stopping ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stops every task, then containerd (SIGTERM, SIGKILL after ``stop_timeout``), then
        kills any of its shims and their containers still alive, and unmounts what is left
        under its root and state. Returns when none of its processes remain."""
        process = self._process
        errors: list[str] = []
        if process is not None and process.running():
            try:
                self._delete_tasks()
            except ContainerdError as e:
                # Carried on: the shims are killed below either way.
                errors.append(str(e))
                log.warning("containerd tasks not deleted before stop", error=str(e))
            process.stop(self.settings.stop_timeout)
        self._process = None
        self._kill_shims()
        self._delete_runc_leftovers()
        self._unmount_leftovers()
        if errors:
            log.info("containerd stopped after force", socket=str(self.socket), errors=errors)

    def _delete_tasks(self) -> None:
        """Kills and deletes every task in every namespace, and waits for their shims to exit
        (containerd, their parent, reaps them)."""
        for namespace in self.ctr("namespaces", "ls", "--quiet", namespace=None).split():
            tasks = self.ctr("tasks", "ls", "--quiet", namespace=namespace).split()
            if tasks:
                # --force kills the task's processes (all of them) first.
                self.ctr("tasks", "delete", "--force", *tasks, namespace=namespace,
                         timeout=self.settings.stop_timeout)
        deadline = time.monotonic() + self.settings.stop_timeout
        while self.shim_pids() and time.monotonic() < deadline:
            time.sleep(0.05)

    def shim_pids(self) -> list[int]:
        """Live shims serving this containerd (found by their ``-address`` argument)."""
        wanted = str(self.socket)
        pids = []
        for pid, argv in _processes():
            if argv and os.path.basename(argv[0]).startswith("containerd-shim") and \
                    _argument(argv, "-address") == wanted and not _is_zombie(pid):
                pids.append(pid)
        return pids

    def _kill_shims(self) -> None:
        shims = self.shim_pids()
        if not shims:
            return
        # A shim's children are its containers' first processes; the rest of each container
        # is in their process trees (killing a pid namespace's first process ends it all).
        victims = _descendants(shims)
        log.warning("killing shims left behind by containerd", socket=str(self.socket),
                    shims=shims, processes=len(victims))
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.settings.stop_timeout
        while True:
            alive = [pid for pid in victims if _alive(pid)]
            if not alive:
                return
            if time.monotonic() > deadline:
                raise ContainerdError(f"processes of containerd {self.socket} survived "
                                      f"SIGKILL for {self.settings.stop_timeout}s: {alive}")
            time.sleep(0.02)

    def _delete_runc_leftovers(self) -> None:
        """``runc delete --force`` for every container runc still has under this containerd's
        runc root (left by killed shims): ends any process in its cgroup, removes the cgroup
        and runc's state."""
        runc = shutil.which("runc") or shutil.which("runc", path="/usr/sbin:/sbin")
        if runc is None or not self.runc_root.is_dir():
            return
        for namespace_root in sorted(self.runc_root.iterdir()):
            for container in sorted(p.name for p in namespace_root.iterdir() if p.is_dir()):
                done = subprocess.run(
                    [runc, "--root", str(namespace_root), "delete", "--force", container],
                    capture_output=True, stdin=subprocess.DEVNULL,
                    timeout=self.settings.stop_timeout)
                if done.returncode != 0:
                    log.warning("runc could not delete a leftover container", id=container,
                                error=done.stderr.decode(errors="replace").strip())

    def _unmount_leftovers(self) -> None:
        """Unmounts (lazily, deepest first) what a killed shim left mounted under root and
        state: containers' root file systems, pods' /dev/shm and network namespaces."""
        prefixes = [str(Path(self.settings.root).absolute()) + "/",
                    str(Path(self.settings.state).absolute()) + "/"]
        mounts = [m for m in _mount_points() if any(m.startswith(p) for p in prefixes)]
        if not mounts:
            return
        libc = _libc()
        mnt_detach = 2
        for mount in sorted(mounts, key=len, reverse=True):
            if libc.umount2(mount.encode(), mnt_detach) != 0:
                errno = ctypes.get_errno()
                log.warning("leftover mount not unmounted", path=mount,
                            error=os.strerror(errno))


# -- /proc -------------------------------------------------------------------------------------


def _plugin_status(listing: str, plugin: str) -> str:
    """The STATUS column of ``ctr plugins ls`` for ``plugin`` (TYPE.ID); "" when absent."""
    kind, _, ident = plugin.rpartition(".")
    for line in listing.splitlines()[1:]:
        columns = line.split()
        if len(columns) >= 3 and columns[0] == kind and columns[1] == ident:
            return columns[-1]
    return ""


def _processes() -> Iterator[tuple[int, list[str]]]:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        yield int(entry), [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _argument(argv: Sequence[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1:]
    return None


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return text[text.rindex(")") + 2:].split()


def _is_zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] in ("Z", "X")


def _alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _descendants(roots: Sequence[int]) -> list[int]:
    """``roots`` and every process below them."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    pending = list(roots)
    while pending:
        pid = pending.pop()
        if pid not in found:
            found.append(pid)
            pending.extend(children.get(pid, []))
    return found


def _mount_points() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if len(fields) > 4:
            # Octal escapes (\040 for a space) as the kernel writes them.
            points.append(fields[4].encode().decode("unicode_escape"))
    return points
