"""Field selectors and the fields each kind supports."""

from __future__ import annotations

import pytest

from kubelite.api.fields import (
    FieldSelector,
    escape_value,
    object_fields,
    parse_field_selector,
    supported_fields,
    unescape_value,
)
from protos.v1 import objects_pb2 as v1


def _pod(name: str = "web", node: str = "", phase: str = "Pending") -> v1.Pod:
    pod = v1.Pod()
    pod.metadata.name = name
    pod.metadata.namespace = "default"
    pod.spec.node_name = node
    pod.status.phase = phase
    return pod


def test_supported_fields_per_kind() -> None:
    assert {"metadata.name", "metadata.namespace"} <= supported_fields("ConfigMap")
    assert supported_fields("ConfigMap") == {"metadata.name", "metadata.namespace"}
    pod = supported_fields("Pod")
    for f in (
        "spec.nodeName",
        "status.phase",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.podIP",
    ):
        assert f in pod
    event = supported_fields("Event")
    for f in (
        "involvedObject.kind",
        "involvedObject.name",
        "involvedObject.namespace",
        "involvedObject.uid",
        "reason",
        "type",
    ):
        assert f in event
    assert "spec.unschedulable" in supported_fields("Node")
    assert "type" in supported_fields("Secret")
    assert "status.successful" in supported_fields("Job")
    assert "spec.nodeName" not in supported_fields("Node")


def test_parse_and_match_pod() -> None:
    sel = parse_field_selector("metadata.name=web,spec.nodeName!=,status.phase=Running", "Pod")
    assert sel.matches(_pod(node="n1", phase="Running"))
    assert not sel.matches(_pod(node="", phase="Running"))  # unscheduled
    assert not sel.matches(_pod(node="n1", phase="Pending"))
    assert not sel.matches(_pod(name="other", node="n1", phase="Running"))


def test_double_equals() -> None:
    sel = parse_field_selector("spec.nodeName==n1", "Pod")
    assert sel.matches(_pod(node="n1"))
    assert not sel.matches(_pod(node="n2"))
    assert str(sel) == "spec.nodeName=n1"


def test_unsupported_field_message() -> None:
    with pytest.raises(ValueError) as info:
        parse_field_selector("spec.foo=1", "Pod")
    assert str(info.value) == "field label not supported: spec.foo"
    with pytest.raises(ValueError, match="field label not supported: spec.nodeName"):
        parse_field_selector("spec.nodeName=n1", "Service")


def test_without_kind_any_field_parses() -> None:
    assert parse_field_selector("spec.anything=x").required_value("spec.anything") == "x"


def test_bad_terms() -> None:
    with pytest.raises(ValueError, match="can't understand 'metadata.name'"):
        parse_field_selector("metadata.name", "Pod")
    with pytest.raises(ValueError, match="unescaped character: ="):
        parse_field_selector("metadata.name=a=b", "Pod")
    with pytest.raises(ValueError, match="invalid escape sequence"):
        parse_field_selector("metadata.name=a\\x", "Pod")


def test_escaping_round_trip() -> None:
    raw = "a,b=c\\d"
    assert unescape_value(escape_value(raw)) == raw
    sel = parse_field_selector(f"metadata.name={escape_value(raw)}", "Pod")
    assert sel.matches(_pod(name=raw))
    assert parse_field_selector(str(sel), "Pod") == sel


def test_empty_selector_matches_everything() -> None:
    assert parse_field_selector("", "Pod") == FieldSelector.everything()
    assert FieldSelector.everything().matches(_pod())


def test_bools_render_as_true_false() -> None:
    node = v1.Node()
    node.metadata.name = "n1"
    node.spec.unschedulable = True
    assert object_fields(node)["spec.unschedulable"] == "true"
    assert parse_field_selector("spec.unschedulable=true", "Node").matches(node)
    assert not parse_field_selector("spec.unschedulable=false", "Node").matches(node)


def test_event_job_secret_fields() -> None:
    ev = v1.Event()
    ev.metadata.namespace = "default"
    ev.involved_object.kind = "Pod"
    ev.involved_object.name = "web"
    ev.involved_object.uid = "u1"
    ev.reason = "Scheduled"
    ev.type = "Normal"
    sel = parse_field_selector(
        "involvedObject.kind=Pod,involvedObject.name=web,involvedObject.uid=u1,reason=Scheduled,"
        "type=Normal,involvedObject.namespace=",
        "Event",
    )
    assert sel.matches(ev)
    job = v1.Job()
    job.status.succeeded = 3
    assert parse_field_selector("status.successful=3", "Job").matches(job)
    secret = v1.Secret(type="kubernetes.io/tls")
    assert parse_field_selector("type=kubernetes.io/tls", "Secret").matches(secret)
    assert not parse_field_selector("type=Opaque", "Secret").matches(secret)


def test_required_value_for_indexing() -> None:
    sel = parse_field_selector("spec.nodeName=n1,status.phase!=Failed", "Pod")
    assert sel.required_value("spec.nodeName") == "n1"
    assert sel.required_value("status.phase") is None
