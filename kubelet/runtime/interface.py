"""The runtime interface the kubelet drives, shaped after Kubernetes' CRI.

A sandbox is a pod's home on the node (its directory, its volumes); containers run inside it.
Container ids are stable strings the runtime chooses; everything a runtime knows about its
containers survives a kubelet restart (``list_containers`` returns them, running or exited),
so a restarted kubelet adopts what already runs instead of starting duplicates.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping, Sequence
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


@dataclass(frozen=True)
class PodSandboxConfig:
    uid: str
    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)


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


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False


class Runtime(Protocol):
    """A container runtime. Every method may raise RuntimeError_ with a waiting reason."""

    name: str

    async def run_pod_sandbox(self, config: PodSandboxConfig) -> str:
        """Creates the pod's directory on the node (idempotent); returns its path."""
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
