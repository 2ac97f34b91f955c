"""kubelite.api.strategic_merge: Kubernetes' strategic merge patch and apply's three-way patch."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor

from kubelite.api import patches
from kubelite.api import strategic_merge as smp
from kubelite.api.errors import BadRequest, Invalid
from protos.v1 import objects_pb2 as v1

DEPLOYMENT = v1.Deployment
POD = v1.Pod
SERVICE = v1.Service


def web_container(**extra: Any) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "web",
        "image": "kubelite/agnhost:1.0",
        "args": ["netexec", "--http-port=8080"],
        "ports": [{"containerPort": 8080, "name": "http"}, {"containerPort": 9090,
                                                           "name": "metrics"}],
        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        "resources": {"requests": {"cpu": "100m"}},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}},
        "imagePullPolicy": "IfNotPresent",
    }
    container.update(extra)
    return container


def deployment(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {"containers": list(containers) or [web_container()]}
    doc: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "finalizers": ["a", "b"],
                     "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"metadata": {"labels": {"app": "web"}, "annotations": {"x": "1"}},
                         "spec": pod_spec},
        },
    }
    doc["spec"].update(spec)
    return doc


def pod_spec_patch(**fields: Any) -> dict[str, Any]:
    return {"spec": {"template": {"spec": fields}}}


def containers_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = doc["spec"]["template"]["spec"]["containers"]
    return result


SIDECAR = {"name": "sidecar", "image": "busybox", "command": ["sleep", "inf"]}


# ---------------------------------------------------------------------------- apply_patch

# (id, original, patch, what the patched document's containers / field must be)
CONTAINER_CASES: list[tuple[str, list[dict[str, Any]], Any, list[dict[str, Any]]]] = [
    (
        "one container's image keeps its other fields",
        [web_container(), SIDECAR],
        [{"name": "web", "image": "x"}],
        [web_container(image="x"), SIDECAR],
    ),
    (
        "env merges by name",
        [web_container()],
        [{"name": "web", "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}]}],
        [web_container(env=[{"name": "A", "value": "1"}, {"name": "B", "value": "two"},
                            {"name": "C", "value": "3"}])],
    ),
    (
        "ports merge by containerPort",
        [web_container()],
        [{"name": "web", "ports": [{"containerPort": 9090, "protocol": "UDP"}]}],
        [web_container(ports=[{"containerPort": 8080, "name": "http"},
                              {"containerPort": 9090, "name": "metrics", "protocol": "UDP"}])],
    ),
    (
        "null inside an element deletes that field only",
        [web_container()],
        [{"name": "web", "readinessProbe": None, "args": None}],
        [{k: v for k, v in web_container().items() if k not in ("readinessProbe", "args")}],
    ),
    (
        "$patch: delete removes the named element",
        [web_container(), SIDECAR],
        [{"name": "sidecar", "$patch": "delete"}],
        [web_container()],
    ),
    (
        "$patch: delete of an env var inside a container",
        [web_container()],
        [{"name": "web", "env": [{"name": "A", "$patch": "delete"}]}],
        [web_container(env=[{"name": "B", "value": "2"}])],
    ),
    (
        "$patch: replace replaces the whole list",
        [web_container(), SIDECAR],
        [{"name": "only", "image": "i"}, {"$patch": "replace"}],
        [{"name": "only", "image": "i"}],
    ),
    (
        "a new element goes before the ones the patch does not name (as upstream)",
        [web_container()],
        [SIDECAR],
        [SIDECAR, web_container()],
    ),
    (
        "elements the patch names keep their places among the others",
        [SIDECAR, web_container()],
        [{"name": "web", "image": "y"}],
        [SIDECAR, web_container(image="y")],
    ),
    (
        "$setElementOrder puts the list in the given order",
        [web_container(), SIDECAR],
        {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}]},
        [SIDECAR, web_container()],
    ),
]


@pytest.mark.parametrize(("original", "patch", "expected"),
                         [c[1:] for c in CONTAINER_CASES], ids=[c[0] for c in CONTAINER_CASES])
def test_containers_merge_by_name(original: list[dict[str, Any]], patch: Any,
                                  expected: list[dict[str, Any]]) -> None:
    doc = deployment(*original)
    pod_patch = patch if isinstance(patch, dict) else {"containers": patch}
    result = smp.apply_patch(doc, pod_spec_patch(**pod_patch), DEPLOYMENT)
    assert containers_of(result) == expected
    # Everything the patch does not name is untouched.
    assert result["spec"]["strategy"] == doc["spec"]["strategy"]
    assert result["metadata"] == doc["metadata"]


# (id, patch, path into the result, expected value there)
FIELD_CASES: list[tuple[str, dict[str, Any], tuple[str, ...], Any]] = [
    ("finalizers merge as a set", {"metadata": {"finalizers": ["b", "c"]}},
     ("metadata", "finalizers"), ["a", "b", "c"]),
    ("$deleteFromPrimitiveList removes values",
     {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zzz"]}},
     ("metadata", "finalizers"), ["b"]),
    ("$deleteFromPrimitiveList and additions together",
     {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["c"]}},
     ("metadata", "finalizers"), ["c", "b"]),
    ("$setElementOrder of values", {"metadata": {"$setElementOrder/finalizers": ["b", "a"]}},
     ("metadata", "finalizers"), ["b", "a"]),
    ("maps merge, null deletes a key",
     {"metadata": {"labels": {"app": None, "tier": "front"}}},
     ("metadata", "labels"), {"tier": "front"}),
    ("$patch: replace on an object replaces it",
     {"spec": {"template": {"metadata": {"labels": {"v": "2"}, "$patch": "replace"}}}},
     ("spec", "template", "metadata"), {"labels": {"v": "2"}}),
    ("$patch: delete on an object empties it",
     {"spec": {"strategy": {"$patch": "delete"}}}, ("spec", "strategy"), {}),
    ("$retainKeys clears the fields it does not list",
     {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
     ("spec", "strategy"), {"type": "Recreate"}),
    ("without $retainKeys the other fields stay",
     {"spec": {"strategy": {"type": "Recreate"}}},
     ("spec", "strategy"), {"type": "Recreate", "rollingUpdate": {"maxSurge": "25%",
                                                                  "maxUnavailable": "25%"}}),
    ("lists without a merge strategy are replaced (tolerations, as upstream)",
     pod_spec_patch(tolerations=[{"key": "b", "operator": "Exists"}]),
     ("spec", "template", "spec", "tolerations"), [{"key": "b", "operator": "Exists"}]),
    ("a merge list the object lacks drops delete directives",
     pod_spec_patch(initContainers=[{"name": "gone", "$patch": "delete"},
                                    {"name": "init", "image": "busybox"}]),
     ("spec", "template", "spec", "initContainers"), [{"name": "init", "image": "busybox"}]),
    ("a new object drops its nulls",
     pod_spec_patch(affinity={"nodeAffinity": None, "podAffinity": {}}),
     ("spec", "template", "spec", "affinity"), {"podAffinity": {}}),
    ("scalars replace", {"spec": {"replicas": 5}}, ("spec", "replicas"), 5),
]


def dig(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@pytest.mark.parametrize(("patch", "path", "expected"), [c[1:] for c in FIELD_CASES],
                         ids=[c[0] for c in FIELD_CASES])
def test_fields_and_directives(patch: dict[str, Any], path: tuple[str, ...],
                               expected: Any) -> None:
    doc = deployment()
    doc["spec"]["template"]["spec"]["tolerations"] = [{"key": "a", "operator": "Exists"}]
    assert dig(smp.apply_patch(doc, patch, DEPLOYMENT), path) == expected


def test_service_ports_merge_by_port_and_pod_conditions_by_type() -> None:
    service = {"spec": {"ports": [{"port": 80, "targetPort": 8080, "name": "http"},
                                  {"port": 443, "targetPort": 8443, "name": "https"}]}}
    patched = smp.apply_patch(service, {"spec": {"ports": [{"port": 443, "nodePort": 30443}]}},
                              SERVICE)
    assert patched["spec"]["ports"] == [
        {"port": 80, "targetPort": 8080, "name": "http"},
        {"port": 443, "targetPort": 8443, "name": "https", "nodePort": 30443},
    ]
    pod = {"status": {"conditions": [{"type": "Ready", "status": "False"},
                                     {"type": "PodScheduled", "status": "True"}]}}
    patched = smp.apply_patch(pod, {"status": {"conditions": [{"type": "Ready",
                                                                "status": "True"}]}}, POD)
    assert patched["status"]["conditions"] == [{"type": "Ready", "status": "True"},
                                               {"type": "PodScheduled", "status": "True"}]


def test_merge_keys_compare_as_json_values() -> None:
    pod = {"spec": {"containers": [{"name": "web", "ports": [
        {"containerPort": 8080, "name": "a"}, {"containerPort": 10**400, "name": "big"}]}]}}
    patch = {"spec": {"containers": [{"name": "web", "ports": [
        {"containerPort": 8080.0, "protocol": "TCP"}, {"containerPort": 10**400, "name": "b"},
        {"containerPort": True, "name": "odd"}]}]}}
    ports = smp.apply_patch(pod, patch, POD)["spec"]["containers"][0]["ports"]
    # Every element is named by the patch, so the patch's order holds.
    assert [p.get("name") for p in ports] == ["a", "b", "odd"]
    assert ports[0]["protocol"] == "TCP"


def test_apply_patch_is_pure() -> None:
    doc = deployment(web_container(), SIDECAR)
    patch = pod_spec_patch(containers=[{"name": "sidecar", "$patch": "delete"},
                                       {"name": "web", "env": [{"name": "C", "value": "3"}]}])
    doc_before, patch_before = copy.deepcopy(doc), copy.deepcopy(patch)
    result = smp.apply_patch(doc, patch, DEPLOYMENT)
    assert (doc, patch) == (doc_before, patch_before)
    containers_of(result)[0]["env"].append({"name": "D"})
    assert doc == doc_before


# (id, patch, words the error must contain)
BAD_PATCHES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("element without its merge key",
     pod_spec_patch(containers=[{"image": "x"}]),
     ("spec.template.spec.containers[0]", 'merge key "name"')),
    ("element that is not an object",
     pod_spec_patch(containers=["web"]),
     ("spec.template.spec.containers[0]", "object")),
    ("unknown $patch directive on an object",
     {"spec": {"strategy": {"$patch": "nuke"}}},
     ("spec.strategy", "$patch", '"nuke"', "replace", "delete")),
    ("unknown $patch directive in a list",
     pod_spec_patch(containers=[{"name": "web", "$patch": "merge"}]),
     ("spec.template.spec.containers[0]", "$patch", '"merge"')),
    ("$deleteFromPrimitiveList of a field that is no merged list of values",
     pod_spec_patch(**{"$deleteFromPrimitiveList/containers": ["web"]}),
     ("spec.template.spec", "$deleteFromPrimitiveList/containers")),
    ("$deleteFromPrimitiveList that is not a list",
     {"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}},
     ("metadata", "$deleteFromPrimitiveList/finalizers", "list")),
    ("$retainKeys that is not a list of names",
     {"spec": {"strategy": {"$retainKeys": "type"}}},
     ("spec.strategy", "$retainKeys", "list")),
    ("$retainKeys missing a field the patch sets",
     {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}},
     ("spec.strategy", "$retainKeys", "rollingUpdate")),
    ("$setElementOrder that disagrees with the patch",
     pod_spec_patch(**{"$setElementOrder/containers": [{"name": "web"}],
                       "containers": [{"name": "other", "image": "i"}]}),
     ("spec.template.spec", "$setElementOrder/containers", "other")),
    ("$setElementOrder of a list without merge strategy",
     pod_spec_patch(**{"$setElementOrder/tolerations": [{"key": "a"}]}),
     ("spec.template.spec", "$setElementOrder/tolerations")),
    ("unknown directive", {"spec": {"$frobnicate": 1}}, ("spec", "$frobnicate")),
    ("values in a merged list of values must be scalars",
     {"metadata": {"finalizers": [{"a": 1}]}}, ("metadata.finalizers[0]",)),
]


@pytest.mark.parametrize(("patch", "words"), [c[1:] for c in BAD_PATCHES],
                         ids=[c[0] for c in BAD_PATCHES])
def test_malformed_patches_are_bad_requests(patch: dict[str, Any], words: tuple[str, ...]) -> None:
    with pytest.raises(BadRequest) as info:
        smp.apply_patch(deployment(), patch, DEPLOYMENT)
    for word in words:
        assert word in str(info.value)


def nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(depth):
        doc = {"a": doc}
    return doc


def test_merge_functions_refuse_documents_deeper_than_the_limit() -> None:
    with pytest.raises(BadRequest, match="nest"):
        smp.apply_patch({}, nested(smp.MAX_DEPTH + 5), DEPLOYMENT)
    with pytest.raises(BadRequest, match="nest"):
        smp.three_way_patch({}, nested(smp.MAX_DEPTH + 5), {}, DEPLOYMENT)
    # Within the limit, deep unknown structure merges (and conversion rejects it later).
    assert smp.apply_patch({}, nested(smp.MAX_DEPTH - 2), DEPLOYMENT) == nested(
        smp.MAX_DEPTH - 2)


def test_every_table_entry_names_a_real_field() -> None:
    for (message, field), strategy in smp.PATCH_STRATEGIES.items():
        descriptor = getattr(v1, message).DESCRIPTOR
        by_json = {f.json_name: f for f in descriptor.fields}
        assert field in by_json, (message, field)
        desc: FieldDescriptor = by_json[field]
        if strategy.merge:
            assert desc.is_repeated, (message, field)
        if strategy.merge_key:
            element = desc.message_type
            assert element is not None
            assert strategy.merge_key in {f.json_name for f in element.fields}, (message, field)
        elif strategy.merge:
            assert desc.message_type is None, (message, field)  # a list of values


# ---------------------------------------------------------------------------- decode / apply


@pytest.mark.parametrize(("name", "kind"), [
    ("strategic", patches.PatchType.STRATEGIC),
    ("application/strategic-merge-patch+json", patches.PatchType.STRATEGIC),
    ("merge", patches.PatchType.MERGE),
    ("application/merge-patch+json", patches.PatchType.MERGE),
    ("", patches.PatchType.MERGE),
    ("json", patches.PatchType.JSON),
    ("application/json-patch+json", patches.PatchType.JSON),
])
def test_patch_type_names(name: str, kind: patches.PatchType) -> None:
    assert patches.patch_type(name) is kind


def test_unknown_patch_type_is_bad_request() -> None:
    with pytest.raises(BadRequest, match='"apply".*strategic.*merge.*json'):
        patches.patch_type("apply")


@pytest.mark.parametrize("kind", list(patches.PatchType))
def test_deeply_nested_document_is_bad_request(kind: patches.PatchType) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(BadRequest, match="nest"):
        patches.decode(deep, kind)
    within_json = json.dumps(nested(smp.MAX_DEPTH + 1)).encode()
    with pytest.raises(BadRequest, match="nest"):
        patches.decode(within_json, kind)


@pytest.mark.parametrize(("kind", "body", "words"), [
    (patches.PatchType.STRATEGIC, b"[]", ("strategic merge patch", "object")),
    (patches.PatchType.MERGE, b"3", ("merge patch", "object")),
    (patches.PatchType.JSON, b"{}", ("JSON patch", "list")),
    (patches.PatchType.STRATEGIC, b"{nope", ("not valid JSON",)),
    (patches.PatchType.JSON, b'[{"op": "add"}]', ("JSON patch", "path")),
    (patches.PatchType.JSON, b'[{"op": "launch", "path": "/a"}]', ("launch",)),
    (patches.PatchType.JSON, b"[1]", ("operation", "object")),
    (patches.PatchType.JSON, b'[{"op": "add", "path": "/spec/x"}]', ("operation 0", "value")),
])
def test_malformed_documents_are_bad_requests(kind: patches.PatchType, body: bytes,
                                              words: tuple[str, ...]) -> None:
    with pytest.raises(BadRequest) as info:
        patches.decode(body, kind).apply({"spec": {"replicas": 1}}, DEPLOYMENT)
    assert not isinstance(info.value, Invalid)
    for word in words:
        assert word in str(info.value)


def json_patch(ops: list[Any]) -> patches.Patch:
    return patches.decode(json.dumps(ops).encode(), patches.PatchType.JSON)


def test_json_patch_operations() -> None:
    doc = deployment()
    ops = [
        {"op": "test", "path": "/spec/replicas", "value": 2},
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/metadata/labels/tier", "value": "front"},
        {"op": "remove", "path": "/spec/template/spec/containers/0/args"},
        {"op": "add", "path": "/spec/template/spec/containers/0/env/-",
         "value": {"name": "C", "value": "3"}},
    ]
    result = json_patch(ops).apply(doc, DEPLOYMENT)
    assert result["spec"]["replicas"] == 3
    assert result["metadata"]["labels"] == {"app": "web", "tier": "front"}
    container = containers_of(result)[0]
    assert "args" not in container
    assert [e["name"] for e in container["env"]] == ["A", "B", "C"]
    assert doc == deployment()


def test_json_patch_applies_alike_every_time() -> None:
    patch = json_patch([{"op": "add", "path": "/metadata/labels", "value": {"a": "1"}},
                        {"op": "add", "path": "/metadata/labels/b", "value": "2"}])
    first = patch.apply({"metadata": {}}, v1.ConfigMap)
    assert patch.apply({"metadata": {}}, v1.ConfigMap) == first == {
        "metadata": {"labels": {"a": "1", "b": "2"}}}
    assert patch.document[0]["value"] == {"a": "1"}


@pytest.mark.parametrize(("ops", "words"), [
    ([{"op": "test", "path": "/spec/replicas", "value": 7}], ("operation 0", "test",
                                                              "/spec/replicas")),
    ([{"op": "replace", "path": "/spec/replicas", "value": 1},
      {"op": "remove", "path": "/spec/nothing"}], ("operation 1", "remove", "/spec/nothing")),
    ([{"op": "replace", "path": "", "value": [1]}], ("object",)),
])
def test_json_patch_that_does_not_apply_is_invalid(ops: list[Any], words: tuple[str, ...]) -> None:
    doc = deployment()
    with pytest.raises(Invalid) as info:
        json_patch(ops).apply(doc, DEPLOYMENT)
    for word in words:
        assert word in str(info.value)
    assert doc == deployment()


def test_merge_patch_replaces_lists() -> None:
    patch = pod_spec_patch(containers=[{"name": "web", "image": "x"}])
    merge = patches.decode(json.dumps(patch).encode(), patches.PatchType.MERGE)
    assert containers_of(merge.apply(deployment(), DEPLOYMENT)) == [{"name": "web", "image": "x"}]
    strategic = patches.decode(json.dumps(patch).encode(), patches.PatchType.STRATEGIC)
    assert containers_of(strategic.apply(deployment(), DEPLOYMENT)) == [
        web_container(image="x")]


# ---------------------------------------------------------------------------- three-way


def three_way(original: dict[str, Any], modified: dict[str, Any],
              current: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The patch apply sends, and what the server makes of it."""
    patch = smp.three_way_patch(original, modified, current, DEPLOYMENT)
    # What apply sends goes through JSON; nothing in it may be unserialisable.
    patch = json.loads(json.dumps(patch))
    return patch, smp.apply_patch(current, patch, DEPLOYMENT)


