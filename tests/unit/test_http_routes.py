"""The HTTP API's request info (apiserver.http.routes): the resource, namespace, name,
subresource and authorization verb of kube-apiserver's paths; content negotiation and Status
objects (apiserver.http.handlers, apiserver.http.status)."""

from __future__ import annotations

import pytest

from apiserver.http.handlers import Output, negotiate
from apiserver.http.routes import (
    Endpoint,
    NonResourceRequest,
    ResourceRequest,
    authorization_verb,
    parse,
)
from apiserver.http.status import NotAcceptable, status, success
from kubelite.api.errors import (
    ApiError,
    Invalid,
    MethodNotAllowed,
    NotFound,
    TooManyRequests,
)
from kubelite.api.field_errors import FieldPath
from kubelite.api.registry import by_plural


def resource(method: str, path: str, **query: str) -> tuple[str, str, str, str, str]:
    request = parse(method, path, query)
    assert isinstance(request, ResourceRequest)
    return (request.verb, request.rtype.plural, request.namespace, request.name,
            request.subresource)


@pytest.mark.parametrize(("method", "path", "query", "expected"), [
    ("GET", "/api/v1/namespaces/ns/pods", {}, ("list", "pods", "ns", "", "")),
    ("GET", "/api/v1/pods", {}, ("list", "pods", "", "", "")),
    ("GET", "/api/v1/namespaces/ns/pods/web", {}, ("get", "pods", "ns", "web", "")),
    ("GET", "/api/v1/namespaces/ns/pods", {"watch": "true"}, ("watch", "pods", "ns", "", "")),
    ("GET", "/api/v1/namespaces/ns/pods/web", {"watch": "1"},
     ("watch", "pods", "ns", "web", "")),
    ("GET", "/api/v1/watch/namespaces/ns/pods", {}, ("watch", "pods", "ns", "", "")),
    ("GET", "/api/v1/namespaces/ns/pods", {"watch": "false"}, ("list", "pods", "ns", "", "")),
    ("POST", "/api/v1/namespaces/ns/pods", {}, ("create", "pods", "ns", "", "")),
    ("PUT", "/api/v1/namespaces/ns/pods/web", {}, ("update", "pods", "ns", "web", "")),
    ("PUT", "/api/v1/namespaces/ns/pods/web/status", {},
     ("update", "pods", "ns", "web", "status")),
    ("PATCH", "/apis/apps/v1/namespaces/ns/deployments/web/scale", {},
     ("patch", "deployments", "ns", "web", "scale")),
    ("DELETE", "/api/v1/namespaces/ns/pods/web", {}, ("delete", "pods", "ns", "web", "")),
    ("DELETE", "/api/v1/namespaces/ns/pods", {}, ("deletecollection", "pods", "ns", "", "")),
    ("POST", "/api/v1/namespaces/ns/pods/web/binding", {},
     ("create", "pods", "ns", "web", "binding")),
    ("GET", "/api/v1/namespaces/ns/pods/web/log", {}, ("get", "pods", "ns", "web", "log")),
    ("POST", "/api/v1/namespaces/ns/serviceaccounts/robot/token", {},
     ("create", "serviceaccounts", "ns", "robot", "token")),
    # A Namespace is the object of /namespaces/NAME, and has a status.
    ("GET", "/api/v1/namespaces", {}, ("list", "namespaces", "", "", "")),
    ("GET", "/api/v1/namespaces/ns", {}, ("get", "namespaces", "", "ns", "")),
    ("PUT", "/api/v1/namespaces/ns/status", {}, ("update", "namespaces", "", "ns", "status")),
    ("DELETE", "/api/v1/namespaces/ns", {}, ("delete", "namespaces", "", "ns", "")),
    ("GET", "/api/v1/nodes/node-1", {}, ("get", "nodes", "", "node-1", "")),
    ("GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/rolebindings", {},
     ("list", "rolebindings", "ns", "", "")),
    ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {},
     ("create", "selfsubjectaccessreviews", "", "", "")),
    ("PUT", "/apis/certificates.k8s.io/v1/certificatesigningrequests/c/approval", {},
     ("update", "certificatesigningrequests", "", "c", "approval")),
])
def test_resource_paths(method: str, path: str, query: dict[str, str],
                        expected: tuple[str, ...]) -> None:
    assert resource(method, path, **query) == expected


@pytest.mark.parametrize(("path", "endpoint", "group", "version"), [
    ("/healthz", Endpoint.HEALTH, "", ""), ("/readyz/etcd", Endpoint.HEALTH, "", ""),
    ("/livez", Endpoint.HEALTH, "", ""), ("/version", Endpoint.VERSION, "", ""),
    ("/api", Endpoint.CORE_VERSIONS, "", ""), ("/apis", Endpoint.GROUPS, "", ""),
    ("/apis/apps", Endpoint.GROUP, "apps", ""), ("/api/v1", Endpoint.RESOURCES, "", "v1"),
    ("/apis/apps/v1", Endpoint.RESOURCES, "apps", "v1"),
    ("/openapi/v2", Endpoint.OPENAPI, "", ""),
])
def test_non_resource_paths(path: str, endpoint: Endpoint, group: str, version: str) -> None:
    assert parse("GET", path, {}) == NonResourceRequest(endpoint, group, version)


