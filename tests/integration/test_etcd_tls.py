"""etcd over mutual TLS: a real etcd that requires client (and peer) certificates from its CA;
the API server reaches it with --etcd-cafile/--etcd-certfile/--etcd-keyfile, and a client
without a certificate, with another CA's certificate, or in plaintext is refused."""

from __future__ import annotations

import dataclasses
import ssl
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from apiserver.etcd import Etcd, EtcdSettings
from kubelite.api.errors import Unavailable
from kubelite.client.client import ApiClient
from kubelite.components import EtcdTls
from kubelite.testing.apiserver import server_settings, start_api_server
from kubelite.testing.etcd import EtcdProcess
from kubelite.testing.tls import CertificateAuthority
from protos.v1 import objects_pb2 as v1


@dataclass(frozen=True)
class Certs:
    ca: Path
    client: tuple[Path, Path]
    """apiserver-etcd-client, from etcd's CA."""
    peer: tuple[Path, Path]
    other_ca: Path
    stranger: tuple[Path, Path]
    """A client certificate from another CA."""


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("etcd-pki")
    ca, other = CertificateAuthority("etcd-ca"), CertificateAuthority("other-ca")
    ca.issue("etcd", ips=("127.0.0.1",), dns_names=("localhost",)).write(d, "server")
    return Certs(
        ca=ca.write(d),
        client=ca.issue("kube-apiserver-etcd-client", server=False).write(d, "client"),
        peer=ca.issue("etcd-peer", ips=("127.0.0.1",), dns_names=("localhost",)).write(
            d, "peer"),
        other_ca=other.write(d, "other-ca"),
        stranger=other.issue("kube-apiserver-etcd-client", server=False).write(d, "stranger"),
    )


@pytest.fixture(scope="module")
def tls_etcd(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdProcess]:
    d = certs.ca.parent
    tls = EtcdTls(
        cert_file=str(d / "server.crt"), key_file=str(d / "server.key"),
        trusted_ca_file=str(certs.ca), client_cert_auth=True,
        peer_cert_file=str(certs.peer[0]), peer_key_file=str(certs.peer[1]),
        peer_trusted_ca_file=str(certs.ca), peer_client_cert_auth=True,
    )
    process = EtcdProcess(tmp_path_factory.mktemp("etcd-tls") / "data", tls=tls,
                          health_client=(str(certs.client[0]), str(certs.client[1])))
    process.start()
    yield process
    process.stop()


def etcd_settings(etcd: EtcdProcess, ca: Path | None, pair: tuple[Path, Path] | None
                  ) -> EtcdSettings:
    return EtcdSettings(
        endpoints=(etcd.client_url,), request_timeout=3.0,
        ca_file=str(ca) if ca else None,
        cert_file=str(pair[0]) if pair else None, key_file=str(pair[1]) if pair else None,
    )


async def test_the_api_server_reaches_etcd_over_mutual_tls(
    tls_etcd: EtcdProcess, certs: Certs
) -> None:
    assert tls_etcd.client_url.startswith("https://")
    settings = dataclasses.replace(
        server_settings(tls_etcd.endpoint), etcd=etcd_settings(tls_etcd, certs.ca, certs.client)
    )
    server = await start_api_server(settings)
    try:
        async with ApiClient(server.address, timeout=10) as client:
            cm = v1.ConfigMap(metadata=v1.ObjectMeta(name="over-tls"), data={"a": "b"})
            await client.create(cm, "default")
            assert (await client.get(v1.ConfigMap, "over-tls", "default")).data == {"a": "b"}
    finally:
        await server.stop()


@pytest.mark.parametrize("who", ["no certificate", "another CA's certificate", "plaintext",
                                 "trusting another CA"])
async def test_etcd_refuses_a_client_without_a_certificate_from_its_ca(
    tls_etcd: EtcdProcess, certs: Certs, who: str
) -> None:
    settings = {
        "no certificate": etcd_settings(tls_etcd, certs.ca, None),
        "another CA's certificate": etcd_settings(tls_etcd, certs.ca, certs.stranger),
        "plaintext": etcd_settings(tls_etcd, None, None),
        # Its own certificate is good, but etcd's serving certificate is not trusted.
        "trusting another CA": etcd_settings(tls_etcd, certs.other_ca, certs.client),
    }[who]
    etcd = Etcd(settings)
    try:
        with pytest.raises(Unavailable):
            await etcd.current_revision()
    finally:
        await etcd.close()
    # The right certificate on the same etcd works (the refusal was the certificate's).
    good = Etcd(etcd_settings(tls_etcd, certs.ca, certs.client))
    try:
        assert await good.current_revision() > 0
    finally:
        await good.close()


def test_peers_need_a_certificate_from_the_ca_too(tls_etcd: EtcdProcess, certs: Certs) -> None:
    url = f"https://127.0.0.1:{tls_etcd.peer_port}/version"
    context = ssl.create_default_context(cafile=str(certs.ca))
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=5, context=context).read()
    context.load_cert_chain(str(certs.peer[0]), str(certs.peer[1]))
    with urllib.request.urlopen(url, timeout=5, context=context) as response:
        assert b"etcdserver" in response.read()
