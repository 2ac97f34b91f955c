"""Names and object metadata: the rules every kind shares, with Kubernetes' wording."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from google.protobuf.message import Message

from kubelite.api import meta as m
from kubelite.api.field_errors import ErrorType
from kubelite.api.names import (
    is_c_identifier,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_valid_port_name,
    mask_trailing_dash,
    name_is_dns_subdomain,
)
from kubelite.api.validation import validate
from protos.v1 import objects_pb2 as v1
from tests.unit.validation.support import (
    SUBDOMAIN_MSG,
    VALID,
    At,
    Expect,
    defaulted,
    exactly,
    fields_of,
    make_pod,
    only_at,
)

INVALID, REQUIRED, FORBIDDEN = ErrorType.INVALID, ErrorType.REQUIRED, ErrorType.FORBIDDEN

# ---------------------------------------------------------------- names


@pytest.mark.parametrize(("rule", "value", "how", "expected"), [
    pytest.param(is_dns1123_subdomain, "Bad_Name", "==", [SUBDOMAIN_MSG], id="subdomain"),
    pytest.param(is_dns1123_subdomain, "a" * 254, "first", "must be no more than 253 characters",
                 id="subdomain-too-long"),
    pytest.param(is_dns1123_label, "a.b", "==", ["must not contain dots"], id="label-dots"),
    pytest.param(is_dns1123_label, "-a", "first-starts",
                 "a lowercase RFC 1123 label must consist", id="label-leading-dash"),
    pytest.param(is_dns1035_label, "1abc", "first-starts",
                 "a DNS-1035 label must consist of lower case alphanumeric characters or '-',"
                 " start with an alphabetic character", id="dns1035-leading-digit"),
    pytest.param(is_dns1035_label, "abc-1", "==", [], id="dns1035-ok"),
    pytest.param(is_c_identifier, "_ok9", "==", [], id="c-identifier-ok"),
    pytest.param(is_c_identifier, "9no", "some", None, id="c-identifier-leading-digit"),
    pytest.param(is_env_var_name, "MY.VAR-1", "==", [], id="env-var-ok"),
    pytest.param(is_env_var_name, "1VAR", "some", None, id="env-var-leading-digit"),
    pytest.param(is_env_var_name, "..", "==", ["must not be '..'"], id="env-var-dotdot"),
    pytest.param(is_valid_port_name, "http", "==", [], id="port-name-ok"),
    pytest.param(is_valid_port_name, "8080", "==", ["must contain at least one letter (a-z)"],
                 id="port-name-digits"),
    pytest.param(is_valid_port_name, "a" * 16, "in", "must be no more than 15 characters",
                 id="port-name-too-long"),
    pytest.param(is_valid_port_name, "a--b", "in", "must not contain consecutive hyphens (-)",
                 id="port-name-double-hyphen"),
    pytest.param(is_valid_port_name, "a-", "in", "must not begin or end with a hyphen (-)",
                 id="port-name-trailing-hyphen"),
])
def test_name_messages(
    rule: Callable[[str], list[str]], value: str, how: str, expected: object
) -> None:
    messages = rule(value)
    if how == "==":
        assert messages == expected
    elif how == "first":
        assert messages[0] == expected
    elif how == "first-starts":
        assert isinstance(expected, str)
        assert messages[0].startswith(expected)
    elif how == "in":
        assert expected in messages
    else:
        assert how == "some"
        assert messages != []


@pytest.mark.parametrize(("name", "masked"), [
    pytest.param("web-", "wea", id="upstream-replaces-the-last-two-characters"),
    pytest.param("-", "-", id="too-short"),
])
def test_mask_trailing_dash(name: str, masked: str) -> None:
    assert mask_trailing_dash(name) == masked


@pytest.mark.parametrize(("prefix", "valid"), [
    pytest.param(True, True, id="generateName-prefix"),
    pytest.param(False, False, id="name"),
])
def test_trailing_dash_only_in_a_prefix(prefix: bool, valid: bool) -> None:
    assert (name_is_dns_subdomain("web-", prefix) == []) is valid


# ---------------------------------------------------------------- metadata


def test_valid_pod_has_no_errors() -> None:
    assert validate(make_pod()) == []


def test_name_required_unless_generate_name() -> None:
    pod = make_pod()
    pod.metadata.name = ""
    only_at(At(
        "metadata.name", type=REQUIRED,
        text="metadata.name: Required value: name or generateName is required",
    )).check(validate(pod))


@pytest.mark.parametrize(("generate_name", "expect"), [
    pytest.param("web-", VALID, id="valid-prefix"),
    pytest.param("Web-", exactly((INVALID, "metadata.generateName")), id="invalid-prefix"),
])
def test_generate_name_stands_in_for_name(generate_name: str, expect: Expect) -> None:
    pod = make_pod()
    pod.metadata.name = ""
    pod.metadata.generate_name = generate_name
    expect.check(validate(pod))


def test_invalid_name_message() -> None:
    pod = make_pod()
    pod.metadata.name = "Bad_Name"
    errs = validate(pod)
    assert [str(e) for e in errs] == [f'metadata.name: Invalid value: "Bad_Name": {SUBDOMAIN_MSG}']


def _namespace(name: str) -> Message:
    ns = v1.Namespace()
    ns.metadata.name = name
    return defaulted(ns)


def _config_map(name: str) -> Message:
    cm = v1.ConfigMap()
    cm.metadata.name, cm.metadata.namespace = name, "default"
    return cm


def _service(name: str) -> Message:
    svc = v1.Service()
    svc.metadata.name, svc.metadata.namespace = name, "default"
    svc.spec.ports.add(port=80)
    return defaulted(svc)


@pytest.mark.parametrize(("build", "name", "expect"), [
    pytest.param(_namespace, "a.b",
                 only_at(At("metadata.name", detail="must not contain dots")),
                 id="namespace-dns-label"),
    pytest.param(_config_map, "1abc.x", VALID, id="configmap-dns-subdomain"),
    pytest.param(_service, "1abc",
                 exactly((INVALID, "metadata.name"),
                         at=(At("metadata.name", detail_has="DNS-1035"),)),
                 id="service-dns-1035-label"),
])
def test_name_rules_per_kind(build: Callable[[str], Message], name: str, expect: Expect) -> None:
    expect.check(validate(build(name)))


def _node_in_default() -> Message:
    node = v1.Node()
    node.metadata.name = "n1"
    node.metadata.namespace = "default"
    return node


def _pod_without_namespace() -> Message:
    pod = make_pod()
    pod.metadata.namespace = ""
    return pod


@pytest.mark.parametrize(("build", "expect"), [
    pytest.param(_pod_without_namespace, only_at(At("metadata.namespace", type=REQUIRED)),
                 id="namespaced-kind"),
    pytest.param(_node_in_default, only_at(At("metadata.namespace", type=FORBIDDEN)),
                 id="cluster-scoped-kind"),
])
def test_namespace_required_or_forbidden(build: Callable[[], Message], expect: Expect) -> None:
    expect.check(validate(build()))


def test_labels_and_annotations() -> None:
    pod = make_pod()
    pod.metadata.labels["bad key"] = "v"
    pod.metadata.labels["ok"] = "bad value"
    pod.metadata.annotations["Example.com/Fine"] = "annotation keys ignore case"
    pod.metadata.annotations["no/pe/x"] = "x"
    errs = validate(pod)
    assert [(e.field, e.value) for e in errs] == [
        ("metadata.labels", "bad key"),
        ("metadata.labels", "bad value"),
        ("metadata.annotations", "no/pe/x"),
    ]


def test_owner_references() -> None:
    pod = make_pod()
    pod.metadata.owner_references.add(api_version="apps/v1", kind="ReplicaSet", name="rs")
    assert fields_of(validate(pod)) == {(INVALID, "metadata.ownerReferences[0].uid")}


def _add_label(meta: v1.ObjectMeta) -> None:
    meta.labels["added"] = "fine"


def _change_identity(meta: v1.ObjectMeta) -> None:
    meta.uid = "u2"
    meta.name = "other"
    meta.creation_timestamp = "2025-01-01T00:00:00Z"


@pytest.mark.parametrize(("change", "expect"), [
    pytest.param(_add_label, VALID, id="labels-may-change"),
    pytest.param(_change_identity, exactly(
        (INVALID, "metadata.uid"), (INVALID, "metadata.name"),
        (INVALID, "metadata.creationTimestamp"),
        at=tuple(At(f, detail="field is immutable")
                 for f in ("metadata.uid", "metadata.name", "metadata.creationTimestamp")),
    ), id="uid-name-creationTimestamp-immutable"),
])
def test_metadata_update_immutable(
    change: Callable[[v1.ObjectMeta], None], expect: Expect
) -> None:
    old = make_pod()
    old.metadata.uid = "u1"
    old.metadata.creation_timestamp = "2024-01-01T00:00:00Z"
    new = m.copy(old)
    change(new.metadata)
    expect.check(validate(new, old))


def test_no_new_finalizers_while_deleting() -> None:
    old = make_pod()
    old.metadata.deletion_timestamp = "2024-01-01T00:00:00Z"
    new = m.copy(old)
    new.metadata.finalizers.append("example.com/hold")
    only_at(At("metadata.finalizers", type=FORBIDDEN)).check(validate(new, old))


@pytest.mark.parametrize(("obj", "old"), [
    pytest.param(v1.PodSpec(), None, id="not-a-kind"),
    pytest.param(make_pod(), v1.Node(), id="old-of-another-kind"),
])
def test_unregistered_message_raises(obj: Message, old: Message | None) -> None:
    with pytest.raises(TypeError):
        validate(obj, old)
