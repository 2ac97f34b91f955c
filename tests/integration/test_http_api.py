"""The Kubernetes-compatible HTTP API of a secure API server (real etcd, TLS with `kubelite
init`'s certificates), through aiohttp and the official `kubernetes` Python client: CRUD,
lists in pages, watches (bookmarks, timeouts, 410 Expired), the three patch types, dry run,
Status errors with their codes, authentication and RBAC as on gRPC, scale, binding, and the
same objects seen by gRPC and HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes
import pytest
import yaml

from apiserver.authn import AuthenticationSettings
from apiserver.inflight import InflightSettings
from apiserver.server import ApiServer, ApiServerSettings, TlsSettings
from apiserver.token_request import TokenRequestSettings
from kubelite.api.errors import Forbidden, NotFound
from kubelite.client.client import ApiClient
from kubelite.client.config import load_kubeconfig
from kubelite.pki import ClusterPki, init_cluster, issue
from kubelite.testing.apiserver import server_settings
from kubelite.testing.etcd import EtcdProcess
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1

RBAC = "rbac.authorization.k8s.io"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
MERGE = {"Content-Type": "application/merge-patch+json"}
STRATEGIC = {"Content-Type": "application/strategic-merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
MAX_REQUEST_BYTES = 256 * 1024
# The official client's functions are untyped: used through Any.
new_client_from_config: Any = kubernetes.config.new_client_from_config
Watch: Any = kubernetes.watch.Watch


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ClusterPki:
    return init_cluster(tmp_path_factory.mktemp("cluster")).pki


def secure_settings(etcd: EtcdProcess, pki: ClusterPki) -> ApiServerSettings:
    settings = server_settings(etcd.endpoint)
    return dataclasses.replace(
        settings, insecure=False, http_listen="127.0.0.1:0",
        api=dataclasses.replace(settings.api, max_request_bytes=MAX_REQUEST_BYTES),
        tls=TlsSettings(str(pki.apiserver_cert), str(pki.apiserver_key), str(pki.ca_cert)),
        authentication=AuthenticationSettings(service_account_key_files=(str(pki.sa_pub),)),
        token_requests=TokenRequestSettings(str(pki.sa_key)),
    )


@pytest.fixture
async def server(etcd: EtcdProcess, pki: ClusterPki) -> AsyncIterator[ApiServer]:
    api_server = ApiServer(secure_settings(etcd, pki))
    await api_server.start()
    yield api_server
    await api_server.stop()


def certificate_files(tmp_path: Path, pki: ClusterPki, name: str,
                      groups: tuple[str, ...] = ()) -> tuple[str, str]:
    """A client certificate of the cluster CA for ``name``, as files: (cert, key)."""
    cert, key = issue(pki.ca_cert.read_bytes(), pki.ca_key.read_bytes(), name, groups,
                      client=True)
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert)
    key_path.write_bytes(key)
    return str(cert_path), str(key_path)


def session(server: ApiServer, pki: ClusterPki, identity: tuple[str, str] | None = None,
            headers: dict[str, str] | None = None) -> aiohttp.ClientSession:
    """An HTTPS client of the server's HTTP API, trusting the cluster CA, presenting
    ``identity``'s certificate (none: only what ``headers`` carry)."""
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    if identity is not None:
        context.load_cert_chain(*identity)
    return aiohttp.ClientSession(f"https://127.0.0.1:{server.http_port}",
                                 connector=aiohttp.TCPConnector(ssl=context),
                                 headers=headers)


@pytest.fixture
async def admin(server: ApiServer, pki: ClusterPki, tmp_path: Path
                ) -> AsyncIterator[aiohttp.ClientSession]:
    identity = certificate_files(tmp_path, pki, "kubernetes-admin", ("system:masters",))
    async with session(server, pki, identity) as http:
        yield http


@pytest.fixture
async def grpc_admin(server: ApiServer, pki: ClusterPki) -> AsyncIterator[ApiClient]:
    config = dataclasses.replace(load_kubeconfig(pki.admin_conf), server=server.address)
    async with ApiClient(config, timeout=10, wait_for_ready=False) as client:
        yield client


@pytest.fixture
def kube(server: ApiServer, pki: ClusterPki, tmp_path: Path
         ) -> Any:
    """The official client, configured from a kubeconfig as kubectl's (admin.conf, its
    server the HTTP API)."""
    config = yaml.safe_load(pki.admin_conf.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{server.http_port}"
    path = tmp_path / "kubectl.conf"
    path.write_text(yaml.safe_dump(config))
    client = new_client_from_config(config_file=str(path))
    yield client
    client.close()


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, **({"labels": labels} if labels else {})},
            "data": data}


