"""Several API servers in one client config: how a server list is written and checked (flags,
kubeconfig files, ClientConfig), the gRPC target and options its channel is made with, and
which calls are sent again when a server goes away under them."""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf.message import Message
from grpc.aio import AioRpcError, Metadata

from kubelite import daemon, pki
from kubelite.api.errors import Unavailable
from kubelite.client.client import ApiClient
from kubelite.client.config import (
    ROUND_ROBIN,
    ClientConfig,
    ConfigError,
    channel_target,
    load_kubeconfig,
    normalize_server,
    server_url,
    split_servers,
    write_kubeconfig,
)
from protos.v1 import apiserver_pb2 as pb
from protos.v1 import objects_pb2 as v1


@pytest.fixture(scope="module")
def ca() -> bytes:
    return pki.new_ca("kubernetes")[0]


@pytest.mark.parametrize(("given", "expected"), [
    ("a:1,b:2", "a:1,b:2"),
    (" https://a:1 , https://b:2/ ", "a:1,b:2"),
    ("https://a,https://[::1]:7", "a:443,[::1]:7"),
    ("127.0.0.1:6443", "127.0.0.1:6443"),
    ("ipv4:127.0.0.1:1,127.0.0.1:2", "ipv4:127.0.0.1:1,127.0.0.1:2"),
])
def test_server_lists_are_normalized_entry_by_entry(given: str, expected: str) -> None:
    assert normalize_server(given) == expected


@pytest.mark.parametrize(("given", "rule"), [
    ("a:1,,b:2", "entry 2 is empty"),
    ("a:1,", "entry 2 is empty"),
    ("a:1,https://a:1", "a:1 is named twice"),
    ("a:1,unix:///run/api.sock", "entry 2 .* takes host:port"),
    ("a:1,dns:///b:2", "entry 2 .* takes host:port"),
])
def test_bad_server_lists_name_the_entry(given: str, rule: str) -> None:
    with pytest.raises(ConfigError, match=rule):
        ClientConfig(given)


def test_servers_of_a_config() -> None:
    assert ClientConfig("https://a:1,b:2").servers == ("a:1", "b:2")
    assert ClientConfig("a:1").servers == ("a:1",)
    assert ClientConfig("unix:///run/api.sock").servers == ("unix:///run/api.sock",)
    assert split_servers("ipv4:1.2.3.4:5,1.2.3.4:6") == ("ipv4:1.2.3.4:5,1.2.3.4:6",)
    assert server_url("a:1,b:2") == "https://a:1,https://b:2"
    assert server_url("a:1") == "https://a:1"


def test_one_server_keeps_its_target() -> None:
    assert channel_target(("api.example:6443",)) == ("api.example:6443", [])
    assert channel_target(("unix:///run/api.sock",)) == ("unix:///run/api.sock", [])


def test_several_servers_are_balanced_round_robin() -> None:
    target, options = channel_target(("127.0.0.1:6443", "127.0.0.1:6445", "10.0.0.2:6443"))
    assert target == "ipv4:127.0.0.1:6443,127.0.0.1:6445,10.0.0.2:6443"
    assert ROUND_ROBIN in options
    assert ("grpc.default_authority", "127.0.0.1:6443") in options


def test_names_are_resolved_and_families_mixed() -> None:
    target, _ = channel_target(("localhost:6443", "127.0.0.1:6445"))
    assert target in ("ipv4:127.0.0.1:6443,127.0.0.1:6445",
                      "ipv6:[::1]:6443,[::ffff:127.0.0.1]:6445")
    target, _ = channel_target(("[::1]:6443", "127.0.0.1:6445"))
    assert target == "ipv6:[::1]:6443,[::ffff:127.0.0.1]:6445"
    target, _ = channel_target(("[::1]:6443", "[::1]:6445"))
    assert target == "ipv6:[::1]:6443,[::1]:6445"


@pytest.mark.parametrize(("servers", "rule"), [
    (("a.invalid:1", "127.0.0.1:2"), "cannot resolve a.invalid"),
    (("127.0.0.1", "127.0.0.1:2"), "expected host:port"),
    (("127.0.0.1:0", "127.0.0.1:2"), "expected host:port"),
    (("127.0.0.1:x", "127.0.0.1:2"), "expected host:port"),
])
def test_unusable_servers_in_a_list(servers: tuple[str, ...], rule: str) -> None:
    with pytest.raises(ConfigError, match=rule):
        channel_target(servers)


async def test_clients_of_several_servers(ca: bytes) -> None:
    """The channel is made without contacting anyone; TLS with a list works the same."""
    async with ApiClient("127.0.0.1:1,127.0.0.1:2") as plain:
        assert plain.address == "127.0.0.1:1,127.0.0.1:2"
    async with ApiClient(ClientConfig("127.0.0.1:1,127.0.0.1:2", ca_pem=ca)) as secure:
        assert secure.config is not None and len(secure.config.servers) == 2


