"""Volumes on the node: directories the runtime bind-mounts at each container's mountPath.

emptyDir lives in the pod's directory; hostPath is the node's path (checked or created per
its type); configMap, secret, downwardAPI and projected volumes are files the kubelet writes,
atomically replaced on each sync so updates reach running pods as in Kubernetes. A projected
volume gathers secret, configMap and downwardAPI items and ServiceAccount tokens (from the
token manager, refreshed before they expire) in one directory.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import structlog

from kubelet.env import field_value, resource_value
from kubelet.errors import ContainerStartError
from kubelet.runtime.interface import Mount
from kubelet.token_manager import DEFAULT_EXPIRATION_SECONDS, TokenManager
from kubelite.api.errors import ApiError, NotFound
from kubelite.client.client import ApiClient
from kubelite.client.events import WARNING, EventRecorder
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)


class VolumeDirs(Protocol):
    def volume_dir(self, pod_uid: str, volume_name: str) -> str: ...


def mount_error(volume: str, message: str) -> ContainerStartError:
    return ContainerStartError(
        "ContainerCreating", f'MountVolume.SetUp failed for volume "{volume}": {message}'
    )


def _write_files(directory: str, files: Mapping[str, tuple[bytes, int]]) -> None:
    """Makes ``directory`` hold exactly ``files`` (relative path -> (content, mode))."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for relative, (content, mode) in files.items():
        target = root / relative
        if ".." in Path(relative).parts or Path(relative).is_absolute():
            raise ValueError(f"invalid item path {relative!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        wanted.add(target)
        try:
            if target.read_bytes() == content and stat.S_IMODE(target.stat().st_mode) == mode:
                continue
        except OSError:
            pass
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    for existing in list(root.rglob("*")):
        if existing.is_file() and existing not in wanted:
            existing.unlink()


def _items(
    data: Mapping[str, bytes], items: list[v1.KeyToPath], default_mode: int, volume: str,
    optional: bool = False,
) -> dict[str, tuple[bytes, int]]:
    if not items:
        return {key: (value, default_mode) for key, value in data.items()}
    files: dict[str, tuple[bytes, int]] = {}
    for item in items:
        if item.key not in data:
            if optional:  # an optional source's missing key is no file, as upstream
                continue
            raise mount_error(volume, f"configuration key {item.key!r} not found")
        files[item.path] = (data[item.key], item.mode if item.HasField("mode") else default_mode)
    return files


API_ACCESS_VOLUME_PREFIX = "kube-api-access-"
"""The projected volume the ServiceAccount admission plugin adds to pods: the token, the
cluster CA and the namespace at /var/run/secrets/kubernetes.io/serviceaccount."""


def is_api_access_volume(volume: v1.Volume) -> bool:
    return volume.HasField("projected") and volume.name.startswith(API_ACCESS_VOLUME_PREFIX)


class PreparedVolumes(dict[str, str]):
    """Volume name -> host path of a pod's prepared volumes, and the volumes this node
    leaves unmounted (``unmounted``: their mounts are skipped)."""

    def __init__(self) -> None:
        super().__init__()
        self.unmounted: set[str] = set()


class VolumeManager:
    def __init__(
        self,
        client: ApiClient,
        dirs: VolumeDirs,
        node_allocatable: Mapping[str, str],
        *,
        tokens: TokenManager | None = None,
        recorder: EventRecorder | None = None,
        can_mount: bool = True,
    ) -> None:
        """``tokens``: ServiceAccount tokens for projected volumes (None: a volume asking
        for one fails to mount). ``can_mount``: whether the runtime mounts volumes at all;
        when it cannot, the API access volume is left out (with a warning event) rather
        than making every pod with a ServiceAccount token unrunnable."""
        self.client = client
        self.dirs = dirs
        self.node_allocatable = node_allocatable
        self.tokens = tokens
        self.recorder = recorder
        self.can_mount = can_mount
        self._warned_unmounted: set[str] = set()

    async def prepare(self, pod: v1.Pod) -> PreparedVolumes:
        """Every volume of the pod ready on the node; returns name -> host path."""
        paths = PreparedVolumes()
        for volume in pod.spec.volumes:
            if not self.can_mount and is_api_access_volume(volume):
                self._warn_unmounted(pod, volume.name)
                paths.unmounted.add(volume.name)
                continue
            paths[volume.name] = await self._prepare_one(pod, volume)
        return paths

    def forget_pod(self, pod_uid: str) -> None:
        """The pod is gone from this node: its tokens are dropped (their files went with the
        pod's directory)."""
        self._warned_unmounted.discard(pod_uid)
        if self.tokens is not None:
            self.tokens.forget_pod(pod_uid)

    def _warn_unmounted(self, pod: v1.Pod, volume: str) -> None:
        if pod.metadata.uid in self._warned_unmounted:
            return
        self._warned_unmounted.add(pod.metadata.uid)
        message = (f'volume "{volume}" (the ServiceAccount token, CA and namespace) is not'
                   " mounted: the runtime has no mount namespace (run the kubelet as root or"
                   " enable unprivileged user namespaces)")
        log.warning("ServiceAccount token not mounted", pod=f"{pod.metadata.namespace}/"
                    f"{pod.metadata.name}", volume=volume, reason="no mount namespace")
        if self.recorder is not None:
            self.recorder.record(pod, WARNING, "ServiceAccountTokenNotMounted", message)

    async def _prepare_one(self, pod: v1.Pod, volume: v1.Volume) -> str:
        uid, name = pod.metadata.uid, volume.name
        if volume.HasField("empty_dir"):
            path = self.dirs.volume_dir(uid, name)
            os.makedirs(path, exist_ok=True)
            return path
        if volume.HasField("host_path"):
            return self._host_path(volume)
        files: dict[str, tuple[bytes, int]]
        if volume.HasField("config_map"):
            source = volume.config_map
            mode = source.default_mode if source.HasField("default_mode") else 0o644
            files = await self._config_map_files(
                pod, name, source.name, list(source.items), source.optional, mode)
        elif volume.HasField("secret"):
            ssource = volume.secret
            mode = ssource.default_mode if ssource.HasField("default_mode") else 0o644
            files = await self._secret_files(
                pod, name, ssource.secret_name, list(ssource.items), ssource.optional, mode)
        elif volume.HasField("downward_api"):
            dsource = volume.downward_api
            mode = dsource.default_mode if dsource.HasField("default_mode") else 0o644
            files = self._downward_api_files(pod, list(dsource.items), mode)
        elif volume.HasField("projected"):
            files = await self._projected_files(pod, volume)
        elif volume.HasField("persistent_volume_claim"):
            raise mount_error(name, "persistentVolumeClaim volumes are not supported yet")
        else:
            raise mount_error(name, "the volume has no source this node supports")
        path = self.dirs.volume_dir(uid, name)
        try:
            _write_files(path, files)
        except ValueError as e:
            raise mount_error(name, str(e)) from None
        return path

    async def _config_map_files(
        self, pod: v1.Pod, volume: str, name: str, items: list[v1.KeyToPath], optional: bool,
        mode: int,
    ) -> dict[str, tuple[bytes, int]]:
        try:
            cm = await self.client.get(v1.ConfigMap, name, pod.metadata.namespace)
            data = {k: v.encode() for k, v in cm.data.items()} | dict(cm.binary_data)
        except NotFound:
            if not optional:
                raise mount_error(volume, f'configmap "{name}" not found') from None
            data = {}
        return _items(data, items, mode, volume, optional)

    async def _secret_files(
        self, pod: v1.Pod, volume: str, name: str, items: list[v1.KeyToPath], optional: bool,
        mode: int,
    ) -> dict[str, tuple[bytes, int]]:
        try:
            secret = await self.client.get(v1.Secret, name, pod.metadata.namespace)
            data = dict(secret.data)
        except NotFound:
            if not optional:
                raise mount_error(volume, f'secret "{name}" not found') from None
            data = {}
        return _items(data, items, mode, volume, optional)

    def _downward_api_files(
        self, pod: v1.Pod, items: list[v1.DownwardAPIVolumeFile], mode: int
    ) -> dict[str, tuple[bytes, int]]:
        files: dict[str, tuple[bytes, int]] = {}
        for item in items:
            if item.HasField("field_ref"):
                value = field_value(pod, item.field_ref.field_path)
            else:
                default = pod.spec.containers[0].name if pod.spec.containers else ""
                value = resource_value(
                    pod, item.resource_field_ref, default, self.node_allocatable
                )
            files[item.path] = (value.encode(), item.mode if item.HasField("mode") else mode)
        return files

    async def _projected_files(
        self, pod: v1.Pod, volume: v1.Volume
    ) -> dict[str, tuple[bytes, int]]:
        """The files of every source of a projected volume, in one directory."""
        source = volume.projected
        mode = source.default_mode if source.HasField("default_mode") else 0o644
        files: dict[str, tuple[bytes, int]] = {}
        for projection in source.sources:
            if projection.HasField("secret"):
                s = projection.secret
                files |= await self._secret_files(
                    pod, volume.name, s.name, list(s.items), s.optional, mode)
            elif projection.HasField("config_map"):
                c = projection.config_map
                files |= await self._config_map_files(
                    pod, volume.name, c.name, list(c.items), c.optional, mode)
            elif projection.HasField("downward_api"):
                files |= self._downward_api_files(
                    pod, list(projection.downward_api.items), mode)
            elif projection.HasField("service_account_token"):
                token = projection.service_account_token
                files[token.path] = (await self._token(pod, volume.name, token), mode)
            else:
                raise mount_error(volume.name, "a projected source names none of secret,"
                                               " configMap, downwardAPI, serviceAccountToken")
        return files

    async def _token(
        self, pod: v1.Pod, volume: str, projection: v1.ServiceAccountTokenProjection
    ) -> bytes:
        if self.tokens is None:
            raise mount_error(volume, "this kubelet cannot request ServiceAccount tokens")
        expiration = (projection.expiration_seconds
                      if projection.HasField("expiration_seconds")
                      else DEFAULT_EXPIRATION_SECONDS)
        audiences = [projection.audience] if projection.audience else []
        try:
            token = await self.tokens.get(pod, audiences, expiration)
        except ApiError as e:
            account = pod.spec.service_account_name or "default"
            raise mount_error(volume, f'failed to fetch token: serviceaccounts "{account}":'
                                      f" {e.message}") from e
        return token.encode()

    def _host_path(self, volume: v1.Volume) -> str:
        source = volume.host_path
        path = source.path
        kind = source.type if source.HasField("type") else ""
        exists = os.path.exists(path)
        if kind == "DirectoryOrCreate" and not exists:
            os.makedirs(path, mode=0o755, exist_ok=True)
        elif kind == "FileOrCreate" and not exists:
            os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
            Path(path).touch(mode=0o644)
        elif kind == "Directory" and not os.path.isdir(path):
            raise mount_error(volume.name, f"hostPath type check failed: {path} is not a directory")
        elif kind == "File" and not os.path.isfile(path):
            raise mount_error(volume.name, f"hostPath type check failed: {path} is not a file")
        elif kind == "Socket" and not (exists and stat.S_ISSOCK(os.stat(path).st_mode)):
            raise mount_error(volume.name, f"hostPath type check failed: {path} is not a socket")
        elif kind == "" and not exists:
            # Kubernetes' default (no type): the runtime creates a missing directory.
            os.makedirs(path, mode=0o755, exist_ok=True)
        return path


def container_mounts(
    container: v1.Container, volume_paths: Mapping[str, str], read_only_volumes: set[str]
) -> list[Mount]:
    unmounted = volume_paths.unmounted if isinstance(volume_paths, PreparedVolumes) else set()
    mounts = []
    for vm in container.volume_mounts:
        if vm.name in unmounted:
            continue
        host = volume_paths[vm.name]
        if vm.sub_path:
            host = os.path.join(host, vm.sub_path)
            os.makedirs(host, exist_ok=True)
        mounts.append(Mount(host, vm.mount_path, vm.read_only or vm.name in read_only_volumes))
    return mounts


def read_only_volumes(pod: v1.Pod) -> set[str]:
    """Volumes Kubernetes always mounts read-only."""
    return {
        v.name
        for v in pod.spec.volumes
        if v.HasField("config_map") or v.HasField("secret") or v.HasField("downward_api")
        or v.HasField("projected")
    }
