"""Label key/value rules and label selectors."""

from __future__ import annotations

import pytest

from kubelite.api.field_errors import ErrorType, FieldPath
from kubelite.api.labels import (
    Operator,
    Requirement,
    Selector,
    is_qualified_name,
    is_valid_label_value,
    parse_selector,
    selector_from_label_selector,
    validate_label_selector,
    validate_labels,
)
from protos.v1 import objects_pb2 as v1

NAME_PART_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and"
    " end with an alphanumeric character (e.g. 'MyName' or 'my.name' or '123-abc', regex"
    " used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)


@pytest.mark.parametrize(
    "key",
    ["app", "App_1", "a.b-c", "example.com/name", "k8s.io/MyName", "a" * 63, "x/" + "b" * 63],
)
def test_valid_label_keys(key: str) -> None:
    assert is_qualified_name(key) == []


def test_invalid_label_keys_carry_kubernetes_messages() -> None:
    assert is_qualified_name("-app") == [NAME_PART_MSG]
    assert is_qualified_name("a" * 64) == ["name part must be no more than 63 characters"]
    assert is_qualified_name("/a") == ["prefix part must be non-empty"]
    assert is_qualified_name("Example.com/a")[0].startswith("prefix part a lowercase RFC 1123")
    assert is_qualified_name("a/b/c")[0].startswith("a qualified name must consist")
    assert is_qualified_name("a/") == ["name part must be non-empty", NAME_PART_MSG]
    assert is_qualified_name("app\n") != []  # no trailing-newline loophole


def test_label_values() -> None:
    assert is_valid_label_value("") == []
    assert is_valid_label_value("v1.2_3-x") == []
    assert is_valid_label_value("a" * 64) == ["must be no more than 63 characters"]
    assert is_valid_label_value("-x")[0].startswith("a valid label must be an empty string")
    assert is_valid_label_value("has space") != []


def test_validate_labels_reports_at_map_path() -> None:
    errs = validate_labels(
        {"ok": "fine", "bad key": "v", "k": "-bad"}, FieldPath("metadata.labels")
    )
    assert [e.field for e in errs] == ["metadata.labels", "metadata.labels"]
    assert {e.value for e in errs} == {"bad key", "-bad"}
    assert all(e.type is ErrorType.INVALID for e in errs)


def test_parse_full_syntax_and_match() -> None:
    sel = parse_selector("a=b,c!=d,e in (x,y),f notin (z),g,!h")
    assert sel.matches({"a": "b", "e": "x", "g": ""})
    assert sel.matches({"a": "b", "c": "other", "e": "y", "f": "q", "g": "1"})
    assert not sel.matches({"a": "b", "e": "x", "g": "1", "h": "1"})  # !h
    assert not sel.matches({"a": "b", "c": "d", "e": "x", "g": "1"})  # c!=d
    assert not sel.matches({"a": "b", "e": "w", "g": "1"})  # e in (x,y)
    assert not sel.matches({"a": "b", "e": "x", "f": "z", "g": "1"})  # f notin (z)
    assert not sel.matches({"a": "b", "e": "x"})  # g exists
    assert not sel.matches({})


def test_double_equals_and_whitespace() -> None:
    sel = parse_selector(" app == web , tier in ( a , b ) ")
    assert sel.matches({"app": "web", "tier": "b"})
    assert not sel.matches({"app": "web2", "tier": "b"})


def test_string_form_is_sorted_by_key() -> None:
    sel = parse_selector("z=1,!b,a in (y,x),m notin (q),k")
    assert str(sel) == "a in (x,y),!b,k,m notin (q),z=1"
    assert parse_selector(str(sel)) == sel


def test_empty_value_forms() -> None:
    assert parse_selector("a=").matches({"a": ""})
    assert not parse_selector("a=").matches({"a": "x"})
    assert parse_selector("a in ()").matches({"a": ""})


def test_gt_lt() -> None:
    sel = parse_selector("n>3,m<10")
    assert sel.matches({"n": "4", "m": "9"})
    assert not sel.matches({"n": "3", "m": "9"})
    assert not sel.matches({"n": "x", "m": "9"})
    with pytest.raises(ValueError):
        parse_selector("n>x")


