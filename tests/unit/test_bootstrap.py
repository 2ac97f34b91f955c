"""The kubernetes Service's pieces that need no server: the advertised address, the Endpoints
subsets from the live API servers, the Service itself, --advertise-address."""

from __future__ import annotations

import socket

import pytest

from apiserver.__main__ import parse_args
from apiserver.bootstrap import desired_service, desired_subsets, resolve_advertise_address


def test_advertise_address_defaults_to_the_listen_host() -> None:
    assert resolve_advertise_address("10.0.0.5", "127.0.0.1") == "10.0.0.5"
    assert resolve_advertise_address("", "127.0.0.7") == "127.0.0.7"
    assert resolve_advertise_address("", "[::1]") == "::1"


def test_listening_everywhere_advertises_this_hosts_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "node-a")
    monkeypatch.setattr(socket, "gethostbyname", lambda name: "192.0.2.10")
    assert resolve_advertise_address("", "0.0.0.0") == "192.0.2.10"
    assert resolve_advertise_address("", "") == "192.0.2.10"

    def unresolvable(name: str) -> str:
        raise socket.gaierror("no such host")

    monkeypatch.setattr(socket, "gethostbyname", unresolvable)
    assert resolve_advertise_address("", "::") == "127.0.0.1"


def test_subsets_group_servers_by_port_with_sorted_addresses() -> None:
    subsets = desired_subsets({("10.0.0.10", 6443), ("10.0.0.9", 6443), ("127.0.0.1", 7000)})
    assert [([a.ip for a in s.addresses], [(p.name, p.port, p.protocol) for p in s.ports])
            for s in subsets] == [
        (["10.0.0.9", "10.0.0.10"], [("https", 6443, "TCP")]),
        (["127.0.0.1"], [("https", 7000, "TCP")]),
    ]
    assert desired_subsets(set()) == []


def test_the_service_is_upstreams() -> None:
    svc = desired_service("10.96.0.1", 6443)
    assert (svc.metadata.name, svc.metadata.namespace) == ("kubernetes", "default")
    assert dict(svc.metadata.labels) == {"component": "apiserver", "provider": "kubernetes"}
    assert (svc.spec.type, svc.spec.cluster_ip) == ("ClusterIP", "10.96.0.1")
    [port] = svc.spec.ports
    assert (port.name, port.port, port.protocol, port.target_port.int_val) == (
        "https", 443, "TCP", 6443)


def test_advertise_address_flag(capsys: pytest.CaptureFixture[str]) -> None:
    settings, _ = parse_args(["--insecure", "--advertise-address", "10.1.2.3"])
    assert settings.bootstrap.advertise_address == "10.1.2.3"
    assert parse_args(["--insecure"])[0].bootstrap.advertise_address == ""
    with pytest.raises(SystemExit):
        parse_args(["--insecure", "--advertise-address", "api.example.com"])
    assert "--advertise-address: 'api.example.com' is not an IP address" in (
        capsys.readouterr().err)
