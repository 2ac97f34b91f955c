"""The proxy's ClusterIP addresses on --cluster-ip-interface: which addresses a pass adds and
removes given the Services (over a fake interface), the ``ip`` commands it runs (over a fake
``ip``), and the flags."""

from __future__ import annotations

import ipaddress
import json
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1
from proxy.__main__ import parse_args
from proxy.addresses import (
    AddressCommandError,
    ClusterIPAddresses,
    ClusterIPInterfaceSettings,
    InterfaceMissing,
    IpCommand,
    batch_commands,
    cluster_ips,
    parse_host_addresses,
    plan,
    service_cluster_ip,
)

RANGE = "10.96.0.0/12"
NETWORK = ipaddress.ip_network(RANGE)
FOREIGN = "192.0.2.7"
"""An address outside the range that someone else put on the interface."""


def service(name: str, ip: str, kind: str = "ClusterIP") -> v1.Service:
    svc = v1.Service(metadata=v1.ObjectMeta(name=name, namespace="default"))
    svc.spec.type = kind
    svc.spec.cluster_ip = ip
    return svc


# ----------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(("wanted", "present", "add", "candidates"), [
    ({"10.96.0.10"}, set(), {"10.96.0.10"}, set()),
    ({"10.96.0.10"}, {"10.96.0.10"}, set(), set()),
    (set(), {"10.96.0.10"}, set(), {"10.96.0.10"}),
    ({"10.96.0.1"}, {"10.96.0.10", FOREIGN}, {"10.96.0.1"}, {"10.96.0.10"}),
    ({FOREIGN}, set(), set(), set()),  # outside the range: neither added nor removed
    ({"10.112.0.1"}, {"10.111.255.254"}, set(), {"10.111.255.254"}),  # 10.112 is outside
])
def test_plan(wanted: set[str], present: set[str], add: set[str], candidates: set[str]) -> None:
    steps = plan(wanted, present, NETWORK)
    assert steps.add == add
    assert steps.remove_candidates == candidates


@pytest.mark.parametrize(("svc", "ip"), [
    (service("a", "10.96.0.10"), "10.96.0.10"),
    (service("a", "fd00::0a"), "fd00::a"),
    (service("a", "None"), None),
    (service("a", ""), None),
    (service("a", "10.96.0.10", kind="ExternalName"), None),
    (service("a", "not-an-ip"), None),
])
def test_service_cluster_ip(svc: v1.Service, ip: str | None) -> None:
    assert service_cluster_ip(svc) == ip


def test_cluster_ips_of_services() -> None:
    assert cluster_ips([service("a", "10.96.0.10"), service("b", "None"),
                        service("c", "10.96.0.11")]) == {"10.96.0.10", "10.96.0.11"}


def test_batch_commands_add_with_replace_then_remove() -> None:
    assert batch_commands(["10.96.0.2", "fd00::1"], ["10.96.0.9"], "kube-ipvs0") == (
        "address replace 10.96.0.2/32 dev kube-ipvs0\n"
        "address replace fd00::1/128 dev kube-ipvs0\n"
        "address del 10.96.0.9/32 dev kube-ipvs0\n"
    )
    assert batch_commands([], [], "kube-ipvs0") == ""


def test_host_addresses_from_ip_json() -> None:
    out = json.dumps([{"ifname": "kube-ipvs0", "addr_info": [
        {"family": "inet", "local": "10.96.0.10", "prefixlen": 32},
        {"family": "inet", "local": "10.97.0.0", "prefixlen": 24},  # not a host address
        {"family": "inet6", "local": "fe80::1", "prefixlen": 64},
        {"family": "inet6", "local": "fd00::000a", "prefixlen": 128},
    ]}])
    assert parse_host_addresses(out) == {"10.96.0.10", "fd00::a"}
    assert parse_host_addresses("") == set()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "kube-ipvs0"}, "service_cluster_ip_range: required with an interface"),
    ({"name": "a-name-longer-than-15", "service_cluster_ip_range": RANGE},
     "cluster_ip_interface.name: invalid value 'a-name-longer-than-15': must be a network"
     " interface name"),
    ({"name": "kube/ipvs0", "service_cluster_ip_range": RANGE}, "must be a network interface"),
    ({"name": "kube-ipvs0", "service_cluster_ip_range": "10.96.0.1/12"},
     "service_cluster_ip_range: invalid value '10.96.0.1/12': must be a CIDR"),
    ({"name": "kube-ipvs0", "service_cluster_ip_range": RANGE, "sync_period": 0},
     "sync_period: must be greater than 0"),
])
def test_settings_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="^cluster_ip_interface") as e:
        ClusterIPInterfaceSettings(**kwargs)  # type: ignore[arg-type]
    assert message in str(e.value)


