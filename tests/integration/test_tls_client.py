"""The client library over TLS against a real gRPC server serving `kubelite init`'s
certificate: CA verification, client certificates, bearer tokens, and join discovery reading
the CA out of the server's handshake."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from kubelite.client.client import ApiClient
from kubelite.client.config import ClientConfig, load_kubeconfig
from kubelite.join_discovery import DiscoveryError, discover_ca, peer_chain
from kubelite.pki import ClusterPki, init_cluster, issue, new_ca, public_key_hash

WHO = "/kubelite.test.Echo/Who"
"""A method answering with what the server saw: the bearer header and the client's CN."""


@dataclasses.dataclass
class TlsServer:
    port: int
    pki: ClusterPki

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ClusterPki:
    return init_cluster(tmp_path_factory.mktemp("cluster"),
                        nodes=[("node-1", ["127.0.0.2"])]).pki


async def _who(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    metadata = dict(context.invocation_metadata() or ())
    auth = context.auth_context()
    cn = b"".join(auth.get("x509_common_name", []))
    return f"{metadata.get('authorization', '')}|{cn.decode()}".encode()


async def _serve(pki: ClusterPki, *, require_client_auth: bool) -> tuple[grpc.aio.Server, int]:
    """A gRPC server as the API server runs: init's serving certificate (leaf + CA) and the
    health service."""
    s = grpc.aio.server()
    health = HealthServicer()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, s)
    s.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "kubelite.test.Echo", {"Who": grpc.unary_unary_rpc_method_handler(_who)}),))
    credentials = grpc.ssl_server_credentials(
        [(pki.apiserver_key.read_bytes(), pki.apiserver_cert.read_bytes())],
        root_certificates=pki.ca_cert.read_bytes(), require_client_auth=require_client_auth)
    port = s.add_secure_port("127.0.0.1:0", credentials)
    await s.start()
    return s, port


@pytest.fixture
async def server(pki: ClusterPki) -> AsyncIterator[TlsServer]:
    """TLS without client certificates asked for (require_client_auth=False)."""
    s, port = await _serve(pki, require_client_auth=False)
    yield TlsServer(port, pki)
    await s.stop(None)


@pytest.fixture
async def mtls_server(pki: ClusterPki) -> AsyncIterator[TlsServer]:
    """TLS with client certificates required and verified against the cluster CA."""
    s, port = await _serve(pki, require_client_auth=True)
    yield TlsServer(port, pki)
    await s.stop(None)


def _config(server: TlsServer, path: Path) -> ClientConfig:
    return dataclasses.replace(load_kubeconfig(path), server=server.address)


async def _health(client: ApiClient) -> str:
    response = await health_pb2_grpc.HealthStub(client.channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=5)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


async def _who_call(client: ApiClient) -> str:
    call = client.channel.unary_unary(WHO, None, None)
    answer: bytes = await call(b"", timeout=5)
    return answer.decode()


async def test_admin_conf_talks_tls(server: TlsServer) -> None:
    config = _config(server, server.pki.admin_conf)
    assert config.secure and config.cert_pem is not None
    async with ApiClient(config, timeout=5, wait_for_ready=False) as client:
        assert client.address == server.address
        assert await _health(client) == "SERVING"
        # grpcio's require_client_auth=False means "do not ask for a client certificate"
        # (GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE): the server never sees one.
        assert await _who_call(client) == "|"


async def test_client_certificates_identify_their_users_where_required(
        mtls_server: TlsServer) -> None:
    for conf, user in ((mtls_server.pki.admin_conf, "kubernetes-admin"),
                       (mtls_server.pki.kubelet_conf("node-1"), "system:node:node-1"),
                       (mtls_server.pki.scheduler_conf, "system:kube-scheduler")):
        async with ApiClient(_config(mtls_server, conf), timeout=5,
                             wait_for_ready=False) as client:
            assert await _who_call(client) == f"|{user}"
    tokens_only = ClientConfig(mtls_server.address, ca_pem=mtls_server.pki.ca_cert.read_bytes(),
                               token="abc.def")
    async with ApiClient(tokens_only, timeout=5, wait_for_ready=False) as client:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await _health(client)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_server_certificate_of_another_ca_is_refused(server: TlsServer) -> None:
    other_ca, _ = new_ca("another")
    config = dataclasses.replace(_config(server, server.pki.admin_conf), ca_pem=other_ca)
    async with ApiClient(config, timeout=5, wait_for_ready=False) as client:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await _health(client)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_client_certificate_of_another_ca_fails_the_handshake(
        mtls_server: TlsServer) -> None:
    other_ca, other_key = new_ca("kubernetes")
    cert, key = issue(other_ca, other_key, "kubernetes-admin", ["system:masters"], client=True)
    config = dataclasses.replace(_config(mtls_server, mtls_server.pki.admin_conf),
                                 cert_pem=cert, key_pem=key)
    async with ApiClient(config, timeout=5, wait_for_ready=False) as client:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await _health(client)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_bearer_token_is_sent_as_authorization_metadata(
        server: TlsServer, tmp_path: Path) -> None:
    ca = server.pki.ca_cert.read_bytes()
    async with ApiClient(ClientConfig(server.address, ca_pem=ca, token="abc.def"), timeout=5,
                         wait_for_ready=False) as client:
        assert await _who_call(client) == "Bearer abc.def|"

    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    async with ApiClient(ClientConfig(server.address, ca_pem=ca, token_file=str(token_file)),
                         timeout=5, wait_for_ready=False) as client:
        assert await _who_call(client) == "Bearer first|"
        token_file.write_text("rotated\n")  # the kubelet rotates projected tokens in place
        assert await _who_call(client) == "Bearer rotated|"
        token_file.unlink()
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await _who_call(client)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_grpc_sends_the_serving_certificate_and_the_ca(server: TlsServer) -> None:
    chain = await asyncio.to_thread(peer_chain, "127.0.0.1", server.port, 5.0)
    subjects = [c.subject.rfc4514_string() for c in chain]
    assert subjects == ["CN=kube-apiserver", "CN=kubernetes"]


