"""The Endpoints controller: for each Service with a selector, an Endpoints object of the same
name listing the pods behind it.

As Kubernetes' pkg/controller/endpoint: pods that have an IP and are neither finished nor
being deleted are listed, ready ones under ``addresses`` and the others under
``notReadyAddresses`` (all under ``addresses`` when the Service sets
``publishNotReadyAddresses``, which also keeps terminating pods). Each Service port becomes an
endpoint port whose number is the targetPort resolved per pod: a named targetPort is looked up
among that pod's container ports, and a pod without it is left out of that port (a Warning
Event on the Service says which). Addresses with identical port sets share one subset
(RepackSubsets). Services without a selector are left alone: their Endpoints belong to whoever
wrote them. Deleting a Service deletes its Endpoints.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import structlog

from controller_manager.context import ControllerContext
from kubelite.api import meta as m
from kubelite.api import pods as podutil
from kubelite.api.errors import NotFound
from kubelite.client.client import ApiClient
from kubelite.client.controller import Controller
from kubelite.client.events import WARNING, EventRecorder
from kubelite.client.informer import Store
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

HEADLESS_LABEL = "service.kubernetes.io/headless"
"""Set on the Endpoints of a headless Service, as Kubernetes does."""
MISSING_PORT_REASON = "FailedToResolveTargetPort"
"""Event reason when a selected pod has no container port of a named targetPort."""

# ---------------------------------------------------------------- building subsets


def pod_ip(pod: v1.Pod) -> str:
    return pod.status.pod_ip or (pod.status.pod_ips[0].ip if pod.status.pod_ips else "")


def should_be_in_endpoints(pod: v1.Pod, include_terminating: bool) -> bool:
    """Kubernetes' ShouldPodBeInEndpoints: an IP, not finished, not going (unless asked)."""
    if podutil.is_terminal(pod) or not pod_ip(pod):
        return False
    return include_terminating or not pod.metadata.deletion_timestamp


def find_port(pod: v1.Pod, port: v1.ServicePort) -> int | None:
    """The pod's port for a Service port (podutil.FindPort): a number as is, a name looked up
    among the container ports (sidecars included) with the same protocol."""
    target = port.target_port
    if target.WhichOneof("value") != "str_val":
        return target.int_val or port.port
    containers = [*pod.spec.containers, *(
        c for c in pod.spec.init_containers
        if c.HasField("restart_policy") and c.restart_policy == "Always"
    )]
    for container in containers:
        for cp in container.ports:
            if cp.name == target.str_val and (cp.protocol or "TCP") == (port.protocol or "TCP"):
                return cp.container_port
    return None


def endpoint_address(pod: v1.Pod, svc: v1.Service) -> v1.EndpointAddress:
    address = v1.EndpointAddress(
        ip=pod_ip(pod),
        target_ref=v1.ObjectReference(kind="Pod", namespace=pod.metadata.namespace,
                                      name=pod.metadata.name, uid=pod.metadata.uid),
    )
    if pod.spec.node_name:
        address.node_name = pod.spec.node_name
    # ShouldSetHostname: a pod naming this Service as its subdomain gets its DNS name here.
    if pod.spec.hostname and pod.spec.subdomain == svc.metadata.name:
        address.hostname = pod.spec.hostname
    return address


@dataclass(frozen=True)
class MissingPort:
    """A selected pod that lacks the named container port a Service port targets."""

    pod: str
    """The pod's name."""
    pod_uid: str
    """The pod's uid (a recreated pod is a new report)."""
    target_port: str
    """The targetPort name looked for."""
    service_port: str
    """The Service port's name (may be empty for a single port)."""

    def message(self) -> str:
        which = f' "{self.service_port}"' if self.service_port else ""
        return (f'pod {self.pod} has no container port named "{self.target_port}" for service'
                f" port{which}; it is left out of that port's endpoints")


_PortKey = tuple[str, int, str, str] | None
_AddressKey = tuple[str, str]


def _port_key(port: v1.EndpointPort) -> tuple[str, int, str, str]:
    return (port.name, port.port, port.protocol,
            port.app_protocol if port.HasField("app_protocol") else "\0")


def _address_key(address: v1.EndpointAddress) -> _AddressKey:
    return (address.ip, address.target_ref.uid)


