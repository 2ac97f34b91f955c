"""Pods' /etc/resolv.conf and /etc/hosts on the process runtime: an in-process kubelet with
cluster DNS settings and a resolv.conf of its own, against a real API server; what the files
say is read from inside the pods (exec relayed by the API server)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import MessageToJson

from apiserver.server import ApiServer
from kubelet.kubelet import Kubelet
from kubelet.runtime.process import ProcessRuntime, ProcessRuntimeSettings
from kubelet.settings import KubeletSettings
from kubelite.api import convert
from kubelite.client.client import ApiClient
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="binding the pod's files needs the mount-namespace isolation (root)")

NS = "default"
NODE = "dns-node"
CLUSTER_DNS = "10.96.0.10"
NODE_RESOLV_CONF = "# the node's\nnameserver 192.0.2.1\nsearch node.example\noptions timeout:1\n"
NODE_RESOLV = "search node.example\nnameserver 192.0.2.1\noptions timeout:1\n"
"""The node's resolv.conf as a pod of the Default policy sees it."""


@dataclass
class Node:
    client: ApiClient
    kubelet: Kubelet
    settings: KubeletSettings

    async def create(self, name: str, **spec: Any) -> v1.Pod:
        pod = convert.message_from_dict(v1.Pod, {
            "metadata": {"name": name, "namespace": NS},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": "busybox",
                                     "command": ["sleep", "3600"]}], **spec},
        })
        assert isinstance(pod, v1.Pod)
        return await self.client.create(pod)

    async def running(self, name: str) -> v1.Pod:
        last = v1.Pod()

        async def check() -> v1.Pod | None:
            nonlocal last
            last = await self.client.get(v1.Pod, name, NS)
            statuses = last.status.container_statuses
            return last if statuses and statuses[0].state.HasField("running") else None

        try:
            found: v1.Pod = await eventually(check, timeout=30, interval=0.05,
                                             message=f"pod {name} running")
        except AssertionError as e:
            raise AssertionError(f"{e}\nlast status: {MessageToJson(last.status)}") from None
        return found

    async def cat(self, name: str, path: str) -> str:
        output, code = b"", -1
        async for fd, data in self.client.pod_exec(NS, name, ["cat", path], timeout=30):
            if fd == -1:
                code = int(data)
            else:
                output += data
        assert code == 0, output
        return output.decode()


@pytest.fixture
async def node(api_server: ApiServer, client: ApiClient, tmp_path: Path) -> AsyncIterator[Node]:
    if ProcessRuntime(ProcessRuntimeSettings(str(tmp_path / "probe"))).isolation \
            != "mount-namespace":
        pytest.skip("mount namespaces with overlayfs are unavailable here")
    resolv_conf = tmp_path / "node-resolv.conf"
    resolv_conf.write_text(NODE_RESOLV_CONF)
    settings = KubeletSettings(
        node_name=NODE, address="127.0.0.1", port=0, server=api_server.address,
        root_dir=str(tmp_path / "kubelet"), isolation="mount-namespace",
        # Pods get loopback addresses of their own, so /etc/hosts names an address of the pod.
        pod_cidr=f"127.{secrets.randbelow(50) + 200}.{secrets.randbelow(250) + 1}.0/24",
        cluster_dns=(CLUSTER_DNS,), cluster_domain="cluster.local",
        resolv_conf=str(resolv_conf), node_status_update_frequency=1, node_lease_duration=8,
        sync_frequency=2, housekeeping_interval=0.2, backoff_initial=1, backoff_max=4,
        default_grace_seconds=1, stop_pods_on_exit=True)
    kubelet = Kubelet(settings)
    await kubelet.start()
    try:
        yield Node(client, kubelet, settings)
    finally:
        await kubelet.stop()


async def test_cluster_first_pods_resolve_through_the_cluster_dns(node: Node) -> None:
    await node.create("web-0", hostname="web-0", subdomain="nginx",
                      hostAliases=[{"ip": "192.0.2.80", "hostnames": ["foo.local", "bar.local"]}])
    pod = await node.running("web-0")

    assert await node.cat("web-0", "/etc/resolv.conf") == (
        "search default.svc.cluster.local svc.cluster.local cluster.local node.example\n"
        f"nameserver {CLUSTER_DNS}\n"
        "options ndots:5\n")
    hosts = await node.cat("web-0", "/etc/hosts")
    assert hosts.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"), hosts
    assert f"\n{pod.status.pod_ip}\tweb-0.nginx.default.svc.cluster.local\tweb-0\n" in hosts, \
        hosts
    assert hosts.endswith("# Entries added by HostAliases.\n192.0.2.80\tfoo.local\tbar.local\n")
    # The node's files are untouched.
    assert Path(node.settings.resolv_conf).read_text() == NODE_RESOLV_CONF


async def test_default_pods_get_the_node_resolv_conf(node: Node) -> None:
    await node.create("plain", dnsPolicy="Default")
    pod = await node.running("plain")

    assert await node.cat("plain", "/etc/resolv.conf") == NODE_RESOLV
    hosts = await node.cat("plain", "/etc/hosts")
    assert hosts.endswith(f"\n{pod.status.pod_ip}\tplain\n"), hosts


async def test_none_pods_get_exactly_their_dns_config(node: Node) -> None:
    await node.create("custom", dnsPolicy="None", dnsConfig={
        "nameservers": ["192.0.2.53", "192.0.2.54"], "searches": ["custom.example"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]})
    await node.running("custom")

    assert await node.cat("custom", "/etc/resolv.conf") == (
        "search custom.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n"
        "options ndots:2 edns0\n")


async def test_host_network_pods_keep_the_node_hosts_file(node: Node) -> None:
    await node.create("on-node", hostNetwork=True,
                      hostAliases=[{"ip": "192.0.2.80", "hostnames": ["foo.local"]}])
    await node.running("on-node")

    # ClusterFirst on the node's network is Default.
    assert await node.cat("on-node", "/etc/resolv.conf") == NODE_RESOLV
    hosts = await node.cat("on-node", "/etc/hosts")
    assert hosts == ("# Kubernetes-managed hosts file (host network).\n"
                     + Path("/etc/hosts").read_text()
                     + "\n# Entries added by HostAliases.\n192.0.2.80\tfoo.local\n")