def test_everything_and_nothing() -> None:
    assert parse_selector("") == Selector.everything()
    assert Selector.everything().matches({"any": "thing"})
    assert Selector.everything().empty()
    assert not Selector.match_nothing().matches({})


@pytest.mark.parametrize(
    "text",
    [
        "a=b,",
        ",a",
        "a in x",
        "a in (x",
        "=b",
        "a b",
        "!",
        "a=b=c",
        "a=-bad-",
        "a/b/c=1",
        "a in (x) y",
        "in=1",
    ],
)
def test_bad_syntax_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_selector(text)
    assert text in str(info.value)


def test_bad_syntax_message_names_the_problem() -> None:
    with pytest.raises(ValueError, match="found 'x', expected: '\\('"):
        parse_selector("a in x")
    with pytest.raises(ValueError, match='invalid label key "a/b/c"'):
        parse_selector("a/b/c")


def test_required_value_for_indexing() -> None:
    assert parse_selector("app=web,x!=y").required_value("app") == "web"
    assert parse_selector("app in (web)").required_value("app") == "web"
    assert parse_selector("app in (web,db)").required_value("app") is None


def test_requirement_validation() -> None:
    with pytest.raises(ValueError, match="values set can't be empty"):
        Requirement.new("a", Operator.IN, [])
    with pytest.raises(ValueError, match="one single value"):
        Requirement.new("a", Operator.EQUALS, ["x", "y"])
    with pytest.raises(ValueError, match="must be empty"):
        Requirement.new("a", Operator.EXISTS, ["x"])


def test_from_label_selector() -> None:
    msg = v1.LabelSelector(match_labels={"app": "web"})
    msg.match_expressions.add(key="tier", operator="In", values=["fe", "be"])
    msg.match_expressions.add(key="legacy", operator="DoesNotExist")
    msg.match_expressions.add(key="env", operator="Exists")
    msg.match_expressions.add(key="zone", operator="NotIn", values=["z1"])
    sel = selector_from_label_selector(msg)
    assert sel.matches({"app": "web", "tier": "fe", "env": "p"})
    assert not sel.matches({"app": "web", "tier": "fe", "env": "p", "legacy": "1"})
    assert not sel.matches({"app": "web", "tier": "fe", "env": "p", "zone": "z1"})
    assert not sel.matches({"app": "web", "tier": "fe"})
    assert str(sel) == "app=web,env,!legacy,tier in (be,fe),zone notin (z1)"


def test_empty_label_selector_matches_everything_none_matches_nothing() -> None:
    assert selector_from_label_selector(v1.LabelSelector()).matches({"a": "b"})
    assert not selector_from_label_selector(None).matches({"a": "b"})


def test_from_label_selector_bad_operator() -> None:
    msg = v1.LabelSelector()
    msg.match_expressions.add(key="a", operator="Contains", values=["x"])
    with pytest.raises(ValueError, match='"Contains" is not a valid label selector operator'):
        selector_from_label_selector(msg)


def test_validate_label_selector_paths() -> None:
    msg = v1.LabelSelector(match_labels={"ok": "-bad"})
    msg.match_expressions.add(key="a", operator="In")
    msg.match_expressions.add(key="b", operator="Exists", values=["x"])
    msg.match_expressions.add(key="c", operator="Bogus")
    msg.match_expressions.add(key="d", operator="In", values=["-no-"])
    errs = validate_label_selector(msg, FieldPath("spec.selector"))
    got = {(e.type, e.field) for e in errs}
    assert got == {
        (ErrorType.INVALID, "spec.selector.matchLabels"),
        (ErrorType.REQUIRED, "spec.selector.matchExpressions[0].values"),
        (ErrorType.FORBIDDEN, "spec.selector.matchExpressions[1].values"),
        (ErrorType.INVALID, "spec.selector.matchExpressions[2].operator"),
        (ErrorType.INVALID, "spec.selector.matchExpressions[3].values[0]"),
    }
