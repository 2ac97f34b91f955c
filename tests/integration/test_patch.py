"""Patch through a real API server: strategic merge (kubectl's default), JSON merge, JSON patch.

The bad-input cases also go through the raw gRPC service, so what is checked is the server's
answer and not the client's.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import pytest

from apiserver.server import ApiServer
from kubelite.api import errors
from kubelite.api.convert import message_from_dict, message_to_dict
from kubelite.client.client import ApiClient
from protos.v1 import apiserver_pb2 as pb
from protos.v1 import apiserver_pb2_grpc as pb_grpc
from protos.v1 import objects_pb2 as v1

WEB: dict[str, Any] = {
    "name": "web",
    "image": "kubelite/agnhost:1.0",
    "args": ["netexec", "--http-port=8080"],
    "ports": [{"containerPort": 8080, "name": "http"}],
    "env": [{"name": "COLOR", "value": "blue"}],
    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
    "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}},
    "livenessProbe": {"tcpSocket": {"port": 8080}},
}


def deployment(*containers: dict[str, Any]) -> v1.Deployment:
    spec = {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": list(containers) or [WEB]}},
    }
    return v1.Deployment(metadata=v1.ObjectMeta(name="web"),
                         spec=cast(v1.DeploymentSpec, message_from_dict(v1.DeploymentSpec, spec)))


def container(d: v1.Deployment, index: int = 0) -> dict[str, Any]:
    return message_to_dict(d.spec.template.spec.containers[index])


@pytest.fixture
async def stub(api_server: ApiServer) -> AsyncIterator[pb_grpc.ApiServerStub]:
    async with grpc.aio.insecure_channel(api_server.address) as channel:
        yield pb_grpc.ApiServerStub(channel)  # type: ignore[no-untyped-call]


async def raw_patch(stub: pb_grpc.ApiServerStub, body: bytes, patch_type: str,
                    name: str = "web") -> grpc.aio.AioRpcError:
    """Sends a patch as it is and returns the server's error."""
    request = pb.PatchRequest(resource="deployments", namespace="default", name=name,
                              patch_type=patch_type, patch=body)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Patch(request, timeout=10)
    return info.value


async def test_strategic_patch_of_one_container_keeps_its_other_fields(
    client: ApiClient,
) -> None:
    sidecar = {"name": "sidecar", "image": "busybox", "command": ["sleep", "3600"]}
    await client.create(deployment(WEB, sidecar))
    before = await client.get(v1.Deployment, "web")

    patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "x"}]}}}}
    after = await client.patch(v1.Deployment, "web", patch, patch_type="strategic")

    assert [c.name for c in after.spec.template.spec.containers] == ["web", "sidecar"]
    assert container(after) == {**container(before), "image": "x"}
    for field in ("args", "ports", "env", "resources", "readinessProbe", "livenessProbe"):
        assert container(after)[field] == container(before)[field], field
    assert container(after, 1) == container(before, 1)
    assert after.metadata.generation == before.metadata.generation + 1


@pytest.mark.parametrize("patch_type", ["strategic", "application/strategic-merge-patch+json"])
async def test_strategic_patch_deletes_and_merges_by_key(client: ApiClient,
                                                         patch_type: str) -> None:
    await client.create(deployment(WEB, {"name": "sidecar", "image": "busybox",
                                         "command": ["sleep", "3600"]}))
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "$patch": "delete"},
        {"name": "web", "env": [{"name": "MODE", "value": "fast"}],
         "ports": [{"containerPort": 9090, "name": "metrics"}]},
    ]}}}}
    after = await client.patch(v1.Deployment, "web", patch, patch_type=patch_type)
    (web,) = after.spec.template.spec.containers
    assert [(e.name, e.value) for e in web.env] == [("MODE", "fast"), ("COLOR", "blue")]
    assert [(p.container_port, p.name) for p in web.ports] == [(9090, "metrics"), (8080, "http")]
    assert web.args == WEB["args"]


@pytest.mark.parametrize("patch_type", ["merge", "application/merge-patch+json"])
async def test_merge_patch_still_replaces_lists(client: ApiClient, patch_type: str) -> None:
    await client.create(deployment())
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "x"}]}}}}
    after = await client.patch(v1.Deployment, "web", patch, patch_type=patch_type)
    (web,) = after.spec.template.spec.containers
    assert web.image == "x"
    assert not web.args and not web.ports and not web.env


@pytest.mark.parametrize("patch_type", ["json", "application/json-patch+json"])
async def test_json_patch_operations(client: ApiClient, patch_type: str) -> None:
    await client.create(deployment())
    ops = [
        {"op": "test", "path": "/spec/replicas", "value": 2},
        {"op": "replace", "path": "/spec/replicas", "value": 4},
        {"op": "add", "path": "/metadata/labels", "value": {"tier": "front"}},
        {"op": "remove", "path": "/spec/template/spec/containers/0/args"},
        {"op": "add", "path": "/spec/template/spec/containers/0/env/-",
         "value": {"name": "MODE", "value": "fast"}},
    ]
    after = await client.patch(v1.Deployment, "web", ops, patch_type=patch_type)
    assert after.spec.replicas == 4
    assert dict(after.metadata.labels) == {"tier": "front"}
    (web,) = after.spec.template.spec.containers
    assert not web.args
    assert [e.name for e in web.env] == ["COLOR", "MODE"]


