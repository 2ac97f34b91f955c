"""kubelite.components builds command lines every daemon takes: each one, with every field
set, parses with the daemon's own parse_args, its values reach the daemon's settings, and the
health address a spec reports is the one the daemon serves."""

from __future__ import annotations

import atexit
import dataclasses
import importlib
import shutil
import subprocess
import tempfile
from typing import Any

import pytest

from kubelite.client.config import ClientConfig
from kubelite.cluster_security import apiserver_security
from kubelite.components import (
    DAEMONS,
    ApiServer,
    ClusterDns,
    ControllerManager,
    ControllerManagerTimers,
    Daemon,
    Etcd,
    EtcdTls,
    Kubelet,
    KubeletTimers,
    LeaderElection,
    Proxy,
    Scheduler,
    SchedulerTimers,
    flags_of,
)
from kubelite.etcd_process import EtcdProcess, find_etcd
from kubelite.pki import init_cluster

# Real credentials: the daemons read the files their flags name while parsing.
_PKI_DIR = tempfile.mkdtemp(prefix="kubelite-components-")
atexit.register(shutil.rmtree, _PKI_DIR, True)
PKI = init_cluster(_PKI_DIR, nodes=[("node-1", ["127.0.0.2"])]).pki

ELECTION = LeaderElection(lease_duration=3, renew_deadline=2.5, retry_period=0.5)

FULL: dict[type[Daemon], Daemon] = {
    ApiServer: ApiServer(etcd_servers="127.0.0.1:2479,127.0.0.1:2579", listen="0.0.0.0:7443",
                         http_listen="0.0.0.0:7444",
                         etcd_prefix="/p", service_cluster_ip_range="127.97.0.0/16",
                         watch_progress_interval=0.3, security=apiserver_security(PKI)),
    Scheduler: Scheduler(server="127.0.0.1:7443", kubeconfig=str(PKI.scheduler_conf),
                         health_address="127.0.0.1:11259",
                         identity="s-1", leader_election=ELECTION,
                         timers=SchedulerTimers(pod_initial_backoff=0.7, pod_max_backoff=3)),
    ControllerManager: ControllerManager(
        server="127.0.0.1:7443", kubeconfig=str(PKI.controller_manager_conf),
        health_address="127.0.0.1:11257", identity="cm-1",
        leader_election=ELECTION,
        timers=ControllerManagerTimers(node_monitor_period=0.5, node_monitor_grace_period=4,
                                       cronjob_check_period=0.5, cron_time_scale=60),
        allocate_node_cidrs=True, cluster_cidr="10.244.0.0/16", node_cidr_mask_size=24,
        cluster_signing_cert_file=str(PKI.ca_cert), cluster_signing_key_file=str(PKI.ca_key),
        root_ca_file=str(PKI.ca_cert)),
    Kubelet: Kubelet(node_name="node-1", address="127.0.0.2", server="127.0.0.1:7443",
                     kubeconfig=str(PKI.kubelet_conf("node-1")),
                     tls_cert_file=str(PKI.kubelet_serving_cert("node-1")),
                     tls_private_key_file=str(PKI.kubelet_serving_key("node-1")),
                     client_ca_file=str(PKI.ca_cert), root_dir="/tmp/k", port=0, cpu="2",
                     memory="4Gi",
                     labels={"disktype": "ssd", "zone": "a"},
                     taints=("dedicated=db:NoSchedule", "gpu:NoExecute"),
                     pod_cidr="127.244.1.0/24", health_address="127.0.0.2:11248",
                     timers=KubeletTimers(node_status_update_frequency=2, node_lease_duration=8,
                                          sync_frequency=2, housekeeping_interval=0.2,
                                          backoff_initial=1, backoff_max=8),
                     stop_pods_on_exit=True, container_runtime="containerd",
                     container_runtime_endpoint="unix:///run/k/containerd.sock",
                     cgroup_root="/kubelite/node-1", cni_conf_dir="/tmp/k/net.d",
                     cni_bridge="kubelite1", host_gw_routes=True,
                     cluster_dns=("127.96.0.10",), cluster_domain="cluster.example"),
    Proxy: Proxy(node_name="node-1", node_ip="127.0.0.2", server="127.0.0.1:7443",
                 kubeconfig=str(PKI.proxy_conf), health_address="127.0.0.2:11256",
                 cluster_ip_interface="kube-ipvs0",
                 service_cluster_ip_range="10.96.0.0/16"),
    ClusterDns: ClusterDns(server="127.0.0.1:7443", kubeconfig=str(PKI.admin_conf),
                           listen_address="127.0.0.3", port=1053,
                           cluster_domain="corp.example", upstream=("10.0.0.2", "[::1]:5353"),
                           resolv_conf="/tmp/resolv.conf", ttl=30, upstream_timeout=0.5,
                           health_address="127.0.0.3:18181"),
}
"""Every daemon with every field given."""