def deployment(name: str = "web", replicas: int = 2) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                     {"name": "web", "image": "nginx:1"},
                     {"name": "sidecar", "image": "busybox:1"}]}}},
    }


async def send(http: aiohttp.ClientSession, method: str, path: str, body: Any = None, *,
               headers: dict[str, str] | None = None, raw: bytes | None = None,
               ) -> tuple[int, Any]:
    """(status, decoded JSON body) of one request."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    async with http.request(method, path, data=data,
                            headers={"Content-Type": "application/json", **(headers or {})}
                            ) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


async def create_pod(http: aiohttp.ClientSession, name: str) -> dict[str, Any]:
    """A pod in default (with the ServiceAccount admission asks for, which the controller
    manager would make)."""
    await send(http, "POST", "/api/v1/namespaces/default/serviceaccounts",
               {"metadata": {"name": "default"}})
    code, pod = await send(http, "POST", "/api/v1/namespaces/default/pods", {
        "metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "x"}]}})
    assert code == 201, pod
    assert isinstance(pod, dict)
    return pod


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A call of the (blocking) official client, off the loop that serves it."""
    return await asyncio.to_thread(fn, *args, **kwargs)


# ------------------------------------------------------------------------ the basics


async def test_health_answers_anyone_and_discovery_needs_credentials(
        server: ApiServer, pki: ClusterPki, admin: aiohttp.ClientSession) -> None:
    async with session(server, pki) as anonymous:
        for path in ("/healthz", "/livez", "/readyz"):
            async with anonymous.get(path) as response:
                assert (response.status, await response.text()) == (200, "ok")
        code, body = await send(anonymous, "GET", "/api")
        assert code == 401
        assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure", "message": "Unauthorized",
                        "reason": "Unauthorized", "code": 401}
    for path in ("/version", "/api", "/apis", "/openapi/v2"):
        code, body = await send(admin, "GET", path)
        assert code == 200 and isinstance(body, dict), path
    code, body = await send(admin, "GET", "/apis/nothing.example.com/v1/things")
    assert (code, body["reason"]) == (404, "NotFound")