async def test_json_patch_whose_test_fails_changes_nothing(client: ApiClient) -> None:
    created = await client.create(deployment())
    ops = [{"op": "replace", "path": "/spec/replicas", "value": 9},
           {"op": "test", "path": "/spec/replicas", "value": 2}]
    with pytest.raises(errors.Invalid, match=r"operation 1 \(test /spec/replicas\)"):
        await client.patch(v1.Deployment, "web", ops, patch_type="json")
    with pytest.raises(errors.Invalid, match=r"operation 0 \(remove /spec/nothing\)"):
        await client.patch(v1.Deployment, "web", [{"op": "remove", "path": "/spec/nothing"}],
                           patch_type="json")
    assert await client.get(v1.Deployment, "web") == created


async def test_patch_that_makes_an_invalid_object_is_invalid(client: ApiClient) -> None:
    created = await client.create(deployment())
    bad = {"spec": {"template": {"spec": {"containers": [{"name": "web", "imagee": "x"}]}}}}
    with pytest.raises(errors.Invalid, match=r"spec.template.spec.containers\[0\].imagee"):
        await client.patch(v1.Deployment, "web", bad, patch_type="strategic")
    assert await client.get(v1.Deployment, "web") == created


def reason(error: grpc.aio.AioRpcError) -> str:
    # The stubs give RpcError's trailing metadata as _Metadatum objects; an AioRpcError's is
    # a grpc.aio.Metadata of (key, value) pairs.
    trailing = cast(grpc.aio.Metadata, error.trailing_metadata())
    for key, value in trailing or ():
        if key == errors.STATUS_METADATA_KEY:
            return str(json.loads(value)["reason"])
    return ""


@pytest.mark.parametrize("patch_type", ["strategic", "merge", "json"])
async def test_deeply_nested_patch_is_bad_request(client: ApiClient,
                                                  stub: pb_grpc.ApiServerStub,
                                                  patch_type: str) -> None:
    created = await client.create(deployment())
    deep = b'{"spec":' * 100_000 + b"{}" + b"}" * 100_000
    error = await raw_patch(stub, deep, patch_type)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert reason(error) == "BadRequest"
    assert "nests objects and lists more than" in str(error.details())
    # Parseable, but deeper than any object: refused before anything walks it.
    nested: Any = {}
    for _ in range(300):
        nested = {"spec": nested}
    error = await raw_patch(stub, json.dumps([nested] if patch_type == "json"
                                             else nested).encode(), patch_type)
    assert (error.code(), reason(error)) == (grpc.StatusCode.INVALID_ARGUMENT, "BadRequest")
    assert await client.get(v1.Deployment, "web") == created


@pytest.mark.parametrize(("patch_type", "body", "words"), [
    ("json", b'{"spec": {"replicas": 3}}', "a JSON patch must be a list of operations"),
    ("strategic", b'[{"op": "remove", "path": "/spec"}]',
     "a strategic merge patch must be a JSON object"),
    ("strategic", b'{"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}',
     'spec.template.spec.containers[0]: the element has no merge key "name"'),
    ("strategic", b'{"spec": {"strategy": {"$patch": "nuke"}}}',
     'spec.strategy: unsupported $patch directive "nuke"'),
    ("json", b'[{"op": "frobnicate", "path": "/spec"}]', "Unknown operation 'frobnicate'"),
    ("merge", b"{not json", "patch is not valid JSON"),
    ("apply", b"{}", 'patch type "apply" is not supported'),
])
async def test_malformed_patch_is_bad_request_and_changes_nothing(
    client: ApiClient, stub: pb_grpc.ApiServerStub, patch_type: str, body: bytes, words: str,
) -> None:
    created = await client.create(deployment())
    error = await raw_patch(stub, body, patch_type)
    assert (error.code(), reason(error)) == (grpc.StatusCode.INVALID_ARGUMENT, "BadRequest")
    assert words in str(error.details())
    assert await client.get(v1.Deployment, "web") == created


async def test_strategic_patch_of_status_and_of_a_pinned_resource_version(
    client: ApiClient,
) -> None:
    created = await client.create(deployment())
    status = {"status": {"conditions": [{"type": "Available", "status": "True"}]}}
    await client.patch(v1.Deployment, "web", status, subresource="status",
                       patch_type="strategic")
    status = {"status": {"conditions": [{"type": "Progressing", "status": "True"}]}}
    after = await client.patch(v1.Deployment, "web", status, subresource="status",
                               patch_type="strategic")
    assert [c.type for c in after.status.conditions] == ["Progressing", "Available"]
    stale = {"metadata": {"resourceVersion": created.metadata.resource_version},
             "spec": {"replicas": 5}}
    with pytest.raises(errors.Conflict):
        await client.patch(v1.Deployment, "web", stale, patch_type="strategic")
