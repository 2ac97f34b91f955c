"""kubelite's error hierarchy and its one mapping to and from gRPC status codes.

Both sides use this module: the API server raises these errors and converts them to gRPC
statuses in one place; the client converts a gRPC error back into the same class, so code on
either side catches ``NotFound`` or ``Conflict`` rather than inspecting status codes.

| class          | gRPC code           | Kubernetes  |
|----------------|---------------------|-------------|
| NotFound       | NOT_FOUND           | 404         |
| AlreadyExists  | ALREADY_EXISTS      | 409         |
| Conflict       | ABORTED             | 409         |
| Invalid        | INVALID_ARGUMENT    | 422         |
| BadRequest     | INVALID_ARGUMENT    | 400         |
| RequestEntityTooLarge | INVALID_ARGUMENT | 413      |
| Expired        | OUT_OF_RANGE        | 410 Gone    |
| Unauthorized   | UNAUTHENTICATED     | 401         |
| Forbidden      | PERMISSION_DENIED   | 403         |
| MethodNotAllowed | UNIMPLEMENTED     | 405         |
| TooManyRequests| RESOURCE_EXHAUSTED  | 429 / quota |
| Unavailable    | UNAVAILABLE         | 503         |
| Timeout        | DEADLINE_EXCEEDED   | 504         |
| TooLargeResourceVersion | DEADLINE_EXCEEDED | 504 (a Timeout) |
| InternalError  | INTERNAL / UNKNOWN  | 500         |
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

import grpc

from kubelite.api.field_errors import FieldError

# Trailing-metadata key carrying {"reason": ..., "causes": [...]} as JSON.
STATUS_METADATA_KEY = "kubelite-status"


class KubeliteError(Exception):
    """Root of every error kubelite raises on purpose."""


class ApiError(KubeliteError):
    """An API request failed with a Kubernetes-style status."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN
    reason: ClassVar[str] = "InternalError"
    http_status: ClassVar[int] = 500

    def __init__(
        self, message: str, causes: Sequence[dict[str, str]] = (), *,
        retry_after_seconds: int = 0,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.causes: list[dict[str, str]] = list(causes)
        self.retry_after_seconds = retry_after_seconds
        """Seconds after which the same request may succeed (Kubernetes' Status
        details.retryAfterSeconds, the Retry-After of a 429); 0: no such advice."""

    def __str__(self) -> str:
        return self.message


class BadRequest(ApiError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "BadRequest"
    http_status = 400


class Invalid(ApiError):
    """The object breaks one or more field rules; ``causes`` lists them."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "Invalid"
    http_status = 422

    @classmethod
    def from_field_errors(cls, kind: str, name: str, errors: Sequence[FieldError]) -> Invalid:
        rendered = [str(e) for e in errors]
        body = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
        return cls(f'{kind} "{name}" is invalid: {body}', [e.to_json() for e in errors])


class NotFound(ApiError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NotFound"
    http_status = 404


class AlreadyExists(ApiError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "AlreadyExists"
    http_status = 409


class Conflict(ApiError):
    """The object changed since the resourceVersion the request was based on."""

    code = grpc.StatusCode.ABORTED
    reason = "Conflict"
    http_status = 409


class Expired(ApiError):
    """The requested resourceVersion is older than what etcd still keeps (410 Gone)."""

    code = grpc.StatusCode.OUT_OF_RANGE
    reason = "Expired"
    http_status = 410


class Unauthorized(ApiError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "Unauthorized"
    http_status = 401


class Forbidden(ApiError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "Forbidden"
    http_status = 403


class MethodNotAllowed(ApiError):
    """The verb does not apply to the resource (a get of an access review: those are only
    ever created)."""

    code = grpc.StatusCode.UNIMPLEMENTED
    reason = "MethodNotAllowed"
    http_status = 405


class TooManyRequests(ApiError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "TooManyRequests"
    http_status = 429


class Unavailable(ApiError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "ServiceUnavailable"
    http_status = 503


class Timeout(ApiError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "Timeout"
    http_status = 504


class InternalError(ApiError):
    code = grpc.StatusCode.INTERNAL
    reason = "InternalError"
    http_status = 500


class RequestEntityTooLarge(ApiError):
    """The request, or the object it would store, is larger than the server or etcd takes.
    Sending it again cannot succeed (a code clients do not retry)."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "RequestEntityTooLarge"
    http_status = 413


class TooLargeResourceVersion(Timeout):
    """A resourceVersion this server has not reached (yet): retry after retry_after_seconds.

    As Kubernetes: a Timeout whose cause is ResourceVersionTooLarge.
    """

    CAUSE: ClassVar[str] = "ResourceVersionTooLarge"

    @classmethod
    def of(cls, requested: int, current: int, retry_after_seconds: int = 1
           ) -> TooLargeResourceVersion:
        return cls(
            f"Too large resource version: {requested}, current: {current}",
            [{"reason": cls.CAUSE, "message": "Too large resource version"}],
            retry_after_seconds=retry_after_seconds,
        )


_BY_REASON: dict[str, type[ApiError]] = {
    c.reason: c
    for c in (
        BadRequest, Invalid, NotFound, AlreadyExists, Conflict, Expired, Unauthorized,
        Forbidden, TooManyRequests, Unavailable, Timeout, InternalError, RequestEntityTooLarge,
        MethodNotAllowed,
    )
}
_BY_CODE: dict[grpc.StatusCode, type[ApiError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: BadRequest,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.OUT_OF_RANGE: Expired,
    grpc.StatusCode.UNAUTHENTICATED: Unauthorized,
    grpc.StatusCode.PERMISSION_DENIED: Forbidden,
    grpc.StatusCode.RESOURCE_EXHAUSTED: TooManyRequests,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Timeout,
    grpc.StatusCode.CANCELLED: Unavailable,
    grpc.StatusCode.UNIMPLEMENTED: MethodNotAllowed,
}


def status_metadata(error: ApiError) -> tuple[tuple[str, str], ...]:
    """Trailing metadata that lets the client rebuild the exact error class and causes."""
    payload: dict[str, Any] = {"reason": error.reason, "causes": error.causes}
    if error.retry_after_seconds:
        payload["retryAfterSeconds"] = error.retry_after_seconds
    return ((STATUS_METADATA_KEY, json.dumps(payload)),)


def from_rpc_error(error: grpc.RpcError) -> ApiError:
    """The ApiError a failed call stands for (chain it: ``raise from_rpc_error(e) from e``)."""
    code: grpc.StatusCode = error.code()
    details: str = error.details() or code.name
    cls: type[ApiError] = _BY_CODE.get(code, InternalError)
    causes: list[dict[str, str]] = []
    retry_after = 0
    trailing: Any = error.trailing_metadata()
    for key, value in trailing or ():
        if key == STATUS_METADATA_KEY:
            payload = json.loads(value)
            cls = _BY_REASON.get(payload.get("reason", ""), cls)
            causes = payload.get("causes", [])
            retry_after = int(payload.get("retryAfterSeconds", 0))
    if code == grpc.StatusCode.UNAVAILABLE and not details.startswith("etcd"):
        details = f"API server unavailable: {details}"
    if cls is Timeout and any(c.get("reason") == TooLargeResourceVersion.CAUSE for c in causes):
        cls = TooLargeResourceVersion
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "message larger than max" in details:
        cls = RequestEntityTooLarge  # gRPC's own size limit, on either side
    return cls(details, causes, retry_after_seconds=retry_after)
