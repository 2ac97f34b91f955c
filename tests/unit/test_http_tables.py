"""meta.k8s.io/v1 Tables of the HTTP API: upstream's shape, and the cells klctl prints."""

from __future__ import annotations

import datetime as dt

import pytest

from apiserver.http.tables import table
from kubelite.api.errors import BadRequest
from kubelite.api.registry import by_kind
from kubelite.cli.printers.tables import Table
from protos.v1 import objects_pb2 as v1

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
CREATED = "2026-01-02T02:04:05Z"  # an hour before NOW


def _pod() -> v1.Pod:
    pod = v1.Pod(metadata=v1.ObjectMeta(
        name="web-1", namespace="shop", uid="u1", resource_version="7",
        creation_timestamp=CREATED, labels={"app": "web"}))
    pod.spec.node_name = "node-1"
    pod.spec.containers.add(name="app", image="busybox")
    pod.status.phase = "Running"
    pod.status.pod_ip = "127.244.1.5"
    pod.status.conditions.add(type="Ready", status="True")
    status = pod.status.container_statuses.add(name="app", ready=True, restart_count=2)
    status.state.running.started_at = CREATED
    return pod


def test_pod_table_has_upstreams_shape() -> None:
    document = table(by_kind("Pod"), [_pod()], list_meta={"resourceVersion": "9"}, now=NOW)
    assert (document["kind"], document["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert document["metadata"] == {"resourceVersion": "9"}
    columns = document["columnDefinitions"]
    assert [(c["name"], c["priority"]) for c in columns] == [
        ("Name", 0), ("Ready", 0), ("Status", 0), ("Restarts", 0), ("Age", 0),
        ("IP", 1), ("Node", 1), ("Nominated Node", 1), ("Readiness Gates", 1)]
    assert columns[0] == {"name": "Name", "type": "string", "format": "name",
                          "description": columns[0]["description"], "priority": 0}
    [row] = document["rows"]
    assert row["cells"] == ["web-1", "1/1", "Running", "2", "60m", "127.244.1.5", "node-1",
                            "<none>", "<none>"]
    assert row["object"] == {
        "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1", "resourceVersion": "7",
                     "creationTimestamp": CREATED, "labels": {"app": "web"}},
    }


def test_cells_are_what_klctl_prints_for_every_kind_with_columns() -> None:
    deployment = v1.Deployment(metadata=v1.ObjectMeta(name="web", namespace="shop",
                                                      creation_timestamp=CREATED))
    deployment.spec.replicas = 3
    deployment.spec.selector.match_labels["app"] = "web"
    deployment.spec.template.spec.containers.add(name="app", image="nginx")
    deployment.status.ready_replicas = 2
    for kind, obj in (("Pod", _pod()), ("Deployment", deployment)):
        rtype = by_kind(kind)
        [row] = table(rtype, [obj], list_meta={}, now=NOW)["rows"]
        printed = Table(rtype, wide=True).row(obj, NOW)
        assert [str(c) for c in row["cells"]] == printed


def test_integer_columns_hold_numbers() -> None:
    rs = v1.ReplicaSet(metadata=v1.ObjectMeta(name="web-abc", namespace="shop",
                                              creation_timestamp=CREATED))
    rs.spec.replicas = 3
    rs.status.replicas = 3
    rs.status.ready_replicas = 1
    document = table(by_kind("ReplicaSet"), [rs], list_meta={}, now=NOW)
    types = [c["type"] for c in document["columnDefinitions"]][:5]
    assert types == ["string", "integer", "integer", "integer", "string"]
    assert document["rows"][0]["cells"][:5] == ["web-abc", 3, 3, 1, "60m"]


def test_roles_show_their_creation_as_a_date() -> None:
    role = v1.Role(metadata=v1.ObjectMeta(name="reader", namespace="shop",
                                          creation_timestamp=CREATED))
    document = table(by_kind("Role"), [role], list_meta={}, now=NOW)
    assert [(c["name"], c["type"]) for c in document["columnDefinitions"]] == [
        ("Name", "string"), ("Created At", "date")]
    assert document["rows"][0]["cells"] == ["reader", CREATED]


def test_events_wide_columns_sit_where_kubectl_prints_them() -> None:
    document = table(by_kind("Event"), [], list_meta={}, now=NOW)
    assert [(c["name"], c["priority"]) for c in document["columnDefinitions"]] == [
        ("Last Seen", 0), ("Type", 0), ("Reason", 0), ("Object", 0), ("Subobject", 1),
        ("Source", 1), ("Message", 0), ("First Seen", 1), ("Count", 1), ("Name", 1)]
    assert document["rows"] == []


def test_include_object() -> None:
    pod = _pod()
    full = table(by_kind("Pod"), [pod], list_meta={}, include_object="Object", now=NOW)
    obj = full["rows"][0]["object"]
    assert (obj["apiVersion"], obj["kind"]) == ("v1", "Pod")
    assert obj["spec"]["nodeName"] == "node-1"
    none = table(by_kind("Pod"), [pod], list_meta={}, include_object="None", now=NOW)
    assert "object" not in none["rows"][0]
    default = table(by_kind("Pod"), [pod], list_meta={}, include_object="", now=NOW)
    assert default["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    with pytest.raises(BadRequest, match='includeObject: Unsupported value: "Everything"'):
        table(by_kind("Pod"), [pod], list_meta={}, include_object="Everything")


def test_a_kind_without_columns_of_its_own_shows_name_and_age() -> None:
    review = v1.SubjectAccessReview(metadata=v1.ObjectMeta(name="r", creation_timestamp=CREATED))
    document = table(by_kind("SubjectAccessReview"), [review], list_meta={}, now=NOW)
    assert [c["name"] for c in document["columnDefinitions"]] == ["Name", "Age"]
    assert document["rows"][0]["cells"] == ["r", "60m"]