MINIMAL: dict[type[Daemon], Daemon] = {
    ApiServer: ApiServer(etcd_servers="127.0.0.1:2479"),
    Scheduler: Scheduler(server="127.0.0.1:6443"),
    ControllerManager: ControllerManager(server="127.0.0.1:6443"),
    Kubelet: Kubelet(node_name="node-1", address="127.0.0.5", server="127.0.0.1:6443"),
    Proxy: Proxy(node_name="node-1", node_ip="127.0.0.5", server="127.0.0.1:6443"),
    ClusterDns: ClusterDns(server="127.0.0.1:6443"),
}
"""Every daemon with only what it needs: the daemons' defaults apply."""


def unset_fields(spec: Any, path: str = "") -> list[str]:
    """Fields of ``spec`` (nested ones too) left None or False."""
    missing = []
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if value is None or value is False:
            missing.append(path + f.name)
        elif dataclasses.is_dataclass(value):
            missing += unset_fields(value, f"{path}{f.name}.")
    return missing


def parse(spec: Daemon) -> Any:
    """The daemon's settings from its own parse_args (an unknown or bad flag exits)."""
    assert spec.module is not None
    main = importlib.import_module(f"{spec.module}.__main__")
    result = main.parse_args(spec.flags())
    return next(r for r in result
                if dataclasses.is_dataclass(r) and not isinstance(r, ClientConfig))


def served_health(spec: Daemon, settings: Any) -> str:
    return str(settings.listen if isinstance(spec, ApiServer) else settings.health_address)


def test_every_daemon_has_a_full_and_a_minimal_example() -> None:
    assert set(FULL) == set(MINIMAL) == set(DAEMONS)
    for kind, spec in FULL.items():
        assert unset_fields(spec) == [], f"{kind.__name__}: give these a value in FULL"


@pytest.mark.parametrize("kind", DAEMONS, ids=lambda k: k.__name__)
def test_the_daemon_parses_every_flag_its_spec_emits(kind: type[Daemon]) -> None:
    for spec in (FULL[kind], MINIMAL[kind]):
        argv = spec.argv()
        assert argv[0] == kind.script
        parse(spec)  # SystemExit (usage) on any flag the daemon does not take


@pytest.mark.parametrize("kind", DAEMONS, ids=lambda k: k.__name__)
def test_the_health_address_is_the_one_the_daemon_serves(kind: type[Daemon]) -> None:
    for spec in (FULL[kind], MINIMAL[kind]):
        served = served_health(spec, parse(spec))
        assert spec.health == served.replace("0.0.0.0", "127.0.0.1"), spec


def test_values_reach_the_daemons_settings() -> None:
    api = parse(FULL[ApiServer])
    assert api.etcd.endpoints == ("127.0.0.1:2479", "127.0.0.1:2579")
    assert api.api.storage_prefix == "/p"
    assert api.api.service_cluster_ip_range == "127.97.0.0/16"
    assert api.api.watch_cache.progress_interval == 0.3
    scheduler = parse(FULL[Scheduler])
    assert scheduler.identity == "s-1"
    assert (scheduler.queue.pod_initial_backoff, scheduler.queue.pod_max_backoff) == (0.7, 3)
    election = scheduler.leader_election
    assert (election.lease_duration, election.renew_deadline, election.retry_period) == (
        3, 2.5, 0.5)
    cm = parse(FULL[ControllerManager])
    assert (cm.node_monitor_period, cm.node_monitor_grace_period, cm.cronjob_check_period,
            cm.cron_time_scale) == (0.5, 4, 0.5, 60)
    assert cm.leader_election.retry_period == 0.5
    kubelet = parse(FULL[Kubelet])
    assert kubelet.labels == {"disktype": "ssd", "zone": "a"}
    assert kubelet.taints == ("dedicated=db:NoSchedule", "gpu:NoExecute")
    assert (kubelet.port, kubelet.cpu, kubelet.memory, kubelet.pod_cidr) == (
        0, "2", "4Gi", "127.244.1.0/24")
    assert (kubelet.node_lease_duration, kubelet.housekeeping_interval,
            kubelet.backoff_max) == (8, 0.2, 8)
    assert kubelet.stop_pods_on_exit
    assert not parse(MINIMAL[Kubelet]).stop_pods_on_exit
    dns = parse(FULL[ClusterDns])
    assert (dns.listen_address, dns.port, dns.cluster_domain, dns.ttl) == (
        "127.0.0.3", 1053, "corp.example", 30)
    assert [str(u) for u in dns.upstreams] == ["10.0.0.2:53", "[::1]:5353"]
    assert (dns.resolv_conf, dns.upstream_timeout) == ("/tmp/resolv.conf", 0.5)


