"""Each pod's resolver configuration by dnsPolicy, as the kubelet forms it, and the
/etc/resolv.conf and /etc/hosts written from it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kubelet.__main__ import parse_args
from kubelet.dns_config import (
    MISSING_CLUSTER_DNS,
    PodDns,
    ResolvConfError,
    dns_for_pod,
    fit_limits,
    parse_resolv_conf,
    pod_dns_config,
    pod_domain,
    read_resolv_conf,
)
from kubelet.pod_worker import sandbox_config
from kubelet.runtime.etc_files import (
    managed_hosts,
    node_hosts,
    pod_hosts,
    resolv_conf,
    write_in_place,
)
from kubelet.runtime.interface import DnsConfig, HostAlias, PodSandboxConfig, RuntimeError_
from kubelet.settings import KubeletSettings
from protos.v1 import objects_pb2 as v1

NODE = DnsConfig(nameservers=("192.0.2.1", "192.0.2.2"), searches=("corp.example", "example"),
                 options=("ndots:1", "timeout:2"))
CLUSTER_DNS = ("10.96.0.10",)


def _pod(policy: str = "ClusterFirst", *, namespace: str = "shop", host_network: bool = False,
         config: v1.PodDNSConfig | None = None) -> v1.Pod:
    pod = v1.Pod()
    pod.metadata.name, pod.metadata.namespace, pod.metadata.uid = "web-0", namespace, "u-1"
    pod.spec.dns_policy = policy
    pod.spec.host_network = host_network
    if config is not None:
        pod.spec.dns_config.CopyFrom(config)
    return pod


def _option(name: str, value: str | None = None) -> v1.PodDNSConfigOption:
    return v1.PodDNSConfigOption(name=name, value=value)


def _dns(pod: v1.Pod, cluster_dns: tuple[str, ...] = CLUSTER_DNS,
         node: DnsConfig | None = NODE, cluster_domain: str = "cluster.local",
         node_ip: str = "127.0.0.1") -> PodDns:
    return pod_dns_config(pod, cluster_dns=cluster_dns, cluster_domain=cluster_domain,
                          node=node, node_ip=node_ip)


# -- the node's resolv.conf --------------------------------------------------------------------


def test_resolv_conf_is_read_as_the_kubelet_reads_it() -> None:
    text = """# the node's