async def test_official_client_crud_and_grpc_sees_the_same_objects(
        kube: Any, grpc_admin: ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(kube)
    apps = kubernetes.client.AppsV1Api(kube)
    created = await call(core.create_namespaced_config_map, "default",
                         kubernetes.client.V1ConfigMap(
                             metadata=kubernetes.client.V1ObjectMeta(
                                 name="settings", labels={"app": "web"}),
                             data={"a": "1"}))
    assert created.metadata.uid and created.metadata.resource_version
    seen = await grpc_admin.get(v1.ConfigMap, "settings", "default")
    assert (seen.metadata.uid, seen.metadata.resource_version, dict(seen.data)) == (
        created.metadata.uid, created.metadata.resource_version, {"a": "1"})

    patched = await call(core.patch_namespaced_config_map, "settings", "default",
                         {"data": {"b": "2"}})
    assert patched.data == {"a": "1", "b": "2"}
    patched.data["a"] = "changed"
    replaced = await call(core.replace_namespaced_config_map, "settings", "default", patched)
    assert replaced.data == {"a": "changed", "b": "2"}
    listed = await call(core.list_namespaced_config_map, "default", label_selector="app=web")
    assert [c.metadata.name for c in listed.items] == ["settings"]
    assert listed.metadata.resource_version

    # Written through gRPC, read through HTTP: one object.
    by_grpc = await grpc_admin.create(v1.ConfigMap(
        metadata=v1.ObjectMeta(name="from-grpc", namespace="default"), data={"x": "y"}))
    read = await call(core.read_namespaced_config_map, "from-grpc", "default")
    assert (read.metadata.uid, read.metadata.resource_version, read.data) == (
        by_grpc.metadata.uid, by_grpc.metadata.resource_version, {"x": "y"})

    body = kubernetes.client.V1Deployment(
        metadata=kubernetes.client.V1ObjectMeta(name="web"),
        spec=kubernetes.client.V1DeploymentSpec(
            replicas=2,
            selector=kubernetes.client.V1LabelSelector(match_labels={"app": "web"}),
            template=kubernetes.client.V1PodTemplateSpec(
                metadata=kubernetes.client.V1ObjectMeta(labels={"app": "web"}),
                spec=kubernetes.client.V1PodSpec(containers=[
                    kubernetes.client.V1Container(name="web", image="nginx:1")]))))
    made = await call(apps.create_namespaced_deployment, "default", body)
    assert made.spec.replicas == 2 and made.metadata.generation == 1
    await call(apps.patch_namespaced_deployment, "web", "default",
               {"spec": {"template": {"spec": {"containers": [
                   {"name": "web", "image": "nginx:2"}]}}}})
    stored = await grpc_admin.get(v1.Deployment, "web", "default")
    assert [c.image for c in stored.spec.template.spec.containers] == ["nginx:2"]
    assert stored.metadata.generation == 2

    status = await call(core.delete_namespaced_config_map, "settings", "default")
    assert status["status"] == "Success"  # a Status, as this client reads it (a dict)
    with pytest.raises(NotFound):
        await grpc_admin.get(v1.ConfigMap, "settings", "default")
    with pytest.raises(kubernetes.client.ApiException) as caught:
        await call(core.read_namespaced_config_map, "settings", "default")
    assert caught.value.status == 404


async def test_lists_come_in_pages_with_selectors(admin: aiohttp.ClientSession) -> None:
    for i in range(5):
        code, _ = await send(admin, "POST", CONFIGMAPS,
                             configmap(f"cm-{i}", {"tier": "odd" if i % 2 else "even"}))
        assert code == 201
    names: list[str] = []
    versions = set()
    token = ""
    for _ in range(10):
        code, page = await send(admin, "GET", f"{CONFIGMAPS}?limit=2&continue={token}")
        assert code == 200 and page["kind"] == "ConfigMapList"
        assert page["apiVersion"] == "v1"
        assert all(item["kind"] == "ConfigMap" for item in page["items"])
        assert len(page["items"]) <= 2
        names += [item["metadata"]["name"] for item in page["items"]]
        versions.add(page["metadata"]["resourceVersion"])
        token = page["metadata"].get("continue", "")
        if not token:
            break
    assert [n for n in names if n.startswith("cm-")] == [f"cm-{i}" for i in range(5)]
    assert len(versions) == 1, "every page is read at the first page's version"
    code, odd = await send(admin, "GET", f"{CONFIGMAPS}?labelSelector=tier%3Dodd")
    assert [i["metadata"]["name"] for i in odd["items"]] == ["cm-1", "cm-3"]
    code, one = await send(admin, "GET", f"{CONFIGMAPS}?fieldSelector=metadata.name%3Dcm-4")
    assert [i["metadata"]["name"] for i in one["items"]] == ["cm-4"]
    code, body = await send(admin, "GET", f"{CONFIGMAPS}?labelSelector=%3D%3Dx")
    assert (code, body["reason"]) == (400, "BadRequest")
    code, body = await send(admin, "GET", f"{CONFIGMAPS}?continue=garbage")
    assert code == 400 and "continue" in body["message"]
    # Across namespaces: the cluster-wide path.
    code, every = await send(admin, "GET", "/api/v1/configmaps?labelSelector=tier")
    assert code == 200 and len(every["items"]) == 5


async def test_deletecollection_deletes_what_the_selector_matches(
        admin: aiohttp.ClientSession) -> None:
    for name, labels in (("a", {"app": "x"}), ("b", {"app": "x"}), ("c", None)):
        await send(admin, "POST", CONFIGMAPS, configmap(name, labels))
    code, deleted = await send(admin, "DELETE", f"{CONFIGMAPS}?labelSelector=app%3Dx")
    assert code == 200 and deleted["kind"] == "ConfigMapList"
    assert sorted(i["metadata"]["name"] for i in deleted["items"]) == ["a", "b"]
    _, left = await send(admin, "GET", f"{CONFIGMAPS}?labelSelector=app")
    assert left["items"] == []
    code, _ = await send(admin, "GET", f"{CONFIGMAPS}/c")
    assert code == 200


# ------------------------------------------------------------------------ watches


async def read_events(response: aiohttp.ClientResponse, until: Callable[[list[Any]], bool],
                      timeout: float = 10) -> list[Any]:
    """Watch events of a streaming response until ``until`` holds of those read so far."""
    events: list[Any] = []

    async def read() -> None:
        while not until(events):
            line = await response.content.readline()
            if not line:
                return
            events.append(json.loads(line))

    await asyncio.wait_for(read(), timeout)
    return events


async def test_watch_streams_changes_bookmarks_and_ends_at_its_timeout(
        admin: aiohttp.ClientSession) -> None:
    _, listed = await send(admin, "GET", CONFIGMAPS)
    version = listed["metadata"]["resourceVersion"]
    async with admin.get(CONFIGMAPS, params={
            "watch": "true", "resourceVersion": version, "allowWatchBookmarks": "true"}
                         ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/json")
        await send(admin, "POST", CONFIGMAPS, configmap("w", x="1"))
        await send(admin, "PATCH", f"{CONFIGMAPS}/w", {"data": {"x": "2"}}, headers=MERGE)
        await send(admin, "DELETE", f"{CONFIGMAPS}/w")
        # Another resource's write moves etcd on: the quiet watch hears a bookmark.
        await send(admin, "POST", "/api/v1/namespaces/default/secrets",
                   {"metadata": {"name": "s"}})
        events = await read_events(response, lambda e: any(
            x["type"] == "BOOKMARK" for x in e) and any(x["type"] == "DELETED" for x in e))
    changes = [(e["type"], e["object"]["metadata"]["name"], e["object"].get("data"))
               for e in events if e["type"] != "BOOKMARK"]
    assert changes == [("ADDED", "w", {"x": "1"}), ("MODIFIED", "w", {"x": "2"}),
                       ("DELETED", "w", {"x": "2"})]
    assert all(e["object"]["kind"] == "ConfigMap" for e in events)
    bookmark = next(e for e in events if e["type"] == "BOOKMARK")["object"]
    assert set(bookmark) == {"kind", "apiVersion", "metadata"}
    assert int(bookmark["metadata"]["resourceVersion"]) > int(version)

    # From "now" (no version): the current objects first; then it ends at its timeout.
    async with admin.get(CONFIGMAPS, params={"watch": "1", "timeoutSeconds": "1"}) as response:
        events = await read_events(response, lambda e: False, timeout=10)
    assert events == []  # nothing left in default, and a clean end of stream
    await send(admin, "POST", CONFIGMAPS, configmap("now"))
    async with admin.get(f"{CONFIGMAPS}/now", params={"watch": "1", "timeoutSeconds": "1"}
                         ) as response:
        events = await read_events(response, lambda e: False, timeout=10)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "now")]


