"""meta.k8s.io/v1 Table responses: the columns ``kubectl get`` prints, computed by the server."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from kubelite.api.registry import ResourceType


def table(rtype: ResourceType, objects: list[Message], *, list_meta: dict[str, Any],
          include_object: str = "Metadata") -> dict[str, Any]:
    """The Table of ``objects`` (one for a get, all of a list's for a list)."""
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": dict(list_meta),
            "columnDefinitions": [], "rows": []}
