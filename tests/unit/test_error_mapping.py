"""Errors about sizes and versions survive the trip through gRPC as their own classes."""

from __future__ import annotations

import grpc
from grpc.aio import AioRpcError, Metadata

from kubelite.api import errors


def through_grpc(error: errors.ApiError) -> errors.ApiError:
    rpc = AioRpcError(error.code, Metadata(), Metadata(*errors.status_metadata(error)),
                      error.message, None)
    return errors.from_rpc_error(rpc)


def test_too_large_resource_version_is_a_timeout_with_its_cause_and_retry_after() -> None:
    got = through_grpc(errors.TooLargeResourceVersion.of(1000, 500))
    assert type(got) is errors.TooLargeResourceVersion and isinstance(got, errors.Timeout)
    assert got.message == "Too large resource version: 1000, current: 500"
    assert got.retry_after_seconds == 1
    assert got.code == grpc.StatusCode.DEADLINE_EXCEEDED
    # A plain Timeout stays a plain Timeout.
    assert type(through_grpc(errors.Timeout("slow"))) is errors.Timeout


def test_request_entity_too_large_is_its_own_class_on_a_code_nobody_retries() -> None:
    got = through_grpc(errors.RequestEntityTooLarge("Request entity too large: limit is 3"))
    assert type(got) is errors.RequestEntityTooLarge
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT and got.http_status == 413


def test_grpcs_own_message_size_limit_is_request_entity_too_large() -> None:
    for details in ("Received message larger than max (70000000 vs. 67108864)",
                    "Sent message larger than max (70000000 vs. 67108864)"):
        rpc = AioRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, Metadata(), Metadata(), details,
                          None)
        assert type(errors.from_rpc_error(rpc)) is errors.RequestEntityTooLarge
    rpc = AioRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, Metadata(), Metadata(), "slow down",
                      None)
    assert type(errors.from_rpc_error(rpc)) is errors.TooManyRequests
