"""TLS bootstrap against a real etcd and API server: the controller manager's csrapproving
and csrsigning in-process with a cluster CA, and a kubelet's certificate requests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller_manager.manager import ControllerManager
from controller_manager.settings import ControllerManagerSettings
from kubelet.tls_bootstrap import BootstrapError, request_certificate
from kubelite import pki
from kubelite.api import certificates as csrs
from kubelite.client.client import ApiClient
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1


@pytest.fixture(scope="module")
def cluster_ca() -> tuple[bytes, bytes]:
    return pki.new_ca("kubernetes")


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
    key, _ = pki.new_rsa_key_pair()
    request = pki.new_csr("jane", ["developers"], key_pem=key)
    async with csr_controllers(client, cluster_ca, tmp_path):
        asking = asyncio.create_task(request_certificate(
            client, request, csrs.KUBE_APISERVER_CLIENT_SIGNER, [csrs.USAGE_CLIENT_AUTH],
            wait_timeout=20, retry_interval=0.1))
        csr = await pending_request(client)
        assert csr.metadata.name.startswith("csr-")
        assert not asking.done()  # an administrator must approve this signer's requests
        await decide(client, csr.metadata.name, csrs.APPROVED)
        cert = await asyncio.wait_for(asking, 20)
    assert pki.is_issued_by(cert, cluster_ca[0])
    assert pki.identity(cert) == ("jane", ["developers"])


async def test_a_denied_request_is_a_clear_error(
        client: ApiClient, cluster_ca: tuple[bytes, bytes], tmp_path: Path) -> None:
    key, _ = pki.new_rsa_key_pair()
    request = pki.new_csr("system:node:node-x", ["system:nodes"], key_pem=key)
    async with csr_controllers(client, cluster_ca, tmp_path):
        asking = asyncio.create_task(request_certificate(
            client, request, csrs.KUBE_APISERVER_CLIENT_KUBELET_SIGNER,
            csrs.KUBELET_CLIENT_USAGES, wait_timeout=20, retry_interval=0.1))
        csr = await pending_request(client)
        await decide(client, csr.metadata.name, csrs.DENIED)
        with pytest.raises(BootstrapError, match=f"{csr.metadata.name} was denied"):
            await asyncio.wait_for(asking, 20)


async def test_a_request_nobody_signs_times_out_with_a_hint(client: ApiClient) -> None:
    key, _ = pki.new_rsa_key_pair()
    request = pki.new_csr("jane", key_pem=key)
    with pytest.raises(BootstrapError, match="klctl certificate approve csr-"):
        await request_certificate(client, request, csrs.KUBE_APISERVER_CLIENT_SIGNER,
                                  [csrs.USAGE_CLIENT_AUTH], wait_timeout=0.5,
                                  retry_interval=0.1)
