"""Addons `kubelite up` installs once the cluster is ready: cluster DNS (the kube-dns Service
with a fixed ClusterIP, the 10th address of the service range, and its Deployment), from the
manifest the compose stack applies as well (deploy/addons/dns.yaml)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from kubelite.api import convert
from kubelite.api import meta as m
from kubelite.api.errors import AlreadyExists, NotFound
from kubelite.api.manifests import load_documents
from kubelite.client.client import ApiClient
from kubelite.client.config import ClientConfig
from protos.v1 import objects_pb2 as v1

DNS_MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "addons" / "dns.yaml"
DNS_SERVICE_INDEX = 10
"""kube-dns' ClusterIP is this address of the service range (10.96.0.10 in Kubernetes)."""


def dns_cluster_ip(service_range: str) -> str:
    return str(ipaddress.ip_network(service_range, strict=False)[DNS_SERVICE_INDEX])


async def install_dns(
    server: str | ClientConfig, service_range: str, manifest: Path = DNS_MANIFEST
) -> int:
    """Creates the DNS Service (its ClusterIP in ``service_range``) and Deployment; those that
    exist already (a restart on the same data dir) are left as they are. Returns how many
    objects it created."""
    created = 0
    async with ApiClient(server) as client:
        for document in load_documents(manifest.read_text(), str(manifest)):
            _, obj = convert.from_dict(document)
            if isinstance(obj, v1.Service):
                obj.spec.cluster_ip = dns_cluster_ip(service_range)
                del obj.spec.cluster_ips[:]
            try:
                # Looked up first: a second Service create would fail on its ClusterIP
                # (already allocated) before its name.
                meta = m.meta(obj)
                await client.get(type(obj), meta.name, meta.namespace)
                continue
            except NotFound:
                pass
            try:
                await client.create(obj)
                created += 1
            except AlreadyExists:
                pass
    return created
