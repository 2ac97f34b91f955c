"""What an HTTP request asks for: kube-apiserver's request info, from its method and path.

Resource paths are ``/api/v1/...`` (the core group) and ``/apis/GROUP/VERSION/...``, then
``[namespaces/NS/]RESOURCE[/NAME[/SUBRESOURCE]]`` (``/namespaces/NS`` alone, or with its
``status`` or ``finalize``, is the Namespace itself), with the legacy ``watch/`` prefix. The
verb is Kubernetes' authorization verb: GET is get (with a name) or list, either a watch with
``?watch=true``; POST create, PUT update, PATCH patch, DELETE delete (deletecollection without
a name). Everything else is a non-resource path: health, /version, discovery, /openapi/v2.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from kubelite.api.errors import MethodNotAllowed, NotFound
from kubelite.api.registry import RESOURCES, ResourceType

NOT_FOUND = "the server could not find the requested resource"
NOT_ALLOWED = "the server does not allow this method on the requested resource"

HEALTH_PATHS = ("/healthz", "/livez", "/readyz")
"""Answered "ok" to anyone: they say only that the server serves (as public-info-viewer)."""

NAMESPACE_SUBRESOURCES = ("status", "finalize")

SCALABLE = ("deployments", "replicasets", "statefulsets")
"""Resources with the ``scale`` subresource (autoscaling/v1 Scale)."""

STREAM_SUBRESOURCES = ("log", "exec", "attach", "portforward")
"""pods' subresources served as streams from the pod's kubelet."""

_SUBRESOURCES: dict[str, tuple[str, ...]] = {
    "pods": ("binding", *STREAM_SUBRESOURCES),
    "serviceaccounts": ("token",),
    "certificatesigningrequests": ("approval",),
    **{plural: ("scale",) for plural in SCALABLE},
}

_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
          "DELETE": "delete"}


class Endpoint(enum.Enum):
    """The non-resource paths."""

    HEALTH = "health"
    VERSION = "version"
    CORE_VERSIONS = "api"
    GROUPS = "apis"
    GROUP = "group"
    RESOURCES = "resources"
    OPENAPI = "openapi"


@dataclass(frozen=True)
class NonResourceRequest:
    endpoint: Endpoint
    group: str = ""
    version: str = ""


@dataclass(frozen=True)
class ResourceRequest:
    verb: str
    """get list watch create update patch delete deletecollection."""
    rtype: ResourceType
    namespace: str
    """The path's namespace ("" for cluster-scoped kinds and lists across namespaces)."""
    name: str = ""
    subresource: str = ""

    @property
    def long_running(self) -> bool:
        """A watch or a stream (logs, exec...): held open, counted apart."""
        return self.verb == "watch" or self.subresource in STREAM_SUBRESOURCES

    @property
    def mutating(self) -> bool:
        return self.verb in ("create", "update", "patch", "delete", "deletecollection")


Request = NonResourceRequest | ResourceRequest

_BY_GROUP_VERSION: dict[tuple[str, str], dict[str, ResourceType]] = {}
for _r in RESOURCES:
    _BY_GROUP_VERSION.setdefault((_r.group, _r.api_version.rpartition("/")[2]), {})[
        _r.plural] = _r


def is_true(value: str | None) -> bool:
    """A boolean query parameter as Kubernetes reads one (``?watch=true``, ``=1``)."""
    return value is not None and value.lower() in ("true", "1")


def served(group: str, version: str) -> bool:
    return (group, version) in _BY_GROUP_VERSION


