"""A secured cluster's node, in process: an API server with TLS, authentication, the Node
authorizer and RBAC, and ServiceAccount admission; a kubelet with its node kubeconfig
(system:node:NAME) and its API over TLS. Pods get a ServiceAccount token that works against
the API server, bound to the pod; the kubelet API serves exec to the API server and to users
a SubjectAccessReview allows ``nodes/proxy``, to nobody else."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest

from apiserver.admission import AdmissionSettings
from apiserver.authn import AuthenticationSettings
from apiserver.kubelet_proxy import KubeletClientSettings
from apiserver.server import ApiServer, TlsSettings
from apiserver.token_request import TokenRequestSettings
from kubelet.kubelet import Kubelet
from kubelet.runtime.process import ProcessRuntime, ProcessRuntimeSettings
from kubelet.server import AuthorizationSettings
from kubelet.settings import KubeletSettings
from kubelite.api import convert
from kubelite.api.errors import Forbidden
from kubelite.auth.jwt import split
from kubelite.client.client import ApiClient
from kubelite.client.config import (
    ClientConfig,
    load_kubeconfig,
    read_kubeconfig_file,
    write_kubeconfig_data,
)
from kubelite.pki import ClusterPki, init_cluster, issue
from kubelite.testing.apiserver import server_settings, start_api_server
from kubelite.testing.etcd import EtcdProcess
from kubelite.testing.wait import eventually
from protos.v1 import kubelet_pb2 as kpb
from protos.v1 import kubelet_pb2_grpc as kpb_grpc
from protos.v1 import objects_pb2 as v1

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="mounting the token volume needs the mount-namespace isolation")

NS = "default"
NODE = "secure-node"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ClusterPki:
    return init_cluster(tmp_path_factory.mktemp("cluster"),
                        nodes=[(NODE, ["127.0.0.1"])]).pki


def pointed_at(path: Path, server: str, target: Path) -> Path:
    """A copy of a kubeconfig naming ``server`` (the test's API server's port)."""
    data = read_kubeconfig_file(path)
    for cluster in data["clusters"]:
        cluster["cluster"]["server"] = f"https://{server}"
    return write_kubeconfig_data(target, data)


@dataclass
class SecuredNode:
    pki: ClusterPki
    api_server: ApiServer
    admin: ApiClient
    kubelet: Kubelet

    async def exec_in(self, pod: str, command: list[str]) -> str:
        """Exec relayed by the API server (with its kubelet client certificate)."""
        output, code = b"", -1
        async for fd, data in self.admin.pod_exec(NS, pod, command, timeout=30):
            if fd == -1:
                code = int(data)
            else:
                output += data
        assert code == 0, output
        return output.decode()

    async def exec_direct(self, pod: v1.Pod, user: str, groups: tuple[str, ...] = ()
                          ) -> bytes:
        """Exec on the kubelet API itself, as ``user`` with a certificate of the cluster CA."""
        ca = self.pki.ca_cert.read_bytes()
        cert, key = issue(ca, self.pki.ca_key.read_bytes(), user, groups, client=True)
        credentials = grpc.ssl_channel_credentials(ca, key, cert)
        address = f"127.0.0.1:{self.kubelet.server.port}"
        async with grpc.aio.secure_channel(address, credentials) as channel:
            stub = kpb_grpc.KubeletStub(channel)  # type: ignore[no-untyped-call]
            output = b""
            async for chunk in stub.Exec(kpb.ContainerExecRequest(
                    pod_uid=pod.metadata.uid, container="main", command=["echo", "hi"]),
                    timeout=20):
                output += chunk.data
            return output


@pytest.fixture
async def node(etcd: EtcdProcess, pki: ClusterPki, tmp_path: Path
               ) -> AsyncIterator[SecuredNode]:
    if ProcessRuntime(ProcessRuntimeSettings(str(tmp_path / "probe"))).isolation \
            != "mount-namespace":
        pytest.skip("mount namespaces with overlayfs are unavailable here")
    base = server_settings(etcd.endpoint)
    settings = replace(
        base, insecure=False,
        tls=TlsSettings(cert_file=str(pki.apiserver_cert), key_file=str(pki.apiserver_key),
                        client_ca_file=str(pki.ca_cert)),
        authentication=AuthenticationSettings(service_account_key_files=(str(pki.sa_pub),)),
        token_requests=TokenRequestSettings(signing_key_file=str(pki.sa_key)),
        kubelet_client=KubeletClientSettings(
            client_certificate=str(pki.apiserver_kubelet_client_cert),
            client_key=str(pki.apiserver_kubelet_client_key),
            certificate_authority=str(pki.ca_cert)),
        api=replace(base.api, admission=AdmissionSettings(
            enable_plugins=("ServiceAccount", "NodeRestriction"))),
    )
    api_server = await start_api_server(settings)
    admin_config = dataclasses.replace(load_kubeconfig(pki.admin_conf),
                                       server=api_server.address)
    admin = ApiClient(admin_config, timeout=10)
    kubelet: Kubelet | None = None
    try:
        # What the controller manager keeps in every namespace.
        await admin.create(v1.ServiceAccount(metadata=v1.ObjectMeta(name="default",
                                                                    namespace=NS)))
        await admin.create(v1.ConfigMap(
            metadata=v1.ObjectMeta(name="kube-root-ca.crt", namespace=NS),
            data={"ca.crt": pki.ca_cert.read_text()}))
        kubelet = Kubelet(KubeletSettings(
            node_name=NODE, address="127.0.0.1", port=0,
            kubeconfig=str(pointed_at(pki.kubelet_conf(NODE), api_server.address,
                                      tmp_path / "kubelet.conf")),
            tls_cert_file=str(pki.kubelet_serving_cert(NODE)),
            tls_private_key_file=str(pki.kubelet_serving_key(NODE)),
            client_ca_file=str(pki.ca_cert),
            authorization=AuthorizationSettings(allowed_ttl=60, denied_ttl=0.2),
            root_dir=str(tmp_path / "kubelet"), isolation="mount-namespace",
            node_status_update_frequency=1, node_lease_duration=8, sync_frequency=1,
            housekeeping_interval=0.2, default_grace_seconds=1, stop_pods_on_exit=True))
        await kubelet.start()
        yield SecuredNode(pki, api_server, admin, kubelet)
    finally:
        if kubelet is not None:
            await kubelet.stop()
        await admin.close()
        await api_server.stop()


async def run_pod(node: SecuredNode, name: str) -> v1.Pod:
    pod = convert.message_from_dict(v1.Pod, {
        "metadata": {"name": name, "namespace": NS},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": "busybox",
                                 "command": ["sleep", "3600"]}]},
    })
    assert isinstance(pod, v1.Pod)
    created = await node.admin.create(pod)

    async def running() -> bool:
        current = await node.admin.get(v1.Pod, name, NS)
        statuses = current.status.container_statuses
        return bool(statuses) and statuses[0].state.HasField("running")

    await eventually(running, timeout=30, interval=0.05, message=f"pod {name} running")
    return created


async def test_a_pod_s_token_is_bound_to_it_and_works_against_the_api(
        node: SecuredNode) -> None:
    pod = await run_pod(node, "reader")
    [volume] = [v for v in pod.spec.volumes if v.name.startswith("kube-api-access-")]

    token = await node.exec_in("reader", ["cat", f"{SA_DIR}/token"])
    assert await node.exec_in("reader", ["cat", f"{SA_DIR}/namespace"]) == NS
    assert await node.exec_in("reader", ["cat", f"{SA_DIR}/ca.crt"]) == \
        node.pki.ca_cert.read_text()
    _, claims, _, _ = split(token)
    assert claims["sub"] == f"system:serviceaccount:{NS}:default"
    assert claims["kubernetes.io"]["pod"] == {"name": "reader", "uid": pod.metadata.uid}
    assert claims["exp"] - claims["iat"] == 3607

    # The token authenticates: the ServiceAccount is known by name (and may not list pods).
    as_pod = ApiClient(ClientConfig(server=node.api_server.address,
                                    ca_pem=node.pki.ca_cert.read_bytes(), token=token),
                       timeout=10)
    try:
        with pytest.raises(Forbidden, match=f'User "system:serviceaccount:{NS}:default"'):
            await as_pod.list(v1.Pod, NS)
    finally:
        await as_pod.close()

    # Deleting the pod takes its token from the node.
    token_dir = Path(node.kubelet.runtime.volume_dir(  # type: ignore[attr-defined]
        pod.metadata.uid, volume.name))
    assert (token_dir / "token").read_text() == token
    assert any(k.pod_uid == pod.metadata.uid for k in node.kubelet.tokens.cached())
    await node.admin.delete(v1.Pod, "reader", NS)
    await eventually(lambda: not token_dir.exists(), timeout=30, message="token files gone")
    await eventually(lambda: all(k.pod_uid != pod.metadata.uid
                                 for k in node.kubelet.tokens.cached()),
                     message="the pod's tokens forgotten")


async def test_the_kubelet_api_serves_whom_a_subject_access_review_allows(
        node: SecuredNode) -> None:
    pod = await run_pod(node, "shell")

    # The API server's own kubelet client: exec relayed through it works.
    assert await node.exec_in("shell", ["echo", "relayed"]) == "relayed\n"

    # Anyone else needs nodes/proxy on this node.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await node.exec_direct(pod, "alice", ("devs",))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == (
        "Forbidden (user=alice, verb=create, resource=nodes, subresource=proxy)")

    await node.admin.create(v1.ClusterRole(
        metadata=v1.ObjectMeta(name="node-proxier"),
        rules=[v1.PolicyRule(verbs=["create", "get"], api_groups=[""],
                             resources=["nodes/proxy"])]))
    await node.admin.create(v1.ClusterRoleBinding(
        metadata=v1.ObjectMeta(name="alice-node-proxy"),
        role_ref=v1.RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole",
                            name="node-proxier"),
        subjects=[v1.Subject(kind="User", name="alice",
                             api_group="rbac.authorization.k8s.io")]))

    async def allowed() -> bool:
        return await node.exec_direct(pod, "alice", ("devs",)) == b"hi\n"

    await eventually(allowed, timeout=10, interval=0.1, message="alice allowed by RBAC")
    # Another user of the same groups is still refused.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await node.exec_direct(pod, "mallory", ("devs",))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