class GoneServers:
    """The stub's side of calls whose server went away mid-call ``gone`` times, then answers."""

    def __init__(self, gone: int) -> None:
        self.gone = gone
        self.calls = 0

    async def __call__(self, request: Message, **_: object) -> Message:
        self.calls += 1
        if self.calls <= self.gone:
            raise AioRpcError(grpc.StatusCode.UNAVAILABLE, Metadata(), Metadata(),
                              "Stream removed (sendmsg: Broken pipe (32))", None)
        return pb.ObjectResponse(object=v1.ConfigMap(
            metadata=v1.ObjectMeta(name="cm", namespace="default")).SerializeToString())


@pytest.mark.parametrize(("servers", "gone", "calls"), [
    (2, 3, 4),  # the gone server picked again twice before the balancer saw the drop
    (3, 6, 7),
])
async def test_a_read_under_way_is_sent_again_a_few_times_per_other_server(
        servers: int, gone: int, calls: int) -> None:
    addresses = ",".join(f"127.0.0.1:{port}" for port in range(1, servers + 1))
    async with ApiClient(addresses) as client:
        client._stub.Get = stub = GoneServers(gone)
        got = await client.get(v1.ConfigMap, "cm", "default")
        assert (got.metadata.name, stub.calls) == ("cm", calls)
        assert client.stats.failover_retries == gone


async def test_a_read_is_not_sent_again_without_end_or_to_a_lone_server() -> None:
    async with ApiClient("127.0.0.1:1,127.0.0.1:2") as client:
        client._stub.Get = stub = GoneServers(4)
        with pytest.raises(Unavailable, match="Broken pipe"):
            await client.get(v1.ConfigMap, "cm", "default")
        assert stub.calls == 4  # the first send and 3 more
    async with ApiClient("127.0.0.1:1") as client:
        client._stub.Get = stub = GoneServers(1)
        with pytest.raises(Unavailable):
            await client.get(v1.ConfigMap, "cm", "default")
        assert stub.calls == 1


async def test_a_write_under_way_is_not_sent_again() -> None:
    """It may have been done: the caller decides."""
    async with ApiClient("127.0.0.1:1,127.0.0.1:2") as client:
        client._stub.Create = stub = GoneServers(1)
        with pytest.raises(Unavailable):
            await client.create(v1.ConfigMap(metadata=v1.ObjectMeta(name="cm")), "default")
        assert stub.calls == 1


def kubeconfig(ca: bytes, server: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {
            "server": server, "certificate-authority-data": base64.b64encode(ca).decode()}}],
        "users": [{"name": "u", "user": {"token": "abc"}}],
        "contexts": [{"name": "u@c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "u@c",
    }


def test_kubeconfig_with_several_servers(tmp_path: Path, ca: bytes) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(kubeconfig(ca, "https://127.0.0.1:6443,https://h:6445")))
    assert load_kubeconfig(path).servers == ("127.0.0.1:6443", "h:6445")


@pytest.mark.parametrize(("server", "rule"), [
    ("https://a:1,http://b:2", "one scheme"),
    ("https://a:1,grpc://b:2", "scheme 'grpc' is not supported"),
    ("https://a:1,,https://b:2", "entry 2 is empty"),
])
def test_kubeconfig_server_lists_name_the_field(tmp_path: Path, ca: bytes, server: str,
                                                rule: str) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(kubeconfig(ca, server)))
    with pytest.raises(ConfigError, match=rf"clusters\[0\]\.cluster\.server: .*{rule}"):
        load_kubeconfig(path)


def test_write_kubeconfig_with_several_servers(tmp_path: Path, ca: bytes) -> None:
    path = write_kubeconfig(tmp_path / "c.conf", cluster="c", server="127.0.0.1:1,127.0.0.1:2",
                            ca_pem=ca, user="u", token="t")
    data = yaml.safe_load(path.read_text())
    assert data["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:1,https://127.0.0.1:2"
    assert load_kubeconfig(path).servers == ("127.0.0.1:1", "127.0.0.1:2")


def daemon_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    daemon.add_api_server_flags(parser)
    return parser.parse_args(argv)


def test_daemon_server_flag_takes_a_list(tmp_path: Path, ca: bytes,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBELITE_SERVER", raising=False)
    monkeypatch.delenv("KUBELITE_KUBECONFIG", raising=False)
    assert daemon.api_server_target(daemon_args("--server", "a:1, b:2")) == "a:1,b:2"
    assert daemon.api_server_target(daemon_args()) == daemon.DEFAULT_SERVER
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(kubeconfig(ca, "https://127.0.0.1:6443")))
    target = daemon.api_server_target(daemon_args("--kubeconfig", str(path),
                                                  "--server", "a:1,b:2"))
    assert isinstance(target, ClientConfig) and target.servers == ("a:1", "b:2")
    assert target.token == "abc"
    with pytest.raises(ConfigError, match="--server: .*entry 2 is empty"):
        daemon.api_server_target(daemon_args("--server", "a:1,,b:2"))
    monkeypatch.setenv("KUBELITE_SERVER", "a:1,a:1")
    with pytest.raises(ConfigError, match=r"\$KUBELITE_SERVER: .*named twice"):
        daemon.api_server_target(daemon_args())