def parse(method: str, path: str, query: Mapping[str, str]) -> Request:
    """The request at ``path``; NotFound for a path nothing serves, MethodNotAllowed for a
    method its resource does not take."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise NotFound(NOT_FOUND)
    if "/" + parts[0] in HEALTH_PATHS:
        return NonResourceRequest(Endpoint.HEALTH)
    if parts == ["version"]:
        return NonResourceRequest(Endpoint.VERSION)
    if parts == ["openapi", "v2"]:
        return NonResourceRequest(Endpoint.OPENAPI)
    if parts[0] == "api":
        if len(parts) == 1:
            return NonResourceRequest(Endpoint.CORE_VERSIONS)
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis":
        if len(parts) == 1:
            return NonResourceRequest(Endpoint.GROUPS)
        if len(parts) == 2:
            return NonResourceRequest(Endpoint.GROUP, group=parts[1])
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise NotFound(NOT_FOUND)
    if not served(group, version):
        raise NotFound(NOT_FOUND)
    if not rest:
        return NonResourceRequest(Endpoint.RESOURCES, group=group, version=version)
    return _resource_request(method, group, version, rest, query)


def _resource_request(method: str, group: str, version: str, parts: list[str],
                      query: Mapping[str, str]) -> ResourceRequest:
    watch_path = parts[0] == "watch"
    if watch_path:
        parts = parts[1:]
    namespace = ""
    if len(parts) >= 2 and parts[0] == "namespaces":
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
        else:
            # The Namespace itself: its namespace is its name.
            parts = ["namespaces", *parts[1:]]
    if not parts or len(parts) > 3:
        raise NotFound(NOT_FOUND)
    rtype = _BY_GROUP_VERSION[(group, version)].get(parts[0])
    if rtype is None:
        raise NotFound(NOT_FOUND)
    name = parts[1] if len(parts) > 1 else ""
    subresource = parts[2] if len(parts) > 2 else ""
    if rtype.plural == "namespaces":
        namespace = ""
    elif namespace and not rtype.namespaced:
        raise NotFound(NOT_FOUND)
    if subresource and not (
            subresource in _SUBRESOURCES.get(rtype.plural, ())
            or (subresource == "status" and rtype.has_status)):
        raise NotFound(NOT_FOUND)
    verb = _VERBS.get(method)
    if verb is None:
        raise MethodNotAllowed(NOT_ALLOWED)
    if verb == "get" and (watch_path or is_true(query.get("watch"))):
        verb = "watch"
    elif verb == "get" and not name:
        verb = "list"
    elif verb == "delete" and not name:
        verb = "deletecollection"
    if watch_path and verb != "watch":
        raise MethodNotAllowed(NOT_ALLOWED)
    request = ResourceRequest(verb, rtype, namespace, name, subresource)
    _check_scope(request)
    return request


def _check_scope(request: ResourceRequest) -> None:
    """Refuses what kube-apiserver has no route for: a collection verb on one object, a
    namespaced object outside a namespace, a verb a subresource does not take."""
    rtype, verb, sub = request.rtype, request.verb, request.subresource
    if request.name and verb == "create" and not sub:
        raise MethodNotAllowed(NOT_ALLOWED)
    if not request.name and verb in ("update", "patch"):
        raise MethodNotAllowed(NOT_ALLOWED)
    if rtype.namespaced and not request.namespace and (
            request.name or verb in ("create", "deletecollection")):
        if request.name:
            raise NotFound(NOT_FOUND)
        raise MethodNotAllowed(NOT_ALLOWED)
    allowed = {
        "status": ("get", "update", "patch"),
        "scale": ("get", "update", "patch"),
        "approval": ("get", "update", "patch"),
        "binding": ("create",),
        "token": ("create",),
        "log": ("get",),
        "exec": ("get", "create"),
        "attach": ("get", "create"),
        "portforward": ("get", "create"),
    }.get(sub)
    if allowed is not None and verb not in allowed:
        raise MethodNotAllowed(NOT_ALLOWED)
    if not rtype.stored and (verb != "create" or request.name):
        raise MethodNotAllowed(NOT_ALLOWED)


def authorization_verb(request: ResourceRequest) -> str:
    """The verb checked against RBAC, as the gRPC servicer checks the same operation: exec,
    attach and port-forward are ``create`` whichever method opens them."""
    if request.subresource in ("exec", "attach", "portforward"):
        return "create"
    return request.verb
