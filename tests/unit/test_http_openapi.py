"""The OpenAPI v2 document of the HTTP API: upstream's names and types for every served kind,
what kubectl looks up (group-version-kind, merge keys, dryRun on PATCH), and its protobuf
form (gnostic's openapi.v2.Document, which kubectl downloads)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from apiserver.http import openapi
from kubelite.api.registry import RESOURCES

CORE = "io.k8s.api.core.v1"
META = "io.k8s.apimachinery.pkg.apis.meta.v1"


@pytest.fixture(scope="module")
def definitions() -> dict[str, Any]:
    found: dict[str, Any] = openapi.document()["definitions"]
    return found


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_every_served_kind_is_found_by_its_group_version_kind(
        definitions: dict[str, Any]) -> None:
    by_gvk = {(g["group"], g["version"], g["kind"]): name
              for name, schema in definitions.items()
              for g in schema.get(openapi.GVK, [])}
    for rtype in RESOURCES:
        group, _, version = rtype.api_version.rpartition("/")
        name = by_gvk[(group, version, rtype.kind)]
        properties = definitions[name]["properties"]
        assert {"apiVersion", "kind", "metadata"} <= set(properties), name
        if rtype.stored:
            assert (group, version, f"{rtype.kind}List") in by_gvk
    assert by_gvk[("", "v1", "Pod")] == f"{CORE}.Pod"
    assert by_gvk[("apps", "v1", "Deployment")] == "io.k8s.api.apps.v1.Deployment"
    assert by_gvk[("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding")] == (
        "io.k8s.api.rbac.v1.ClusterRoleBinding")
    assert by_gvk[("authentication.k8s.io", "v1", "TokenRequest")] == (
        "io.k8s.api.authentication.v1.TokenRequest")


def test_names_are_upstreams(definitions: dict[str, Any]) -> None:
    for name in (f"{META}.ObjectMeta", f"{META}.LabelSelector", f"{META}.OwnerReference",
                 f"{CORE}.PodSpec", f"{CORE}.Container", f"{CORE}.PodTemplateSpec",
                 "io.k8s.api.apps.v1.DeploymentSpec", "io.k8s.api.batch.v1.JobTemplateSpec",
                 openapi.INT_OR_STRING, openapi.QUANTITY):
        assert name in definitions
    assert definitions["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["template"] == {
        "$ref": f"#/definitions/{CORE}.PodTemplateSpec"}


def test_every_reference_resolves() -> None:
    document = openapi.document()
    missing = {ref for ref in _refs(document)
               if ref.removeprefix("#/definitions/") not in document["definitions"]}
    assert not missing


def test_properties_carry_kubernetes_json_names_and_types(definitions: dict[str, Any]) -> None:
    container = definitions[f"{CORE}.Container"]["properties"]
    assert container["image"] == {"type": "string"}
    assert container["ports"]["items"] == {"$ref": f"#/definitions/{CORE}.ContainerPort"}
    assert container["ports"]["x-kubernetes-patch-merge-key"] == "containerPort"
    assert container["ports"]["x-kubernetes-patch-strategy"] == "merge"
    assert "imagee" not in container
    port = definitions[f"{CORE}.ContainerPort"]["properties"]
    assert port["containerPort"] == {"type": "integer", "format": "int32"}
    meta = definitions[f"{META}.ObjectMeta"]["properties"]
    assert meta["generation"] == {"type": "integer", "format": "int64"}
    assert meta["labels"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert meta["creationTimestamp"] == {"type": "string", "format": "date-time"}
    assert meta["finalizers"]["x-kubernetes-patch-strategy"] == "merge"
    secret = definitions[f"{CORE}.Secret"]["properties"]
    assert secret["data"]["additionalProperties"] == {"type": "string", "format": "byte"}
    assert definitions[f"{CORE}.Pod"]["properties"]["spec"]["$ref"] == (
        f"#/definitions/{CORE}.PodSpec")
    volumes = definitions[f"{CORE}.PodSpec"]["properties"]["volumes"]
    assert volumes["x-kubernetes-patch-strategy"] == "merge,retainKeys"


def test_int_or_string_and_quantities_as_upstream(definitions: dict[str, Any]) -> None:
    assert definitions[openapi.INT_OR_STRING] | {"description": ""} == {
        "type": "string", "format": "int-or-string", "description": ""}
    assert definitions[f"{CORE}.ServicePort"]["properties"]["targetPort"] == {
        "$ref": f"#/definitions/{openapi.INT_OR_STRING}"}
    limits = definitions[f"{CORE}.ResourceRequirements"]["properties"]["limits"]
    assert limits == {"type": "object",
                      "additionalProperties": {"$ref": f"#/definitions/{openapi.QUANTITY}"}}
    assert definitions[openapi.QUANTITY]["type"] == "string"


def test_fields_kubelite_does_not_serve_take_any_value(definitions: dict[str, Any]) -> None:
    # kubectl passes them on, and the server says why it refuses them.
    nfs = definitions[f"{CORE}.Volume"]["properties"]["nfs"]
    assert "type" not in nfs and "not supported" in nfs["description"]


def test_kinds_and_their_standard_fields_are_described(definitions: dict[str, Any]) -> None:
    pod = definitions[f"{CORE}.Pod"]
    assert pod["description"]
    assert all(pod["properties"][f]["description"]
               for f in ("apiVersion", "kind", "metadata", "spec", "status"))


def test_patch_paths_name_their_kind_and_take_dry_run() -> None:
    paths = openapi.document()["paths"]
    item = paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    patch = item["patch"]
    assert patch[openapi.GVK] == {"group": "apps", "kind": "Deployment", "version": "v1"}
    assert patch["operationId"] == "patchAppsV1NamespacedDeployment"
    assert "application/strategic-merge-patch+json" in patch["consumes"]
    names = [p["name"] for p in patch["parameters"]]
    assert "dryRun" in names and "fieldValidation" not in names
    assert {p["name"] for p in item["parameters"]} == {"name", "namespace", "pretty"}
    assert "/api/v1/nodes/{name}" in paths
    assert "/api/v1/pods" in paths and "/api/v1/namespaces/{namespace}/pods/{name}/status" in paths
    reviews = paths["/apis/authorization.k8s.io/v1/subjectaccessreviews"]
    assert set(reviews) == {"post", "parameters"}
    tags = {op["tags"][0] for item in paths.values() for verb, op in item.items()
            if verb != "parameters"}
    assert {"core_v1", "apps_v1", "rbacAuthorization_v1", "certificates_v1"} <= tags


def test_the_document_is_built_once() -> None:
    assert openapi.document() is openapi.document()
    assert openapi.document_protobuf() is openapi.document_protobuf()


def test_accept_picks_protobuf_or_json() -> None:
    body, content_type = openapi.serialized(
        "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
    assert content_type == openapi.PROTOBUF and body == openapi.document_protobuf()
    body, content_type = openapi.serialized("application/json")
    assert content_type == "application/json"
    assert json.loads(body) == openapi.document()
    assert openapi.serialized("")[1] == "application/json"


# ---------------------------------------------------------------------------- protobuf


def _fields(data: bytes) -> dict[int, list[Any]]:
    """A protobuf message's fields by number: varints as ints, length-delimited as bytes."""
    fields: dict[int, list[Any]] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        shift = result = 0
        while True:
            byte = data[i]
            i += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            value: Any = varint()
        elif wire == 2:
            length = varint()
            value = data[i:i + length]
            i += length
        else:
            raise AssertionError(f"unexpected wire type {wire} for field {number}")
        fields.setdefault(number, []).append(value)
    return fields


