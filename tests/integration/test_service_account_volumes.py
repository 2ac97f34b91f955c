"""A pod's kube-api-access volume on an in-process kubelet against a real API server: where
the process runtime cannot mount (isolation none), the pod runs without it and says why in
a warning event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.protobuf.message import Message

from apiserver.server import ApiServer
from kubelet.kubelet import Kubelet
from kubelet.settings import KubeletSettings
from kubelet.volumes import PreparedVolumes, VolumeManager
from kubelite.api import convert
from kubelite.client.client import ApiClient
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1

NS = "default"
NODE = "sa-node"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def pod_with_api_access(name: str) -> v1.Pod:
    """A pod as the ServiceAccount admission plugin leaves it."""
    pod = convert.message_from_dict(v1.Pod, {
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "nodeName": NODE, "terminationGracePeriodSeconds": 1,
            "serviceAccountName": "default",
            "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"],
                            "volumeMounts": [{"name": "kube-api-access-abcde",
                                              "mountPath": SA_DIR, "readOnly": True}]}],
            "volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "kube-root-ca.crt",
                               "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                    "fieldPath": "metadata.namespace"}}]}},
            ]}}],
        },
    })
    assert isinstance(pod, v1.Pod)
    return pod


@pytest.fixture
async def unmounting_kubelet(api_server: ApiServer, tmp_path: Path) -> AsyncIterator[Kubelet]:
    settings = KubeletSettings(
        node_name=NODE, address="127.0.0.1", port=0, server=api_server.address,
        root_dir=str(tmp_path / "kubelet"), isolation="none",
        node_status_update_frequency=1, node_lease_duration=8, sync_frequency=1,
        housekeeping_interval=0.2, default_grace_seconds=1, stop_pods_on_exit=True)
    kubelet = Kubelet(settings)
    await kubelet.start()
    try:
        yield kubelet
    finally:
        await kubelet.stop()


async def test_without_a_mount_namespace_the_pod_runs_without_its_token(
        unmounting_kubelet: Kubelet, client: ApiClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    prepared: list[str] = []
    prepare = VolumeManager.prepare

    async def counting_prepare(self: VolumeManager, pod: v1.Pod) -> PreparedVolumes:
        prepared.append(pod.metadata.name)
        return await prepare(self, pod)

    monkeypatch.setattr(VolumeManager, "prepare", counting_prepare)
    recorded: list[str] = []
    record = unmounting_kubelet.recorder.record

    def spying_record(obj: Message, type_: str, reason: str, message: str) -> None:
        recorded.append(reason)
        record(obj, type_, reason, message)

    monkeypatch.setattr(unmounting_kubelet.recorder, "record", spying_record)

    await client.create(pod_with_api_access("no-mounts"))

    async def running() -> bool:
        pod = await client.get(v1.Pod, "no-mounts", NS)
        statuses = pod.status.container_statuses
        return bool(statuses) and statuses[0].state.HasField("running")

    await eventually(running, timeout=30, interval=0.05, message="pod no-mounts running")

    async def warned() -> list[v1.Event]:
        events = (await client.list(v1.Event, NS)).items
        return [e for e in events if e.reason == "ServiceAccountTokenNotMounted"
                and e.involved_object.name == "no-mounts"]

    [event] = await eventually(warned, timeout=10, message="the warning event")
    assert event.type == "Warning"
    assert 'volume "kube-api-access-abcde"' in event.message
    # Once per pod, although the pod's volumes are prepared at every sync.
    await eventually(lambda: prepared.count("no-mounts") >= 3, timeout=10,
                     message="three syncs of the pod")
    assert recorded.count("ServiceAccountTokenNotMounted") == 1
