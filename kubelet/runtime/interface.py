"""The runtime interface the kubelet drives, shaped after Kubernetes' CRI.

A sandbox is a pod's home on the node (its directory, its volumes); containers run inside it.
Container ids are stable strings the runtime chooses; everything a runtime knows about its
containers survives a kubelet restart (``list_containers`` returns them, running or exited),
so a restarted kubelet adopts what already runs instead of starting duplicates.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class RuntimeError_(Exception):
    """A runtime operation failed; ``reason`` is the Kubernetes waiting reason to report."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ContainerState(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Mount:
    host_path: str
    """Directory or file on the node."""
    container_path: str
    """Where the container sees it (its mountPath)."""
    read_only: bool = False


@dataclass(frozen=True)
class Resources:
    """A container's cgroup limits, computed by the kubelet from its requests and limits as
    Kubernetes does (0: unset)."""

    cpu_period: int = 0
    """CFS period, microseconds (100000 when a CPU limit is set)."""
    cpu_quota: int = 0
    """CFS quota, microseconds per period: the CPU limit."""
    cpu_shares: int = 0
    """Relative CPU weight: the CPU request (1024 per core, at least 2)."""
    memory_limit_bytes: int = 0
    """Memory limit; past it the kernel's OOM killer ends the container (OOMKilled)."""


@dataclass(frozen=True)
class SecurityConfig:
    """A container's effective securityContext (the pod's, overridden by the container's)."""

    run_as_user: int | None = None
    """UID of the container's process; None: the image's USER."""
    run_as_group: int | None = None
    """Primary GID; None: the image's (or the user's)."""
    run_as_non_root: bool = False
    """Refuse to start when the process would run as UID 0."""
    supplemental_groups: tuple[int, ...] = ()
    privileged: bool = False
    """All capabilities, every device, no confinement."""
    read_only_root_filesystem: bool = False
    no_new_privileges: bool = False
    """allowPrivilegeEscalation: false (the no_new_privs bit)."""
    capabilities_add: tuple[str, ...] = ()
    """Capabilities beyond the runtime's default set, without the CAP_ prefix."""
    capabilities_drop: tuple[str, ...] = ()
    """Capabilities removed from the default set (ALL drops every one)."""


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for one registry, from an imagePullSecret (.dockerconfigjson)."""

    server: str
    """The registry host as written in the secret, e.g. ``registry.example:5000``."""
    username: str = ""
    password: str = ""
    auth: str = ""
    """base64 of ``username:password``, as docker config files also carry it."""


@dataclass(frozen=True)
class ImagePull:
    """What ensure_image did."""

    image_ref: str
    """The image as the runtime knows it (digest or canonical name)."""
    pulled: bool
    """False when the image was already present and nothing was fetched."""
    seconds: float = 0.0
    """How long the pull took."""
    size_bytes: int = 0
    uid: int | None = None
    """The UID the image runs as by default (None when its USER is a name)."""
    user: str = ""
    """The image's USER as written (empty: root)."""


@dataclass(frozen=True)
class ImageInfo:
    """An image the runtime holds."""

    id: str
    tags: tuple[str, ...]
    size_bytes: int
    pinned: bool = False
    """Never garbage-collected (the sandbox image)."""


@dataclass(frozen=True)
class ImageFsUsage:
    """The filesystem holding the runtime's images."""

    used_bytes: int
    """Used on that filesystem, by anything."""
    capacity_bytes: int
    images_bytes: int = 0
    """Used by the runtime's images."""


@dataclass(frozen=True)
class ContainerConfig:
    """Everything needed to start one container, already resolved by the kubelet."""

    name: str
    image: str
    command: Sequence[str]
    """The container's command (entrypoint), empty to use the image's."""
    args: Sequence[str]
    """The container's args, empty to use the image's."""
    env: Mapping[str, str]
    working_dir: str = ""
    """Empty means ``/``, as in an image without a WORKDIR."""
    mounts: Sequence[Mount] = ()
    attempt: int = 0
    """Restart count of this container in this pod; part of its identity and log name."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Stored with the container: pod uid/name/namespace, container name, ... (for adoption)."""
    resources: Resources = Resources()
    security: SecurityConfig = SecurityConfig()
    tty: bool = False
    stdin: bool = False


@dataclass(frozen=True)
class PortMapping:
    """A hostPort: the node's port forwarded to the pod's containerPort."""

    container_port: int
    host_port: int
    protocol: str = "TCP"
    host_ip: str = ""


@dataclass(frozen=True)
class DnsConfig:
    """A pod's resolver configuration (CRI's DNSConfig): what its /etc/resolv.conf says."""

    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    """Search domains, in order."""
    options: tuple[str, ...] = ()
    """Resolver options as resolv.conf writes them: ``name`` or ``name:value`` (``ndots:5``)."""


@dataclass(frozen=True)
class HostAlias:
    """Extra /etc/hosts entries of a pod (spec.hostAliases): ``ip`` for each of ``hostnames``."""

    ip: str
    hostnames: tuple[str, ...]


