"""The process runtime: each container is a process group on the node, started by a shim.

Layout under ``root_dir``::

    pods/<uid>/sandbox.json            the pod's identity (from run_pod_sandbox)
    pods/<uid>/volumes/<name>/         emptyDir and kubelet-written volumes (volume_dir)
    pods/<uid>/resolv.conf, etc-hosts  the pod's /etc/resolv.conf and /etc/hosts (bound over
                                       the node's where containers have a mount namespace)
    containers/<id>/config.json        what to run and how: argv, env, mounts, labels, ...
    containers/<id>/shim.json          pid and start time of the container's shim
    containers/<id>/pid                pid of the container (written by the shim)
    containers/<id>/started.json       pid, start ticks and start time (written before exec)
    containers/<id>/exit               "<exit code> <finish time>" (written by the shim)
    containers/<id>/error              why the container could not start (exit code 128)
    containers/<id>/{upper,work,rootfs,tmp}/   its overlay layer and private /tmp
    logs/<namespace>_<pod>_<uid>/<container>/<attempt>.log

    containers/<id>/shim.log           the shim's own errors

Everything a status needs is on disk, so a new ProcessRuntime on the same root (a restarted
kubelet) knows the containers the previous one started, running or exited. The shim is a
``/bin/sh`` that starts the launcher (launcher.py, which becomes the container), waits for it
and records its exit code, so it outlives the kubelet. Process ids are checked against the
start time recorded with them, so a reused pid is never taken for the container.

Isolation (see ``ProcessRuntimeSettings.isolation``): with a mount namespace the container's
root is an overlay of the node's ``/`` with a layer of its own (in a user namespace, one
overlay per top-level directory, since the kernel refuses ``/`` there), so no write outside
its volumes reaches the node, and volumes appear at their mountPath as in Kubernetes. Without
one, containers that mount volumes are refused rather than written onto the node's paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import pwd
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from kubelet.runtime import images
from kubelet.runtime.busybox import busybox_applets
from kubelet.runtime.etc_files import (
    ETC_HOSTS,
    RESOLV_CONF,
    mounts_path,
    pod_hosts,
    resolv_conf,
    write_in_place,
)
from kubelet.runtime.interface import (
    ContainerConfig,
    ContainerState,
    ContainerStatus,
    ExecResult,
    HostAlias,
    ImageFsUsage,
    ImageInfo,
    ImagePull,
    PodSandboxConfig,
    RegistryAuth,
    RuntimeError_,
    Sandbox,
)
from kubelet.runtime.nodefs import (
    _SAFE_NAME,
    _alive,
    _exit_code,
    _is_under,
    _kill_group,
    _proc_stat,
    _read_json,
    _read_text,
    _rmtree,
    _safe,
    _tail_offset,
    _unmount_under,
    _write_json,
)

log = structlog.get_logger(__name__)

ISOLATIONS = ("auto", "mount-namespace", "user-namespace", "none")
_NAMESPACED = ("mount-namespace", "user-namespace")

POD_UID_LABEL = "io.kubernetes.pod.uid"
POD_NAME_LABEL = "io.kubernetes.pod.name"
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
CONTAINER_NAME_LABEL = "io.kubernetes.container.name"
ATTEMPT_LABEL = "io.kubernetes.container.restartCount"
POD_IP_ENV = "KUBELITE_POD_IP"
"""The pod's IP, in every container's environment (pods share the node's network namespace,
so this is where they bind)."""

LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launcher.py")
START_FAILED = 128
"""Exit code the launcher gives a container it could not start (runc's)."""

# The shim: starts the launcher with the start pipe (its stdin) as fd 3, records the pid,
# waits, and records the exit code ($? is 128+signal for a signalled process) and time.
_SHIM = r"""
python=$1 launcher=$2 dir=$3 log=$4
# sh gives a background job /dev/null as stdin, so the pipe moves to fd 3 first.
exec 3<&0 0</dev/null
"$python" -I -S "$launcher" launch "$dir" >>"$log" 2>&1 &
pid=$!
exec 3<&-
echo "$pid" >"$dir/pid"
wait "$pid"
code=$?
# The rest of the container's process group ends with it, as in a pid namespace.
kill -s KILL -- "-$pid" 2>/dev/null
printf '%s %s\n' "$code" "$(date +%s.%N)" >"$dir/.exit.tmp"
mv -f "$dir/.exit.tmp" "$dir/exit"
"""

_OVERLAY_UNSAFE = re.compile(r"[,:\\\s]")


@dataclass(frozen=True)
class ProcessRuntimeSettings:
    """Settings of the process runtime."""

    root_dir: str
    """Pods' directories and volumes, containers' state and layers, and logs live here."""
    isolation: str = "auto"
    """How containers are kept off the node's files. ``mount-namespace`` (needs root): own
    mount namespace, root an overlay of the node's ``/``. ``user-namespace``: the same inside
    an unprivileged user namespace, where the kernel allows. ``none``: plain processes;
    containers with volume mounts are refused. ``auto``: the first of these that works here."""
    stop_poll_interval: float = 0.05
    """Seconds between checks whether a stopping container has exited."""
    log_poll_interval: float = 0.1
    """Seconds between checks for new output while following a log."""
    start_timeout: float = 30.0
    """Seconds a container may take from start until its program is exec'd."""
    kill_timeout: float = 10.0
    """Seconds to wait for a container to be gone after SIGKILL before reporting an error."""
    python: str = sys.executable
    """Interpreter that runs the launcher (which needs only the standard library)."""
    image_python: str = sys.executable
    """Interpreter of the built-in Python images (kubelite/agnhost, kubelite/pause)."""
    image_source_root: str = images.SOURCE_ROOT
    """Directory holding the ``kubelet`` package those images run."""
    busybox: str = "busybox"
    """The busybox binary the busybox image runs: a path, or a name looked up on the node's
    PATH (Debian's busybox-static installs /bin/busybox)."""

    def __post_init__(self) -> None:
        if self.isolation not in ISOLATIONS:
            raise ValueError(f"unknown isolation {self.isolation!r} "
                             f"(one of: {', '.join(ISOLATIONS)})")


class ProcessRuntime:
    """The ``process`` runtime (see the module docstring)."""

    name = "process"

    def __init__(self, settings: ProcessRuntimeSettings) -> None:
        self.settings = settings
        self.root_dir = os.path.abspath(settings.root_dir)
        self._pods = os.path.join(self.root_dir, "pods")
        self._containers = os.path.join(self.root_dir, "containers")
        self._logs = os.path.join(self.root_dir, "logs")
        self._images = os.path.join(self.root_dir, "images")
        for path in (self._pods, self._containers, self._logs, self._images):
            os.makedirs(path, exist_ok=True)
        # Shims this process started, so it can reap them when they exit.
        self._shims: dict[str, subprocess.Popen[bytes]] = {}
        self._builtins = images.Builtins(settings.image_python, settings.image_source_root)
        self.isolation: str = self._choose_isolation()
        """The isolation in effect: mount-namespace, user-namespace or none."""

    # -- isolation ---------------------------------------------------------------------------

    def _choose_isolation(self) -> str:
        requested = self.settings.isolation
        if requested == "none":
            return "none"
        if requested == "auto":
            candidates = ["mount-namespace", "user-namespace"] if os.geteuid() == 0 else [
                "user-namespace"]
        else:
            candidates = [requested]
        reasons: list[str] = []
        for mode in candidates:
            reason = self._probe(mode)
            if reason is None:
                if reasons:
                    # A fallback changes what pods can do (user namespaces cannot mount on
                    # every path): say why the stronger isolation was not taken.
                    log.warning("process runtime isolation falls back", isolation=mode,
                                root_dir=self.root_dir, reasons=reasons)
                else:
                    log.info("process runtime isolation", isolation=mode,
                             root_dir=self.root_dir)
                return mode
            reasons.append(reason)
        if requested != "auto":
            raise ValueError(f"isolation {requested!r} is not available: {'; '.join(reasons)}")
        log.warning(
            "no mount namespace available: containers that mount volumes will be refused "
            "(run the kubelet as root or enable unprivileged user namespaces)",
            reasons=reasons,
        )
        return "none"

    def _probe(self, mode: str) -> str | None:
        """None when ``mode`` works here, else why not."""
        if _OVERLAY_UNSAFE.search(self._containers):
            return f"{mode}: root_dir {self.root_dir!r} has a character overlayfs cannot take"
        scratch = os.path.join(self.root_dir, f".probe-{secrets.token_hex(4)}")
        try:
            result = subprocess.run(
                [self.settings.python, "-I", "-S", LAUNCHER, "probe", mode, scratch],
                capture_output=True, timeout=30, check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"{mode}: probe failed: {e}"
        finally:
            _rmtree(scratch)
        if result.returncode != 0:
            return result.stderr.decode(errors="replace").strip() or f"{mode}: probe failed"
        return None

    # -- paths -------------------------------------------------------------------------------

    def pod_dir(self, pod_uid: str) -> str:
        return os.path.join(self._pods, _safe("pod uid", pod_uid))

    def volume_dir(self, pod_uid: str, volume_name: str) -> str:
        """The directory of the pod's volume ``volume_name`` (created): emptyDir's storage and
        where the kubelet writes configMap, secret and downwardAPI files."""
        path = os.path.join(self.pod_dir(pod_uid), "volumes", _safe("volume name", volume_name))
        os.makedirs(path, exist_ok=True)
        return path

    def _dir(self, container_id: str) -> str:
        return os.path.join(self._containers, container_id)

    def _config(self, container_id: str) -> dict[str, Any]:
        config = None
        if _SAFE_NAME.match(container_id):
            config = _read_json(os.path.join(self._dir(container_id), "config.json"))
        if config is None:
            raise RuntimeError_("ContainerNotFound", f"no container with id {container_id!r}")
        return config

    # -- sandboxes ---------------------------------------------------------------------------

    async def close(self) -> None:
        pass  # no connections: containers are the runtime's own child processes

    async def run_pod_sandbox(self, config: PodSandboxConfig) -> Sandbox:
        path = self.pod_dir(config.uid)
        os.makedirs(os.path.join(path, "volumes"), exist_ok=True)
        if config.dns is not None:
            try:
                write_in_place(os.path.join(path, "resolv.conf"), resolv_conf(config.dns))
            except OSError as e:
                raise RuntimeError_("CreatePodSandboxError",
                                    f"cannot write the pod's resolv.conf: {e}") from e
        _write_json(os.path.join(path, "sandbox.json"), {
            "uid": config.uid, "name": config.name, "namespace": config.namespace,
            "labels": dict(config.labels),
            # What the pod's /etc/hosts is made of when its containers are created.
            "hostname": config.hostname, "domain": config.domain,
            "host_network": config.host_network, "dns": config.dns is not None,
            "host_aliases": [[a.ip, list(a.hostnames)] for a in config.host_aliases],
        })
        return Sandbox(id=path)

    async def ensure_image(
        self,
        image: str,
        pull_policy: str,
        auth: Sequence[RegistryAuth] = (),
        on_pull: Callable[[], None] | None = None,
    ) -> ImagePull:
        # No image store: a catalogued image is always present, and any other runs only as
        # the container's own command on the node (create_container says so when it cannot).
        # Every container of this runtime runs as the kubelet's own user.
        return ImagePull(image_ref=image, pulled=False, uid=os.getuid())

    async def list_images(self) -> list[ImageInfo]:
        return []  # no image store: nothing to collect

    async def remove_image(self, image_id: str) -> None:
        pass

    async def image_fs_usage(self) -> ImageFsUsage | None:
        return None

    async def remove_pod_sandbox(self, pod_uid: str) -> None:
        for status in await self.list_containers(pod_uid):
            log.warning("removing a container left in a removed pod", container_id=status.id,
                        container=status.name, pod_uid=pod_uid)
            await self.remove_container(status.id)
        path = self.pod_dir(pod_uid)
        sandbox = _read_json(os.path.join(path, "sandbox.json"))
        _unmount_under(path)
        _rmtree(path)
        if sandbox is not None:
            _rmtree(self._pod_log_dir(sandbox["namespace"], sandbox["name"], pod_uid))
        else:
            for entry in os.listdir(self._logs):
                if entry.endswith("_" + pod_uid):
                    _rmtree(os.path.join(self._logs, entry))

    def _pod_log_dir(self, namespace: str, name: str, uid: str) -> str:
        return os.path.join(self._logs, f"{namespace}_{name}_{uid}")

    # -- containers --------------------------------------------------------------------------

    async def create_container(self, pod_uid: str, config: ContainerConfig) -> str:
        sandbox = _read_json(os.path.join(self.pod_dir(pod_uid), "sandbox.json"))
        if sandbox is None:
            raise RuntimeError_("CreateContainerError",
                                f"pod sandbox {pod_uid} does not exist (run_pod_sandbox first)")
        _safe("container name", config.name)
        env = images.image_env(config.image, self._builtins)
        image_binds: list[dict[str, str]] = []
        known = images.lookup(config.image, self._builtins)
        if known is not None and self.isolation in _NAMESPACED:
            image_binds.extend({"host_path": path, "container_path": path}
                               for path in self._hidden_in_containers(known.node_paths))
        if known is not None and known.busybox:
            applets = self._busybox_applets(config.image)
            if self.isolation in _NAMESPACED:
                image_binds.append({"host_path": applets, "container_path": images.BUSYBOX_BIN})
            else:
                env["PATH"] = f"{applets}:{images.DEFAULT_PATH}"
        env.setdefault("HOME", self._home())
        env.update(config.env)
        # command and args are expanded from the container's env, as the kubelet does.
        argv = images.resolve(
            config.image,
            list(config.command),  # expanded by the kubelet, for every runtime
            list(config.args),
            self._builtins,
        )
        mounts = self._check_mounts(config)
        mounts.extend(self._etc_mounts(pod_uid, sandbox, config))
        container_id = secrets.token_hex(32)
        path = self._dir(container_id)
        os.makedirs(path)
        layer = {name: os.path.join(path, name) for name in ("upper", "work", "rootfs", "tmp")}
        if self.isolation in _NAMESPACED:
            for name in ("upper", "work", "rootfs"):
                os.mkdir(layer[name], 0o755)
        os.mkdir(layer["tmp"])
        os.chmod(layer["tmp"], 0o1777)
        if self.isolation == "none":
            env.setdefault("TMPDIR", layer["tmp"])
        log_dir = os.path.join(self._pod_log_dir(sandbox["namespace"], sandbox["name"], pod_uid),
                               config.name)
        os.makedirs(log_dir, exist_ok=True)
        log_path = os.path.join(log_dir, f"{config.attempt}.log")
        with open(log_path, "ab"):
            pass  # exists from now on, so logs can be read (and followed) before start
        labels = dict(config.labels) | {
            POD_UID_LABEL: pod_uid, POD_NAME_LABEL: sandbox["name"],
            POD_NAMESPACE_LABEL: sandbox["namespace"], CONTAINER_NAME_LABEL: config.name,
            ATTEMPT_LABEL: str(config.attempt),
        }
        _write_json(os.path.join(path, "config.json"), {
            "id": container_id, "pod_uid": pod_uid, "name": config.name, "image": config.image,
            "attempt": config.attempt, "labels": labels, "log_path": log_path,
            "created_at": time.time(), "argv": argv, "env": env,
            "working_dir": config.working_dir, "mounts": mounts, "isolation": self.isolation,
            "image_binds": image_binds, "root_dir": self.root_dir, **layer,
        })
        return container_id

    def _hidden_in_containers(self, paths: Sequence[str]) -> list[str]:
        """Those of ``paths`` a container would not see (under its private /tmp or under the
        runtime's hidden directory), outermost only; they are bound in read-only."""
        hidden = sorted({os.path.abspath(p) for p in paths
                         if _is_under(os.path.abspath(p), "/tmp")
                         or _is_under(os.path.abspath(p), self.root_dir)}, key=len)
        outermost: list[str] = []
        for path in hidden:
            if not any(_is_under(path, outer) for outer in outermost) and os.path.isdir(path):
                outermost.append(path)
        return outermost

    def _busybox_applets(self, image: str) -> str:
        return busybox_applets(self.settings.busybox, self._images, image)

    def _home(self) -> str:
        try:
            return pwd.getpwuid(os.geteuid()).pw_dir or "/"
        except KeyError:
            return "/"

    def _check_mounts(self, config: ContainerConfig) -> list[dict[str, Any]]:
        if config.mounts and self.isolation == "none":
            raise RuntimeError_(
                "CreateContainerError",
                f"container {config.name!r} mounts volumes but no mount namespace is available "
                "(run the kubelet as root or enable unprivileged user namespaces); refusing to "
                "mount volumes onto host paths",
            )
        mounts = []
        for mount in config.mounts:
            target = os.path.normpath(mount.container_path)
            if not os.path.isabs(target) or target == "/":
                raise RuntimeError_("CreateContainerError",
                                    f"invalid mount path {mount.container_path!r}: it must be an "
                                    "absolute path other than /")
            if not os.path.exists(mount.host_path):
                raise RuntimeError_("CreateContainerError",
                                    f"mount source {mount.host_path} does not exist")
            mounts.append({"host_path": os.path.abspath(mount.host_path),
                           "container_path": target, "read_only": mount.read_only})
        return mounts

    def _etc_mounts(self, pod_uid: str, sandbox: dict[str, Any], config: ContainerConfig
                    ) -> list[dict[str, Any]]:
        """The pod's /etc/resolv.conf and /etc/hosts (in its directory), bound over the node's
        in the container's mount namespace, unless the container mounts one there itself.
        Without a mount namespace the container sees the node's files."""
        if self.isolation not in _NAMESPACED:
            return []
        own = [m.container_path for m in config.mounts]
        pod_dir = self.pod_dir(pod_uid)
        mounts: list[dict[str, Any]] = []
        if sandbox.get("dns") and not mounts_path(own, RESOLV_CONF):
            mounts.append({"host_path": os.path.join(pod_dir, "resolv.conf"),
                           "container_path": RESOLV_CONF, "read_only": False})
        if mounts_path(own, ETC_HOSTS):
            return mounts
        pod = PodSandboxConfig(
            uid=pod_uid, name=sandbox["name"], namespace=sandbox["namespace"],
            hostname=sandbox.get("hostname", ""), domain=sandbox.get("domain", ""),
            host_network=sandbox.get("host_network", False),
            host_aliases=tuple(HostAlias(ip, tuple(names))
                               for ip, names in sandbox.get("host_aliases", [])),
        )
        try:
            # The kubelet gives every container its pod's IP in POD_IP_ENV.
            hosts = pod_hosts(pod, config.env.get(POD_IP_ENV, ""))
            if hosts is None:
                return mounts
            path = os.path.join(pod_dir, "etc-hosts")
            write_in_place(path, hosts)
        except OSError as e:
            raise RuntimeError_("CreateContainerError",
                                f"cannot write the pod's /etc/hosts: {e}") from e
        mounts.append({"host_path": path, "container_path": ETC_HOSTS, "read_only": False})
        return mounts

    async def start_container(self, container_id: str) -> None:
        config = self._config(container_id)
        path = self._dir(container_id)
        if os.path.exists(os.path.join(path, "shim.json")):
            raise RuntimeError_("RunContainerError",
                                f"container {container_id} was already started")
        read_fd, write_fd = os.pipe()
        try:
            with open(os.path.join(path, "shim.log"), "ab") as shim_log:
                shim = subprocess.Popen(
                    ["/bin/sh", "-c", _SHIM, "kubelite-shim", self.settings.python, LAUNCHER,
                     path, config["log_path"]],
                    stdin=write_fd, stdout=shim_log, stderr=shim_log, cwd=path,
                    env={"PATH": images.DEFAULT_PATH}, start_new_session=True,
                )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._shims[container_id] = shim
        st = _proc_stat(shim.pid)
        _write_json(os.path.join(path, "shim.json"),
                    {"pid": shim.pid, "ticks": st[2] if st else None})
        if not await self._wait_started(read_fd):
            await self.stop_container(container_id, 0)
            raise RuntimeError_("RunContainerError", f"container {config['name']} did not start "
                                f"within {self.settings.start_timeout}s")
        error = _read_text(os.path.join(path, "error"))
        if error is not None:
            # The launcher exits right after; report it exited once the shim recorded that.
            await self._wait_exited(container_id, config, self.settings.kill_timeout)
            raise RuntimeError_("RunContainerError", error)

    async def _wait_started(self, read_fd: int) -> bool:
        """Waits until the launcher exec'd the container's program or failed (EOF on the
        start pipe, whose write end the exec closes)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0))
        try:
            await asyncio.wait_for(reader.read(), self.settings.start_timeout)
            return True
        except TimeoutError:
            return False
        finally:
            transport.close()

    def _reap(self, container_id: str, shim: dict[str, Any] | None) -> None:
        """Collects the shim's exit status if it is our child, so no zombie stays behind."""
        popen = self._shims.get(container_id)
        if popen is not None:
            popen.poll()
            return
        if shim is None:
            return
        st = _proc_stat(int(shim["pid"]))
        # Started by another ProcessRuntime in this process: reap it only if it is that shim.
        if st is not None and st[0] == "Z" and st[1] == os.getpid() and st[2] == shim["ticks"]:
            with contextlib.suppress(ChildProcessError):  # someone else reaped it first
                os.waitpid(int(shim["pid"]), os.WNOHANG)

    def _read_exit(self, path: str) -> tuple[int, float] | None:
        text = _read_text(os.path.join(path, "exit"))
        if not text:
            return None
        code, _, finished = text.strip().partition(" ")
        try:
            return int(code), float(finished or 0)
        except ValueError:
            log.error("unreadable exit file", path=path, content=text)
            return 255, 0.0

    def _status(self, container_id: str, config: dict[str, Any]) -> ContainerStatus:
        path = self._dir(container_id)
        shim = _read_json(os.path.join(path, "shim.json"))
        self._reap(container_id, shim)

        def status(state: ContainerState, **kw: Any) -> ContainerStatus:
            return ContainerStatus(
                id=container_id, name=config["name"], pod_uid=config["pod_uid"],
                attempt=int(config["attempt"]), state=state, image=config["image"],
                labels=config["labels"], log_path=config["log_path"], **kw,
            )

        for _ in range(2):
            exited = self._read_exit(path)
            started = _read_json(os.path.join(path, "started.json"))
            pid = int(started["pid"]) if started else 0
            started_at = float(started["started_at"]) if started else 0.0
            if exited is not None:
                code, finished = exited
                error = _read_text(os.path.join(path, "error"))
                if error is not None:
                    return status(ContainerState.EXITED, exit_code=code, finished_at=finished,
                                  reason="StartError", message=error)
                sig = code - 128 if 128 < code < 128 + 65 else 0
                return status(ContainerState.EXITED, pid=pid, started_at=started_at,
                              finished_at=finished, exit_code=code, signal=sig,
                              reason="Completed" if code == 0 else "Error")
            if shim is None:
                return status(ContainerState.CREATED)
            if started and _alive(pid, started.get("ticks")):
                return status(ContainerState.RUNNING, pid=pid, started_at=started_at)
            if _alive(int(shim["pid"]), shim.get("ticks")):
                # Starting, or its exit is being recorded.
                return status(ContainerState.RUNNING, pid=pid, started_at=started_at)
            # Both gone: the exit may have been recorded since we looked; look once more.
        return status(
            ContainerState.EXITED, pid=pid, started_at=started_at, exit_code=255,
            reason="Unknown", message="the container's shim ended without recording its exit "
            "code (was the node restarted or the shim killed?)",
        )

    async def container_status(self, container_id: str) -> ContainerStatus:
        return self._status(container_id, self._config(container_id))

    async def list_containers(self, pod_uid: str | None = None) -> list[ContainerStatus]:
        statuses = []
        for container_id in sorted(os.listdir(self._containers)):
            config = _read_json(os.path.join(self._dir(container_id), "config.json"))
            if config is None:
                log.warning("container directory without a config", container_id=container_id)
                continue
            if pod_uid is None or config["pod_uid"] == pod_uid:
                statuses.append(self._status(container_id, config))
        return statuses

    def _signal(self, container_id: str, sig: int) -> None:
        path = self._dir(container_id)
        started = _read_json(os.path.join(path, "started.json"))
        if started is not None:
            pid = int(started["pid"])
            if _alive(pid, started.get("ticks")):
                _kill_group(pid, sig)  # the container is its own process group
            return
        # Not exec'd yet: the launcher may not lead its group yet; signal it alone.
        text = _read_text(os.path.join(path, "pid"))
        if text and text.strip().isdigit() and _alive(int(text), None):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(text), sig)

    async def _wait_exited(self, container_id: str, config: dict[str, Any],
                           timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self._status(container_id, config).state != ContainerState.RUNNING:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(self.settings.stop_poll_interval)

    async def _wait_shim_gone(self, container_id: str) -> None:
        """Waits for the shim, which ends right after recording the exit, and reaps it."""
        shim = _read_json(os.path.join(self._dir(container_id), "shim.json"))
        deadline = time.monotonic() + self.settings.kill_timeout
        while shim is not None:
            self._reap(container_id, shim)
            if not _alive(int(shim["pid"]), shim.get("ticks")):
                self._reap(container_id, shim)
                return
            if time.monotonic() >= deadline:
                log.error("container shim did not end", container_id=container_id,
                          pid=shim["pid"])
                return
            await asyncio.sleep(self.settings.stop_poll_interval)

    async def stop_container(self, container_id: str, timeout: float) -> None:
        config = self._config(container_id)
        if self._status(container_id, config).state != ContainerState.RUNNING:
            return
        if timeout > 0:
            self._signal(container_id, signal.SIGTERM)
            if await self._wait_exited(container_id, config, timeout):
                return
            log.info("container did not stop in time, killing it", container=config["name"],
                     container_id=container_id, timeout=timeout)
        self._signal(container_id, signal.SIGKILL)
        if not await self._wait_exited(container_id, config, self.settings.kill_timeout):
            raise RuntimeError_("StopContainerError", f"container {config['name']} "
                                f"({container_id}) is still running after SIGKILL")

    async def remove_container(self, container_id: str) -> None:
        try:
            config = self._config(container_id)
        except RuntimeError_:
            return  # already removed: removal is idempotent, as in CRI
        if self._status(container_id, config).state == ContainerState.RUNNING:
            await self.stop_container(container_id, 0)
        await self._wait_shim_gone(container_id)
        self._shims.pop(container_id, None)
        path = self._dir(container_id)
        _unmount_under(path)
        _rmtree(path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(config["log_path"])
        with contextlib.suppress(OSError):  # other attempts' logs may still be there
            os.rmdir(os.path.dirname(config["log_path"]))

    # -- exec --------------------------------------------------------------------------------

    def _exec_argv(self, container_id: str, command: Sequence[str], tty: bool) -> list[str]:
        if not command:
            raise RuntimeError_("ExecError", "no command to run")
        config = self._config(container_id)
        path = self._dir(container_id)
        started = _read_json(os.path.join(path, "started.json"))
        if (started is None or self._status(container_id, config).state
                != ContainerState.RUNNING):
            raise RuntimeError_("ContainerNotRunning",
                                f"container {config['name']} ({container_id}) is not running")
        return [self.settings.python, "-I", "-S", LAUNCHER, "exec", path, str(started["pid"]),
                str(started["ticks"]), *(["--tty"] if tty else []), "--", *command]

    async def exec_sync(
        self, container_id: str, command: Sequence[str], timeout: float
    ) -> ExecResult:
        argv = self._exec_argv(container_id, command, tty=False)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,
        )
        communicate = asyncio.ensure_future(proc.communicate())
        try:
            done, _ = await asyncio.wait({communicate}, timeout=timeout if timeout > 0 else None)
            timed_out = not done
            if timed_out:
                _kill_group(proc.pid, signal.SIGKILL)
            stdout, stderr = await communicate
        finally:
            if proc.returncode is None:  # cancelled: the command must not outlive the call
                _kill_group(proc.pid, signal.SIGKILL)
                communicate.cancel()
                await asyncio.shield(proc.wait())
        assert proc.returncode is not None
        return ExecResult(_exit_code(proc.returncode), stdout, stderr, timed_out=timed_out)

    async def exec_stream(
        self, container_id: str, command: Sequence[str], stdin: AsyncIterator[bytes] | None,
        tty: bool = False,
    ) -> AsyncIterator[tuple[int, bytes]]:
        argv = self._exec_argv(container_id, command, tty)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        tasks: list[asyncio.Task[None]] = []
        transports: list[asyncio.BaseTransport] = []

        async def pump(fd: int, reader: asyncio.StreamReader) -> None:
            try:
                while chunk := await reader.read(65536):
                    await queue.put((fd, chunk))
            except OSError:
                pass  # EIO on a pty master: the terminal's last holder closed it, i.e. EOF
            finally:
                await queue.put(None)

        async def feed(write: Callable[[bytes], Any], close: Callable[[], Any]) -> None:
            assert stdin is not None
            try:
                async for data in stdin:
                    await write(data)
            finally:
                close()

        if tty:
            master, slave = pty.openpty()
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
            except BaseException:
                os.close(master)
                raise
            finally:
                os.close(slave)
            reader = asyncio.StreamReader()
            read_transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(master, "rb", 0))
            transports.append(read_transport)
            tasks.append(asyncio.create_task(pump(1, reader), name="exec-tty-out"))
            if stdin is not None:
                write_transport, _ = await loop.connect_write_pipe(
                    asyncio.Protocol, os.fdopen(os.dup(master), "wb", 0))
                transports.append(write_transport)

                async def write_tty(data: bytes) -> None:
                    write_transport.write(data)

                tasks.append(asyncio.create_task(
                    feed(write_tty, lambda: None), name="exec-tty-in"))
        else:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
            assert proc.stdout is not None and proc.stderr is not None
            tasks.append(asyncio.create_task(pump(1, proc.stdout), name="exec-out"))
            tasks.append(asyncio.create_task(pump(2, proc.stderr), name="exec-err"))
            if stdin is not None:
                assert proc.stdin is not None
                pipe = proc.stdin

                async def write_pipe(data: bytes) -> None:
                    pipe.write(data)
                    await pipe.drain()

                tasks.append(asyncio.create_task(feed(write_pipe, pipe.close), name="exec-in"))
        outputs = 1 if tty else 2
        try:
            while outputs:
                item = await queue.get()
                if item is None:
                    outputs -= 1
                else:
                    yield item
            code = await proc.wait()
            yield (-1, str(_exit_code(code)).encode())
        finally:
            if proc.returncode is None:
                _kill_group(proc.pid, signal.SIGKILL)
                await asyncio.shield(proc.wait())
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):
                    log.error("exec stream i/o failed", container_id=container_id,
                              error=repr(result))
            for transport in transports:
                transport.close()

    # -- logs --------------------------------------------------------------------------------

    async def read_logs(
        self, container_id: str, follow: bool = False, tail: int = -1
    ) -> AsyncIterator[bytes]:
        config = self._config(container_id)
        with open(config["log_path"], "rb") as f:
            if tail >= 0:
                f.seek(_tail_offset(f, tail))
            while True:
                chunk = f.read(65536)
                if chunk:
                    yield chunk
                    continue
                if not follow:
                    return
                if self._finished(container_id):
                    # It wrote everything before it exited; read what came since we looked.
                    rest = f.read()
                    if rest:
                        yield rest
                    return
                await asyncio.sleep(self.settings.log_poll_interval)

    def _finished(self, container_id: str) -> bool:
        config = _read_json(os.path.join(self._dir(container_id), "config.json"))
        if config is None:
            return True  # removed
        return self._status(container_id, config).state == ContainerState.EXITED
