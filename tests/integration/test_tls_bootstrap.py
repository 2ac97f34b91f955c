"""TLS bootstrap against a real etcd and API server: the controller manager's csrapproving
and csrsigning in-process with a cluster CA, a kubelet's certificate requests, and a node
joining a secured cluster with a bootstrap token (`kubelite join`'s discovery and token check,
then the kubelet bootstrapping its client and serving certificates)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from apiserver.admission import AdmissionSettings
from apiserver.authn import AuthenticationSettings
from apiserver.server import ApiServer, TlsSettings
from apiserver.token_request import TokenRequestSettings
from controller_manager.manager import ControllerManager
from controller_manager.settings import ControllerManagerSettings
from kubelet.kubelet import Kubelet
from kubelet.settings import KubeletSettings
from kubelet.tls_bootstrap import (
    BootstrapError,
    ServingCertificate,
    bootstrap_kubelet,
    request_certificate,
)
from kubelite import pki as pki_lib
from kubelite.api import certificates as csrs
from kubelite.auth import tokens
from kubelite.cli.join import JoinError, JoinSettings, check_token, discover, write_bootstrap_files
from kubelite.client.client import ApiClient
from kubelite.client.config import ClientConfig, load_kubeconfig
from kubelite.pki import ClusterPki, init_cluster
from kubelite.testing.apiserver import server_settings, start_api_server
from kubelite.testing.etcd import EtcdProcess
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1


@pytest.fixture(scope="module")
def cluster_ca() -> tuple[bytes, bytes]:
    return pki_lib.new_ca("kubernetes")


@contextlib.asynccontextmanager
async def csr_controllers(client: ApiClient, ca: tuple[bytes, bytes], tmp_path: Path
                          ) -> AsyncIterator[ControllerManager]:
    """csrapproving and csrsigning with the cluster CA, leading, until the block ends."""
    cert_file, key_file = tmp_path / "ca.crt", tmp_path / "ca.key"
    cert_file.write_bytes(ca[0])
    key_file.write_bytes(ca[1])
    settings = ControllerManagerSettings(
        controllers=("csrapproving", "csrsigning"), leader_elect=False, workers=1,
        cluster_signing_cert_file=str(cert_file), cluster_signing_key_file=str(key_file))
    manager = ControllerManager(settings, client)
    await manager.start()
    try:
        await asyncio.wait_for(manager.leading.wait(), 10)
        yield manager
    finally:
        await manager.stop()


async def pending_request(client: ApiClient) -> v1.CertificateSigningRequest:
    async def one() -> v1.CertificateSigningRequest | None:
        items = (await client.list(v1.CertificateSigningRequest)).items
        return items[0] if len(items) == 1 else None
    found: v1.CertificateSigningRequest = await eventually(one, message="the kubelet's request")
    return found


async def decide(client: ApiClient, name: str, kind: str) -> None:
    csr = await client.get(v1.CertificateSigningRequest, name)
    csrs.add_condition(csr, kind, "ByTheTest", f"{kind} by the test")
    await client.update_status(csr)


async def test_an_approved_request_gets_its_certificate_from_the_signer(
        client: ApiClient, cluster_ca: tuple[bytes, bytes], tmp_path: Path) -> None:
    key, _ = pki_lib.new_rsa_key_pair()
    request = pki_lib.new_csr("jane", ["developers"], key_pem=key)
    async with csr_controllers(client, cluster_ca, tmp_path):
        asking = asyncio.create_task(request_certificate(
            client, request, csrs.KUBE_APISERVER_CLIENT_SIGNER, [csrs.USAGE_CLIENT_AUTH],
            wait_timeout=20, retry_interval=0.1))
        csr = await pending_request(client)
        assert csr.metadata.name.startswith("csr-")
        assert not asking.done()  # an administrator must approve this signer's requests
        await decide(client, csr.metadata.name, csrs.APPROVED)
        cert = await asyncio.wait_for(asking, 20)
    assert pki_lib.is_issued_by(cert, cluster_ca[0])
    assert pki_lib.identity(cert) == ("jane", ["developers"])


async def test_a_denied_request_is_a_clear_error(
        client: ApiClient, cluster_ca: tuple[bytes, bytes], tmp_path: Path) -> None:
    key, _ = pki_lib.new_rsa_key_pair()
    request = pki_lib.new_csr("system:node:node-x", ["system:nodes"], key_pem=key)
    async with csr_controllers(client, cluster_ca, tmp_path):
        asking = asyncio.create_task(request_certificate(
            client, request, csrs.KUBE_APISERVER_CLIENT_KUBELET_SIGNER,
            csrs.KUBELET_CLIENT_USAGES, wait_timeout=20, retry_interval=0.1))
        csr = await pending_request(client)
        await decide(client, csr.metadata.name, csrs.DENIED)
        with pytest.raises(BootstrapError, match=f"{csr.metadata.name} was denied"):
            await asyncio.wait_for(asking, 20)


async def test_a_request_nobody_signs_times_out_with_a_hint(client: ApiClient) -> None:
    key, _ = pki_lib.new_rsa_key_pair()
    request = pki_lib.new_csr("jane", key_pem=key)
    with pytest.raises(BootstrapError, match="klctl certificate approve csr-"):
        await request_certificate(client, request, csrs.KUBE_APISERVER_CLIENT_SIGNER,
                                  [csrs.USAGE_CLIENT_AUTH], wait_timeout=0.5,
                                  retry_interval=0.1)


# ---------------------------------------------------------------- a secured cluster

NODE = "joiner"


@dataclass
class SecuredCluster:
    pki: ClusterPki
    api_server: ApiServer
    admin: ApiClient
    join: JoinSettings
    """A node's join settings: this server, init's token and CA hash."""

    def config(self, path: Path) -> ClientConfig:
        return dataclasses.replace(load_kubeconfig(path), server=self.api_server.address)


@pytest.fixture(scope="module")
def cluster_pki(tmp_path_factory: pytest.TempPathFactory) -> ClusterPki:
    return init_cluster(tmp_path_factory.mktemp("cluster")).pki


@pytest.fixture
async def secured(etcd: EtcdProcess, cluster_pki: ClusterPki, tmp_path: Path
                  ) -> AsyncIterator[SecuredCluster]:
    """A TLS API server taking bootstrap tokens, init's join token in kube-system, and the
    controller manager's csrapproving and csrsigning with its own credentials and the CA."""
    pki = cluster_pki
    base = server_settings(etcd.endpoint)
    api_server = await start_api_server(dataclasses.replace(
        base, insecure=False,
        tls=TlsSettings(str(pki.apiserver_cert), str(pki.apiserver_key), str(pki.ca_cert)),
        authentication=AuthenticationSettings(bootstrap_tokens=True,
                                              service_account_key_files=(str(pki.sa_pub),)),
        token_requests=TokenRequestSettings(str(pki.sa_key)),
        api=dataclasses.replace(base.api, admission=AdmissionSettings(secured=True)),
    ))
    token = pki.read_bootstrap_token()
    join = JoinSettings(server=api_server.address, token=token,
                        ca_cert_hash=pki.ca_cert_hash(), node_name=NODE,
                        data_dir=tmp_path / "node", discovery_timeout=5)
    cluster = SecuredCluster(pki, api_server, ApiClient(config_of(api_server, pki.admin_conf),
                                                        timeout=10), join)
    manager_client = ApiClient(cluster.config(pki.controller_manager_conf), timeout=10)
    manager = ControllerManager(ControllerManagerSettings(
        controllers=("csrapproving", "csrsigning"), leader_elect=False, workers=1,
        cluster_signing_cert_file=str(pki.ca_cert), cluster_signing_key_file=str(pki.ca_key),
    ), manager_client)
    try:
        await cluster.admin.create(v1.Secret(
            metadata=v1.ObjectMeta(name=pki_lib.bootstrap_token_secret_name(token),
                                   namespace="kube-system"),
            type=tokens.BOOTSTRAP_TOKEN_SECRET_TYPE,
            string_data=pki_lib.bootstrap_token_secret_data(token)))
        await manager.start()
        await asyncio.wait_for(manager.leading.wait(), 10)
        yield cluster
    finally:
        await manager.stop()
        await manager_client.close()
        await cluster.admin.close()
        await api_server.stop()