async def test_official_client_watch_sees_every_change(kube: Any) -> None:
    core = kubernetes.client.CoreV1Api(kube)
    listed = await call(core.list_namespaced_config_map, "default")
    watch = Watch()
    seen: list[tuple[str, str]] = []

    def stream() -> None:
        for event in watch.stream(core.list_namespaced_config_map, "default",
                                  resource_version=listed.metadata.resource_version,
                                  timeout_seconds=20):
            seen.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                watch.stop()

    watching = asyncio.create_task(asyncio.to_thread(stream))
    await call(core.create_namespaced_config_map, "default",
               {"metadata": {"name": "seen"}, "data": {"a": "1"}})
    await call(core.patch_namespaced_config_map, "seen", "default", {"data": {"a": "2"}})
    await call(core.delete_namespaced_config_map, "seen", "default")
    await asyncio.wait_for(watching, 30)
    assert seen == [("ADDED", "seen"), ("MODIFIED", "seen"), ("DELETED", "seen")]


async def test_watch_from_a_compacted_version_is_an_expired_error_event(
        server: ApiServer, admin: aiohttp.ClientSession, kube: Any) -> None:
    _, old = await send(admin, "POST", CONFIGMAPS, configmap("old"))
    for i in range(3):
        await send(admin, "POST", CONFIGMAPS, configmap(f"after-{i}"))
    await server.etcd.compact(await server.etcd.current_revision())
    server.api.caches["configmaps"].start_revision = 10**12  # from etcd, not the cache
    since = str(int(old["metadata"]["resourceVersion"]) - 1)
    async with admin.get(CONFIGMAPS, params={"watch": "true", "resourceVersion": since}
                         ) as response:
        assert response.status == 200
        events = await read_events(response, lambda e: bool(e))
    assert events[0]["type"] == "ERROR"
    error = events[0]["object"]
    assert (error["kind"], error["code"], error["reason"]) == ("Status", 410, "Expired")
    assert "too old resource version" in error["message"]

    core = kubernetes.client.CoreV1Api(kube)

    def watch() -> None:
        for _ in Watch().stream(core.list_namespaced_config_map, "default",
                                                 resource_version=since, timeout_seconds=5):
            pass

    with pytest.raises(kubernetes.client.ApiException) as caught:
        await call(watch)
    assert caught.value.status == 410


async def test_stopping_the_server_ends_its_watches(
        etcd: EtcdProcess, pki: ClusterPki, tmp_path: Path) -> None:
    server = ApiServer(secure_settings(etcd, pki))
    await server.start()
    stopped = False
    try:
        identity = certificate_files(tmp_path, pki, "kubernetes-admin", ("system:masters",))
        async with session(server, pki, identity) as http, http.get(
                CONFIGMAPS, params={"watch": "true"}) as response:
            assert response.status == 200
            await eventually(lambda: server.http is not None and server.http.watches.active,
                             message="the watch is served")
            await asyncio.wait_for(server.stop(), 10)
            stopped = True
            assert await asyncio.wait_for(response.content.read(), 5) == b""
    finally:
        if not stopped:
            await server.stop()


