"""Cell formats that tables and describe share: ages, times, labels, selectors, names."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from kubelite.api import meta as m
from kubelite.api.registry import ResourceType
from protos.v1 import objects_pb2 as v1

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
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


def describe_time(timestamp: str) -> str:
    """RFC 1123 with numeric zone, as kubectl describe prints times."""
    t = parse_timestamp(timestamp)
    if t is None:
        return NONE
    return t.strftime("%a, %d %b %Y %H:%M:%S %z")


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


def int_or_string(value: v1.IntOrString) -> str:
    which = value.WhichOneof("value")
    return str(getattr(value, which)) if which else ""



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



def resource_name(rtype: ResourceType, name: str) -> str:
    """``deployment.apps/web``, as kubectl names an object in messages and -o name."""
    kind = f"{rtype.singular}.{rtype.group}" if rtype.group else rtype.singular
    return f"{kind}/{name}"