def test_three_way_keeps_fields_of_other_writers_and_removes_dropped_ones() -> None:
    original = deployment(web_container())
    modified = deployment(web_container(image="v2", env=[{"name": "A", "value": "1"}]))
    # The live object: defaults, another writer's env var, a sidecar injected by someone else.
    live_web = web_container(terminationMessagePath="/dev/termination-log")
    live_web["env"] = [*live_web["env"], {"name": "INJECTED", "value": "x"}]
    current = deployment(live_web, SIDECAR)
    current["status"] = {"replicas": 2}

    patch, result = three_way(original, modified, current)
    web, sidecar = containers_of(result)
    assert sidecar == SIDECAR
    assert web["image"] == "v2"
    assert web["terminationMessagePath"] == "/dev/termination-log"
    assert web["env"] == [{"name": "A", "value": "1"}, {"name": "INJECTED", "value": "x"}]
    assert web["args"] == web_container()["args"]
    assert result["status"] == {"replicas": 2}
    # B left the manifest: the patch deletes it by name and nothing else.
    env_patch = containers_of(patch)[0]["env"]
    assert {"name": "B", "$patch": "delete"} in env_patch


def test_three_way_removes_a_field_and_a_container_dropped_from_the_manifest() -> None:
    original = deployment(web_container(), SIDECAR)
    modified = deployment({k: v for k, v in web_container().items() if k != "readinessProbe"})
    current = deployment(web_container(), SIDECAR, {"name": "theirs", "image": "i"})
    _, result = three_way(original, modified, current)
    assert [c["name"] for c in containers_of(result)] == ["web", "theirs"]
    assert "readinessProbe" not in containers_of(result)[0]


