"""Round-robin choice of a Service port's endpoint, with ClientIP session affinity.

As the userspace kube-proxy's roundrobin.go: each service port keeps its ready endpoints in a
(shuffled) order and an index into them; a new connection takes the endpoint at the index and
advances it. When the endpoint *set* changes the order is redrawn and the index reset; an
unchanged set (in any order) leaves both alone. With ``sessionAffinity: ClientIP`` a client IP
goes back to the endpoint it used last, until it has been idle for ``timeoutSeconds``; a dial
failure asks again with ``reset_affinity`` so the client is moved to the next endpoint.

Endpoints are matched to service ports by name: an ``EndpointPort`` named like the
``ServicePort`` (both empty for single-port services) gives the port of every ready address of
its subset.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from protos.v1 import objects_pb2 as v1

DEFAULT_AFFINITY_SECONDS = 10800
"""Kubernetes' default ClientIP affinity timeout (3 hours)."""

Endpoint = tuple[str, int]
"""(ip, port) of one backend."""


@dataclass(frozen=True, order=True)
class ServicePortName:
    """One port of one Service: the unit that gets listeners and a balancer."""

    namespace: str
    """The Service's namespace."""
    name: str
    """The Service's name."""
    port: str
    """The ServicePort's name ("" for a single unnamed port)."""

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}:{self.port}"


class NoEndpoints(LookupError):
    """The service port has no ready endpoint (or is unknown)."""


class _Affinity:
    __slots__ = ("endpoint", "last_used")

    def __init__(self, endpoint: Endpoint, last_used: float) -> None:
        self.endpoint = endpoint
        self.last_used = last_used


class Balancer:
    """The state of one service port: endpoints, the round-robin index, the affinity map.

    Listeners hold their Balancer directly and call ``next`` for every new connection.
    """

    __slots__ = ("_clock", "affinity_map", "client_ip_affinity", "endpoints", "index", "ttl")

    def __init__(
        self, clock: Callable[[], float], client_ip_affinity: bool = False,
        ttl: float = DEFAULT_AFFINITY_SECONDS,
    ) -> None:
        self._clock = clock
        self.endpoints: tuple[Endpoint, ...] = ()
        self.index = 0
        self.client_ip_affinity = client_ip_affinity
        self.ttl = float(ttl)
        self.affinity_map: dict[str, _Affinity] = {}

    def __bool__(self) -> bool:
        return bool(self.endpoints)

    def next(self, client_ip: str, reset_affinity: bool = False) -> Endpoint:
        """The endpoint for a new connection from ``client_ip``; raises NoEndpoints."""
        endpoints = self.endpoints
        if not endpoints:
            raise NoEndpoints()
        if not self.client_ip_affinity:
            i = self.index
            if i >= len(endpoints):
                i = 0
            self.index = i + 1 if i + 1 < len(endpoints) else 0
            return endpoints[i]
        now = self._clock()
        sticky = self.affinity_map.get(client_ip)
        if sticky is not None and not reset_affinity and now - sticky.last_used < self.ttl:
            sticky.last_used = now
            return sticky.endpoint
        i = self.index % len(endpoints)
        self.index = (i + 1) % len(endpoints)
        endpoint = endpoints[i]
        if sticky is None:
            self.affinity_map[client_ip] = _Affinity(endpoint, now)
        else:
            sticky.endpoint = endpoint
            sticky.last_used = now
        return endpoint

    def cleanup_stale_affinity(self) -> int:
        """Forgets clients idle for ``ttl`` or longer; returns how many were dropped."""
        now = self._clock()
        stale = [ip for ip, a in self.affinity_map.items() if now - a.last_used >= self.ttl]
        for ip in stale:
            del self.affinity_map[ip]
        return len(stale)


class LoadBalancerRR:
    """Balancers by service port, fed with Service settings and endpoint lists."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        shuffle: Callable[[list[Endpoint]], None] | None = random.shuffle,
    ) -> None:
        """``shuffle`` orders a new endpoint set (None keeps the given order): upstream
        shuffles so that many proxies do not all start on the same endpoint."""
        self._clock = clock
        self._shuffle = shuffle
        self.services: dict[ServicePortName, Balancer] = {}

    def balancer(self, svc_port: ServicePortName) -> Balancer:
        """The service port's balancer, made (without endpoints) if new."""
        state = self.services.get(svc_port)
        if state is None:
            state = self.services[svc_port] = Balancer(self._clock)
        return state

    def new_service(
        self, svc_port: ServicePortName, client_ip_affinity: bool,
        ttl_seconds: float = DEFAULT_AFFINITY_SECONDS,
    ) -> Balancer:
        """Sets (or updates) the service port's affinity; keeps its endpoints."""
        state = self.balancer(svc_port)
        if not client_ip_affinity:
            state.affinity_map.clear()
        state.client_ip_affinity = client_ip_affinity
        state.ttl = float(ttl_seconds or DEFAULT_AFFINITY_SECONDS)
        return state

    def delete_service(self, svc_port: ServicePortName) -> None:
        self.services.pop(svc_port, None)

    def set_endpoints(self, svc_port: ServicePortName, endpoints: Iterable[Endpoint]) -> bool:
        """Replaces the endpoints when the set differs; returns whether it did.

        A change redraws the order and resets the index; clients stuck to an endpoint that
        is gone lose their affinity (they are balanced afresh on their next connection).
        """
        new = list(dict.fromkeys(endpoints))
        state = self.balancer(svc_port)
        if len(new) == len(state.endpoints) and set(new) == set(state.endpoints):
            return False
        if new:
            kept = set(new)
            for ip in [ip for ip, a in state.affinity_map.items() if a.endpoint not in kept]:
                del state.affinity_map[ip]
        else:
            state.affinity_map.clear()
        if self._shuffle is not None:
            self._shuffle(new)
        state.endpoints = tuple(new)
        state.index = 0
        return True

    def has_endpoints(self, svc_port: ServicePortName) -> bool:
        state = self.services.get(svc_port)
        return state is not None and bool(state.endpoints)

    def next_endpoint(
        self, svc_port: ServicePortName, client_ip: str, reset_affinity: bool = False
    ) -> Endpoint:
        """The endpoint for a new connection; raises NoEndpoints."""
        state = self.services.get(svc_port)
        if state is None:
            raise NoEndpoints(str(svc_port))
        return state.next(client_ip, reset_affinity)

    def cleanup_stale_sticky_sessions(self) -> int:
        return sum(state.cleanup_stale_affinity() for state in self.services.values())


def endpoints_by_port_name(endpoints: v1.Endpoints) -> dict[str, list[Endpoint]]:
    """Ready (ip, port) pairs of an Endpoints object by EndpointPort name, in object order.

    As upstream, the name alone matches (service port names are unique across protocols).
    """
    result: dict[str, list[Endpoint]] = {}
    for subset in endpoints.subsets:
        for port in subset.ports:
            pairs = result.setdefault(port.name, [])
            pairs.extend((address.ip, port.port) for address in subset.addresses)
    return result


def endpoints_for_port(endpoints: v1.Endpoints | None, port_name: str) -> Sequence[Endpoint]:
    """The ready endpoints of the service port named ``port_name``."""
    if endpoints is None:
        return ()
    return endpoints_by_port_name(endpoints).get(port_name, ())