# ------------------------------------------------------------------------ writes


async def test_patch_types_merge_as_kubernetes_does(admin: aiohttp.ClientSession) -> None:
    code, _ = await send(admin, "POST", DEPLOYMENTS, deployment())
    assert code == 201
    path = f"{DEPLOYMENTS}/web"
    # Strategic merge: containers merge by name, the sidecar stays.
    code, body = await send(admin, "PATCH", path, {"spec": {"template": {"spec": {
        "containers": [{"name": "web", "image": "nginx:2"}]}}}}, headers=STRATEGIC)
    assert code == 200
    containers = body["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [
        ("web", "nginx:2"), ("sidecar", "busybox:1")]
    # JSON merge patch: a list is replaced whole.
    code, body = await send(admin, "PATCH", path, {"spec": {"template": {"spec": {
        "containers": [{"name": "only", "image": "nginx:3"}]}}}}, headers=MERGE)
    assert [c["name"] for c in body["spec"]["template"]["spec"]["containers"]] == ["only"]
    # JSON patch: operations in order; a failed test is Invalid and changes nothing.
    code, body = await send(admin, "PATCH", path, [
        {"op": "replace", "path": "/spec/replicas", "value": 5}], headers=JSON_PATCH)
    assert (code, body["spec"]["replicas"]) == (200, 5)
    code, body = await send(admin, "PATCH", path, [
        {"op": "test", "path": "/spec/replicas", "value": 9},
        {"op": "replace", "path": "/spec/replicas", "value": 1}], headers=JSON_PATCH)
    assert (code, body["reason"]) == (422, "Invalid")
    code, body = await send(admin, "PATCH", path, {"spec": {"replicas": 1}},
                            headers={"Content-Type": "application/apply-patch+yaml"})
    assert (code, body["reason"]) == (415, "UnsupportedMediaType")
    code, body = await send(admin, "GET", path)
    assert body["spec"]["replicas"] == 5
    # Status: its own subresource; a patch there leaves the spec alone.
    code, body = await send(admin, "PATCH", f"{path}/status",
                            {"status": {"observedGeneration": 7}, "spec": {"replicas": 0}},
                            headers=MERGE)
    assert code == 200
    assert (body["status"]["observedGeneration"], body["spec"]["replicas"]) == (7, 5)