nameserver 192.0.2.1
search old.example
; another comment
nameserver 192.0.2.2
domain ignored.example
search corp.example. example
options ndots:3
options ndots:1 timeout:2
"""
    assert parse_resolv_conf(text) == NODE


def test_a_nameserver_line_without_an_address_is_an_error() -> None:
    with pytest.raises(ResolvConfError, match="line 2: nameserver without an address"):
        parse_resolv_conf("nameserver 192.0.2.1\nnameserver\n")


def test_the_node_file_is_read_again_only_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 192.0.2.1\n")
    assert read_resolv_conf(str(path)) == DnsConfig(nameservers=("192.0.2.1",))
    path.write_text("nameserver 192.0.2.9\nsearch example\n")
    assert read_resolv_conf(str(path)) == DnsConfig(("192.0.2.9",), ("example",))
    assert read_resolv_conf("") is None
    with pytest.raises(ResolvConfError, match="missing.conf"):
        read_resolv_conf(str(tmp_path / "missing.conf"))


# -- by policy ---------------------------------------------------------------------------------


def test_cluster_first_uses_the_cluster_dns_its_search_list_and_ndots_5() -> None:
    dns = _dns(_pod("ClusterFirst"))
    assert dns == PodDns(DnsConfig(
        nameservers=CLUSTER_DNS,
        searches=("shop.svc.cluster.local", "svc.cluster.local", "cluster.local",
                  "corp.example", "example"),
        options=("ndots:5",),  # the node's options are not the cluster's
    ))


def test_cluster_first_without_a_cluster_domain_searches_the_node_domains_only() -> None:
    config = _dns(_pod("ClusterFirst"), cluster_domain="").config
    assert config.searches == NODE.searches and config.nameservers == CLUSTER_DNS


def test_cluster_first_without_cluster_dns_falls_back_to_the_node_with_a_warning() -> None:
    assert _dns(_pod("ClusterFirst"), cluster_dns=()) == PodDns(NODE, (MISSING_CLUSTER_DNS,))


def test_cluster_first_on_the_node_network_is_default() -> None:
    assert _dns(_pod("ClusterFirst", host_network=True)) == PodDns(NODE)


def test_cluster_first_with_host_net_uses_the_cluster_dns_on_the_node_network() -> None:
    for host_network in (True, False):
        config = _dns(_pod("ClusterFirstWithHostNet", host_network=host_network)).config
        assert config.nameservers == CLUSTER_DNS and config.options == ("ndots:5",)
        assert config.searches[:3] == ("shop.svc.cluster.local", "svc.cluster.local",
                                       "cluster.local")


def test_default_is_the_node_resolv_conf() -> None:
    assert _dns(_pod("Default")) == PodDns(NODE)


def test_default_without_a_node_file_resolves_on_the_node_itself() -> None:
    assert _dns(_pod("Default"), node=None).config == DnsConfig(("127.0.0.1",), (".",))
    assert _dns(_pod("Default"), node=None, node_ip="fd00::1").config.nameservers == ("::1",)


def test_none_is_exactly_the_pod_dns_config() -> None:
    pod = _pod("None", config=v1.PodDNSConfig(
        nameservers=["192.0.2.53"], searches=["a.example"],
        options=[_option("ndots", "2"), _option("edns0")]))
    assert _dns(pod) == PodDns(DnsConfig(("192.0.2.53",), ("a.example",),
                                         ("ndots:2", "edns0")))


# -- dnsConfig on top, and the limits ----------------------------------------------------------


def test_dns_config_is_merged_on_top_of_the_policy() -> None:
    pod = _pod("ClusterFirst", config=v1.PodDNSConfig(
        nameservers=["192.0.2.53", "10.96.0.10"],
        searches=["extra.example", "svc.cluster.local"],
        options=[_option("ndots", "2"), _option("edns0"), _option("attempts", "3")],
    ))
    config = _dns(pod).config
    # Appended without duplicates; options by name, the pod's value winning.
    assert config.nameservers == ("10.96.0.10", "192.0.2.53")
    assert config.searches == ("shop.svc.cluster.local", "svc.cluster.local", "cluster.local",
                               "corp.example", "example", "extra.example")
    assert config.options == ("ndots:2", "edns0", "attempts:3")


def test_dns_config_on_default_overrides_node_options() -> None:
    pod = _pod("Default", config=v1.PodDNSConfig(options=[_option("timeout"),
                                                         _option("rotate")]))
    assert _dns(pod).config.options == ("ndots:1", "timeout", "rotate")


def test_more_than_three_nameservers_are_cut_with_a_warning() -> None:
    pod = _pod("Default", config=v1.PodDNSConfig(nameservers=["192.0.2.3", "192.0.2.4"]))
    dns = _dns(pod)
    assert dns.config.nameservers == ("192.0.2.1", "192.0.2.2", "192.0.2.3")
    assert dns.warnings == ("Nameserver limits were exceeded, some nameservers have been"
                            " omitted, the applied nameserver line is: 192.0.2.1 192.0.2.2"
                            " 192.0.2.3",)


def test_search_paths_are_cut_to_32_and_2048_characters_and_long_ones_dropped() -> None:
    many = DnsConfig(searches=tuple(f"d{i}.example" for i in range(40)))
    config, warnings = fit_limits(many)
    assert config.searches == many.searches[:32] and len(warnings) == 1
    assert warnings[0].startswith("Search Line limits were exceeded")

    too_long = "x" * 60 + "." + "y" * 60 + "." + "z" * 60 + "." + "w" * 80
    config, _ = fit_limits(DnsConfig(searches=("a.example", too_long, "b.example")))
    assert config.searches == ("a.example", "b.example")

    wide = tuple(f"{i:02d}" + "a" * 61 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 60
                 for i in range(10))  # 10 domains of 252 characters: 2529 with spaces
    config, warnings = fit_limits(DnsConfig(searches=wide))
    assert config.searches == wide[:8] and warnings  # 8 * 252 + 7 = 2023 characters

    assert fit_limits(NODE) == (NODE, ())


def test_pod_domain_from_its_subdomain() -> None:
    pod = _pod()
    assert pod_domain(pod, "cluster.local") == ""
    pod.spec.subdomain = "nginx"
    assert pod_domain(pod, "cluster.local") == "nginx.shop.svc.cluster.local"


# -- the kubelet's use -------------------------------------------------------------------------


def test_the_sandbox_carries_the_pod_dns_domain_and_aliases(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 192.0.2.1\nsearch corp.example\n")
    settings = KubeletSettings(node_name="n1", cluster_dns=CLUSTER_DNS,
                               cluster_domain="kube.test", resolv_conf=str(resolv))
    pod = _pod()
    pod.spec.hostname, pod.spec.subdomain = "db-1", "db"
    pod.spec.host_aliases.add(ip="192.0.2.80", hostnames=["foo.local", "bar.local"])
    config = sandbox_config(pod, settings)
    assert config.hostname == "db-1"
    assert config.domain == "db.shop.svc.kube.test"
    assert config.host_aliases == (HostAlias("192.0.2.80", ("foo.local", "bar.local")),)
    assert config.dns == DnsConfig(
        CLUSTER_DNS, ("shop.svc.kube.test", "svc.kube.test", "kube.test", "corp.example"),
        ("ndots:5",))


def test_an_unreadable_node_file_fails_the_sandbox(tmp_path: Path) -> None:
    settings = KubeletSettings(node_name="n1", resolv_conf=str(tmp_path / "nope"))
    with pytest.raises(RuntimeError_) as raised:
        dns_for_pod(_pod(), settings)
    assert raised.value.reason == "CreatePodSandboxError"
    assert "--resolv-conf" in raised.value.message and "nope" in raised.value.message


# -- the files ---------------------------------------------------------------------------------


def test_resolv_conf_is_written_as_containerd_writes_it() -> None:
    assert resolv_conf(DnsConfig(("10.96.0.10", "192.0.2.53"), ("a.example", "example"),
                                 ("ndots:5", "edns0"))) == (
        "search a.example example\nnameserver 10.96.0.10\nnameserver 192.0.2.53\n"
        "options ndots:5 edns0\n")
    assert resolv_conf(DnsConfig(("192.0.2.1",))) == "nameserver 192.0.2.1\n"


def test_managed_hosts_names_the_pod_ip_and_its_aliases() -> None:
    aliases = [HostAlias("192.0.2.80", ("foo.local", "bar.local"))]
    text = managed_hosts(["10.244.1.5"], "web-0", "nginx.shop.svc.cluster.local", aliases)
    assert text == (
        "# Kubernetes-managed hosts file.\n"
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\n"
        "fe00::0\tip6-mcastprefix\n"
        "fe00::1\tip6-allnodes\n"
        "fe00::2\tip6-allrouters\n"
        "10.244.1.5\tweb-0.nginx.shop.svc.cluster.local\tweb-0\n"
        "\n# Entries added by HostAliases.\n"
        "192.0.2.80\tfoo.local\tbar.local\n")
    assert managed_hosts(["10.244.1.5"], "web-0", "").endswith("\n10.244.1.5\tweb-0\n")


def test_pod_hosts_on_the_node_network_is_the_node_file(tmp_path: Path) -> None:
    node_file = tmp_path / "hosts"
    node_file.write_text("127.0.0.1 localhost\n")
    aliases = (HostAlias("192.0.2.80", ("foo.local",)),)
    config = PodSandboxConfig(uid="u", name="web-0", namespace="shop", host_network=True,
                              host_aliases=aliases)
    assert pod_hosts(config, "", str(node_file)) == node_hosts("127.0.0.1 localhost\n", aliases)
    assert node_hosts("127.0.0.1 localhost\n").startswith(
        "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n")
    # Off the node's network, none until the pod has its IP.
    own = PodSandboxConfig(uid="u", name="web-0", namespace="shop")
    assert pod_hosts(own, "") is None
    assert pod_hosts(own, "10.244.1.5", str(node_file)) == managed_hosts(["10.244.1.5"],
                                                                        "web-0", "")


def test_files_are_rewritten_in_place(tmp_path: Path) -> None:
    path = tmp_path / "etc-hosts"
    write_in_place(str(path), "one\ntwo\n")
    inode = os.stat(path).st_ino
    write_in_place(str(path), "three\n")
    assert path.read_text() == "three\n" and os.stat(path).st_ino == inode
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"


# -- the kubelet's flags -----------------------------------------------------------------------


def test_kubelet_flags() -> None:
    settings, _ = parse_args(["--node-name", "n1"])
    assert (settings.cluster_dns, settings.cluster_domain, settings.resolv_conf) == (
        (), "cluster.local", "/etc/resolv.conf")
    settings, _ = parse_args(["--node-name", "n1", "--cluster-dns", "10.96.0.10, fd00::a",
                              "--cluster-domain", "kube.test.", "--resolv-conf", ""])
    assert (settings.cluster_dns, settings.cluster_domain, settings.resolv_conf) == (
        ("10.96.0.10", "fd00::a"), "kube.test", "")


@pytest.mark.parametrize(("flags", "error"), [
    (["--cluster-dns", "10.96.0.10,dns"], "--cluster-dns: 'dns' is not an IP address"),
    (["--cluster-domain", "Kube_Test"], "--cluster-domain: 'Kube_Test': a lowercase RFC 1123"),
])
def test_bad_kubelet_flags_are_refused(flags: list[str], error: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--node-name", "n1", *flags])
    assert error in capsys.readouterr().err