def test_no_interface_by_default() -> None:
    settings = ClusterIPInterfaceSettings()
    assert not settings.enabled and settings.network is None


# ----------------------------------------------------------------------------- passes


@dataclass
class FakeInterface:
    """An interface in memory; ``apply`` behaves as ``ip -force -batch`` does."""

    present: set[str] = field(default_factory=set)
    exists: bool = False
    ensured: int = 0
    refuse: set[str] = field(default_factory=set)
    """Addresses the kernel refuses to add."""
    applied: list[tuple[set[str], set[str]]] = field(default_factory=list)

    async def ensure_interface(self) -> None:
        self.ensured += 1
        self.exists = True

    async def addresses(self) -> set[str]:
        if not self.exists:
            raise InterfaceMissing("kube-ipvs0")
        return set(self.present)

    async def apply(self, add: Iterable[str], remove: Iterable[str]) -> str:
        add, remove = set(add), set(remove)
        self.applied.append((add, remove))
        errors = []
        for ip in sorted(add):
            if ip in self.refuse:
                errors.append(f"RTNETLINK answers: Operation not permitted ({ip})")
            else:
                self.present.add(ip)
        for ip in sorted(remove):
            if ip in self.present:
                self.present.discard(ip)
            else:
                errors.append("RTNETLINK answers: Cannot assign requested address")
        return "\n".join(errors)


@dataclass
class World:
    """The Services as the informer cache and as the API server have them."""

    interface: FakeInterface = field(default_factory=FakeInterface)
    cache: list[v1.Service] = field(default_factory=list)
    api: list[v1.Service] | None = None
    """None: the API has what the cache has."""
    synced: bool = True
    api_error: Exception | None = None
    api_lists: int = 0
    appeared: list[set[str]] = field(default_factory=list)

    def reconciler(self, **settings: object) -> ClusterIPAddresses:
        async def api_services() -> list[v1.Service]:
            self.api_lists += 1
            if self.api_error is not None:
                raise self.api_error
            return list(self.cache if self.api is None else self.api)

        return ClusterIPAddresses(
            ClusterIPInterfaceSettings(name="kube-ipvs0", service_cluster_ip_range=RANGE,
                                       **settings),  # type: ignore[arg-type]
            self.interface, cached_services=lambda: self.cache,
            cache_synced=lambda: self.synced, api_services=api_services,
            on_present=self.appeared.append,
        )


async def test_first_pass_makes_the_interface_and_adds_every_cluster_ip() -> None:
    world = World(cache=[service("dns", "10.96.0.10"), service("api", "10.96.0.1"),
                         service("headless", "None")])
    addresses = world.reconciler()
    assert await addresses.sync()
    assert world.interface.ensured == 1
    assert world.interface.present == {"10.96.0.1", "10.96.0.10"}
    assert world.appeared == [{"10.96.0.1", "10.96.0.10"}]
    assert addresses.has("10.96.0.10") and addresses.manages("10.96.0.10")
    # Nothing to do: no command, nothing new reported.
    assert await addresses.sync()
    assert len(world.interface.applied) == 1 and len(world.appeared) == 1
    assert world.interface.ensured == 1


async def test_addresses_another_proxy_added_are_reported_without_adding() -> None:
    world = World(cache=[service("dns", "10.96.0.10")])
    world.interface.present = {"10.96.0.10"}
    addresses = world.reconciler()
    assert await addresses.sync()
    assert world.interface.applied == []
    assert world.appeared == [{"10.96.0.10"}]