async def test_dry_run_validates_and_answers_but_stores_nothing(
        admin: aiohttp.ClientSession) -> None:
    code, body = await send(admin, "POST", f"{CONFIGMAPS}?dryRun=All", configmap("dry"))
    assert code == 201 and body["metadata"]["name"] == "dry" and body["metadata"]["uid"]
    assert (await send(admin, "GET", f"{CONFIGMAPS}/dry"))[0] == 404
    code, body = await send(admin, "POST", f"{CONFIGMAPS}?dryRun=All", configmap("Bad_Name"))
    assert (code, body["reason"]) == (422, "Invalid")

    _, real = await send(admin, "POST", CONFIGMAPS, configmap("real", a="1"))
    code, body = await send(admin, "PATCH", f"{CONFIGMAPS}/real?dryRun=All",
                            {"data": {"a": "2"}}, headers=MERGE)
    assert (code, body["data"]) == (200, {"a": "2"})
    real["data"] = {"a": "3"}
    code, body = await send(admin, "PUT", f"{CONFIGMAPS}/real?dryRun=All", real)
    assert (code, body["data"]) == (200, {"a": "3"})
    code, body = await send(admin, "DELETE", f"{CONFIGMAPS}/real",
                            {"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]})
    assert code == 200
    code, body = await send(admin, "GET", f"{CONFIGMAPS}/real")
    assert (code, body["data"], body["metadata"]["resourceVersion"]) == (
        200, {"a": "1"}, real["metadata"]["resourceVersion"])
    code, body = await send(admin, "POST", f"{CONFIGMAPS}?dryRun=Some", configmap("x"))
    assert (code, body["reason"]) == (400, "BadRequest")
    assert 'dryRun: Unsupported value: "Some"' in body["message"]


async def test_delete_options_preconditions_and_propagation(
        admin: aiohttp.ClientSession) -> None:
    _, cm = await send(admin, "POST", CONFIGMAPS, configmap("gone"))
    code, body = await send(admin, "DELETE", f"{CONFIGMAPS}/gone", {
        "kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "other"}})
    assert (code, body["reason"]) == (409, "Conflict")
    code, body = await send(admin, "DELETE", f"{CONFIGMAPS}/gone?propagationPolicy=Sideways")
    assert (code, body["reason"]) == (400, "BadRequest")
    code, body = await send(admin, "DELETE", f"{CONFIGMAPS}/gone", {
        "preconditions": {"uid": cm["metadata"]["uid"]}, "propagationPolicy": "Foreground"})
    # Foreground: kept with its finalizer until the garbage collector is done with it.
    assert code == 200 and body["metadata"]["deletionTimestamp"]
    assert body["metadata"]["finalizers"] == ["foregroundDeletion"]
    # A pod answers with its last state; a grace period in the query.
    await create_pod(admin, "p")
    code, body = await send(admin, "DELETE",
                            "/api/v1/namespaces/default/pods/p?gracePeriodSeconds=0")
    assert (code, body["kind"], body["metadata"]["name"]) == (200, "Pod", "p")
    assert (await send(admin, "GET", "/api/v1/namespaces/default/pods/p"))[0] == 404


async def test_failures_are_status_objects_with_kubernetes_codes(
        admin: aiohttp.ClientSession) -> None:
    code, body = await send(admin, "GET", f"{DEPLOYMENTS}/missing")
    assert code == 404
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": 'deployments.apps "missing" not found', "reason": "NotFound",
                    "details": {"name": "missing", "group": "apps", "kind": "deployments"},
                    "code": 404}
    _, made = await send(admin, "POST", CONFIGMAPS, configmap("one"))
    code, body = await send(admin, "POST", CONFIGMAPS, configmap("one"))
    assert (code, body["reason"], body["details"]["name"]) == (409, "AlreadyExists", "one")
    made["data"] = {"a": "b"}
    assert (await send(admin, "PUT", f"{CONFIGMAPS}/one", made))[0] == 200
    code, body = await send(admin, "PUT", f"{CONFIGMAPS}/one", made)  # stale version
    assert (code, body["reason"]) == (409, "Conflict")
    assert "the object has been modified" in body["message"]

    bad = deployment("bad", replicas=-1)
    code, body = await send(admin, "POST", DEPLOYMENTS, bad)
    assert (code, body["reason"]) == (422, "Invalid")
    assert body["details"]["kind"] == "Deployment" and body["details"]["name"] == "bad"
    assert body["details"]["group"] == "apps"
    assert {"reason": "FieldValueInvalid", "field": "spec.replicas"}.items() <= (
        body["details"]["causes"][0].items())
    assert 'Deployment.apps "bad" is invalid: spec.replicas' in body["message"]

    unknown = configmap("typo")
    unknown["dataa"] = {"a": "b"}
    code, body = await send(admin, "POST", CONFIGMAPS, unknown)
    assert (code, body["reason"]) == (400, "BadRequest")
    assert "dataa" in body["message"]
    code, body = await send(admin, "POST", CONFIGMAPS, raw=b"{not json")
    assert (code, body["reason"]) == (400, "BadRequest")
    code, body = await send(admin, "POST", CONFIGMAPS,
                            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}})
    assert code == 400

    big = configmap("big", blob="x" * (MAX_REQUEST_BYTES + 1))
    code, body = await send(admin, "POST", CONFIGMAPS, big)
    assert (code, body["reason"]) == (413, "RequestEntityTooLarge")
    assert (await send(admin, "GET", f"{CONFIGMAPS}/big"))[0] == 404

    code, body = await send(admin, "POST", f"{CONFIGMAPS}/one", configmap("one"))
    assert (code, body["reason"]) == (405, "MethodNotAllowed")
    code, body = await send(admin, "GET", "/apis/authorization.k8s.io/v1/subjectaccessreviews")
    assert code == 405
    code, body = await send(admin, "GET",
                            f"{CONFIGMAPS}?resourceVersionMatch=Exact&resourceVersion=1")
    assert (code, body["reason"]) == (422, "Invalid")
    code, body = await send(admin, "GET", f"{CONFIGMAPS}?watch=1&sendInitialEvents=true")
    assert (code, body["reason"]) == (422, "Invalid")
    code, body = await send(admin, "GET", f"{CONFIGMAPS}?watch=1&resourceVersion=abc")
    assert (code, body["reason"]) == (400, "BadRequest")
    code, body = await send(admin, "GET", "/api/v1/namespaces/default/widgets")
    assert (code, body["reason"]) == (404, "NotFound")
    code, body = await send(admin, "GET", "/api/v1/namespaces/default/nodes")
    assert code == 404
    code, body = await send(admin, "POST", "/api/v1/namespaces/nowhere/configmaps",
                            configmap("x"))
    assert (code, body["reason"]) == (404, "NotFound")
    assert body["message"] == 'namespaces "nowhere" not found'


async def test_too_many_watches_are_refused_with_retry_after(
        etcd: EtcdProcess, pki: ClusterPki, tmp_path: Path) -> None:
    settings = dataclasses.replace(secure_settings(etcd, pki), inflight=InflightSettings(
        max_long_running_requests=1, retry_after_seconds=3))
    server = ApiServer(settings)
    await server.start()
    try:
        identity = certificate_files(tmp_path, pki, "kubernetes-admin", ("system:masters",))
        async with session(server, pki, identity) as http, http.get(
                CONFIGMAPS, params={"watch": "true"}) as first:
            assert first.status == 200
            async with http.get(CONFIGMAPS, params={"watch": "true"}) as second:
                assert second.status == 429
                assert second.headers["Retry-After"] == "3"
                body = await second.json()
            assert body["reason"] == "TooManyRequests"
            assert body["details"]["retryAfterSeconds"] == 3
            # Reads have their own limit.
            assert (await send(http, "GET", CONFIGMAPS))[0] == 200
    finally:
        await server.stop()


# ------------------------------------------------------------------------ who may


async def test_authentication_and_rbac_answer_as_on_grpc(
        server: ApiServer, pki: ClusterPki, admin: aiohttp.ClientSession,
        grpc_admin: ApiClient, tmp_path: Path) -> None:
    for name in ("a", "b"):
        await send(admin, "POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    await send(admin, "POST", f"/apis/{RBAC}/v1/namespaces/a/rolebindings", {
        "metadata": {"name": "bob-views"},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "apiGroup": RBAC, "name": "bob"}]})
    bob = certificate_files(tmp_path, pki, "bob")
    async with session(server, pki, bob) as http:
        async def allowed() -> bool:
            return (await send(http, "GET", "/api/v1/namespaces/a/pods"))[0] == 200
        await eventually(allowed, message="bob's RoleBinding in effect")
        code, body = await send(http, "GET", "/api/v1/namespaces/b/pods")
        assert (code, body["reason"]) == (403, "Forbidden")
        assert body["message"] == ('pods is forbidden: User "bob" cannot list resource "pods"'
                                   ' in API group "" in the namespace "b"')
        code, body = await send(http, "POST", "/api/v1/namespaces/a/configmaps",
                                configmap("x"))
        assert code == 403 and 'cannot create resource "configmaps"' in body["message"]
        code, body = await send(http, "GET", "/api/v1/namespaces/a/pods",
                                headers={"Impersonate-User": "kubernetes-admin"})
        assert code == 403 and 'cannot impersonate resource "users"' in body["message"]
    # gRPC says the same of bob.
    async with ApiClient(dataclasses.replace(
            load_kubeconfig(pki.admin_conf), server=server.address,
            cert_pem=Path(bob[0]).read_bytes(), key_pem=Path(bob[1]).read_bytes()),
            timeout=10, wait_for_ready=False) as grpc_bob:
        with pytest.raises(Forbidden) as caught:
            await grpc_bob.list(v1.Pod, "b")
        assert str(caught.value) == body_message_of_list("bob", "b")
        await grpc_bob.list(v1.Pod, "a")

    # The admin acting as bob is bob.
    code, body = await send(admin, "GET", "/api/v1/namespaces/b/pods",
                            headers={"Impersonate-User": "bob"})
    assert (code, body["message"]) == (403, body_message_of_list("bob", "b"))
    code, body = await send(admin, "GET", "/api/v1/namespaces/a/pods",
                            headers={"Impersonate-User": "bob"})
    assert code == 200

    # A ServiceAccount's token, and no client certificate at all.
    await send(admin, "POST", "/api/v1/namespaces/a/serviceaccounts",
               {"metadata": {"name": "robot"}})
    code, issued = await send(admin, "POST", "/api/v1/namespaces/a/serviceaccounts/robot/token",
                              {"apiVersion": "authentication.k8s.io/v1",
                               "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}})
    assert (code, issued["kind"], issued["apiVersion"]) == (
        201, "TokenRequest", "authentication.k8s.io/v1")
    token = issued["status"]["token"]
    async with session(server, pki, headers={"Authorization": f"Bearer {token}"}) as robot:
        async def as_robot() -> Any:
            code, body = await send(robot, "GET", "/api/v1/namespaces/a/pods")
            return body if code == 403 else None
        body = await eventually(as_robot, message="the token authenticates")
        assert body["message"] == body_message_of_list("system:serviceaccount:a:robot", "a")
    async with session(server, pki, headers={"Authorization": "Bearer nonsense"}) as nobody:
        code, body = await send(nobody, "GET", "/api/v1/namespaces/a/pods")
        assert (code, body["reason"]) == (401, "Unauthorized")

    # Access reviews: created, answered, never stored.
    code, review = await send(admin, "POST",
                              "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                              {"spec": {"resourceAttributes": {"verb": "delete",
                                                               "resource": "nodes"}}})
    assert (code, review["kind"], review["status"]["allowed"]) == (
        201, "SelfSubjectAccessReview", True)
    code, review = await send(admin, "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                              {"spec": {"user": "bob", "resourceAttributes": {
                                  "verb": "list", "resource": "pods", "namespace": "a"}}})
    assert (code, review["status"]["allowed"]) == (201, True)


