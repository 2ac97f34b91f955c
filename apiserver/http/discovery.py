"""Discovery documents of the HTTP API: /version, /api, /apis and the resource lists."""

from __future__ import annotations

from typing import Any


def version() -> dict[str, Any]:
    """/version: the server's version.Info."""
    return {"major": "1", "minor": "31", "gitVersion": "v1.31.0-kubelite"}


def api_versions() -> dict[str, Any]:
    """/api: the core group's APIVersions."""
    return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}


def api_group_list() -> dict[str, Any]:
    """/apis: every named group served."""
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    """/api/v1 or /apis/GROUP/VERSION: an APIResourceList; None for a group/version not
    served."""
    return None