@pytest.mark.parametrize(("method", "path", "error"), [
    ("GET", "/", NotFound),
    ("GET", "/metrics", NotFound),
    ("GET", "/api/v2/pods", NotFound),
    ("GET", "/apis/apps/v2/deployments", NotFound),
    ("GET", "/apis/apps/v1/pods", NotFound),  # pods are core
    ("GET", "/api/v1/namespaces/ns/widgets", NotFound),
    ("GET", "/api/v1/namespaces/ns/nodes", NotFound),  # cluster-scoped
    ("GET", "/api/v1/pods/web", NotFound),  # a pod is in a namespace
    ("GET", "/api/v1/namespaces/ns/configmaps/c/status", NotFound),  # no status
    ("GET", "/api/v1/namespaces/ns/configmaps/c/scale", NotFound),
    ("PUT", "/api/v1/namespaces/ns/finalize", NotFound),
    ("GET", "/api/v1/namespaces/ns/pods/web/log/more", NotFound),
    ("POST", "/api/v1/namespaces/ns/pods/web", MethodNotAllowed),
    ("POST", "/api/v1/pods", MethodNotAllowed),
    ("DELETE", "/api/v1/pods", MethodNotAllowed),
    ("PUT", "/api/v1/namespaces/ns/pods", MethodNotAllowed),
    ("OPTIONS", "/api/v1/namespaces/ns/pods", MethodNotAllowed),
    ("GET", "/api/v1/namespaces/ns/pods/web/binding", MethodNotAllowed),
    ("DELETE", "/apis/apps/v1/namespaces/ns/deployments/web/scale", MethodNotAllowed),
    ("GET", "/apis/authorization.k8s.io/v1/subjectaccessreviews", MethodNotAllowed),
    ("POST", "/api/v1/watch/namespaces/ns/pods", MethodNotAllowed),
])
def test_what_nothing_serves(method: str, path: str, error: type[ApiError]) -> None:
    with pytest.raises(error):
        parse(method, path, {})


@pytest.mark.parametrize(("method", "path", "verb"), [
    ("GET", "/api/v1/namespaces/ns/pods/web/exec", "create"),
    ("POST", "/api/v1/namespaces/ns/pods/web/exec", "create"),
    ("GET", "/api/v1/namespaces/ns/pods/web/portforward", "create"),
    ("GET", "/api/v1/namespaces/ns/pods/web/log", "get"),
    ("GET", "/api/v1/namespaces/ns/pods", "list"),
])
def test_authorization_verbs_are_the_grpc_ones(method: str, path: str, verb: str) -> None:
    request = parse(method, path, {})
    assert isinstance(request, ResourceRequest)
    assert authorization_verb(request) == verb


def test_long_running_and_mutating_classes() -> None:
    def of(method: str, path: str, **query: str) -> ResourceRequest:
        request = parse(method, path, query)
        assert isinstance(request, ResourceRequest)
        return request

    assert of("GET", "/api/v1/pods", watch="true").long_running
    assert of("GET", "/api/v1/namespaces/n/pods/p/log").long_running
    assert not of("GET", "/api/v1/pods").long_running
    assert of("PATCH", "/api/v1/namespaces/n/pods/p").mutating
    assert not of("GET", "/api/v1/namespaces/n/pods/p").mutating


@pytest.mark.parametrize(("accept", "query", "expected"), [
    ("", {}, Output()),
    ("application/json", {}, Output()),
    ("*/*", {}, Output()),
    ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;"
     "g=meta.k8s.io,application/json", {}, Output("Table", "v1")),
    ("application/json;as=Table;v=v1beta1;g=meta.k8s.io", {"includeObject": "Object"},
     Output("Table", "v1beta1", "Object")),
    ("application/vnd.kubernetes.protobuf,application/json", {}, Output()),
    ("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1", {},
     Output("PartialObjectMetadata", "v1")),
    ("application/json;as=Table;v=v2;g=meta.k8s.io, application/json", {}, Output()),
])
def test_negotiation(accept: str, query: dict[str, str], expected: Output) -> None:
    assert negotiate(accept, query) == expected


def test_negotiation_refuses_what_it_cannot_produce() -> None:
    with pytest.raises(NotAcceptable):
        negotiate("application/vnd.kubernetes.protobuf", {})
    with pytest.raises(NotAcceptable):
        negotiate("application/json;as=Table;v=v2;g=meta.k8s.io", {})


def test_status_objects_name_the_object_as_kubernetes_does() -> None:
    deployments = by_plural("deployments")
    assert status(NotFound('deployments.apps "web" not found'), deployments, "web") == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'deployments.apps "web" not found', "reason": "NotFound",
        "details": {"name": "web", "group": "apps", "kind": "deployments"}, "code": 404}
    invalid = Invalid.from_field_errors("Deployment.apps", "web", [
        FieldPath("spec.replicas").invalid(-1, "must be greater than or equal to 0")])
    body = status(invalid, deployments, "web")
    assert body["code"] == 422 and body["details"]["kind"] == "Deployment"
    assert body["details"]["causes"] == [{
        "reason": "FieldValueInvalid", "field": "spec.replicas",
        "message": "Invalid value: -1: must be greater than or equal to 0"}]
    busy = status(TooManyRequests("slow down", retry_after_seconds=2))
    assert (busy["code"], busy["details"]) == (429, {"retryAfterSeconds": 2})
    assert success(rtype=by_plural("pods"), name="p", uid="u") == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": "p", "kind": "pods", "uid": "u"}, "code": 200}
