"""Pods' /etc/resolv.conf and /etc/hosts on containerd: the kubelet's DNS configuration goes to
the sandbox (containerd writes its resolv.conf) and the kubelet's /etc/hosts is mounted into
each container. The namespace, registries and containerd are this directory's (node.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from tests.integration.cri.node import MISSING, Node, busybox_pod

pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)}")

CLUSTER_DNS = "10.96.0.10"
NODE_RESOLV_CONF = "nameserver 192.0.2.1\nsearch node.example\noptions timeout:1\n"


async def cat(on: Node, pod: str, path: str) -> str:
    code, output = await on.exec(pod, "cat", path)
    assert code == 0, output
    return output


async def test_pods_resolve_by_dns_policy_and_know_their_names(
    node: Node, tmp_path: Path,
) -> None:
    resolv_conf = tmp_path / "node-resolv.conf"
    resolv_conf.write_text(NODE_RESOLV_CONF)
    node.settings = dataclasses.replace(node.settings, cluster_dns=(CLUSTER_DNS,),
                                        cluster_domain="cluster.local",
                                        resolv_conf=str(resolv_conf))
    await node.start_kubelet()
    await node.create(busybox_pod(
        "web-0", "exec sleep 3600", hostname="web-0", subdomain="nginx",
        hostAliases=[{"ip": "192.0.2.80", "hostnames": ["foo.local", "bar.local"]}]))
    await node.create(busybox_pod("plain", "exec sleep 3600", dnsPolicy="Default"))
    await node.create(busybox_pod("custom", "exec sleep 3600", dnsPolicy="None", dnsConfig={
        "nameservers": ["192.0.2.53"], "searches": ["custom.example"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}))
    await node.create(busybox_pod("on-node", "exec sleep 3600", hostNetwork=True,
                                  hostAliases=[{"ip": "192.0.2.80", "hostnames": ["foo.local"]}]))
    web, plain, _, _ = await asyncio.gather(
        node.running("web-0"), node.running("plain"), node.running("custom"),
        node.running("on-node"))

    assert await cat(node, "web-0", "/etc/resolv.conf") == (
        "search default.svc.cluster.local svc.cluster.local cluster.local node.example\n"
        f"nameserver {CLUSTER_DNS}\n"
        "options ndots:5\n")
    hosts = await cat(node, "web-0", "/etc/hosts")
    assert hosts.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"), hosts
    assert f"\n{web.status.pod_ip}\tweb-0.nginx.default.svc.cluster.local\tweb-0\n" in hosts, \
        hosts
    assert hosts.endswith("# Entries added by HostAliases.\n192.0.2.80\tfoo.local\tbar.local\n")

    assert await cat(node, "plain", "/etc/resolv.conf") == (
        "search node.example\nnameserver 192.0.2.1\noptions timeout:1\n")
    assert (await cat(node, "plain", "/etc/hosts")).endswith(f"\n{plain.status.pod_ip}\tplain\n")

    assert await cat(node, "custom", "/etc/resolv.conf") == (
        "search custom.example\nnameserver 192.0.2.53\noptions ndots:2 edns0\n")

    # On the node's network: ClusterFirst is Default, and /etc/hosts is the node's.
    assert await cat(node, "on-node", "/etc/resolv.conf") == (
        "search node.example\nnameserver 192.0.2.1\noptions timeout:1\n")
    assert await cat(node, "on-node", "/etc/hosts") == (
        "# Kubernetes-managed hosts file (host network).\n" + Path("/etc/hosts").read_text()
        + "\n# Entries added by HostAliases.\n192.0.2.80\tfoo.local\n")