def test_unset_fields_are_not_passed() -> None:
    assert flags_of(Kubelet(node_name="n", address="127.0.0.2", server="s")) == [
        "--node-name", "n", "--address", "127.0.0.2", "--server", "s"]
    # An empty value is passed: the kubelet's --health-address "" turns its health off.
    assert flags_of(Kubelet(node_name="n", address="a", server="s", health_address=""))[-2:] \
        == ["--health-address", ""]


def test_etcd_takes_every_flag_its_spec_emits() -> None:
    try:
        etcd = find_etcd()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    help_text = subprocess.run([etcd, "--help"], capture_output=True, text=True, timeout=30,
                               check=False)
    known = help_text.stdout + help_text.stderr
    tls = EtcdTls(cert_file="/s.crt", key_file="/s.key", trusted_ca_file="/ca.crt",
                  client_cert_auth=True, peer_cert_file="/p.crt", peer_key_file="/p.key",
                  peer_trusted_ca_file="/ca.crt", peer_client_cert_auth=True)
    spec = Etcd(data_dir="/d", client_urls=("https://127.0.0.1:2379",),
                advertise_client_urls=("https://etcd:2379",), peer_url="https://127.0.0.1:2380",
                heartbeat_interval=100, election_timeout=1000, tls=tls)
    assert unset_fields(spec) == []
    flags = [a for a in spec.flags() if a.startswith("--")]
    assert len(flags) == 19
    for flag in flags:
        assert f"  {flag} " in known, f"etcd {etcd} does not take {flag}"
    assert spec.health_url == "https://127.0.0.1:2379/health"
    assert Etcd(data_dir="/d", client_urls=("http://0.0.0.0:2379",)).health_url == (
        "http://127.0.0.1:2379/health")


def test_etcd_tls_and_url_schemes_agree() -> None:
    tls = EtcdTls(cert_file="/s.crt", key_file="/s.key")
    with pytest.raises(ValueError, match="client URL http://127.0.0.1:2379: https exactly"):
        Etcd(data_dir="/d", client_urls=("http://127.0.0.1:2379",), tls=tls)
    with pytest.raises(ValueError, match="client URL https://127.0.0.1:2379: https exactly"):
        Etcd(data_dir="/d", client_urls=("https://127.0.0.1:2379",))
    with pytest.raises(ValueError, match="peer URL http://127.0.0.1:2380"):
        Etcd(data_dir="/d", client_urls=("https://127.0.0.1:2379",),
             peer_url="http://127.0.0.1:2380",
             tls=EtcdTls(cert_file="/s.crt", key_file="/s.key", peer_cert_file="/p.crt",
                         peer_key_file="/p.key"))
    with pytest.raises(ValueError, match="cert_file and key_file go together"):
        EtcdTls(cert_file="/s.crt")
    with pytest.raises(ValueError, match="peer_client_cert_auth needs peer_trusted_ca_file"):
        EtcdTls(peer_cert_file="/p.crt", peer_key_file="/p.key", peer_client_cert_auth=True)


def test_the_etcd_helper_runs_the_specs_command(tmp_path: Any) -> None:
    process = EtcdProcess(tmp_path / "data", client_port=3379, peer_port=3380)
    argv = process.spec().argv("etcd")
    value = {argv[i]: argv[i + 1] for i in range(1, len(argv) - 1, 2)}
    assert value["--listen-client-urls"] == "http://127.0.0.1:3379"
    assert value["--initial-cluster"] == "kubelite=http://127.0.0.1:3380"
    assert value["--data-dir"] == str(tmp_path / "data")