def config_of(api_server: ApiServer, path: Path) -> ClientConfig:
    return dataclasses.replace(load_kubeconfig(path), server=api_server.address)


async def joined(cluster: SecuredCluster) -> bytes:
    """`kubelite join`'s steps before the kubelet: discovery, the token check, the files;
    the CA it trusts."""
    ca = await asyncio.to_thread(discover, cluster.join)
    assert ca == cluster.pki.ca_cert.read_bytes()
    # The token's Secret reaches the authenticator's copy shortly after it is created.
    async def accepted() -> bool:
        await check_token(cluster.join, ca)
        return True
    await eventually(accepted, message="the token accepted")
    write_bootstrap_files(cluster.join, ca)
    return ca


@contextlib.asynccontextmanager
async def bootstrapped_kubelet(cluster: SecuredCluster, tmp_path: Path
                               ) -> AsyncIterator[tuple[Kubelet, ServingCertificate]]:
    settings = KubeletSettings(
        node_name=NODE, address="127.0.0.1", port=0,
        bootstrap_kubeconfig=str(cluster.join.bootstrap_kubeconfig),
        kubeconfig=str(cluster.join.kubeconfig), cert_dir=str(tmp_path / "kubelet-pki"),
        bootstrap_wait_timeout=30, root_dir=str(tmp_path / "kubelet"), isolation="none",
        node_status_update_frequency=1, node_lease_duration=8, sync_frequency=1,
        housekeeping_interval=0.2)
    effective, serving = await bootstrap_kubelet(settings, retry_interval=0.1)
    assert serving is not None
    kubelet = Kubelet(effective)
    serving.start()
    try:
        await kubelet.start()
        yield kubelet, serving
    finally:
        await kubelet.stop()
        await serving.stop()


