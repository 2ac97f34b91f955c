"""Kubernetes' Status objects: how the HTTP API answers a failure (and a few successes).

Every ApiError becomes a ``v1 Status`` with its ``http_status`` as the response code, its
``reason``, a ``details`` naming the object (name, group, kind) and, for Invalid, its field
``causes``; a retry-after (TooManyRequests, a too large resourceVersion) is also the
``Retry-After`` header, as kube-apiserver sends it.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
from aiohttp import web

from kubelite.api.errors import ApiError, Invalid
from kubelite.api.registry import ResourceType

JSON = "application/json"


class NotAcceptable(ApiError):
    """No media type the client accepts can be produced (406)."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "NotAcceptable"
    http_status = 406


class UnsupportedMediaType(ApiError):
    """The request's body is in a media type the server does not read (415)."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "UnsupportedMediaType"
    http_status = 415


def status(error: ApiError, rtype: ResourceType | None = None, name: str = ""
           ) -> dict[str, Any]:
    """The Status of a failed request on ``name`` of ``rtype`` (either may be unknown)."""
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if rtype is not None:
        if rtype.group:
            details["group"] = rtype.group
        # Kubernetes names the kind in an Invalid's details and the resource elsewhere.
        details["kind"] = rtype.kind if isinstance(error, Invalid) else rtype.plural
    if error.causes:
        details["causes"] = [dict(c) for c in error.causes]
    if error.retry_after_seconds:
        details["retryAfterSeconds"] = error.retry_after_seconds
    body: dict[str, Any] = {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": error.message, "reason": error.reason,
    }
    if details:
        body["details"] = details
    body["code"] = error.http_status
    return body


def success(code: int = 200, *, rtype: ResourceType | None = None, name: str = "",
            uid: str = "") -> dict[str, Any]:
    """A Status of success (a binding, an object deleted at once)."""
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if rtype is not None:
        if rtype.group:
            details["group"] = rtype.group
        details["kind"] = rtype.plural
    if uid:
        details["uid"] = uid
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Success"}
    if details:
        body["details"] = details
    body["code"] = code
    return body


def dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def json_response(body: Any, code: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    return web.Response(body=dumps(body), status=code, content_type=JSON, headers=headers)


def error_response(error: ApiError, rtype: ResourceType | None = None, name: str = ""
                   ) -> web.Response:
    """The response of a failed request: its Status, code and Retry-After."""
    headers = ({"Retry-After": str(error.retry_after_seconds)}
               if error.retry_after_seconds else None)
    return json_response(status(error, rtype, name), error.http_status, headers)
