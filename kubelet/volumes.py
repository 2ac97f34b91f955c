"""Volumes on the node: directories the runtime bind-mounts at each container's mountPath.

emptyDir lives in the pod's directory; hostPath is the node's path (checked or created per
its type); configMap, secret and downwardAPI are files the kubelet writes, atomically
replaced on each sync so updates reach running pods as in Kubernetes.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from kubelet.env import field_value, resource_value
from kubelet.errors import ContainerStartError
from kubelet.runtime.interface import Mount
from kubelite.api.errors import NotFound
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1


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
    data: Mapping[str, bytes], items: list[v1.KeyToPath], default_mode: int, volume: str
) -> dict[str, tuple[bytes, int]]:
    if not items:
        return {key: (value, default_mode) for key, value in data.items()}
    files: dict[str, tuple[bytes, int]] = {}
    for item in items:
        if item.key not in data:
            raise mount_error(volume, f"configuration key {item.key!r} not found")
        files[item.path] = (data[item.key], item.mode if item.HasField("mode") else default_mode)
    return files


class VolumeManager:
    def __init__(
        self, client: ApiClient, dirs: VolumeDirs, node_allocatable: Mapping[str, str]
    ) -> None:
        self.client = client
        self.dirs = dirs
        self.node_allocatable = node_allocatable

    async def prepare(self, pod: v1.Pod) -> dict[str, str]:
        """Every volume of the pod ready on the node; returns name -> host path."""
        paths: dict[str, str] = {}
        for volume in pod.spec.volumes:
            paths[volume.name] = await self._prepare_one(pod, volume)
        return paths

    async def _prepare_one(self, pod: v1.Pod, volume: v1.Volume) -> str:
        uid, namespace, name = pod.metadata.uid, pod.metadata.namespace, volume.name
        if volume.HasField("empty_dir"):
            path = self.dirs.volume_dir(uid, name)
            os.makedirs(path, exist_ok=True)
            return path
        if volume.HasField("host_path"):
            return self._host_path(volume)
        if volume.HasField("config_map"):
            source = volume.config_map
            path = self.dirs.volume_dir(uid, name)
            try:
                cm = await self.client.get(v1.ConfigMap, source.name, namespace)
                data = {k: v.encode() for k, v in cm.data.items()} | dict(cm.binary_data)
            except NotFound:
                if not source.optional:
                    raise mount_error(name, f'configmap "{source.name}" not found') from None
                data = {}
            mode = source.default_mode if source.HasField("default_mode") else 0o644
            _write_files(path, _items(data, list(source.items), mode, name))
            return path
        if volume.HasField("secret"):
            ssource = volume.secret
            path = self.dirs.volume_dir(uid, name)
            try:
                secret = await self.client.get(v1.Secret, ssource.secret_name, namespace)
                sdata = dict(secret.data)
            except NotFound:
                if not ssource.optional:
                    raise mount_error(name, f'secret "{ssource.secret_name}" not found') from None
                sdata = {}
            mode = ssource.default_mode if ssource.HasField("default_mode") else 0o644
            _write_files(path, _items(sdata, list(ssource.items), mode, name))
            return path
        if volume.HasField("downward_api"):
            dsource = volume.downward_api
            path = self.dirs.volume_dir(uid, name)
            mode = dsource.default_mode if dsource.HasField("default_mode") else 0o644
            files: dict[str, tuple[bytes, int]] = {}
            for item in dsource.items:
                if item.HasField("field_ref"):
                    value = field_value(pod, item.field_ref.field_path)
                else:
                    default = pod.spec.containers[0].name if pod.spec.containers else ""
                    value = resource_value(
                        pod, item.resource_field_ref, default, self.node_allocatable
                    )
                files[item.path] = (value.encode(), item.mode if item.HasField("mode") else mode)
            _write_files(path, files)
            return path
        if volume.HasField("persistent_volume_claim"):
            raise mount_error(name, "persistentVolumeClaim volumes are not supported yet")
        raise mount_error(name, "the volume has no source this node supports")

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
    mounts = []
    for vm in container.volume_mounts:
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
    }
