"""Projected volumes on the node: the files of each source in one directory, ServiceAccount
tokens from the token manager, and the API access volume where nothing can be mounted."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import cast

import pytest

from kubelet.errors import ContainerStartError
from kubelet.token_manager import TokenManager, TokenManagerSettings
from kubelet.volumes import PreparedVolumes, VolumeManager, container_mounts, read_only_volumes
from kubelite.api.errors import Forbidden
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1
from tests.unit.fakes import FakeClient, FakeRecorder, FakeRequester, ManualClock

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class Dirs:
    def __init__(self, root: Path) -> None:
        self.root = root

    def volume_dir(self, pod_uid: str, volume_name: str) -> str:
        path = self.root / pod_uid / "volumes" / volume_name
        path.mkdir(parents=True, exist_ok=True)
        return str(path)


def api_access_volume(name: str = "kube-api-access-x7k2p") -> v1.Volume:
    """The volume the ServiceAccount admission plugin adds."""
    return v1.Volume(name=name, projected=v1.ProjectedVolumeSource(sources=[
        v1.VolumeProjection(service_account_token=v1.ServiceAccountTokenProjection(
            path="token", expiration_seconds=3607)),
        v1.VolumeProjection(config_map=v1.ConfigMapProjection(
            name="kube-root-ca.crt", items=[v1.KeyToPath(key="ca.crt", path="ca.crt")])),
        v1.VolumeProjection(downward_api=v1.DownwardAPIProjection(items=[
            v1.DownwardAPIVolumeFile(path="namespace", field_ref=v1.ObjectFieldSelector(
                field_path="metadata.namespace"))])),
    ]))


def pod_with(*volumes: v1.Volume) -> v1.Pod:
    pod = v1.Pod()
    pod.metadata.name, pod.metadata.namespace, pod.metadata.uid = "web", "team", "uid-web"
    pod.metadata.labels["app"] = "web"
    pod.spec.service_account_name = "builder"
    pod.spec.volumes.extend(volumes)
    container = pod.spec.containers.add(name="app", image="busybox")
    for volume in volumes:
        container.volume_mounts.add(name=volume.name, mount_path=f"/mnt/{volume.name}")
    if volumes and volumes[0].name.startswith("kube-api-access-"):
        container.volume_mounts[0].mount_path = SA_DIR
    return pod


class Node:
    def __init__(self, root: Path, *, can_mount: bool = True) -> None:
        self.client = FakeClient()
        ca = v1.ConfigMap(data={"ca.crt": "-----BEGIN CERTIFICATE-----\n"})
        ca.metadata.name, ca.metadata.namespace = "kube-root-ca.crt", "team"
        self.client.put(ca)
        self.clock = ManualClock()
        self.requester = FakeRequester(self.clock)
        self.tokens = TokenManager(self.requester, TokenManagerSettings(), clock=self.clock,
                                   jitter=lambda: 0.0)
        self.recorder = FakeRecorder()
        self.volumes = VolumeManager(cast(ApiClient, self.client), Dirs(root), {},
                                     tokens=self.tokens, recorder=self.recorder,
                                     can_mount=can_mount)


def files_of(directory: str) -> dict[str, tuple[str, int]]:
    root = Path(directory)
    return {str(p.relative_to(root)): (p.read_text(), stat.S_IMODE(p.stat().st_mode))
            for p in sorted(root.rglob("*")) if p.is_file()}


async def test_the_api_access_volume_holds_token_ca_and_namespace(tmp_path: Path) -> None:
    node = Node(tmp_path)
    pod = pod_with(api_access_volume())

    paths = await node.volumes.prepare(pod)

    assert files_of(paths["kube-api-access-x7k2p"]) == {
        "ca.crt": ("-----BEGIN CERTIFICATE-----\n", 0o644),
        "namespace": ("team", 0o644),
        "token": ("token-1", 0o644),
    }
    _, account, request = node.requester.requests[0]
    assert account == "builder"
    assert request.spec.expiration_seconds == 3607
    assert request.spec.bound_object_ref.uid == "uid-web"
    mounts = container_mounts(pod.spec.containers[0], paths, read_only_volumes(pod))
    assert [(m.container_path, m.read_only) for m in mounts] == [(SA_DIR, True)]


async def test_a_refreshed_token_replaces_the_file_and_leaves_no_temporary(
        tmp_path: Path) -> None:
    node = Node(tmp_path)
    pod = pod_with(api_access_volume())
    paths = await node.volumes.prepare(pod)
    node.clock.now += 3000  # past 80% of 3607 s

    await node.volumes.prepare(pod)

    directory = paths["kube-api-access-x7k2p"]
    assert Path(directory, "token").read_text() == "token-2"
    assert sorted(os.listdir(directory)) == ["ca.crt", "namespace", "token"]


async def test_default_mode_items_modes_audience_and_every_source(tmp_path: Path) -> None:
    node = Node(tmp_path)
    secret = v1.Secret(data={"user": b"admin", "password": b"s3cret"})
    secret.metadata.name, secret.metadata.namespace = "db", "team"
    node.client.put(secret)
    volume = v1.Volume(name="all-in-one", projected=v1.ProjectedVolumeSource(
        default_mode=0o440,
        sources=[
            v1.VolumeProjection(secret=v1.SecretProjection(name="db", items=[
                v1.KeyToPath(key="password", path="db/password", mode=0o400)])),
            v1.VolumeProjection(config_map=v1.ConfigMapProjection(name="kube-root-ca.crt")),
            v1.VolumeProjection(downward_api=v1.DownwardAPIProjection(items=[
                v1.DownwardAPIVolumeFile(path="labels", field_ref=v1.ObjectFieldSelector(
                    field_path="metadata.labels"))])),
            v1.VolumeProjection(service_account_token=v1.ServiceAccountTokenProjection(
                audience="vault", path="vault/token")),
        ]))
    pod = pod_with(volume)

    paths = await node.volumes.prepare(pod)

    assert files_of(paths["all-in-one"]) == {
        "ca.crt": ("-----BEGIN CERTIFICATE-----\n", 0o440),
        "db/password": ("s3cret", 0o400),
        "labels": ('app="web"', 0o440),
        "vault/token": ("token-1", 0o440),
    }
    request = node.requester.requests[0][2]
    assert list(request.spec.audiences) == ["vault"]
    assert request.spec.expiration_seconds == 3600


async def test_missing_sources_fail_unless_optional(tmp_path: Path) -> None:
    node = Node(tmp_path)
    optional = v1.Volume(name="maybe", projected=v1.ProjectedVolumeSource(sources=[
        v1.VolumeProjection(secret=v1.SecretProjection(name="absent", optional=True)),
        v1.VolumeProjection(config_map=v1.ConfigMapProjection(
            name="kube-root-ca.crt", optional=True,
            items=[v1.KeyToPath(key="no-such-key", path="x")])),
    ]))
    paths = await node.volumes.prepare(pod_with(optional))
    assert files_of(paths["maybe"]) == {}

    required = v1.Volume(name="needs", projected=v1.ProjectedVolumeSource(sources=[
        v1.VolumeProjection(secret=v1.SecretProjection(name="absent"))]))
    with pytest.raises(ContainerStartError, match='volume "needs": secret "absent" not found'):
        await node.volumes.prepare(pod_with(required))


async def test_a_refused_token_request_is_a_mount_error(tmp_path: Path) -> None:
    node = Node(tmp_path)
    node.requester.fail = Forbidden('serviceaccounts "builder" is forbidden')
    with pytest.raises(ContainerStartError) as caught:
        await node.volumes.prepare(pod_with(api_access_volume()))
    assert caught.value.reason == "ContainerCreating"
    assert 'MountVolume.SetUp failed for volume "kube-api-access-x7k2p"' in caught.value.message
    assert "failed to fetch token" in caught.value.message


async def test_without_mounts_the_api_access_volume_is_skipped_with_one_event(
        tmp_path: Path) -> None:
    node = Node(tmp_path, can_mount=False)
    other = v1.Volume(name="projected-config", projected=v1.ProjectedVolumeSource(sources=[
        v1.VolumeProjection(config_map=v1.ConfigMapProjection(name="kube-root-ca.crt"))]))
    pod = pod_with(api_access_volume(), other)

    first = await node.volumes.prepare(pod)
    second = await node.volumes.prepare(pod)

    assert isinstance(first, PreparedVolumes)
    assert "kube-api-access-x7k2p" not in first and first.unmounted == {"kube-api-access-x7k2p"}
    assert "projected-config" in second  # only the API access volume is left out
    assert node.requester.requests == []  # no token asked for when it cannot be mounted
    assert node.recorder.reasons() == ["ServiceAccountTokenNotMounted"]
    assert node.recorder.events[0].type == "Warning"
    mounts = container_mounts(pod.spec.containers[0], second, read_only_volumes(pod))
    assert [m.container_path for m in mounts] == ["/mnt/projected-config"]

    node.volumes.forget_pod("uid-web")
    await node.volumes.prepare(pod)
    assert node.recorder.reasons() == ["ServiceAccountTokenNotMounted"] * 2


async def test_forgetting_a_pod_drops_its_tokens(tmp_path: Path) -> None:
    node = Node(tmp_path)
    await node.volumes.prepare(pod_with(api_access_volume()))
    assert node.tokens.cached()
    node.volumes.forget_pod("uid-web")
    assert not node.tokens.cached()