def test_three_way_without_changes_is_empty() -> None:
    doc = deployment(web_container(), SIDECAR)
    current = copy.deepcopy(doc)
    containers_of(current)[0]["terminationMessagePolicy"] = "File"
    current["status"] = {"replicas": 1}
    assert smp.three_way_patch(doc, doc, current, DEPLOYMENT) == {}


def test_three_way_orders_lists_as_the_manifest_does() -> None:
    original = deployment(web_container())
    modified = deployment(web_container(), SIDECAR)
    _, result = three_way(original, modified, deployment(web_container()))
    assert [c["name"] for c in containers_of(result)] == ["web", "sidecar"]


def test_three_way_finalizers_and_retain_keys() -> None:
    original = deployment()
    modified = deployment(strategy={"type": "Recreate"})
    modified["metadata"]["finalizers"] = ["b", "c"]
    current = deployment()
    current["metadata"]["finalizers"] = ["a", "b", "theirs"]
    patch, result = three_way(original, modified, current)
    assert result["metadata"]["finalizers"] == ["b", "c", "theirs"]
    assert result["spec"]["strategy"] == {"type": "Recreate"}
    assert patch["spec"]["strategy"]["$retainKeys"] == ["type"]


def test_three_way_with_duplicate_merge_keys_replaces_the_list() -> None:
    ports = [{"containerPort": 53, "protocol": "TCP"}, {"containerPort": 53, "protocol": "UDP"}]
    original = deployment(web_container())
    modified = deployment(web_container(ports=ports))
    current = deployment(web_container())
    _, result = three_way(original, modified, current)
    assert containers_of(result)[0]["ports"] == ports


def test_three_way_element_without_merge_key_is_bad_request() -> None:
    modified = deployment({"image": "nameless"})
    with pytest.raises(BadRequest, match=r'spec.template.spec.containers\[0\].*merge key "name"'):
        smp.three_way_patch(deployment(), modified, deployment(), DEPLOYMENT)