def body_message_of_list(user: str, namespace: str) -> str:
    return (f'pods is forbidden: User "{user}" cannot list resource "pods" in API group ""'
            f' in the namespace "{namespace}"')


# ------------------------------------------------------------------------ subresources


async def test_scale_subresource_as_kubectl_scale_uses_it(
        admin: aiohttp.ClientSession, kube: Any, grpc_admin: ApiClient) -> None:
    await send(admin, "POST", DEPLOYMENTS, deployment(replicas=2))
    code, scale = await send(admin, "GET", f"{DEPLOYMENTS}/web/scale")
    assert code == 200
    assert (scale["kind"], scale["apiVersion"], scale["spec"], scale["status"]["selector"]) == (
        "Scale", "autoscaling/v1", {"replicas": 2}, "app=web")
    # kubectl scale: a merge patch of spec.replicas.
    code, scale = await send(admin, "PATCH", f"{DEPLOYMENTS}/web/scale",
                             {"spec": {"replicas": 4}}, headers=MERGE)
    assert (code, scale["spec"]["replicas"]) == (200, 4)
    assert (await grpc_admin.get(v1.Deployment, "web", "default")).spec.replicas == 4
    stale = dict(scale, spec={"replicas": 1},
                 metadata=dict(scale["metadata"], resourceVersion="1"))
    code, body = await send(admin, "PUT", f"{DEPLOYMENTS}/web/scale", stale)
    assert (code, body["reason"]) == (409, "Conflict")
    code, scale = await send(admin, "PUT", f"{DEPLOYMENTS}/web/scale",
                             dict(scale, spec={"replicas": 1}))
    assert (code, scale["spec"]["replicas"]) == (200, 1)
    code, body = await send(admin, "PUT", f"{DEPLOYMENTS}/web/scale",
                            dict(scale, spec={"replicas": -1}))
    assert (code, body["reason"]) == (422, "Invalid")
    apps = kubernetes.client.AppsV1Api(kube)
    result = await call(apps.patch_namespaced_deployment_scale, "web", "default",
                        {"spec": {"replicas": 3}})
    assert result.spec.replicas == 3
    assert (await grpc_admin.get(v1.Deployment, "web", "default")).spec.replicas == 3
    code, _ = await send(admin, "GET", "/api/v1/namespaces/default/configmaps/x/scale")
    assert code == 404