async def test_addresses_of_deleted_services_are_removed_foreign_ones_kept() -> None:
    world = World(cache=[service("dns", "10.96.0.10")])
    world.interface.present = {"10.96.0.10", "10.96.0.20", FOREIGN}
    addresses = world.reconciler()
    with capture_logs() as logs:
        assert await addresses.sync()
    assert world.interface.present == {"10.96.0.10", FOREIGN}
    assert world.api_lists == 1
    removed = [e for e in logs if e["event"].startswith("ClusterIP addresses removed")]
    assert removed and removed[0]["addresses"] == ["10.96.0.20"]


async def test_an_address_whose_service_the_cache_lacks_but_the_api_has_stays() -> None:
    # Another proxy saw the Service created and added its address; this proxy's cache lags.
    world = World(cache=[], api=[service("new", "10.96.0.30")])
    world.interface.present = {"10.96.0.30"}
    addresses = world.reconciler()
    assert await addresses.sync()
    assert world.interface.present == {"10.96.0.30"}
    assert world.interface.applied == []
    # Once the Service is gone from the API too, any proxy removes it.
    world.api = []
    assert await addresses.sync()
    assert world.interface.present == set()


async def test_nothing_is_removed_before_the_cache_is_synced() -> None:
    world = World(cache=[], synced=False)
    world.interface.present = {"10.96.0.20"}
    assert await world.reconciler().sync()
    assert world.interface.present == {"10.96.0.20"} and world.api_lists == 0


async def test_nothing_is_removed_when_the_api_cannot_confirm() -> None:
    world = World(cache=[], api_error=ConnectionError("API server unreachable"))
    world.interface.present = {"10.96.0.20"}
    with capture_logs() as logs:
        assert not await world.reconciler().sync()
    assert world.interface.present == {"10.96.0.20"}
    warning = [e for e in logs if e["event"].startswith("cannot confirm")]
    assert warning and "API server unreachable" in warning[0]["error"]


async def test_a_service_seen_during_the_api_list_keeps_its_address() -> None:
    world = World(cache=[])
    world.interface.present = {"10.96.0.40"}
    addresses = world.reconciler()

    async def list_while_cache_moves() -> list[v1.Service]:
        world.cache.append(service("late", "10.96.0.40"))  # arrives while the list runs
        return []

    addresses._api_services = list_while_cache_moves
    assert await addresses.sync()
    assert world.interface.present == {"10.96.0.40"}


async def test_an_address_another_proxy_removed_first_is_no_failure() -> None:
    world = World(cache=[])
    world.interface.present = {"10.96.0.20"}
    addresses = world.reconciler()
    real_apply = world.interface.apply

    async def removed_by_another_first(add: Iterable[str], remove: Iterable[str]) -> str:
        world.interface.present.discard("10.96.0.20")
        return await real_apply(add, remove)

    world.interface.apply = removed_by_another_first  # type: ignore[method-assign]
    with capture_logs() as logs:
        assert await addresses.sync()
    assert world.interface.present == set()
    assert not [e for e in logs if e["log_level"] == "warning"], logs


async def test_an_address_that_cannot_be_added_is_reported_and_retried() -> None:
    world = World(cache=[service("dns", "10.96.0.10"), service("web", "10.96.0.11")])
    world.interface.refuse = {"10.96.0.11"}
    addresses = world.reconciler()
    with capture_logs() as logs:
        assert not await addresses.sync()
    failed = [e for e in logs if e["event"].startswith("could not change")]
    assert failed and failed[0]["not_added"] == ["10.96.0.11"]
    assert "Operation not permitted" in failed[0]["error"]
    assert world.appeared == [{"10.96.0.10"}]  # the other one is served meanwhile
    world.interface.refuse = set()
    assert await addresses.sync()
    assert world.appeared[-1] == {"10.96.0.11"}


