"""The CRI runtime: pods as sandboxes and containers of a CRI v1 runtime (containerd).

Each pod is a sandbox (its pause container holding the network, IPC and UTS namespaces, with
an IP from the CNI bridge); each container runs from its image with its own PID namespace,
cgroup limits and securityContext. Everything about a container lives in the runtime, keyed by
the labels the kubelet gives it, so a restarted kubelet finds its pods' containers by listing.
Logs are files in the CRI log format under the kubelet's log directory, as /var/log/pods.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import structlog

from kubelet.runtime.cri_logs import read_cri_log
from kubelet.runtime.etc_files import ETC_HOSTS, mounts_path, pod_hosts, write_in_place
from kubelet.runtime.interface import (
    ContainerConfig,
    ContainerState,
    ContainerStatus,
    ExecResult,
    ImageFsUsage,
    ImageInfo,
    ImagePull,
    PodSandboxConfig,
    RegistryAuth,
    RuntimeError_,
    Sandbox,
    SecurityConfig,
)
from protos.cri.v1 import api_pb2 as cri
from protos.cri.v1 import api_pb2_grpc as cri_grpc

log = structlog.get_logger(__name__)

POD_UID_LABEL = "io.kubernetes.pod.uid"
POD_NAME_LABEL = "io.kubernetes.pod.name"
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
CONTAINER_NAME_LABEL = "io.kubernetes.container.name"

# Kubernetes' default /proc masks for unprivileged containers (securitycontext's
# DefaultProcMountType); a CRI runtime masks nothing it is not told to.
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

_STATES = {
    cri.CONTAINER_CREATED: ContainerState.CREATED,
    cri.CONTAINER_RUNNING: ContainerState.RUNNING,
    cri.CONTAINER_EXITED: ContainerState.EXITED,
    cri.CONTAINER_UNKNOWN: ContainerState.UNKNOWN,
}
_MAX_MESSAGE = 32 * 1024 * 1024
"""ExecSync answers carry up to 16 MiB per stream."""


def _user_of(image: cri.Image) -> dict[str, Any]:
    """The image's default user, as ImagePull carries it (the UID when numeric)."""
    if image.HasField("uid"):
        return {"uid": image.uid.value, "user": str(image.uid.value)}
    return {"uid": None, "user": image.username}


@dataclass(frozen=True)
class CriRuntimeSettings:
    """How the kubelet reaches and uses its CRI runtime."""

    endpoint: str
    """The runtime's socket, ``unix:///path/to/containerd.sock``."""
    root_dir: str
    """The kubelet's directory: pods' volumes under pods/<uid>/volumes."""
    log_dir: str = ""
    """Containers' logs, as /var/log/pods: <ns>_<name>_<uid>/<container>/<attempt>.log;
    empty: <root_dir>/pod-logs."""
    cgroup_root: str = "/kubelite"
    """Parent cgroup of every pod's cgroup (cgroupfs paths: <cgroup_root>/pod<uid>)."""
    request_timeout: float = 120.0
    """Deadline of each runtime call but image pulls (--runtime-request-timeout, 2m)."""
    image_pull_timeout: float = 600.0
    """Deadline of one image pull."""
    stop_extra_seconds: float = 10.0
    """How much longer than a stop's grace period the call may take (the runtime kills)."""
    pod_pids_limit: int = -1
    """Most processes all containers of one pod may have together (--pod-max-pids); -1:
    no limit."""
    cgroup_fs: str = "/sys/fs/cgroup"
    """Where the cgroup hierarchies are mounted."""


