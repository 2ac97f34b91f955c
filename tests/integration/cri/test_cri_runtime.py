"""The kubelet's containerd runtime end to end: an in-process kubelet against a real API server,
a real containerd (CRI v1) and real local registries.

containerd runs in a network namespace with the registries it pulls from, one open and one
behind htpasswd auth (this directory's node.py makes them).

One containerd and the registries serve the module; each test starts its own API server and
kubelet, and removes every sandbox it left in containerd.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import re
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToJson

from kubelet.image_gc import ImageGarbageCollector, ImageGCSettings
from kubelet.runtime.cri import CriRuntime
from kubelite.api.errors import NotFound
from kubelite.containerd_process import DEFAULT_SANDBOX_IMAGE
from kubelite.testing.wait import eventually
from protos.cri.v1 import api_pb2 as cri
from protos.v1 import objects_pb2 as v1
from tests.integration.cri.node import (
    CREDENTIALS,
    MISSING,
    NS,
    WAIT,
    Network,
    Node,
    Registries,
    busybox_pod,
    waiting,
    waiting_message,
    waiting_reason,
)

pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)}")


# -- the tests ---------------------------------------------------------------------------------


async def test_a_pod_runs_as_its_user_in_its_own_namespaces(node: Node,
                                                          network: Network) -> None:
    await node.start_kubelet()
    await node.create(busybox_pod("whoami", "exec sleep 3600",
                                  securityContext={"runAsUser": 1000}))
    pod = await node.running("whoami")

    assert await node.exec("whoami", "id", "-u") == (0, "1000\n")
    code, hostname = await node.exec("whoami", "hostname")
    assert (code, hostname.strip()) == (0, "whoami")
    # Its own PID namespace: its command as PID 1, and ps itself.
    code, ps = await node.exec("whoami", "ps", "-o", "pid,comm")
    processes = [line.split() for line in ps.splitlines()[1:]]
    assert code == 0 and ["1", "sleep"] in processes, ps
    assert {comm for _, comm in processes} == {"sleep", "ps"}, ps
    # Its address, from the node's podCIDR, in the status and on its eth0.
    assert ipaddress.ip_address(pod.status.pod_ip) in ipaddress.ip_network(network.pod_cidr)
    assert [p.ip for p in pod.status.pod_ips] == [pod.status.pod_ip]
    code, addresses = await node.exec("whoami", "ip", "-4", "-o", "addr", "show", "eth0")
    assert code == 0 and f" {pod.status.pod_ip}/24 " in addresses, addresses
    assert pod.status.host_ip == "127.0.0.1"
    # The container as containerd knows it: its ID and the image it runs, by digest.
    status = pod.status.container_statuses[0]
    assert re.fullmatch(r"containerd://[0-9a-f]{64}", status.container_id), status
    assert re.search(r"sha256:[0-9a-f]{64}$", status.image_id), status


async def test_run_as_non_root_refuses_a_root_image(node: Node) -> None:
    await node.start_kubelet()
    created = await node.create(busybox_pod("rootless", "exec sleep 3600",
                                            securityContext={"runAsNonRoot": True}))
    pod = await node.wait("rootless", waiting_reason("CreateContainerConfigError"),
                          "CreateContainerConfigError")
    message = waiting_message(pod)
    assert "runAsNonRoot" in message and "root" in message, message
    # Its sandbox runs; no container was made.
    assert len(await node.sandboxes(created.metadata.uid)) == 1
    assert await node.containers(created.metadata.uid) == []
    assert pod.status.phase == "Pending"


async def test_image_pull_failures_wait_with_kubernetes_reasons(
    node: Node, registries: Registries,
) -> None:
    await node.start_kubelet()
    await node.create(busybox_pod("never", "true", image="busybox:not-here",
                                  container={"imagePullPolicy": "Never"}))
    # Named at the registry itself: a docker.io image missing from the mirror would be looked
    # for at docker.io next (unreachable from the namespace).
    missing = registries.open.reference("library/no-such-image", "1")
    await node.create(busybox_pod("missing", "true", image=missing))

    pod = await node.wait("never", waiting_reason("ErrImageNeverPull"), "ErrImageNeverPull")
    message = waiting_message(pod)
    assert 'Container image "busybox:not-here" is not present with pull policy of Never' \
        in message

    reasons: list[str] = []

    def seen(pod: v1.Pod) -> bool:
        w = waiting(pod)
        if w is not None and (not reasons or reasons[-1] != w.reason):
            reasons.append(w.reason)
        return w is not None and w.reason == "ImagePullBackOff"

    pod = await node.wait("missing", seen, "ImagePullBackOff")
    assert "ErrImagePull" in reasons and reasons.index("ErrImagePull") < len(reasons) - 1, \
        reasons
    message = waiting_message(pod)
    assert f'Failed to pull image "{missing}"' in message, message
    assert "not found" in message, message

    async def failed_event() -> list[v1.Event]:
        return [e for e in await node.events("missing")
                if e.type == "Warning" and e.reason == "Failed"]

    events = await eventually(failed_event, timeout=10, message="a Warning Failed event")
    assert "not found" in events[0].message


async def test_a_registry_behind_auth_needs_the_pods_pull_secret(
    node: Node, registries: Registries,
) -> None:
    await node.start_kubelet()
    image = registries.private.reference("library/busybox")
    await node.create(busybox_pod("anonymous", "exec sleep 3600", image=image))
    pod = await node.wait("anonymous", lambda p: (w := waiting(p)) is not None
                          and w.reason in ("ErrImagePull", "ImagePullBackOff"), "a failed pull")
    message = waiting_message(pod)
    assert re.search(r"401|[Uu]nauthori[sz]ed", message), message

    auth = base64.b64encode(f"{CREDENTIALS.username}:{CREDENTIALS.password}".encode()).decode()
    config = {"auths": {registries.private.address: {
        "username": CREDENTIALS.username, "password": CREDENTIALS.password, "auth": auth}}}
    await node.client.create(v1.Secret(
        metadata=v1.ObjectMeta(name="private-registry", namespace=NS),
        type="kubernetes.io/dockerconfigjson",
        data={".dockerconfigjson": json.dumps(config).encode()}))
    await node.create(busybox_pod("authorized", "exec sleep 3600", image=image,
                                  imagePullSecrets=[{"name": "private-registry"}]))
    await node.running("authorized")
    pulled = [e for e in await node.events("authorized") if e.reason == "Pulled"]
    assert pulled and f'Successfully pulled image "{image}"' in pulled[0].message


async def test_a_container_past_its_memory_limit_is_oom_killed(node: Node) -> None:
    await node.start_kubelet()
    await node.create(busybox_pod(
        "hungry", "exec tail /dev/zero", restartPolicy="Never",
        container={"resources": {"limits": {"memory": "32Mi"}}}))
    pod = await node.wait("hungry", lambda p: p.status.phase == "Failed", "Failed")
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.reason, terminated.exit_code) == ("OOMKilled", 137), \
        MessageToJson(pod.status)


async def test_logs_tail_and_previous_attempt(node: Node) -> None:
    await node.start_kubelet()
    # The first attempt writes a mark into its emptyDir and exits; the next one stays.
    script = ("if [ -e /data/ran ]; then echo second-1; echo second-2; echo second-3; "
              "exec sleep 3600; fi; touch /data/ran; echo first-1; echo first-2; echo first-3")
    await node.create(busybox_pod(
        "chatty", script, restartPolicy="Always", volumes=[{"name": "data", "emptyDir": {}}],
        container={"volumeMounts": [{"name": "data", "mountPath": "/data"}]}))
    pod = await node.wait("chatty", lambda p: p.status.container_statuses
                          and p.status.container_statuses[0].restart_count == 1
                          and p.status.container_statuses[0].state.HasField("running"),
                          "running again after one restart")
    assert pod.status.container_statuses[0].last_state.terminated.exit_code == 0

    async def current() -> str | None:
        text = await node.logs("chatty", tail_lines=2)
        return text if text == "second-2\nsecond-3\n" else None

    await eventually(current, timeout=10, message="the current attempt's last two lines")
    assert await node.logs("chatty") == "second-1\nsecond-2\nsecond-3\n"
    assert await node.logs("chatty", previous=True) == "first-1\nfirst-2\nfirst-3\n"
    assert await node.logs("chatty", previous=True, tail_lines=1) == "first-3\n"


async def test_image_gc_removes_unused_images_only(node: Node) -> None:
    kubelet = await node.start_kubelet()
    await node.create(busybox_pod("keeper", "exec sleep 3600"))
    web = await node.create({"metadata": {"name": "web"}, "spec": {
        "terminationGracePeriodSeconds": 1, "containers": [{"name": "web", "image": "nginx"}]}})
    await node.running("keeper")
    await node.running("web")
    await node.client.delete(v1.Pod, "web", NS)

    async def gone() -> bool:
        try:
            await node.client.get(v1.Pod, "web", NS)
        except NotFound:
            return not await node.sandboxes(web.metadata.uid)
        return False

    await eventually(gone, timeout=WAIT, message="pod web and its sandbox gone")

    runtime = kubelet.runtime
    assert isinstance(runtime, CriRuntime)

    async def tags() -> set[str]:
        return {tag for image in await runtime.list_images() for tag in image.tags}

    before = await tags()
    assert {"docker.io/library/nginx:latest", "docker.io/library/busybox:latest",
            DEFAULT_SANDBOX_IMAGE} <= before
    collection = await ImageGarbageCollector(runtime, ImageGCSettings(
        high_threshold_percent=0, low_threshold_percent=0)).collect()
    after = await tags()
    assert "docker.io/library/nginx:latest" in collection.removed
    assert "docker.io/library/nginx:latest" not in after
    # In use by a running pod, and the sandbox image: kept.
    assert "docker.io/library/busybox:latest" in after
    assert DEFAULT_SANDBOX_IMAGE in after
    assert (await node.running("keeper")).status.phase == "Running"


async def test_a_restarted_kubelet_adopts_its_running_pods(node: Node) -> None:
    first = await node.start_kubelet()
    created = await node.create(busybox_pod("steady", "exec sleep 3600"))
    before = (await node.running("steady")).status.container_statuses[0]
    sandboxes = await node.sandboxes(created.metadata.uid)
    assert len(sandboxes) == 1

    await node.stop_kubelet(first)
    containers = await node.containers(created.metadata.uid)
    assert [c.state for c in containers] == [cri.CONTAINER_RUNNING]

    await node.start_kubelet()
    # The new kubelet writes its own status; the container is the same one.
    await node.wait("steady", lambda p: p.status.container_statuses[0].state.HasField("running"),
                    "running")
    after_ids = [c.id for c in await node.containers(created.metadata.uid)]
    assert after_ids == [c.id for c in containers]
    pod = await node.client.get(v1.Pod, "steady", NS)
    status = pod.status.container_statuses[0]
    assert status.container_id == before.container_id
    assert status.container_id == f"containerd://{containers[0].id}"
    assert status.restart_count == before.restart_count == 0
    assert [s.id for s in await node.sandboxes(created.metadata.uid)] == [sandboxes[0].id]
    assert await node.exec("steady", "true") == (0, "")


async def test_deleting_a_pod_removes_its_containers_sandbox_and_logs(node: Node) -> None:
    await node.start_kubelet()
    created = await node.create(busybox_pod("short", "echo hello; exec sleep 3600"))
    await node.running("short")
    uid = created.metadata.uid
    log_dir = Path(node.settings.root_dir, "pod-logs", f"{NS}_short_{uid}")
    assert log_dir.is_dir()
    assert await node.containers(uid) and await node.sandboxes(uid)

    await node.client.delete(v1.Pod, "short", NS)

    async def removed() -> bool:
        with contextlib.suppress(NotFound):
            await node.client.get(v1.Pod, "short", NS)
            return False
        return not await node.sandboxes(uid) and not await node.containers(uid) \
            and not log_dir.exists()

    await eventually(removed, timeout=WAIT, interval=0.1,
                     message="the pod, its sandbox, containers and log directory gone")
    assert not Path(node.settings.root_dir, "pods", uid).exists()