async def test_a_lasting_failure_is_logged_once_and_readiness_says_it() -> None:
    world = World(cache=[service("dns", "10.96.0.10")])
    world.interface.refuse = {"10.96.0.10"}
    addresses = world.reconciler()
    assert addresses.readiness() == (False, "ClusterIP interface kube-ipvs0: no pass yet")
    with capture_logs() as logs:
        for _ in range(3):
            assert not await addresses.sync()
        ready, reason = addresses.readiness()
        assert not ready and "could not change ClusterIP addresses" in reason
        world.interface.refuse = set()
        assert await addresses.sync()
    assert [e["event"] for e in logs if e["log_level"] != "debug"] == [
        "could not change ClusterIP addresses; retrying", "ClusterIP addresses added",
        "ClusterIP addresses in order again",
    ]
    assert addresses.readiness() == (True, "ClusterIP interface kube-ipvs0: 1 addresses")


async def test_a_removed_address_and_a_deleted_interface_are_restored() -> None:
    world = World(cache=[service("dns", "10.96.0.10")])
    addresses = world.reconciler()
    assert await addresses.sync()
    world.interface.present.clear()  # someone removed it
    assert await addresses.sync()
    assert world.interface.present == {"10.96.0.10"}
    world.interface.exists = False  # someone deleted the interface
    world.interface.present.clear()
    assert await addresses.sync()
    assert world.interface.ensured == 2 and world.interface.present == {"10.96.0.10"}


async def test_a_cluster_ip_outside_the_range_is_reported_once_and_left_alone() -> None:
    world = World(cache=[service("odd", "10.200.0.1")])
    addresses = world.reconciler()
    with capture_logs() as logs:
        assert await addresses.sync()
        assert await addresses.sync()
    assert world.interface.present == set() and not addresses.manages("10.200.0.1")
    outside = [e for e in logs if e["event"].startswith("ClusterIP outside")]
    assert len(outside) == 1 and outside[0]["cluster_ip"] == "10.200.0.1"


async def test_passes_run_on_trigger_and_stop() -> None:
    world = World(cache=[])
    addresses = world.reconciler(sync_period=3600.0)
    addresses.start()
    try:
        await eventually(lambda: addresses.passes >= 1, message="the first pass")
        world.cache.append(service("dns", "10.96.0.10"))
        addresses.trigger()
        await eventually(lambda: world.interface.present == {"10.96.0.10"},
                         message="the address added after a trigger")
    finally:
        await addresses.stop()


async def test_a_failing_pass_is_logged_and_retried() -> None:
    world = World(cache=[service("dns", "10.96.0.10")])
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("ip: cannot talk to the kernel")
        world.interface.exists = True

    world.interface.ensure_interface = broken  # type: ignore[method-assign]
    addresses = world.reconciler(sync_period=3600.0, retry_interval=0.05)
    with capture_logs() as logs:
        addresses.start()
        try:
            await eventually(lambda: world.interface.present == {"10.96.0.10"},
                             message="the address added on the retry")
        finally:
            await addresses.stop()
    failed = [e for e in logs if e["event"].startswith("ClusterIP address pass failed")]
    assert failed and failed[0]["log_level"] == "error"


# ----------------------------------------------------------------------------- the ip command

FAKE_IP = """#!/bin/sh
# A stand-in for iproute2's ip: records its arguments (and batch input), answers as a kernel
# without the dummy driver does.
echo "$*" >> "{log}"
case "$*" in
  "link show dev kube-ipvs0") if [ -e "{state}" ]; then echo "3: kube-ipvs0: <UP>"; exit 0; fi
      echo 'Device "kube-ipvs0" does not exist.' >&2; exit 1 ;;
  "link add kube-ipvs0 type dummy") echo "Error: Unknown device type." >&2; exit 2 ;;
  "link add kube-ipvs0 type bridge") touch "{state}"; exit 0 ;;
  "link set dev kube-ipvs0 up") exit 0 ;;
  "-j address show dev kube-ipvs0")
      echo '[{{"ifname":"kube-ipvs0","addr_info":[{{"family":"inet",'\
'"local":"10.96.0.10","prefixlen":32}}]}}]'
      exit 0 ;;
  "-j address show dev gone0") echo 'Device "gone0" does not exist.' >&2; exit 1 ;;
  "-force -batch -") cat >> "{log}"; echo "RTNETLINK answers: File exists" >&2; exit 1 ;;
esac
echo "unexpected: $*" >&2; exit 9
"""