def _named(entries: list[bytes]) -> dict[str, bytes]:
    """gnostic's Named* pairs (name 1, value 2)."""
    out = {}
    for entry in entries:
        fields = _fields(entry)
        out[fields[1][0].decode()] = fields[2][0]
    return out


def _extensions(entries: list[bytes]) -> dict[str, Any]:
    return {name: json.loads(_fields(value)[2][0]) for name, value in _named(entries).items()}


def test_protobuf_document_holds_what_kubectl_reads() -> None:
    document = _fields(openapi.document_protobuf())
    assert document[1] == [b"2.0"]
    definitions = _named(_fields(document[9][0])[1])
    assert set(definitions) == set(openapi.document()["definitions"])
    pod = _fields(definitions[f"{CORE}.Pod"])
    assert _fields(pod[22][0])[1] == [b"object"]  # type
    assert _extensions(pod[31])[openapi.GVK] == [{"group": "", "kind": "Pod", "version": "v1"}]
    properties = _named(_fields(pod[25][0])[1])
    assert _fields(properties["spec"])[1] == [f"#/definitions/{CORE}.PodSpec".encode()]
    pod_spec = _named(_fields(_fields(definitions[f"{CORE}.PodSpec"])[25][0])[1])
    containers = _fields(pod_spec["containers"])
    assert _fields(containers[22][0])[1] == [b"array"]
    assert _extensions(containers[31])["x-kubernetes-patch-merge-key"] == "name"
    item = _fields(_fields(containers[23][0])[1][0])  # items: one schema, a $ref
    assert item[1] == [f"#/definitions/{CORE}.Container".encode()]
    labels = _fields(_named(_fields(_fields(definitions[f"{META}.ObjectMeta"])[25][0])[1])[
        "labels"])
    value_schema = _fields(_fields(labels[21][0])[1][0])  # additionalProperties.schema
    assert _fields(value_schema[22][0])[1] == [b"string"]

    paths = _named(_fields(document[8][0])[2])
    patch = _fields(_fields(paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"])[8][0])
    assert _extensions(patch[13])[openapi.GVK] == {
        "group": "apps", "kind": "Deployment", "version": "v1"}
    query_names = []
    for item_bytes in patch[8]:  # ParametersItem.parameter
        parameter = _fields(_fields(item_bytes)[1][0])
        if 2 in parameter:  # NonBodyParameter
            sub = _fields(parameter[2][0])
            if 3 in sub:  # QueryParameterSubSchema
                query_names.append(_fields(sub[3][0])[4][0].decode())
    assert "dryRun" in query_names
