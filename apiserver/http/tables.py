"""meta.k8s.io/v1 Table responses: the columns ``kubectl get`` prints, computed by the server.

kubectl asks for them with ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and prints
the column definitions (capitalised; priority 1 only with ``-o wide``) and the rows' cells as
they come. The columns and cells are :mod:`kubelite.api.columns`, the ones klctl prints. Each
row carries its object (``includeObject``): as PartialObjectMetadata by default, which is what
kubectl reads for ``--all-namespaces`` and ``--show-labels``, the whole object, or nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from google.protobuf.message import Message

from kubelite.api import meta as m
from kubelite.api.columns import Column, columns_for
from kubelite.api.convert import message_to_dict, to_dict
from kubelite.api.errors import BadRequest
from kubelite.api.registry import ResourceType

TABLE_API_VERSION = "meta.k8s.io/v1"

INCLUDE_OBJECT = ("None", "Metadata", "Object")
"""The values of ``includeObject`` (upstream's IncludeObjectPolicy)."""


def table(rtype: ResourceType, objects: Sequence[Message], *, list_meta: dict[str, Any],
          include_object: str = "Metadata", now: dt.datetime | None = None) -> dict[str, Any]:
    """The Table of ``objects`` (the one of a get, a list's items, a watch event's object).

    ``list_meta`` is the table's ``metadata`` (a list's resourceVersion and continue);
    ``include_object`` is the request's ``includeObject`` ("" is the default, Metadata).
    Raises BadRequest for any other value.
    """
    policy = include_object or "Metadata"
    if policy not in INCLUDE_OBJECT:
        supported = ", ".join(f'"{v}"' for v in INCLUDE_OBJECT)
        raise BadRequest(f'includeObject: Unsupported value: "{include_object}": supported'
                         f" values: {supported}")
    kind = columns_for(rtype.kind)
    when = now if now is not None else dt.datetime.now(dt.UTC)
    rows = []
    for obj in objects:
        cells = kind.row(obj, when)
        row: dict[str, Any] = {"cells": [_cell(c, v) for c, v in zip(kind.columns, cells,
                                                                    strict=True)]}
        if policy == "Metadata":
            row["object"] = partial_object_metadata(obj)
        elif policy == "Object":
            row["object"] = to_dict(rtype, obj)
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": TABLE_API_VERSION,
        "metadata": dict(list_meta),
        "columnDefinitions": [column_definition(c) for c in kind.columns],
        "rows": rows,
    }


def column_definition(column: Column) -> dict[str, Any]:
    """A metav1.TableColumnDefinition."""
    return {"name": column.name, "type": column.type, "format": column.format,
            "description": column.description, "priority": column.priority}


def partial_object_metadata(obj: Message) -> dict[str, Any]:
    """An object's metadata alone, as a meta.k8s.io/v1 PartialObjectMetadata."""
    return {"kind": "PartialObjectMetadata", "apiVersion": TABLE_API_VERSION,
            "metadata": message_to_dict(m.meta(obj))}


def _cell(column: Column, text: str) -> Any:
    # Upstream's integer columns hold numbers; the text is how klctl prints them.
    if column.type == "integer" and text.lstrip("-").isdigit():
        return int(text)
    return text
