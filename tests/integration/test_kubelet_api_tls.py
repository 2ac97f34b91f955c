"""The kubelet API over TLS: an in-process kubelet against a real API server serves exec only
to callers with a client certificate from its client CA that are allowed to: the API server's
kubelet client, or a user the API server's SubjectAccessReview allows ``nodes/proxy``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from apiserver.server import ApiServer
from kubelet.kubelet import Kubelet
from kubelet.settings import KubeletSettings
from kubelite.api import convert
from kubelite.auth.user import APISERVER_KUBELET_CLIENT, MASTERS
from kubelite.client.client import ApiClient
from kubelite.testing.tls import CertificateAuthority, Pair
from kubelite.testing.wait import eventually
from protos.v1 import kubelet_pb2 as kpb
from protos.v1 import kubelet_pb2_grpc as kpb_grpc
from protos.v1 import objects_pb2 as v1

NS = "default"
NODE = "tls-node"


@dataclass
class SecuredNode:
    kubelet: Kubelet
    ca: CertificateAuthority
    pod: v1.Pod

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.kubelet.server.port}"

    async def exec(self, credentials: grpc.ChannelCredentials | None,
                   command: list[str]) -> tuple[bytes, int]:
        """Runs ``command`` in the pod's container through the kubelet API directly."""
        channel = (grpc.aio.secure_channel(self.address, credentials) if credentials
                   else grpc.aio.insecure_channel(self.address))
        try:
            stub = kpb_grpc.KubeletStub(channel)  # type: ignore[no-untyped-call]
            output, code = b"", -1
            request = kpb.ContainerExecRequest(pod_uid=self.pod.metadata.uid, container="main",
                                               command=command)
            async for chunk in stub.Exec(request, timeout=20):
                if chunk.fd == -1:
                    code = chunk.exit_code
                else:
                    output += chunk.data
            return output, code
        finally:
            await channel.close(None)

    def credentials(self, pair: Pair | None, ca: CertificateAuthority | None = None
                    ) -> grpc.ChannelCredentials:
        """TLS trusting the cluster CA (or ``ca``), presenting ``pair`` when given."""
        return grpc.ssl_channel_credentials(
            root_certificates=(ca or self.ca).cert_pem,
            private_key=pair.key_pem if pair else None,
            certificate_chain=pair.cert_pem if pair else None)


@pytest.fixture
async def node(api_server: ApiServer, client: ApiClient,
               tmp_path: Path) -> AsyncIterator[SecuredNode]:
    ca = CertificateAuthority("kubernetes")
    serving_cert, serving_key = ca.issue(
        f"{NODE}-serving", ips=("127.0.0.1",), client=False).write(tmp_path / "pki", "serving")
    settings = KubeletSettings(
        node_name=NODE, address="127.0.0.1", port=0, server=api_server.address,
        root_dir=str(tmp_path / "kubelet"), isolation="none",
        tls_cert_file=str(serving_cert), tls_private_key_file=str(serving_key),
        client_ca_file=str(ca.write(tmp_path / "pki")),
        node_status_update_frequency=1, node_lease_duration=8, sync_frequency=2,
        housekeeping_interval=0.2, default_grace_seconds=1, stop_pods_on_exit=True)
    kubelet = Kubelet(settings)
    await kubelet.start()
    try:
        pod = convert.message_from_dict(v1.Pod, {
            "metadata": {"name": "shell", "namespace": NS},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": "busybox",
                                     "command": ["sleep", "3600"]}]},
        })
        assert isinstance(pod, v1.Pod)
        created = await client.create(pod)

        async def running() -> bool:
            current = await client.get(v1.Pod, "shell", NS)
            statuses = current.status.container_statuses
            return bool(statuses) and statuses[0].state.HasField("running")

        await eventually(running, timeout=30, interval=0.05, message="pod shell running")
        yield SecuredNode(kubelet, ca, created)
    finally:
        await kubelet.stop()


async def test_the_api_server_s_kubelet_client_may_exec(node: SecuredNode) -> None:
    pair = node.ca.issue(APISERVER_KUBELET_CLIENT, organizations=(MASTERS,), server=False)
    output, code = await node.exec(node.credentials(pair), ["echo", "hello"])
    assert (output, code) == (b"hello\n", 0)


async def test_any_system_masters_member_may_exec(node: SecuredNode) -> None:
    pair = node.ca.issue("kubernetes-admin", organizations=(MASTERS,), server=False)
    assert await node.exec(node.credentials(pair), ["true"]) == (b"", 0)


async def test_a_caller_without_a_client_certificate_fails_the_handshake(
        node: SecuredNode) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await node.exec(node.credentials(None), ["true"])
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_certificate_from_another_ca_fails_the_handshake(node: SecuredNode) -> None:
    rogue = CertificateAuthority("kubernetes")  # same name, another key
    pair = rogue.issue(APISERVER_KUBELET_CLIENT, organizations=(MASTERS,), server=False)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await node.exec(node.credentials(pair), ["true"])
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_plaintext_is_refused(node: SecuredNode) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await node.exec(None, ["true"])
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_server_not_signed_by_the_cluster_ca_is_not_trusted(node: SecuredNode) -> None:
    """The caller's side: a kubelet serving another CA's certificate is refused."""
    pair = node.ca.issue(APISERVER_KUBELET_CLIENT, organizations=(MASTERS,), server=False)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await node.exec(node.credentials(pair, CertificateAuthority()), ["true"])
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE

