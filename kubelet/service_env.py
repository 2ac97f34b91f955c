"""Service environment variables for containers, as the kubelet makes them.

The kubelet keeps an informer on all Services; when a container starts it gets, for every
Service of its namespace that has a ClusterIP (headless and ExternalName ones have none),
Kubernetes' variables (pkg/kubelet/envvars FromServices)::

    REDIS_MASTER_SERVICE_HOST=127.96.0.11
    REDIS_MASTER_SERVICE_PORT=6379
    REDIS_MASTER_SERVICE_PORT_<PORTNAME>=6379      for each named port
    REDIS_MASTER_PORT=tcp://127.96.0.11:6379       the first port, Docker-link style
    REDIS_MASTER_PORT_6379_TCP=tcp://127.96.0.11:6379
    REDIS_MASTER_PORT_6379_TCP_PROTO=tcp
    REDIS_MASTER_PORT_6379_TCP_PORT=6379
    REDIS_MASTER_PORT_6379_TCP_ADDR=127.96.0.11

The ``kubernetes`` Service of the default namespace is always included, as Kubernetes does
for its master service, even when a pod turns service links off.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from kubelite.client.client import ApiClient
from kubelite.client.informer import Informer, InformerSettings
from protos.v1 import objects_pb2 as v1

MASTER_SERVICES = ("kubernetes",)
"""Services of the default namespace every pod gets variables for."""


def env_var_name(name: str) -> str:
    """Kubernetes' makeEnvVariableName: upper case, ``-`` -> ``_``."""
    return name.replace("-", "_").upper()


def has_cluster_ip(svc: v1.Service) -> bool:
    """IsServiceIPSet: a ClusterIP that is neither empty nor ``None``."""
    return svc.spec.cluster_ip not in ("", "None")


def _host_port(ip: str, port: int) -> str:
    # net.JoinHostPort: an IPv6 address is bracketed.
    try:
        if ipaddress.ip_address(ip).version == 6:
            return f"[{ip}]:{port}"
    except ValueError:
        pass
    return f"{ip}:{port}"


def _link_variables(svc: v1.Service) -> list[tuple[str, str]]:
    """Docker-link compatible variables, for every port (the first one also as ``_PORT``)."""
    prefix = env_var_name(svc.metadata.name)
    ip = svc.spec.cluster_ip
    result: list[tuple[str, str]] = []
    for i, sp in enumerate(svc.spec.ports):
        protocol = sp.protocol or "TCP"
        url = f"{protocol.lower()}://{_host_port(ip, sp.port)}"
        if i == 0:
            result.append((f"{prefix}_PORT", url))
        port_prefix = f"{prefix}_PORT_{sp.port}_{protocol.upper()}"
        result += [
            (port_prefix, url),
            (f"{port_prefix}_PROTO", protocol.lower()),
            (f"{port_prefix}_PORT", str(sp.port)),
            (f"{port_prefix}_ADDR", ip),
        ]
    return result


def from_services(services: Iterable[v1.Service]) -> list[tuple[str, str]]:
    """Kubernetes' FromServices: the variables for these Services, in its order."""
    result: list[tuple[str, str]] = []
    for svc in services:
        if not has_cluster_ip(svc) or not svc.spec.ports:
            continue
        host = env_var_name(svc.metadata.name) + "_SERVICE_HOST"
        result.append((host, svc.spec.cluster_ip))
        port_name = env_var_name(svc.metadata.name) + "_SERVICE_PORT"
        result.append((port_name, str(svc.spec.ports[0].port)))
        for sp in svc.spec.ports:
            if sp.name:
                result.append((f"{port_name}_{env_var_name(sp.name)}", str(sp.port)))
        result += _link_variables(svc)
    return result


def services_for(services: Iterable[v1.Service], namespace: str,
                 enable_service_links: bool = True) -> list[v1.Service]:
    """Which Services a pod of ``namespace`` gets variables for (getServiceEnvVarMap): its
    namespace's with a ClusterIP when links are on, and the master service of ``default``
    unless its own namespace has one of that name."""
    chosen: dict[str, v1.Service] = {}
    master: dict[str, v1.Service] = {}
    for svc in services:
        if not has_cluster_ip(svc):
            continue
        name, ns = svc.metadata.name, svc.metadata.namespace
        if ns == "default" and name in MASTER_SERVICES:
            master[name] = svc
        if ns == namespace and enable_service_links:
            chosen[name] = svc
    for name, svc in master.items():
        chosen.setdefault(name, svc)
    return [chosen[name] for name in sorted(chosen)]


class ServiceEnv:
    """The kubelet's Services informer; calling it with a namespace gives the Service variables
    for a container starting there (NodeContext.service_env)."""

    def __init__(self, client: ApiClient,
                 settings: InformerSettings = InformerSettings(backoff_initial=0.2,
                                                               backoff_max=2.0)) -> None:
        self.informer: Informer[v1.Service] = Informer(client, v1.Service, settings=settings)

    def start(self) -> None:
        self.informer.start()

    async def wait_for_sync(self, timeout: float | None = None) -> None:
        await self.informer.wait_for_sync(timeout)

    async def stop(self) -> None:
        await self.informer.stop()

    def env(self, namespace: str, enable_service_links: bool = True) -> dict[str, str]:
        store = self.informer.store
        candidates = [*store.by_index("namespace", namespace)]
        if namespace != "default":
            candidates += [s for name in MASTER_SERVICES
                           if (s := store.get_by_name("default", name)) is not None]
        return dict(from_services(services_for(candidates, namespace, enable_service_links)))

    def for_pod(self, pod: v1.Pod) -> dict[str, str]:
        """The variables for ``pod``, honouring ``enableServiceLinks: false``."""
        links = not pod.spec.HasField("enable_service_links") or pod.spec.enable_service_links
        return self.env(pod.metadata.namespace, links)

    def __call__(self, namespace: str) -> dict[str, str]:
        return self.env(namespace)


__all__ = ["ServiceEnv", "env_var_name", "from_services", "services_for"]