async def test_discover_ca_finds_the_ca_by_its_hash(server: TlsServer) -> None:
    ca = server.pki.ca_cert.read_bytes()
    found = await asyncio.to_thread(discover_ca, "127.0.0.1", server.port,
                                    public_key_hash(ca), 5.0)
    assert found == ca

    other, _ = new_ca("another")
    with pytest.raises(DiscoveryError, match="did not present the CA with hash"):
        await asyncio.to_thread(discover_ca, "127.0.0.1", server.port, public_key_hash(other),
                                5.0)
    leaf_hash = public_key_hash(server.pki.apiserver_cert.read_bytes())
    with pytest.raises(DiscoveryError, match="is not a CA"):
        await asyncio.to_thread(discover_ca, "127.0.0.1", server.port, leaf_hash, 5.0)
    with pytest.raises(DiscoveryError, match="64 hex digits"):
        await asyncio.to_thread(discover_ca, "127.0.0.1", server.port, "sha256:abc", 5.0)


async def test_discover_ca_works_where_client_certificates_are_required(
        mtls_server: TlsServer) -> None:
    """With TLS 1.3 the client has the server's certificates before the server refuses the
    handshake for want of a client certificate."""
    ca = mtls_server.pki.ca_cert.read_bytes()
    found = await asyncio.to_thread(discover_ca, "127.0.0.1", mtls_server.port,
                                    public_key_hash(ca), 5.0)
    assert found == ca


async def test_discover_ca_refuses_a_ca_that_did_not_sign_the_serving_certificate(
        tmp_path: Path) -> None:
    """A server that sends a CA it did not get its certificate from (the hash matches a CA
    that is only passing through) is not trusted."""
    ca, ca_key = new_ca("kubernetes")
    stranger, _ = new_ca("kubernetes")
    cert, key = issue(ca, ca_key, "kube-apiserver", server=True, ip_addresses=["127.0.0.1"])
    s = grpc.aio.server()
    port = s.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key,
                                                                          cert + stranger)]))
    await s.start()
    try:
        with pytest.raises(DiscoveryError, match="not issued by the CA"):
            await asyncio.to_thread(discover_ca, "127.0.0.1", port, public_key_hash(stranger),
                                    5.0)
    finally:
        await s.stop(None)


async def test_discover_ca_names_an_unreachable_server() -> None:
    from kubelite.ports import free_port

    port = free_port()
    with pytest.raises(DiscoveryError, match=f"cannot connect to 127.0.0.1:{port}"):
        await asyncio.to_thread(discover_ca, "127.0.0.1", port, "sha256:" + "0" * 64, 2.0)


async def test_klctl_uses_the_kubeconfig(server: TlsServer,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from kubelite.cli.klctl import main

    args = ["version", "--kubeconfig", str(server.pki.admin_conf), "--server", server.address]
    assert await asyncio.to_thread(main, args) == 0
    assert f"Server: {server.address} (SERVING)" in capsys.readouterr().out

    other = init_cluster(server.pki.data_dir.parent / "other").pki  # another cluster's CA
    args[2] = str(other.admin_conf)
    assert await asyncio.to_thread(main, args) == 1
    assert f"cannot reach the API server at {server.address}" in capsys.readouterr().err


async def test_server_name_override(server: TlsServer) -> None:
    """Reaching the server at an address its certificate does not name works when the
    config says which name it carries (kubeconfig's tls-server-name)."""
    base = _config(server, server.pki.admin_conf)
    named = dataclasses.replace(base, server=f"localhost:{server.port}",
                                server_name="kubernetes.default.svc")
    async with ApiClient(named, timeout=5, wait_for_ready=False) as client:
        assert await _health(client) == "SERVING"
    wrong = dataclasses.replace(base, server_name="elsewhere.example")
    async with ApiClient(wrong, timeout=5, wait_for_ready=False) as client:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await _health(client)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
