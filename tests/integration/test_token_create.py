"""`kubelite token create` against a real etcd and a secured API server (TLS, bootstrap token
authentication): the join token's Secret is made, then renewed; the command returns once the
token authenticates; a Secret of another type under the token's name is not overwritten."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from apiserver.admission import AdmissionSettings
from apiserver.authn import AuthenticationSettings
from apiserver.server import TlsSettings
from kubelite import pki as pki_lib
from kubelite.api.errors import Unauthorized
from kubelite.cli.token import TokenCreateSettings, TokenError, create
from kubelite.client.client import ApiClient
from kubelite.client.config import (
    ClientConfig,
    load_kubeconfig,
    read_kubeconfig_file,
    write_kubeconfig_data,
)
from kubelite.pki import ClusterPki, init_cluster
from kubelite.testing.apiserver import server_settings, start_api_server
from kubelite.testing.etcd import EtcdProcess
from protos.v1 import objects_pb2 as v1


@dataclass
class Secured:
    pki: ClusterPki
    admin: ApiClient
    server: str
    settings: TokenCreateSettings
    """`token create` for this cluster (its admin.conf pointed at this server)."""


@pytest.fixture
async def secured(etcd: EtcdProcess, tmp_path: Path) -> AsyncIterator[Secured]:
    pki = init_cluster(tmp_path / "cluster").pki
    base = server_settings(etcd.endpoint)
    api_server = await start_api_server(dataclasses.replace(
        base, insecure=False,
        tls=TlsSettings(str(pki.apiserver_cert), str(pki.apiserver_key), str(pki.ca_cert)),
        authentication=AuthenticationSettings(bootstrap_tokens=True),
        api=dataclasses.replace(base.api, admission=AdmissionSettings(secured=True)),
    ))
    # The admin's client config names this server's port.
    data = read_kubeconfig_file(pki.admin_conf)
    data["clusters"][0]["cluster"]["server"] = f"https://{api_server.address}"
    kubeconfig = write_kubeconfig_data(tmp_path / "admin.conf", data)
    admin = ApiClient(load_kubeconfig(kubeconfig), timeout=10)
    try:
        yield Secured(pki, admin, api_server.address, TokenCreateSettings(
            data_dir=pki.data_dir, kubeconfig=kubeconfig, timeout=10, poll_interval=0.05))
    finally:
        await admin.close()
        await api_server.stop()


async def secret_of(cluster: Secured, token: str) -> v1.Secret:
    return await cluster.admin.get(v1.Secret, pki_lib.bootstrap_token_secret_name(token),
                                   "kube-system")


def expiration(secret: v1.Secret) -> datetime.datetime | None:
    text = secret.data.get("expiration")
    return None if text is None else datetime.datetime.fromisoformat(text.decode())


async def lists_csrs(server: str, ca: bytes, token: str) -> bool:
    async with ApiClient(ClientConfig(server, ca_pem=ca, token=token), timeout=5,
                         wait_for_ready=False) as client:
        try:
            await client.list(v1.CertificateSigningRequest, page_size=1)
        except Unauthorized:
            return False
    return True


async def test_the_join_token_is_created_accepted_and_renewed(secured: Secured) -> None:
    token = secured.pki.read_bootstrap_token()
    ca = secured.pki.ca_cert.read_bytes()
    assert not await lists_csrs(secured.server, ca, token)

    printed = await create(secured.settings)
    assert printed == token
    # Accepted the moment the command returns.
    assert await lists_csrs(secured.server, ca, token)
    secret = await secret_of(secured, token)
    assert secret.type == "bootstrap.kubernetes.io/token"
    assert secret.data["token-id"].decode() == token.partition(".")[0]
    assert secret.data["usage-bootstrap-authentication"] == b"true"
    expires = expiration(secret)
    assert expires is not None
    remaining = expires - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(hours=23) < remaining <= datetime.timedelta(hours=24)

    # Again: the same Secret renewed (here: never expiring), and the join command printed.
    again = dataclasses.replace(secured.settings, ttl=0, print_join_command=True)
    printed = await create(again)
    assert printed == (f"kubelite join {secured.server} --token {token}"
                       f" --discovery-token-ca-cert-hash {secured.pki.ca_cert_hash()}"
                       " --node-name NAME")
    renewed = await secret_of(secured, token)
    assert renewed.metadata.uid == secret.metadata.uid
    assert expiration(renewed) is None
    assert await lists_csrs(secured.server, ca, token)


async def test_another_token_is_made_on_request(secured: Secured) -> None:
    token = pki_lib.new_bootstrap_token()
    await create(dataclasses.replace(secured.settings, token=token, ttl=600))
    expires = expiration(await secret_of(secured, token))
    assert expires is not None
    assert expires - datetime.datetime.now(datetime.UTC) <= datetime.timedelta(minutes=10)
    assert await lists_csrs(secured.server, secured.pki.ca_cert.read_bytes(), token)


async def test_a_secret_of_another_type_is_not_overwritten(secured: Secured) -> None:
    token = secured.pki.read_bootstrap_token()
    await secured.admin.create(v1.Secret(
        metadata=v1.ObjectMeta(name=pki_lib.bootstrap_token_secret_name(token),
                               namespace="kube-system"),
        type="Opaque", data={"k": b"v"}))
    with pytest.raises(TokenError, match="exists with type 'Opaque'"):
        await create(secured.settings)
    assert (await secret_of(secured, token)).data == {"k": b"v"}


async def test_missing_credentials_are_clear_errors(secured: Secured, tmp_path: Path) -> None:
    with pytest.raises(TokenError, match="--kubeconfig: .*does not exist"):
        await create(dataclasses.replace(secured.settings, kubeconfig=tmp_path / "none"))
    with pytest.raises(TokenError, match="run `kubelite init` first"):
        await create(dataclasses.replace(secured.settings, data_dir=tmp_path / "empty"))
