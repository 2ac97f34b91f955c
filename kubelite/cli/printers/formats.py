"""Cell formats that tables and describe share: ages, times, labels, selectors, names.

The formats the API server's tables use too live in :mod:`kubelite.api.cells`; this module
adds what only klctl prints."""

from __future__ import annotations

from kubelite.api.cells import (
    NONE,
    format_labels,
    format_selector,
    human_duration,
    node_roles,
    or_none,
    parse_timestamp,
    since,
)
from kubelite.api.registry import ResourceType
from protos.v1 import objects_pb2 as v1

__all__ = [
    "LAST_APPLIED",
    "NONE",
    "describe_time",
    "format_labels",
    "format_selector",
    "human_duration",
    "int_or_string",
    "node_roles",
    "or_none",
    "parse_timestamp",
    "resource_name",
    "since",
]

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def describe_time(timestamp: str) -> str:
    """RFC 1123 with numeric zone, as kubectl describe prints times."""
    t = parse_timestamp(timestamp)
    if t is None:
        return NONE
    return t.strftime("%a, %d %b %Y %H:%M:%S %z")


def int_or_string(value: v1.IntOrString) -> str:
    which = value.WhichOneof("value")
    return str(getattr(value, which)) if which else ""


def resource_name(rtype: ResourceType, name: str) -> str:
    """``deployment.apps/web``, as kubectl names an object in messages and -o name."""
    kind = f"{rtype.singular}.{rtype.group}" if rtype.group else rtype.singular
    return f"{kind}/{name}"
