"""klctl apply and Secrets: the last-applied annotation keeps digests of data and stringData,
never the values, and the three-way patch still sees what changed."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

from kubelite.api import convert
from kubelite.api.registry import by_kind
from kubelite.cli.klctl.apply import (
    applied_configuration,
    apply_patch,
    recorded_configuration,
    redact_secret,
)
from kubelite.cli.printers.formats import LAST_APPLIED

SECRETS = by_kind("Secret")
CONFIGMAPS = by_kind("ConfigMap")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def manifest(data: dict[str, str] | None = None,
             string_data: dict[str, str] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                           "metadata": {"name": "db"}}
    if data is not None:
        doc["data"] = data
    if string_data is not None:
        doc["stringData"] = string_data
    return doc


def applied(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest as apply sends it (with its annotation) and the annotation, parsed."""
    config = applied_configuration(SECRETS, doc, "default")
    recorded = recorded_configuration(SECRETS, config)
    modified = copy.deepcopy(config)
    modified["metadata"].setdefault("annotations", {})[LAST_APPLIED] = recorded
    return modified, json.loads(recorded)


def live(modified: dict[str, Any]) -> dict[str, Any]:
    """The object the server would hold after storing ``modified`` (stringData into data)."""
    _, obj = convert.from_dict(modified)
    obj.metadata.resource_version = "7"  # type: ignore[attr-defined]
    current = convert.to_dict(SECRETS, obj)
    for key, value in modified.get("stringData", {}).items():
        current.setdefault("data", {})[key] = b64(value)
    current.pop("stringData", None)
    return current


def test_the_annotation_keeps_digests_not_values() -> None:
    modified, recorded = applied(manifest({"password": b64("hunter2")}, {"token": "t0ken"}))
    annotation = modified["metadata"]["annotations"][LAST_APPLIED]
    assert "hunter2" not in annotation and b64("hunter2") not in annotation
    assert "t0ken" not in annotation
    assert recorded["data"] == {"password": "sha256:" + hashlib.sha256(b"hunter2").hexdigest()}
    assert recorded["stringData"] == {"token": "sha256:" + hashlib.sha256(b"t0ken").hexdigest()}
    # What is sent to the server still has the values.
    assert modified["data"] == {"password": b64("hunter2")}
    assert modified["stringData"] == {"token": "t0ken"}


def test_other_kinds_keep_their_data_in_the_annotation() -> None:
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
           "data": {"k": "v"}}
    recorded = json.loads(recorded_configuration(CONFIGMAPS, applied_configuration(
        CONFIGMAPS, doc, "default")))
    assert recorded["data"] == {"k": "v"}


def test_an_unchanged_secret_needs_no_patch() -> None:
    doc = manifest({"password": b64("hunter2"), "user": b64("admin")})
    first, _ = applied(doc)
    current = live(first)
    again, original = applied(doc)
    assert apply_patch(SECRETS, original, again, current) == {}


def test_a_changed_value_is_sent_in_plaintext_and_an_unchanged_one_is_not() -> None:
    first, original = applied(manifest({"password": b64("hunter2"), "user": b64("admin")}))
    current = live(first)
    second, _ = applied(manifest({"password": b64("correct horse"), "user": b64("admin")}))
    patch = apply_patch(SECRETS, original, second, current)
    assert patch["data"] == {"password": b64("correct horse")}
    annotation = patch["metadata"]["annotations"][LAST_APPLIED]
    assert "correct horse" not in annotation and b64("correct horse") not in annotation


def test_a_removed_key_is_removed_and_an_added_one_added() -> None:
    first, original = applied(manifest({"password": b64("hunter2"), "user": b64("admin")}))
    current = live(first)
    current["data"]["other-writer"] = b64("kept")
    second, _ = applied(manifest({"password": b64("hunter2"), "host": b64("db.local")}))
    patch = apply_patch(SECRETS, original, second, current)
    assert patch["data"] == {"user": None, "host": b64("db.local")}


def test_string_data_values_are_sent_as_written() -> None:
    first, original = applied(manifest(string_data={"token": "t0ken"}))
    current = live(first)
    second, _ = applied(manifest(string_data={"token": "rotated"}))
    patch = apply_patch(SECRETS, original, second, current)
    assert patch["stringData"] == {"token": "rotated"}


def test_a_first_apply_over_a_secret_without_data_sends_every_value() -> None:
    first, original = applied(manifest())
    current = live(first)
    second, _ = applied(manifest({"password": b64("hunter2")}))
    patch = apply_patch(SECRETS, original, second, current)
    assert patch["data"] == {"password": b64("hunter2")}


def test_redaction_compares_data_by_its_bytes() -> None:
    # A data value is digested as the bytes it encodes: stringData "x" and data "eA==" agree
    # (the server turns one into the other).
    assert redact_secret({"data": {"a": b64("x")}})["data"]["a"] == redact_secret(
        {"stringData": {"a": "x"}})["stringData"]["a"]
    assert redact_secret({"data": {"a": None}}) == {"data": {"a": None}}