def repack(entries: Iterable[tuple[v1.EndpointAddress, bool, v1.EndpointPort | None]]
           ) -> list[v1.EndpointSubset]:
    """Kubernetes' RepackSubsets: one subset per distinct set of addresses, holding every port
    those addresses serve; sorted so that equal inputs give equal objects."""
    ports: dict[_PortKey, v1.EndpointPort | None] = {}
    by_port: dict[_PortKey, dict[_AddressKey, tuple[v1.EndpointAddress, bool]]] = {}
    for address, ready, port in entries:
        pkey = _port_key(port) if port is not None else None
        ports[pkey] = port
        by_port.setdefault(pkey, {})[_address_key(address)] = (address, ready)
    groups: dict[frozenset[tuple[_AddressKey, bool]], list[_PortKey]] = {}
    members: dict[frozenset[tuple[_AddressKey, bool]], dict[_AddressKey, tuple[
        v1.EndpointAddress, bool]]] = {}
    for pkey, addresses in by_port.items():
        group = frozenset((k, ready) for k, (_, ready) in addresses.items())
        groups.setdefault(group, []).append(pkey)
        members[group] = addresses
    subsets = []
    for group, pkeys in groups.items():
        subset = v1.EndpointSubset()
        for key in sorted(members[group]):
            address, ready = members[group][key]
            (subset.addresses if ready else subset.not_ready_addresses).append(address)
        for pkey in sorted(k for k in pkeys if k is not None):
            port = ports[pkey]
            assert port is not None
            subset.ports.append(port)
        subsets.append(subset)
    subsets.sort(key=lambda s: (
        [_port_key(p) for p in s.ports],
        [_address_key(a) for a in (*s.addresses, *s.not_ready_addresses)],
    ))
    return subsets


def desired_subsets(svc: v1.Service, pods: Iterable[v1.Pod]
                    ) -> tuple[list[v1.EndpointSubset], list[MissingPort]]:
    """The subsets of ``svc``'s Endpoints for the pods its selector picked, and the pods left
    out of a port for want of a named container port."""
    publish = svc.spec.publish_not_ready_addresses
    entries: list[tuple[v1.EndpointAddress, bool, v1.EndpointPort | None]] = []
    missing: list[MissingPort] = []
    for pod in pods:
        if not should_be_in_endpoints(pod, publish):
            continue
        address = endpoint_address(pod, svc)
        ready = publish or podutil.is_ready(pod)
        if not svc.spec.ports:
            # A headless Service may have no ports: list the addresses alone.
            if svc.spec.cluster_ip == "None":
                entries.append((address, ready, None))
            continue
        for sp in svc.spec.ports:
            number = find_port(pod, sp)
            if number is None:
                missing.append(MissingPort(pod.metadata.name, pod.metadata.uid,
                                           sp.target_port.str_val, sp.name))
                continue
            port = v1.EndpointPort(name=sp.name, port=number, protocol=sp.protocol or "TCP")
            if sp.HasField("app_protocol"):
                port.app_protocol = sp.app_protocol
            entries.append((address, ready, port))
    return repack(entries), missing


def selects(svc: v1.Service, labels: dict[str, str] | None) -> bool:
    """Whether the Service's (non-empty) selector picks a pod with these labels."""
    selector = svc.spec.selector
    if not selector or labels is None:
        return False
    return all(labels.get(k) == v for k, v in selector.items())


def desired_labels(svc: v1.Service) -> dict[str, str]:
    labels = dict(svc.metadata.labels)
    if svc.spec.cluster_ip == "None":
        labels[HEADLESS_LABEL] = ""
    else:
        labels.pop(HEADLESS_LABEL, None)
    return labels


def _same_subsets(a: Sequence[v1.EndpointSubset], b: Sequence[v1.EndpointSubset]) -> bool:
    return len(a) == len(b) and all(
        x.SerializeToString(deterministic=True) == y.SerializeToString(deterministic=True)
        for x, y in zip(a, b, strict=True)
    )


def _endpoint_facts(pod: v1.Pod) -> tuple[object, ...]:
    """What about a pod can change its Service's Endpoints."""
    ports = [c.SerializeToString(deterministic=True)
             for c in (*pod.spec.containers, *pod.spec.init_containers)]
    return (sorted(pod.metadata.labels.items()), pod_ip(pod), podutil.is_ready(pod),
            bool(pod.metadata.deletion_timestamp), podutil.is_terminal(pod),
            pod.spec.node_name, pod.spec.hostname, pod.spec.subdomain, ports)


# ---------------------------------------------------------------- the controller