@dataclass(frozen=True)
class PodSandboxConfig:
    uid: str
    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    hostname: str = ""
    """The pod's hostname (spec.hostname, else its name)."""
    host_network: bool = False
    """The pod shares the node's network namespace and IP."""
    host_pid: bool = False
    host_ipc: bool = False
    port_mappings: Sequence[PortMapping] = ()
    privileged: bool = False
    """Some container of the pod is privileged (the runtime allows those only then)."""
    attempt: int = 0
    """How many sandboxes this pod had before (a new one after the old one died)."""
    dns: DnsConfig | None = None
    """The pod's resolver configuration (by its dnsPolicy); None: the runtime's own default,
    the node's."""
    domain: str = ""
    """The pod's domain when it has a subdomain (``<subdomain>.<namespace>.svc.<cluster
    domain>``): its /etc/hosts names its IP ``<hostname>.<domain>`` too."""
    host_aliases: Sequence[HostAlias] = ()
    """spec.hostAliases, appended to the pod's /etc/hosts."""


@dataclass(frozen=True)
class Sandbox:
    """A pod's sandbox as the runtime made it."""

    id: str
    ip: str = ""
    """The pod's IP when the runtime gives pods a network of their own (CNI); empty when
    the kubelet chooses it (process runtime) or the pod uses the node's network."""


@dataclass(frozen=True)
class ContainerStatus:
    id: str
    name: str
    pod_uid: str
    attempt: int
    state: ContainerState
    image: str = ""
    pid: int = 0
    started_at: float = 0.0
    """Unix time; 0 when it never started."""
    finished_at: float = 0.0
    exit_code: int = 0
    signal: int = 0
    reason: str = ""
    """For exited containers: Completed, Error, OOMKilled."""
    message: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    log_path: str = ""
    runtime: str = "process"
    """The runtime's name, the scheme of the container's ID in the pod status."""
    image_ref: str = ""
    """The image the container runs, by ID or digest (the status' imageID)."""


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False


class Runtime(Protocol):
    """A container runtime. Every method may raise RuntimeError_ with a waiting reason."""

    name: str

    async def close(self) -> None:
        """Releases the runtime's connections; its pods' containers keep running."""
        ...

    async def run_pod_sandbox(self, config: PodSandboxConfig) -> Sandbox:
        """Makes the pod's home on the node (idempotent: an existing, ready sandbox of the pod
        is returned as it is)."""
        ...

    async def ensure_image(
        self,
        image: str,
        pull_policy: str,
        auth: Sequence[RegistryAuth] = (),
        on_pull: Callable[[], None] | None = None,
    ) -> ImagePull:
        """Makes ``image`` present by Kubernetes' imagePullPolicy (Always, IfNotPresent, Never);
        ``on_pull`` is called just before a pull starts.

        Raises RuntimeError_("ErrImagePull", the registry's message) when it cannot be had and
        RuntimeError_("ErrImageNeverPull", ...) when it is absent and the policy is Never.
        """
        ...

    async def list_images(self) -> list[ImageInfo]:
        """Every image the runtime holds (none for a runtime without an image store)."""
        ...

    async def remove_image(self, image_id: str) -> None:
        """Removes an image no container uses (idempotent)."""
        ...

    async def image_fs_usage(self) -> ImageFsUsage | None:
        """The image filesystem's usage; None for a runtime without an image store."""
        ...

    async def remove_pod_sandbox(self, pod_uid: str) -> None:
        """Removes the pod's directory and volumes; its containers must have been removed."""
        ...

    async def create_container(self, pod_uid: str, config: ContainerConfig) -> str:
        """Prepares a container (resolves the image, its root, its mounts); returns its id.

        Raises RuntimeError_("ErrImagePull", ...) for an image it cannot run and
        RuntimeError_("CreateContainerError", ...) when mounts cannot be made safely.
        """
        ...

    async def start_container(self, container_id: str) -> None: ...

    async def stop_container(self, container_id: str, timeout: float) -> None:
        """SIGTERM to the container's process group, SIGKILL after ``timeout`` seconds."""
        ...

    async def remove_container(self, container_id: str) -> None: ...

    async def container_status(self, container_id: str) -> ContainerStatus: ...

    async def list_containers(self, pod_uid: str | None = None) -> list[ContainerStatus]:
        """Every container the runtime knows (all pods, or one pod), running or exited."""
        ...

    async def exec_sync(
        self, container_id: str, command: Sequence[str], timeout: float
    ) -> ExecResult:
        """Runs ``command`` in the container's view (its root, mounts, env, working dir)."""
        ...

    def exec_stream(
        self, container_id: str, command: Sequence[str], stdin: AsyncIterator[bytes] | None,
        tty: bool = False,
    ) -> AsyncIterator[tuple[int, bytes]]:
        """Streams (fd, data) pairs of a command's stdout (1)/stderr (2); the last item is
        (-1, exit code as ASCII)."""
        ...

    def read_logs(
        self, container_id: str, follow: bool = False, tail: int = -1
    ) -> AsyncIterator[bytes]:
        """The container's output (stdout and stderr interleaved), then live if following."""
        ...