async def test_binding_assigns_a_pod_to_its_node(admin: aiohttp.ClientSession) -> None:
    pods = "/api/v1/namespaces/default/pods"
    await create_pod(admin, "p")
    code, body = await send(admin, "POST", f"{pods}/p/binding", {
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}})
    assert (code, body["status"]) == (201, "Success")
    code, bound = await send(admin, "GET", f"{pods}/p")
    assert bound["spec"]["nodeName"] == "node-1"
    code, body = await send(admin, "POST", f"{pods}/p/binding", {
        "metadata": {"name": "p"}, "target": {"name": "node-2"}})
    assert (code, body["reason"]) == (409, "Conflict")


async def test_tables_and_partial_metadata_by_accept_header(
        admin: aiohttp.ClientSession) -> None:
    await send(admin, "POST", CONFIGMAPS, configmap("t"))
    table = "application/json;as=Table;v=v1;g=meta.k8s.io, application/json"
    code, body = await send(admin, "GET", CONFIGMAPS, headers={"Accept": table})
    assert (code, body["kind"], body["apiVersion"]) == (200, "Table", "meta.k8s.io/v1")
    code, body = await send(admin, "GET", f"{CONFIGMAPS}/t", headers={"Accept": table})
    assert body["kind"] == "Table"
    partial = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
    code, body = await send(admin, "GET", CONFIGMAPS, headers={"Accept": partial})
    assert body["kind"] == "PartialObjectMetadataList"
    assert [i["metadata"]["name"] for i in body["items"]] == ["t"]
    assert "data" not in body["items"][0]
    code, body = await send(admin, "GET", CONFIGMAPS,
                            headers={"Accept": "application/vnd.kubernetes.protobuf"})
    assert (code, body["reason"]) == (406, "NotAcceptable")
