"""A kubelet that stops its pods on exit (local clusters) stops every pod on the node, also
when the stop comes during its start: an in-process kubelet on the process runtime against a
real API server."""

from __future__ import annotations

from pathlib import Path

from apiserver.server import ApiServer
from kubelet.kubelet import Kubelet
from kubelet.runtime.interface import ContainerState
from kubelet.settings import KubeletSettings
from kubelite.client.client import ApiClient
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1

NODE = "stopping-node"


def settings(api_server: ApiServer, root: Path, *, stop_pods_on_exit: bool) -> KubeletSettings:
    return KubeletSettings(
        node_name=NODE, address="127.0.0.1", port=0, server=api_server.address,
        root_dir=str(root), isolation="none", node_status_update_frequency=1,
        node_lease_duration=8, sync_frequency=2, housekeeping_interval=0.2,
        default_grace_seconds=1, stop_pods_on_exit=stop_pods_on_exit)


def sleeper(name: str) -> v1.Pod:
    return v1.Pod(
        metadata=v1.ObjectMeta(name=name, namespace="default"),
        spec=v1.PodSpec(node_name=NODE, termination_grace_period_seconds=1,
                        containers=[v1.Container(name="main", image="busybox",
                                                 command=["sleep", "3600"])]))


async def running_pod_uids(kubelet: Kubelet) -> list[str]:
    """The pod of each container running in ``kubelet``'s runtime."""
    return [c.pod_uid for c in await kubelet.runtime.list_containers()
            if c.state == ContainerState.RUNNING]


async def test_a_stop_during_start_also_stops_pods_deleted_while_the_kubelet_was_away(
    api_server: ApiServer, client: ApiClient, tmp_path: Path,
) -> None:
    first = Kubelet(settings(api_server, tmp_path / "kubelet", stop_pods_on_exit=False))
    await first.start()
    try:
        pod = await client.create(sleeper("left-behind"))
        await eventually(lambda: running_pod_uids(first), timeout=30,
                         message="the pod's container running")
    finally:
        await first.stop()  # as a kubelet that stops without its pods
    assert await running_pod_uids(first) == [pod.metadata.uid]
    await client.delete(v1.Pod, "left-behind", "default", grace_period_seconds=0)

    # The next kubelet is told to stop before its start got to the pods (a SIGTERM then ends
    # start and runs stop): it has no worker for the deleted pod, and stops it all the same.
    second = Kubelet(settings(api_server, tmp_path / "kubelet", stop_pods_on_exit=True))
    try:
        await second.stop()
        assert await running_pod_uids(second) == []
        # Its exited container stays for the next start to remove, as for any orphan.
        assert [c.pod_uid for c in await second.runtime.list_containers()] == [pod.metadata.uid]
    finally:  # nothing left running if it failed
        for container in await second.runtime.list_containers():
            await second.runtime.stop_container(container.id, 0)
            await second.runtime.remove_container(container.id)
