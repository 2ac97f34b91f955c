"""How kubectl writes values in its table cells and describe text: ages and durations, times,
labels, selectors and node roles (apimachinery's and kubectl's printers' helpers)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from kubelite.api import meta as m
from protos.v1 import objects_pb2 as v1

NONE = "<none>"

# ---------------------------------------------------------------------------- times


def parse_timestamp(text: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        return m.parse_time(text)
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration: 5s, 3m12s, 4h, 2d3h, 3y45d."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def since(timestamp: str, now: dt.datetime) -> str:
    """kubectl's translateTimestampSince: the age of a timestamp, <unknown> when unset."""
    t = parse_timestamp(timestamp)
    if t is None:
        return "<unknown>"
    return human_duration((now - t).total_seconds())


# ---------------------------------------------------------------------------- small formats


def format_labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return NONE
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def format_selector(selector: v1.LabelSelector | None) -> str:
    """metav1.FormatLabelSelector."""
    if selector is None:
        return NONE
    parts = [f"{k}={selector.match_labels[k]}" for k in sorted(selector.match_labels)]
    for req in selector.match_expressions:
        op = req.operator
        if op == "In":
            parts.append(f"{req.key} in ({','.join(req.values)})")
        elif op == "NotIn":
            parts.append(f"{req.key} notin ({','.join(req.values)})")
        elif op == "Exists":
            parts.append(req.key)
        elif op == "DoesNotExist":
            parts.append(f"!{req.key}")
        else:
            parts.append(f"{req.key} {op} ({','.join(req.values)})")
    return ",".join(parts) or NONE


def or_none(text: str) -> str:
    return text if text else NONE


def node_roles(node: v1.Node) -> str:
    roles = set()
    for key, value in node.metadata.labels.items():
        if key.startswith("node-role.kubernetes.io/"):
            role = key.removeprefix("node-role.kubernetes.io/")
            if role:
                roles.add(role)
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return ",".join(sorted(roles)) or NONE
