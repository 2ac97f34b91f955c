"""kubelite.api.convert: Kubernetes-shaped dicts <-> typed messages, merge patch."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor

from kubelite.api.convert import (
    QUANTITY_FIELDS,
    UNSUPPORTED_FIELDS,
    ConversionError,
    from_dict,
    merge_patch,
    message_from_dict,
    message_to_dict,
    to_dict,
)
from kubelite.api.errors import BadRequest
from kubelite.api.field_errors import ErrorType, FieldError, FieldPath
from kubelite.api.manifests import load_documents
from kubelite.api.registry import by_kind
from protos.v1 import objects_pb2 as v1

MANIFESTS = Path(__file__).parent / "manifests"
MANIFEST_FILES = sorted(MANIFESTS.glob("*.yaml"))


def load(name: str) -> dict[str, Any]:
    path = MANIFESTS / name
    (doc,) = load_documents(path.read_text(), str(path))
    return doc


def errors_of(data: dict[str, Any]) -> list[FieldError]:
    with pytest.raises(ConversionError) as info:
        from_dict(data)
    return info.value.errors


def rendered(data: dict[str, Any]) -> list[str]:
    return [str(e) for e in errors_of(data)]


def deployment(**spec: Any) -> dict[str, Any]:
    base = load("deployment.yaml")
    base["spec"].update(spec)
    return base


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("path", MANIFEST_FILES, ids=lambda p: p.stem)
def test_manifest_round_trips(path: Path) -> None:
    for doc in load_documents(path.read_text(), str(path)):
        rtype, msg = from_dict(doc)
        assert rtype.kind == doc["kind"]
        assert to_dict(rtype, msg) == doc
        # And through the wire format, as the API server stores it.
        again = rtype.decode(msg.SerializeToString())
        assert to_dict(rtype, again) == doc


def test_examples_cover_every_initial_kind() -> None:
    kinds = set()
    for path in MANIFEST_FILES:
        kinds |= {d["kind"] for d in load_documents(path.read_text(), str(path))}
    assert kinds >= {
        "Pod",
        "Deployment",
        "Service",
        "DaemonSet",
        "StatefulSet",
        "Job",
        "CronJob",
        "ConfigMap",
        "Secret",
        "Namespace",
        "Node",
        "Endpoints",
        "Lease",
        "Event",
        "ReplicaSet",
    }


def test_to_dict_puts_type_and_metadata_first() -> None:
    rtype, msg = from_dict(load("deployment.yaml"))
    assert list(to_dict(rtype, msg))[:4] == ["apiVersion", "kind", "metadata", "spec"]


def test_typed_values_of_the_deployment() -> None:
    _, msg = from_dict(load("deployment.yaml"))
    assert isinstance(msg, v1.Deployment)
    assert msg.spec.HasField("replicas") and msg.spec.replicas == 3
    assert msg.spec.strategy.rolling_update.max_surge.str_val == "25%"
    assert msg.spec.strategy.rolling_update.max_unavailable.int_val == 1
    assert msg.spec.template.spec.containers[0].ports[0].container_port == 80


def test_service_target_ports_by_name_and_number() -> None:
    rtype, msg = from_dict(load("service.yaml"))
    assert isinstance(msg, v1.Service)
    assert msg.spec.ports[0].target_port.WhichOneof("value") == "str_val"
    assert msg.spec.ports[0].target_port.str_val == "http-web-svc"
    assert msg.spec.ports[1].target_port.int_val == 9377
    ports = to_dict(rtype, msg)["spec"]["ports"]
    assert [p["targetPort"] for p in ports] == ["http-web-svc", 9377]
    assert msg.spec.session_affinity_config.client_ip.timeout_seconds == 10800


def test_pod_details() -> None:
    rtype, msg = from_dict(load("pod.yaml"))
    assert isinstance(msg, v1.Pod)
    app = msg.spec.containers[0]
    assert app.liveness_probe.http_get.port.str_val == "liveness-port"
    assert app.readiness_probe.tcp_socket.port.int_val == 8080
    assert app.env[1].value_from.field_ref.field_path == "spec.nodeName"
    assert dict(app.resources.limits) == {
        "memory": "128Mi",
        "cpu": "500m",
        "ephemeral-storage": "2Gi",
    }
    assert app.ports[1].host_ip == "127.0.0.1"
    assert msg.spec.tolerations[1].toleration_seconds == 6000
    assert not msg.spec.tolerations[0].HasField("toleration_seconds")
    volumes = {v.name: v for v in msg.spec.volumes}
    assert volumes["scratch"].HasField("empty_dir")  # `emptyDir: {}` is kept, not dropped
    assert volumes["config"].config_map.default_mode == 420
    assert volumes["podinfo"].downward_api.items[1].resource_field_ref.divisor == "1m"
    out = to_dict(rtype, msg)
    assert out["spec"]["volumes"][1] == {"name": "scratch", "emptyDir": {}}


def test_secret_data_is_base64_in_dicts_and_bytes_in_messages() -> None:
    rtype, msg = from_dict(load("secret.yaml"))
    assert isinstance(msg, v1.Secret)
    assert msg.data["username"] == b"admin"
    assert msg.data["password"] == b"1f2d1e2e67df"
    assert msg.string_data["config.yaml"].startswith('apiUrl: "https://my.api.com/api/v1"\n')
    assert to_dict(rtype, msg)["data"] == {"password": "MWYyZDFlMmU2N2Rm", "username": "YWRtaW4="}


def test_base64_with_line_breaks_is_accepted_like_go() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "data": {"k": "YWRt\naW4="}}
    _, msg = from_dict(secret)
    assert isinstance(msg, v1.Secret)
    assert msg.data["k"] == b"admin"


def test_configmap_keeps_multiline_values() -> None:
    _, msg = from_dict(load("configmap.yaml"))
    assert isinstance(msg, v1.ConfigMap)
    assert msg.data["game.properties"] == "enemy.types=aliens,monsters\nplayer.maximum-lives=5\n"
    assert msg.data["player_initial_lives"] == "3"


def test_optional_zero_is_kept_and_plain_zero_is_omitted() -> None:
    rtype, msg = from_dict(deployment(replicas=0, minReadySeconds=0, paused=False))
    assert isinstance(msg, v1.Deployment)
    assert msg.spec.HasField("replicas") and msg.spec.replicas == 0
    spec = to_dict(rtype, msg)["spec"]
    assert spec["replicas"] == 0
    assert "minReadySeconds" not in spec and "paused" not in spec


def test_to_dict_omits_empty_lists_maps_and_unset_messages() -> None:
    pod = v1.Pod(metadata=v1.ObjectMeta(name="p"))
    pod.spec.containers.add(name="c", image="busybox")
    assert to_dict(by_kind("Pod"), pod) == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }


def test_message_to_dict_and_message_from_dict() -> None:
    container = v1.Container(name="c", image="nginx", command=["nginx", "-g", "daemon off;"])
    data = message_to_dict(container)
    assert data == {"name": "c", "image": "nginx", "command": ["nginx", "-g", "daemon off;"]}
    assert message_from_dict(v1.Container, data) == container


def test_message_from_dict_reports_paths_under_the_given_root() -> None:
    with pytest.raises(ConversionError) as info:
        message_from_dict(v1.Container, {"imagee": "x"}, FieldPath("spec.containers[2]"))
    assert [e.field for e in info.value.errors] == ["spec.containers[2].imagee"]
    assert info.value.kind == "Container"


def test_map_keys_are_sorted_on_output() -> None:
    meta = v1.ObjectMeta(name="x", labels={"b": "2", "a": "1", "c": "3"})
    assert list(message_to_dict(meta)["labels"]) == ["a", "b", "c"]


# ---------------------------------------------------------------------------- lenient spots


def test_null_is_the_same_as_absent() -> None:
    doc = deployment(replicas=None, strategy=None)
    doc["metadata"]["creationTimestamp"] = None
    rtype, msg = from_dict(doc)
    assert isinstance(msg, v1.Deployment)
    assert not msg.spec.HasField("replicas")
    assert not msg.spec.HasField("strategy")
    assert "creationTimestamp" not in to_dict(rtype, msg)["metadata"]


def test_integral_float_is_an_integer() -> None:
    _, msg = from_dict(deployment(replicas=3.0))
    assert isinstance(msg, v1.Deployment)
    assert msg.spec.replicas == 3


@pytest.mark.parametrize(
    ("given", "expected"),
    [(1, "1"), (0.5, "0.5"), (2.0, "2"), (1e3, "1000"), ("250m", "250m"), ("1Gi", "1Gi")],
)
def test_quantities_accept_numbers(given: Any, expected: str) -> None:
    pod = load("pod.yaml")
    pod["spec"]["containers"][0]["resources"] = {"requests": {"cpu": given}}
    pod["spec"]["volumes"][0]["emptyDir"]["sizeLimit"] = given
    _, msg = from_dict(pod)
    assert isinstance(msg, v1.Pod)
    assert msg.spec.containers[0].resources.requests["cpu"] == expected
    assert msg.spec.volumes[0].empty_dir.size_limit == expected


def test_quantity_rejects_booleans() -> None:
    pod = load("pod.yaml")
    pod["spec"]["containers"][0]["resources"] = {"limits": {"cpu": True}}
    expected = (
        "spec.containers[0].resources.limits[cpu]: Invalid type: true:"
        " expected quantity (string or number)"
    )
    assert rendered(pod) == [expected]


def test_nested_type_meta_of_embedded_kinds_is_accepted() -> None:
    sts = load("statefulset.yaml")
    sts["spec"]["volumeClaimTemplates"][0].update(apiVersion="v1", kind="PersistentVolumeClaim")
    from_dict(sts)
    sts["spec"]["volumeClaimTemplates"][0]["kind"] = "Pod"
    assert [e.field for e in errors_of(sts)] == ["spec.volumeClaimTemplates[0].kind"]


def test_null_list_elements_keep_indexes() -> None:
    doc = deployment()
    doc["spec"]["template"]["spec"]["containers"].insert(0, None)
    doc["spec"]["template"]["spec"]["containers"].append({"name": "late", "imagee": "x"})
    assert [e.field for e in errors_of(doc)] == ["spec.template.spec.containers[2].imagee"]


# ---------------------------------------------------------------------------- errors


def test_unknown_field_names_its_full_path() -> None:
    doc = deployment()
    doc["spec"]["template"]["spec"]["containers"][0]["imagee"] = "nginx"
    (error,) = errors_of(doc)
    assert error.type is ErrorType.UNKNOWN_FIELD
    assert error.field == "spec.template.spec.containers[0].imagee"


def test_unknown_field_in_a_pod() -> None:
    pod = load("pod.yaml")
    pod["spec"]["containers"][0]["imagee"] = "x"
    assert [e.field for e in errors_of(pod)] == ["spec.containers[0].imagee"]


def test_projected_volume_reads() -> None:
    # The Kubernetes docs' projected volume (tasks/configure-pod-container/projected-volume).
    pod = load("pod.yaml")
    pod["spec"]["volumes"] = [{"name": "all-in-one", "projected": {"sources": [
        {"secret": {"name": "user"}}, {"configMap": {"name": "settings"}},
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}}]
    _, obj = from_dict(pod)
    sources = obj.spec.volumes[0].projected.sources  # type: ignore[attr-defined]
    assert sources[2].service_account_token.expiration_seconds == 3607


@pytest.mark.parametrize(("where", "key"), [
    ("volume", "nfs"), ("volume", "csi"), ("volume", "ephemeral"), ("volume", "gitRepo"),
    ("spec", "runtimeClassName"), ("spec", "ephemeralContainers"),
    ("container", "volumeDevices"),
])
def test_known_upstream_fields_are_unsupported(where: str, key: str) -> None:
    pod = load("pod.yaml")
    target = {"volume": pod["spec"]["volumes"][0], "spec": pod["spec"],
              "container": pod["spec"]["containers"][0]}[where]
    target[key] = {}
    (error,) = errors_of(pod)
    assert error.type is ErrorType.NOT_SUPPORTED, str(error)
    assert error.field.endswith("." + key)
    assert "not supported" in str(error)


def test_unsupported_fields_are_not_in_the_schema() -> None:
    # A field that lands in the proto must leave the table (or it could never be set).
    for full_name, table in UNSUPPORTED_FIELDS.items():
        message = v1.DESCRIPTOR.message_types_by_name[full_name.rpartition(".")[2]]
        assert not set(table) & {f.json_name for f in message.fields}, full_name


def test_a_null_unsupported_field_is_absent() -> None:
    pod = load("pod.yaml")
    pod["spec"]["volumes"][0]["nfs"] = None
    from_dict(pod)


def test_protobuf_names_are_not_json_names() -> None:
    doc = deployment()
    doc["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"container_port": 80}]
    (error,) = errors_of(doc)
    assert error.type is ErrorType.UNKNOWN_FIELD
    assert error.field == "spec.template.spec.containers[0].ports[0].container_port"


def test_unknown_top_level_field() -> None:
    doc = load("namespace.yaml")
    doc["spec2"] = {}
    assert [e.field for e in errors_of(doc)] == ["spec2"]


def test_wrong_type_message_is_kubernetes_shaped() -> None:
    assert rendered(deployment(replicas="three")) == [
        'spec.replicas: Invalid type: "three": expected integer'
    ]


@pytest.mark.parametrize("value", ["3", True, 3.5, float("nan"), [3], {"n": 3}])
def test_integers_reject_other_types(value: Any) -> None:
    (error,) = errors_of(deployment(replicas=value))
    assert error.type is ErrorType.TYPE_INVALID
    assert error.field == "spec.replicas"


def test_int32_range() -> None:
    (error,) = errors_of(deployment(replicas=2**31))
    assert error.type is ErrorType.INVALID
    assert error.field == "spec.replicas"
    assert "2147483647" in error.detail
    _, msg = from_dict(deployment(replicas=2**31 - 1))
    assert isinstance(msg, v1.Deployment)


def test_int64_accepts_beyond_int32() -> None:
    pod = load("pod.yaml")
    pod["spec"]["activeDeadlineSeconds"] = 2**40
    _, msg = from_dict(pod)
    assert isinstance(msg, v1.Pod)
    assert msg.spec.active_deadline_seconds == 2**40


@pytest.mark.parametrize("value", [1, 1.5, True])
def test_strings_reject_numbers_and_booleans(value: Any) -> None:
    doc = deployment()
    doc["metadata"]["labels"]["version"] = value
    (error,) = errors_of(doc)
    assert error.type is ErrorType.TYPE_INVALID
    assert error.field == "metadata.labels[version]"
    assert error.detail == "expected string"


def test_booleans_reject_strings() -> None:
    assert rendered(deployment(paused="yes")) == [
        'spec.paused: Invalid type: "yes": expected boolean'
    ]


def test_composite_values_for_scalars_name_the_json_type() -> None:
    doc = deployment()
    doc["spec"]["template"]["spec"]["containers"][0]["image"] = ["nginx"]
    assert rendered(doc) == [
        "spec.template.spec.containers[0].image: Invalid type: expected string, got array"
    ]


def test_repeated_fields_need_lists_and_messages_need_mappings() -> None:
    doc = deployment(selector="app=nginx")
    doc["spec"]["template"]["spec"]["containers"][0]["ports"] = {"containerPort": 80}
    assert sorted(rendered(doc)) == [
        'spec.selector: Invalid type: "app=nginx": expected object',
        "spec.template.spec.containers[0].ports: Invalid type: expected array, got object",
    ]


def test_maps_need_mappings_with_string_keys() -> None:
    doc = deployment()
    doc["metadata"]["labels"] = {1: "one"}
    doc["spec"]["template"]["metadata"]["labels"] = ["app=nginx"]
    assert sorted(e.field for e in errors_of(doc)) == [
        "metadata.labels[1]",
        "spec.template.metadata.labels",
    ]


def test_every_error_is_collected() -> None:
    doc = deployment(replicas="three", paused=1)
    doc["spec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    doc["metadata"]["labelz"] = {}
    assert sorted(e.field for e in errors_of(doc)) == [
        "metadata.labelz",
        "spec.paused",
        "spec.replicas",
        "spec.template.spec.containers[0].imagee",
    ]


def test_bad_base64_names_the_field_and_hides_the_value() -> None:
    secret = load("secret.yaml")
    secret["data"]["password"] = "not base64!"
    (error,) = errors_of(secret)
    assert error.type is ErrorType.INVALID
    assert error.field == "data[password]"
    assert "illegal base64 data" in str(error)
    assert "not base64!" not in str(error)


def test_base64_requires_padding() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "data": {"k": "YWRtaW4"}}
    assert [e.field for e in errors_of(secret)] == ["data[k]"]


def test_int_or_string_rejects_a_list() -> None:
    svc = load("service.yaml")
    svc["spec"]["ports"][0]["targetPort"] = [80]
    assert rendered(svc) == [
        "spec.ports[0].targetPort: Invalid type: expected integer or string, got array"
    ]


@pytest.mark.parametrize("value", [True, 1.5, {"intVal": 80}])
def test_int_or_string_rejects_other_types(value: Any) -> None:
    svc = load("service.yaml")
    svc["spec"]["ports"][1]["targetPort"] = value
    assert [e.field for e in errors_of(svc)] == ["spec.ports[1].targetPort"]


def test_missing_kind() -> None:
    doc = load("namespace.yaml")
    del doc["kind"]
    (error,) = errors_of(doc)
    assert error.type is ErrorType.REQUIRED
    assert error.field == "kind"


def test_missing_api_version_and_kind_are_both_reported() -> None:
    assert [(e.type, e.field) for e in errors_of({"metadata": {"name": "x"}})] == [
        (ErrorType.REQUIRED, "apiVersion"),
        (ErrorType.REQUIRED, "kind"),
    ]


def test_wrong_api_version_for_a_kind() -> None:
    doc = deployment()
    doc["apiVersion"] = "v1"
    (error,) = errors_of(doc)
    assert error.field == "apiVersion"
    assert 'no kind "Deployment" is registered for version "v1"' in str(error)
    assert "apps/v1" in str(error)


def test_unknown_kind() -> None:
    (error,) = errors_of({"apiVersion": "v1", "kind": "Gadget", "metadata": {"name": "g"}})
    assert error.field == "kind"
    assert 'no kind "Gadget" is registered' in str(error)


def test_not_a_mapping() -> None:
    with pytest.raises(ConversionError):
        from_dict(["apiVersion", "v1"])  # type: ignore[arg-type]


def test_path_prefix_for_list_items() -> None:
    doc = deployment(replicas="three")
    with pytest.raises(ConversionError) as info:
        from_dict(doc, path=FieldPath("items").index(2))
    assert [e.field for e in info.value.errors] == ["items[2].spec.replicas"]


def test_conversion_error_message_and_api_error() -> None:
    doc = deployment(replicas="three")
    with pytest.raises(ConversionError) as info:
        from_dict(doc)
    error = info.value
    assert (error.kind, error.name) == ("Deployment", "nginx-deployment")
    assert str(error) == (
        'Deployment "nginx-deployment" is invalid: '
        'spec.replicas: Invalid type: "three": expected integer'
    )
    api_error = error.to_api_error()
    assert isinstance(api_error, BadRequest)
    assert api_error.causes == [
        {
            "reason": "FieldValueTypeInvalid",
            "field": "spec.replicas",
            "message": 'Invalid type: "three": expected integer',
        }
    ]


def test_input_is_not_mutated() -> None:
    doc = load("pod.yaml")
    before = copy.deepcopy(doc)
    from_dict(doc)
    assert doc == before


def test_quantity_fields_exist() -> None:
    # Catches a renamed proto field that would silently lose number-to-quantity handling.
    for full_name in QUANTITY_FIELDS:
        message_name, _, field_name = full_name.rpartition(".")
        message = getattr(v1, message_name.rpartition(".")[2])
        field = message.DESCRIPTOR.fields_by_name[field_name]
        assert field.cpp_type in (FieldDescriptor.CPPTYPE_STRING, FieldDescriptor.CPPTYPE_MESSAGE)


# ---------------------------------------------------------------------------- merge patch

# RFC 7386, appendix A.
RFC_7386_CASES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC_7386_CASES)
def test_merge_patch_rfc_7386(target: Any, patch: Any, expected: Any) -> None:
    assert merge_patch(target, patch) == expected


def test_merge_patch_is_pure() -> None:
    target = {"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1, "list": [1]}}
    patch = {"metadata": {"labels": {"b": "2"}}, "spec": {"list": [{"x": 1}]}}
    target_before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)
    result = merge_patch(target, patch)
    assert result == {
        "metadata": {"labels": {"a": "1", "b": "2"}},
        "spec": {"replicas": 1, "list": [{"x": 1}]},
    }
    assert (target, patch) == (target_before, patch_before)
    result["spec"]["list"][0]["x"] = 2
    result["metadata"]["labels"]["a"] = "changed"
    assert (target, patch) == (target_before, patch_before)


def test_merge_patch_then_convert() -> None:
    rtype, msg = from_dict(load("deployment.yaml"))
    patched = merge_patch(to_dict(rtype, msg), {"spec": {"replicas": 5, "strategy": None}})
    _, new = from_dict(patched)
    assert isinstance(new, v1.Deployment)
    assert new.spec.replicas == 5
    assert not new.spec.HasField("strategy")