class CriRuntime:
    """The Runtime interface over a CRI v1 runtime's RuntimeService and ImageService."""

    name = "containerd"

    def __init__(self, settings: CriRuntimeSettings) -> None:
        self.settings = settings
        self.root_dir = settings.root_dir
        self.log_dir = settings.log_dir or os.path.join(settings.root_dir, "pod-logs")
        self._channel = grpc.aio.insecure_channel(
            settings.endpoint,
            options=[("grpc.max_receive_message_length", _MAX_MESSAGE)],
        )
        self._runtime = cri_grpc.RuntimeServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._images = cri_grpc.ImageServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._sandboxes: dict[str, tuple[str, cri.PodSandboxConfig, str, PodSandboxConfig]] = {}
        """Ready sandbox per pod uid: its id, the config it was made with, its IP, and the
        kubelet's config of it."""
        self._locks: dict[str, asyncio.Lock] = {}

    async def close(self) -> None:
        await self._channel.close(None)

    async def version(self) -> cri.VersionResponse:
        response: cri.VersionResponse = await self._call(
            self._runtime.Version, cri.VersionRequest(version="v1"), "Version")
        return response

    async def status(self) -> cri.StatusResponse:
        response: cri.StatusResponse = await self._call(
            self._runtime.Status, cri.StatusRequest(), "Status")
        return response

    async def _call(self, method: Callable[..., Any], request: object, what: str,
                    reason: str = "RuntimeError", timeout: float | None = None) -> Any:
        try:
            return await method(
                request, timeout=timeout or self.settings.request_timeout)
        except grpc.aio.AioRpcError as e:
            raise RuntimeError_(reason, f"{what}: {e.details() or e.code().name}") from e

    # -- paths the kubelet shares with the runtime ---------------------------------------------

    def pod_dir(self, pod_uid: str) -> str:
        return os.path.join(self.root_dir, "pods", pod_uid)

    def volume_dir(self, pod_uid: str, volume_name: str) -> str:
        return os.path.join(self.pod_dir(pod_uid), "volumes", volume_name)

    def _pod_log_dir(self, namespace: str, name: str, uid: str) -> str:
        return os.path.join(self.log_dir, f"{namespace}_{name}_{uid}")

    # -- sandboxes -----------------------------------------------------------------------------

    def _sandbox_config(self, config: PodSandboxConfig, attempt: int) -> cri.PodSandboxConfig:
        ns = cri.NamespaceOption(
            network=cri.NODE if config.host_network else cri.POD,
            pid=cri.NODE if config.host_pid else cri.CONTAINER,
            ipc=cri.NODE if config.host_ipc else cri.POD,
        )
        protocols = {"TCP": cri.TCP, "UDP": cri.UDP, "SCTP": cri.SCTP}
        # The runtime writes the sandbox's resolv.conf from it (the node's copy without it).
        dns = None if config.dns is None else cri.DNSConfig(
            servers=config.dns.nameservers, searches=config.dns.searches,
            options=config.dns.options)
        return cri.PodSandboxConfig(
            metadata=cri.PodSandboxMetadata(
                name=config.name, uid=config.uid, namespace=config.namespace, attempt=attempt),
            # A pod on the node's network has the node's UTS namespace, and its hostname.
            hostname="" if config.host_network else (config.hostname or config.name),
            log_directory=self._pod_log_dir(config.namespace, config.name, config.uid),
            dns_config=dns,
            port_mappings=[
                cri.PortMapping(protocol=protocols.get(p.protocol, cri.TCP),
                                container_port=p.container_port, host_port=p.host_port,
                                host_ip=p.host_ip)
                for p in config.port_mappings
            ],
            labels=dict(config.labels) | {
                POD_UID_LABEL: config.uid, POD_NAME_LABEL: config.name,
                POD_NAMESPACE_LABEL: config.namespace,
            },
            linux=cri.LinuxPodSandboxConfig(
                cgroup_parent=f"{self.settings.cgroup_root}/pod{config.uid}",
                security_context=cri.LinuxSandboxSecurityContext(
                    namespace_options=ns, privileged=config.privileged),
            ),
        )

    async def _pod_sandboxes(self, pod_uid: str) -> list[cri.PodSandbox]:
        response: cri.ListPodSandboxResponse = await self._call(
            self._runtime.ListPodSandbox,
            cri.ListPodSandboxRequest(
                filter=cri.PodSandboxFilter(label_selector={POD_UID_LABEL: pod_uid})),
            "ListPodSandbox",
        )
        return sorted(response.items, key=lambda s: s.metadata.attempt, reverse=True)

    async def _sandbox_ip(self, sandbox_id: str) -> str:
        response: cri.PodSandboxStatusResponse = await self._call(
            self._runtime.PodSandboxStatus,
            cri.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id), "PodSandboxStatus")
        return response.status.network.ip

    async def run_pod_sandbox(self, config: PodSandboxConfig) -> Sandbox:
        lock = self._locks.setdefault(config.uid, asyncio.Lock())
        async with lock:
            known = self._sandboxes.get(config.uid)
            if known is not None:
                return Sandbox(id=known[0], ip=known[2])
            existing = await self._pod_sandboxes(config.uid)
            ready = [s for s in existing if s.state == cri.SANDBOX_READY]
            if ready:
                # Adopted after a kubelet restart: the sandbox and its network are as they were.
                sandbox_id = ready[0].id
                attempt = ready[0].metadata.attempt
            else:
                attempt = existing[0].metadata.attempt + 1 if existing else 0
                sandbox_config = self._sandbox_config(config, attempt)
                os.makedirs(sandbox_config.log_directory, exist_ok=True)
                response: cri.RunPodSandboxResponse = await self._call(
                    self._runtime.RunPodSandbox,
                    cri.RunPodSandboxRequest(config=sandbox_config),
                    "RunPodSandbox", reason="CreatePodSandboxError",
                )
                sandbox_id = response.pod_sandbox_id
                self._limit_pids(sandbox_config.linux.cgroup_parent)
                log.info("pod sandbox running", pod=f"{config.namespace}/{config.name}",
                         sandbox_id=sandbox_id, attempt=attempt)
            os.makedirs(os.path.join(self.pod_dir(config.uid), "volumes"), exist_ok=True)
            ip = "" if config.host_network else await self._sandbox_ip(sandbox_id)
            self._sandboxes[config.uid] = (sandbox_id, self._sandbox_config(config, attempt), ip,
                                           config)
            return Sandbox(id=sandbox_id, ip=ip)

    def _limit_pids(self, cgroup_parent: str) -> None:
        """Caps the pod's processes in its cgroup (made with its sandbox), as the kubelet's
        pod-level cgroup does; cgroup v1's pids hierarchy, else the unified one."""
        limit = self.settings.pod_pids_limit
        if limit < 0:
            return
        for hierarchy in ("pids", ""):
            directory = os.path.join(self.settings.cgroup_fs, hierarchy,
                                     cgroup_parent.lstrip("/"))
            if os.path.exists(os.path.join(directory, "pids.max")):
                with open(os.path.join(directory, "pids.max"), "w") as f:
                    f.write(str(limit))
                return
        raise RuntimeError_("CreatePodSandboxError",
                            f"cannot limit the pod's processes: no pids cgroup {cgroup_parent}")

    async def remove_pod_sandbox(self, pod_uid: str) -> None:
        lock = self._locks.setdefault(pod_uid, asyncio.Lock())
        async with lock:
            for container in await self._list(pod_uid):
                log.warning("removing a container left in a removed pod",
                            container_id=container.id, pod_uid=pod_uid)
                await self.remove_container(container.id)
            sandboxes = await self._pod_sandboxes(pod_uid)
            for sandbox in sandboxes:
                await self._call(self._runtime.StopPodSandbox,
                                 cri.StopPodSandboxRequest(pod_sandbox_id=sandbox.id),
                                 "StopPodSandbox")
                await self._call(self._runtime.RemovePodSandbox,
                                 cri.RemovePodSandboxRequest(pod_sandbox_id=sandbox.id),
                                 "RemovePodSandbox")
            self._sandboxes.pop(pod_uid, None)
            shutil.rmtree(self.pod_dir(pod_uid), ignore_errors=True)
            names = {(s.metadata.namespace, s.metadata.name) for s in sandboxes}
            for namespace, name in names:
                shutil.rmtree(self._pod_log_dir(namespace, name, pod_uid), ignore_errors=True)
        self._locks.pop(pod_uid, None)

    # -- images --------------------------------------------------------------------------------

    async def _image(self, image: str) -> cri.Image | None:
        response: cri.ImageStatusResponse = await self._call(
            self._images.ImageStatus, cri.ImageStatusRequest(image=cri.ImageSpec(image=image)),
            "ImageStatus")
        return response.image if response.HasField("image") else None

    async def ensure_image(
        self,
        image: str,
        pull_policy: str,
        auth: Sequence[RegistryAuth] = (),
        on_pull: Callable[[], None] | None = None,
    ) -> ImagePull:
        present = await self._image(image)
        if present is not None and pull_policy != "Always":
            return ImagePull(image_ref=present.id, pulled=False, size_bytes=present.size,
                             **_user_of(present))
        if pull_policy == "Never":
            raise RuntimeError_(
                "ErrImageNeverPull",
                f'Container image "{image}" is not present with pull policy of Never')
        if on_pull is not None:
            on_pull()
        started = time.monotonic()
        # Each credential for the registry in turn, then none, as the kubelet's keyring does.
        # No server_address, as Kubernetes' kubelet sends none: the credentials already are the
        # image's registry's, and containerd reads that field as a URL (a host:port fails).
        attempts: list[cri.AuthConfig | None] = [
            cri.AuthConfig(username=a.username, password=a.password, auth=a.auth)
            for a in auth
        ]
        attempts.append(None)
        failure: RuntimeError_ | None = None
        for credential in attempts:
            request = cri.PullImageRequest(image=cri.ImageSpec(image=image))
            if credential is not None:
                request.auth.CopyFrom(credential)
            try:
                response: cri.PullImageResponse = await self._call(
                    self._images.PullImage, request, "PullImage", reason="ErrImagePull",
                    timeout=self.settings.image_pull_timeout)
            except RuntimeError_ as e:
                failure = failure or e
                continue
            pulled = await self._image(image) or cri.Image()
            return ImagePull(image_ref=response.image_ref, pulled=True,
                             seconds=time.monotonic() - started, size_bytes=pulled.size,
                             **_user_of(pulled))
        assert failure is not None
        raise RuntimeError_("ErrImagePull", failure.message.removeprefix("PullImage: "))

    async def _sandbox_image(self) -> str:
        """The image the runtime makes sandboxes of (from its verbose status)."""
        response: cri.StatusResponse = await self._call(
            self._runtime.Status, cri.StatusRequest(verbose=True), "Status")
        try:
            config = json.loads(response.info.get("config", "{}"))
        except ValueError:
            return ""
        return str(config.get("sandboxImage", ""))

    async def list_images(self) -> list[ImageInfo]:
        response: cri.ListImagesResponse = await self._call(
            self._images.ListImages, cri.ListImagesRequest(), "ListImages")
        sandbox_image = await self._sandbox_image()
        return [
            ImageInfo(id=i.id, tags=tuple(i.repo_tags), size_bytes=i.size,
                      pinned=i.pinned or sandbox_image in i.repo_tags)
            for i in response.images
        ]

    async def remove_image(self, image_id: str) -> None:
        await self._call(self._images.RemoveImage,
                         cri.RemoveImageRequest(image=cri.ImageSpec(image=image_id)),
                         "RemoveImage")

    async def image_fs_usage(self) -> ImageFsUsage | None:
        response: cri.ImageFsInfoResponse = await self._call(
            self._images.ImageFsInfo, cri.ImageFsInfoRequest(), "ImageFsInfo")
        if not response.image_filesystems:
            return None
        fs = response.image_filesystems[0]
        stat = os.statvfs(fs.fs_id.mountpoint)
        capacity = stat.f_blocks * stat.f_frsize
        return ImageFsUsage(used_bytes=capacity - stat.f_bavail * stat.f_frsize,
                            capacity_bytes=capacity, images_bytes=fs.used_bytes.value)

    # -- containers ----------------------------------------------------------------------------

    def _security(self, security: SecurityConfig, host_network: bool, host_pid: bool,
                  host_ipc: bool) -> cri.LinuxContainerSecurityContext:
        sc = cri.LinuxContainerSecurityContext(
            capabilities=cri.Capability(
                add_capabilities=list(security.capabilities_add),
                drop_capabilities=list(security.capabilities_drop)),
            privileged=security.privileged,
            namespace_options=cri.NamespaceOption(
                network=cri.NODE if host_network else cri.POD,
                pid=cri.NODE if host_pid else cri.CONTAINER,
                ipc=cri.NODE if host_ipc else cri.POD,
            ),
            readonly_rootfs=security.read_only_root_filesystem,
            supplemental_groups=list(security.supplemental_groups),
            no_new_privs=security.no_new_privileges,
        )
        if security.run_as_user is not None:
            sc.run_as_user.value = security.run_as_user
        if security.run_as_group is not None:
            sc.run_as_group.value = security.run_as_group
        if not security.privileged:
            sc.masked_paths.extend(MASKED_PATHS)
            sc.readonly_paths.extend(READONLY_PATHS)
        return sc

    async def create_container(self, pod_uid: str, config: ContainerConfig) -> str:
        known = self._sandboxes.get(pod_uid)
        if known is None:
            raise RuntimeError_("CreateContainerError",
                                f"pod sandbox of {pod_uid} is not ready (run_pod_sandbox first)")
        sandbox_id, sandbox_config, ip, pod = known
        namespaces = sandbox_config.linux.security_context.namespace_options
        mounts = [cri.Mount(container_path=m.container_path, host_path=m.host_path,
                            readonly=m.read_only) for m in config.mounts]
        hosts = self._hosts_mount(pod, ip, [m.container_path for m in config.mounts])
        if hosts is not None:
            mounts.append(hosts)
        log_path = os.path.join(config.name, f"{config.attempt}.log")
        os.makedirs(os.path.join(sandbox_config.log_directory, config.name), exist_ok=True)
        r = config.resources
        container = cri.ContainerConfig(
            metadata=cri.ContainerMetadata(name=config.name, attempt=config.attempt),
            image=cri.ImageSpec(image=config.image),
            command=list(config.command),
            args=list(config.args),
            working_dir=config.working_dir,
            envs=[cri.KeyValue(key=k, value=v) for k, v in config.env.items()],
            mounts=mounts,
            labels=dict(config.labels) | {POD_UID_LABEL: pod_uid,
                                          CONTAINER_NAME_LABEL: config.name},
            log_path=log_path,
            stdin=config.stdin,
            tty=config.tty,
            linux=cri.LinuxContainerConfig(
                resources=cri.LinuxContainerResources(
                    cpu_period=r.cpu_period, cpu_quota=r.cpu_quota, cpu_shares=r.cpu_shares,
                    memory_limit_in_bytes=r.memory_limit_bytes),
                security_context=self._security(
                    config.security, namespaces.network == cri.NODE,
                    namespaces.pid == cri.NODE, namespaces.ipc == cri.NODE),
            ),
        )
        response: cri.CreateContainerResponse = await self._call(
            self._runtime.CreateContainer,
            cri.CreateContainerRequest(pod_sandbox_id=sandbox_id, config=container,
                                       sandbox_config=sandbox_config),
            "CreateContainer", reason="CreateContainerError",
        )
        return response.container_id

    def _hosts_mount(self, pod: PodSandboxConfig, ip: str, own: Sequence[str]
                     ) -> cri.Mount | None:
        """The pod's /etc/hosts, written in its directory (``etc-hosts``, as the kubelet's) and
        mounted in each container, unless the container mounts one itself or the pod has no
        IP yet. (The runtime's own is a copy of the node's.)"""
        if mounts_path(own, ETC_HOSTS):
            return None
        try:
            hosts = pod_hosts(pod, ip)
            if hosts is None:
                return None
            path = os.path.join(self.pod_dir(pod.uid), "etc-hosts")
            write_in_place(path, hosts)
        except OSError as e:
            raise RuntimeError_("CreateContainerError",
                                f"cannot write the pod's /etc/hosts: {e}") from e
        return cri.Mount(container_path=ETC_HOSTS, host_path=path)

    async def start_container(self, container_id: str) -> None:
        await self._call(self._runtime.StartContainer,
                         cri.StartContainerRequest(container_id=container_id),
                         "StartContainer", reason="RunContainerError")

    async def stop_container(self, container_id: str, timeout: float) -> None:
        grace = max(0, math.ceil(timeout))
        try:
            await self._runtime.StopContainer(
                cri.StopContainerRequest(container_id=container_id, timeout=grace),
                timeout=grace + self.settings.stop_extra_seconds)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return
            raise RuntimeError_("StopContainerError", f"StopContainer: {e.details()}") from e

    async def remove_container(self, container_id: str) -> None:
        try:
            await self._runtime.RemoveContainer(
                cri.RemoveContainerRequest(container_id=container_id),
                timeout=self.settings.request_timeout)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return  # removal is idempotent
            raise RuntimeError_("RemoveContainerError", f"RemoveContainer: {e.details()}") from e

    def _status(self, s: cri.ContainerStatus) -> ContainerStatus:
        labels = dict(s.labels)
        return ContainerStatus(
            id=s.id,
            name=s.metadata.name,
            pod_uid=labels.get(POD_UID_LABEL, ""),
            attempt=s.metadata.attempt,
            state=_STATES.get(s.state, ContainerState.UNKNOWN),
            image=s.image.image,
            started_at=s.started_at / 1e9,
            finished_at=s.finished_at / 1e9,
            exit_code=s.exit_code,
            reason=s.reason,
            message=s.message,
            labels=labels,
            log_path=s.log_path,
            runtime=self.name,
            image_ref=s.image_ref,
        )

    async def container_status(self, container_id: str) -> ContainerStatus:
        try:
            response: cri.ContainerStatusResponse = await self._runtime.ContainerStatus(
                cri.ContainerStatusRequest(container_id=container_id),
                timeout=self.settings.request_timeout)
        except grpc.aio.AioRpcError as e:
            reason = "ContainerNotFound" if e.code() == grpc.StatusCode.NOT_FOUND else (
                "RuntimeError")
            raise RuntimeError_(reason, f"ContainerStatus: {e.details()}") from e
        return self._status(response.status)

    async def _list(self, pod_uid: str | None) -> list[cri.Container]:
        selector = {POD_UID_LABEL: pod_uid} if pod_uid else {}
        response: cri.ListContainersResponse = await self._call(
            self._runtime.ListContainers,
            cri.ListContainersRequest(filter=cri.ContainerFilter(label_selector=selector)),
            "ListContainers")
        # Only what a kubelet made: containers of other clients of the runtime stay unseen.
        return [c for c in response.containers if POD_UID_LABEL in c.labels]

    async def list_containers(self, pod_uid: str | None = None) -> list[ContainerStatus]:
        statuses = []
        for container in await self._list(pod_uid):
            try:
                statuses.append(await self.container_status(container.id))
            except RuntimeError_ as e:
                if e.reason != "ContainerNotFound":  # removed since it was listed
                    raise
        return statuses

    # -- exec and logs -------------------------------------------------------------------------

    async def exec_sync(
        self, container_id: str, command: Sequence[str], timeout: float
    ) -> ExecResult:
        if not command:
            raise RuntimeError_("ExecError", "no command to run")
        seconds = math.ceil(timeout) if timeout > 0 else 0
        try:
            response: cri.ExecSyncResponse = await self._runtime.ExecSync(
                cri.ExecSyncRequest(container_id=container_id, cmd=list(command),
                                    timeout=seconds),
                timeout=(seconds + self.settings.stop_extra_seconds) if seconds else None)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED or "timeout" in (
                    e.details() or "").lower():
                return ExecResult(exit_code=-1, stdout=b"", stderr=b"", timed_out=True)
            raise RuntimeError_("ExecError", f"ExecSync: {e.details()}") from e
        return ExecResult(exit_code=response.exit_code, stdout=response.stdout,
                          stderr=response.stderr)

    async def exec_stream(
        self, container_id: str, command: Sequence[str], stdin: AsyncIterator[bytes] | None,
        tty: bool = False,
    ) -> AsyncIterator[tuple[int, bytes]]:
        # Non-interactive only: the output comes when the command has finished (CRI ExecSync).
        if stdin is not None:
            async for data in stdin:
                if data:
                    raise RuntimeError_(
                        "ExecError", "the containerd runtime runs exec without stdin"
                        " (non-interactive); pass the input as arguments instead")
        result = await self.exec_sync(container_id, command, 0)
        if result.stdout:
            yield 1, result.stdout
        if result.stderr:
            yield 2, result.stderr
        yield -1, str(result.exit_code).encode()

    async def read_logs(
        self, container_id: str, follow: bool = False, tail: int = -1
    ) -> AsyncIterator[bytes]:
        status = await self.container_status(container_id)

        async def running() -> bool:
            try:
                current = await self.container_status(container_id)
            except RuntimeError_:
                return False
            return current.state in (ContainerState.RUNNING, ContainerState.CREATED)

        async for chunk in read_cri_log(status.log_path, follow=follow, tail=tail,
                                        is_running=running):
            yield chunk
