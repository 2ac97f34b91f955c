"""`kubelite up` gives each node a block of loopback addresses for its pods (--pod-network)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import pytest

from kubelite.cli import local
from kubelite.cli.local import LocalClusterSettings, parse_args
from kubelite.processes import ManagedProcess


@pytest.fixture(autouse=True)
def no_etcd_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "find_etcd", lambda: "etcd")


def pod_cidr_of(argv: Sequence[str]) -> str | None:
    argv = list(argv)
    return argv[argv.index("--pod-cidr") + 1] if "--pod-cidr" in argv else None


def kubelets(settings: LocalClusterSettings) -> dict[str, str | None]:
    # _components runs every component as a ManagedProcess, which has the argv.
    return {c.name: pod_cidr_of(cast(ManagedProcess, c.process).argv)
            for c in local._components(settings) if c.name.startswith("kubelet-")}


def test_each_node_gets_its_own_pod_block_by_default() -> None:
    _, s = parse_args(["up"])
    assert kubelets(s) == {"kubelet-node-1": "127.244.1.0/24",
                           "kubelet-node-2": "127.244.2.0/24",
                           "kubelet-node-3": "127.244.3.0/24"}


def test_the_pod_network_is_settable_or_off() -> None:
    _, s = parse_args(["up", "--nodes", "2", "--pod-network", "127.250.0.0/20"])
    assert kubelets(s) == {"kubelet-node-1": "127.250.1.0/24",
                           "kubelet-node-2": "127.250.2.0/24"}
    _, off = parse_args(["up", "--pod-network", ""])
    assert set(kubelets(off).values()) == {None}


@pytest.mark.parametrize(("argv", "message"), [
    (["--pod-network", "10.244.0.0/16"], "must be a block of 127.0.0.0/8"),
    (["--pod-network", "127.244.0.0/25"], "must be a block of 127.0.0.0/8 of /24 or more"),
    (["--pod-network", "nonsense"], "must be a CIDR"),
    (["--pod-network", "127.244.0.0/23", "--nodes", "2"], "has no room for 2 nodes"),
    (["--pod-network", "127.0.0.0/16"], "overlaps the node addresses"),
    (["--pod-network", "127.96.0.0/20"], "service ClusterIP range"),
])
def test_bad_pod_networks_name_the_option_and_the_rule(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["up", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--pod-network: invalid value" in err and message in err, err