class EndpointsController(Controller):
    name = "endpoints"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx.settings.workers, ctx.rate_limit)
        self.client: ApiClient = ctx.client
        self.recorder: EventRecorder = ctx.recorder
        self.service_informer = ctx.informers.informer(v1.Service)
        self.pod_informer = ctx.informers.informer(v1.Pod)
        self.endpoints_informer = ctx.informers.informer(v1.Endpoints)
        self._reported: dict[str, set[MissingPort]] = {}
        self.service_informer.add_handlers(
            self.enqueue, lambda old, new: self.enqueue(new), self._on_service_delete
        )
        self.pod_informer.add_handlers(self._on_pod_add, self._on_pod_update,
                                       self._on_pod_delete)
        self.endpoints_informer.add_handlers(
            self._on_endpoints, lambda old, new: self._on_endpoints(new), self._on_endpoints
        )

    @property
    def services(self) -> Store[v1.Service]:
        return self.service_informer.store

    @property
    def pods(self) -> Store[v1.Pod]:
        return self.pod_informer.store

    @property
    def endpoints(self) -> Store[v1.Endpoints]:
        return self.endpoints_informer.store

    # ------------------------------------------------------------ handlers

    def _on_service_delete(self, svc: v1.Service) -> None:
        self._reported.pop(m.key_of(svc), None)
        self.enqueue(svc)

    def _enqueue_for_pod(self, *pods: v1.Pod) -> None:
        keys: set[str] = set()
        for pod in pods:
            labels = dict(pod.metadata.labels)
            for svc in self.services.by_index("namespace", pod.metadata.namespace):
                if selects(svc, labels):
                    keys.add(m.key_of(svc))
        for key in keys:
            self.queue.add(key)

    def _on_pod_add(self, pod: v1.Pod) -> None:
        self._enqueue_for_pod(pod)

    def _on_pod_update(self, old: v1.Pod, new: v1.Pod) -> None:
        if old is not new and _endpoint_facts(old) == _endpoint_facts(new):
            return
        if old.metadata.labels != new.metadata.labels:
            self._enqueue_for_pod(old, new)  # services it left as well as joined
        else:
            self._enqueue_for_pod(new)

    def _on_pod_delete(self, pod: v1.Pod) -> None:
        self._enqueue_for_pod(pod)

    def _on_endpoints(self, ep: v1.Endpoints) -> None:
        # Someone else changed or removed an Endpoints we manage: put it right. Endpoints of
        # selectorless or unknown Services are never ours.
        svc = self.services.get(m.key_of(ep))
        if svc is not None and svc.spec.selector:
            self.enqueue(svc)

    # ------------------------------------------------------------ reconcile

    async def reconcile(self, key: str) -> None:
        namespace, name = m.split_key(key)
        svc = self.services.get(key)
        if svc is None:
            # The Service is gone: so are its Endpoints (Kubernetes deletes them directly).
            try:
                await self.client.delete(v1.Endpoints, name, namespace)
            except NotFound:
                pass
            return
        if not svc.spec.selector:
            return
        selected = [p for p in self.pods.by_index("namespace", namespace)
                    if selects(svc, dict(p.metadata.labels))]
        subsets, missing = desired_subsets(svc, selected)
        self._report_missing(key, svc, missing)
        labels = desired_labels(svc)
        current = self.endpoints.get(key)
        if current is None:
            ep = v1.Endpoints(metadata=v1.ObjectMeta(name=name, namespace=namespace,
                                                     labels=labels))
            ep.subsets.extend(subsets)
            await self.client.create(ep)
            log.debug("endpoints created", service=key, subsets=len(subsets))
            return
        if _same_subsets(current.subsets, subsets) and dict(current.metadata.labels) == labels:
            return
        ep = m.copy(current)
        del ep.subsets[:]
        ep.subsets.extend(subsets)
        ep.metadata.labels.clear()
        ep.metadata.labels.update(labels)
        # Guarded by the cached resourceVersion: a stale cache is a Conflict, then a retry.
        await self.client.update(ep)
        log.debug("endpoints updated", service=key, subsets=len(subsets))

    def _report_missing(self, key: str, svc: v1.Service, missing: list[MissingPort]) -> None:
        seen = self._reported.get(key, set())
        for item in missing:
            if item not in seen:
                self.recorder.record(svc, WARNING, MISSING_PORT_REASON, item.message())
        if missing:
            self._reported[key] = set(missing)
        else:
            self._reported.pop(key, None)


__all__ = ["EndpointsController", "desired_subsets", "find_port", "repack"]