def fake_ip(tmp_path: Path) -> tuple[ClusterIPInterfaceSettings, Path]:
    log = tmp_path / "ip.log"
    script = tmp_path / "ip"
    script.write_text(FAKE_IP.format(log=log, state=tmp_path / "exists"))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return ClusterIPInterfaceSettings(name="kube-ipvs0", service_cluster_ip_range=RANGE,
                                      ip_command=str(script)), log


async def test_ip_makes_a_bridge_where_the_kernel_has_no_dummy(tmp_path: Path) -> None:
    settings, log = fake_ip(tmp_path)
    ip = IpCommand(settings)
    with capture_logs() as logs:
        await ip.ensure_interface()
        await ip.ensure_interface()  # exists now: only shown and set up
    assert log.read_text().splitlines() == [
        "link show dev kube-ipvs0", "link add kube-ipvs0 type dummy",
        "link add kube-ipvs0 type bridge", "link set dev kube-ipvs0 up",
        "link show dev kube-ipvs0", "link set dev kube-ipvs0 up",
    ]
    fallback = [e for e in logs if "fallback" in e["event"]]
    assert fallback and fallback[0]["kind"] == "bridge"
    assert "Unknown device type" in fallback[0]["refused"]


async def test_ip_lists_and_changes_addresses_in_one_batch(tmp_path: Path) -> None:
    settings, log = fake_ip(tmp_path)
    ip = IpCommand(settings)
    assert await ip.addresses() == {"10.96.0.10"}
    error = await ip.apply(["10.96.0.11"], ["10.96.0.12"])
    assert error == "RTNETLINK answers: File exists"
    assert log.read_text().splitlines()[-3:] == [
        "-force -batch -", "address replace 10.96.0.11/32 dev kube-ipvs0",
        "address del 10.96.0.12/32 dev kube-ipvs0",
    ]
    assert await ip.apply([], []) == ""  # nothing to do: no command


def on(settings: ClusterIPInterfaceSettings, name: str) -> IpCommand:
    return IpCommand(replace(settings, name=name))


async def test_ip_failures_are_raised_with_the_command(tmp_path: Path) -> None:
    settings, _ = fake_ip(tmp_path)
    with pytest.raises(InterfaceMissing):
        await on(settings, "gone0").addresses()
    with pytest.raises(AddressCommandError, match=r"-j address show dev other0 exited 9:"
                                                  r" unexpected: -j address show dev other0"):
        await on(settings, "other0").addresses()
    with pytest.raises(AddressCommandError, match="link show dev other0 exited 9"):
        await on(settings, "other0").ensure_interface()


# ----------------------------------------------------------------------------- flags

BASE = ["--node-name", "n1", "--node-ip", "10.0.0.5"]


def test_flags_set_the_interface_and_range() -> None:
    _, settings, _ = parse_args([*BASE, "--cluster-ip-interface", "kube-ipvs0",
                                 "--service-cluster-ip-range", RANGE,
                                 "--cluster-ip-interface-sync-period", "5s"])
    interface = settings.cluster_ip_interface
    assert (interface.name, interface.service_cluster_ip_range, interface.sync_period) == (
        "kube-ipvs0", RANGE, 5.0)


def test_by_default_no_interface_is_managed() -> None:
    _, settings, _ = parse_args(BASE)
    assert not settings.cluster_ip_interface.enabled
    assert settings.cluster_ip_interface.sync_period == 30.0


@pytest.mark.parametrize(("argv", "message"), [
    (["--service-cluster-ip-range", "nope"],
     "--service-cluster-ip-range: invalid value nope: must be a CIDR such as 10.96.0.0/12"),
    (["--cluster-ip-interface", "kube-ipvs0"],
     "--cluster-ip-interface needs --service-cluster-ip-range"),
    (["--cluster-ip-interface", "a/b", "--service-cluster-ip-range", RANGE],
     "--cluster-ip-interface: invalid value a/b: must be a network interface name"),
    (["--cluster-ip-interface-sync-period", "0s"],
     "--cluster-ip-interface-sync-period: must be greater than 0"),
])
def test_bad_flags_are_named(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args([*BASE, *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