async def test_a_node_joins_with_a_bootstrap_token(secured: SecuredCluster,
                                                   tmp_path: Path) -> None:
    ca = await joined(secured)
    async with bootstrapped_kubelet(secured, tmp_path) as (kubelet, serving):
        # The client certificate: asked for by the token's user, approved, signed by the CA.
        config = load_kubeconfig(secured.join.kubeconfig)
        assert config.cert_pem is not None
        assert pki_lib.identity(config.cert_pem) == (f"system:node:{NODE}", ["system:nodes"])
        assert pki_lib.is_issued_by(config.cert_pem, ca)
        requests = (await secured.admin.list(v1.CertificateSigningRequest)).items
        client_csr = next(r for r in requests
                          if r.spec.signer_name == csrs.KUBE_APISERVER_CLIENT_KUBELET_SIGNER)
        token_id = secured.join.token.partition(".")[0]
        assert client_csr.spec.username == f"system:bootstrap:{token_id}"
        approved = csrs.condition(client_csr, csrs.APPROVED)
        assert approved is not None and approved.reason == "AutoApproved"

        # The Node was registered by the node itself (the Node authorizer let it).
        node = await secured.admin.get(v1.Node, NODE)
        assert node.metadata.name == NODE

        # The serving certificate comes once the Node shows its addresses.
        await asyncio.wait_for(serving.issued.wait(), 30)
        serving_pem = serving.cert_file.read_bytes()
        assert pki_lib.is_issued_by(serving_pem, ca)
        assert pki_lib.certificate_sans(serving_pem) == ([NODE], ["127.0.0.1"])
        serving_csr = next(
            r for r in (await secured.admin.list(v1.CertificateSigningRequest)).items
            if r.spec.signer_name == csrs.KUBELET_SERVING_SIGNER)
        assert serving_csr.spec.username == f"system:node:{NODE}"

        # The kubelet API now completes handshakes that verify it against the cluster CA.
        pki = secured.pki
        credentials = grpc.ssl_channel_credentials(
            ca, pki.apiserver_kubelet_client_key.read_bytes(),
            pki.apiserver_kubelet_client_cert.read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{kubelet.server.port}",
                                           credentials) as channel:
            await asyncio.wait_for(channel.channel_ready(), 10)


async def test_a_bootstrapper_cannot_take_a_live_nodes_name(secured: SecuredCluster,
                                                            tmp_path: Path) -> None:
    await joined(secured)
    async with bootstrapped_kubelet(secured, tmp_path):
        async def ready() -> bool:
            node = await secured.admin.get(v1.Node, NODE)
            return any(c.type == "Ready" and c.status == "True"
                       for c in node.status.conditions)
        await eventually(ready, timeout=20, message=f"node {NODE} Ready")

        bootstrap = load_kubeconfig(secured.join.bootstrap_kubeconfig)
        async with ApiClient(bootstrap, timeout=10) as bootstrapper:
            async def ask(node_name: str) -> str:
                key, _ = pki_lib.new_rsa_key_pair()
                csr = await bootstrapper.create(v1.CertificateSigningRequest(
                    metadata=v1.ObjectMeta(generate_name="csr-"),
                    spec=v1.CertificateSigningRequestSpec(
                        request=pki_lib.new_csr(f"system:node:{node_name}", ["system:nodes"],
                                                key_pem=key),
                        signer_name=csrs.KUBE_APISERVER_CLIENT_KUBELET_SIGNER,
                        usages=list(csrs.KUBELET_CLIENT_USAGES))))
                return str(csr.metadata.name)

            stolen = await ask(NODE)
            fresh = await ask("another-node")

        async def approved(name: str) -> bool:
            return csrs.is_approved(await secured.admin.get(v1.CertificateSigningRequest,
                                                            name))
        # One approver worker takes requests in order: once the later one is approved, the
        # earlier one has been reviewed, and left pending.
        await eventually(lambda: approved(fresh), timeout=20, message="the fresh request")
        assert not await approved(stolen)
        pending = await secured.admin.get(v1.CertificateSigningRequest, stolen)
        assert csrs.is_pending(pending) and not pending.status.certificate


async def test_a_wrong_ca_hash_or_token_is_refused(secured: SecuredCluster) -> None:
    wrong_hash = dataclasses.replace(secured.join, ca_cert_hash="sha256:" + "0" * 64)
    with pytest.raises(JoinError, match="did not present the CA with hash sha256:0000"):
        await asyncio.to_thread(discover, wrong_hash)
    assert not wrong_hash.bootstrap_kubeconfig.exists()

    ca = secured.pki.ca_cert.read_bytes()
    wrong_token = dataclasses.replace(secured.join, token="zzzzzz.0123456789abcdef")
    with pytest.raises(JoinError, match="does not accept bootstrap token zzzzzz"):
        await check_token(wrong_token, ca)
