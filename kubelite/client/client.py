"""The typed asyncio client of the API server.

Calls take and return typed messages (``await client.get(v1.Pod, "web-0", "default")``);
errors arrive as kubelite.api.errors classes (NotFound, Conflict, Invalid, Expired, ...)
with the gRPC error chained as their cause.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf.message import Message

from kubelite.api.errors import Unavailable, from_rpc_error
from kubelite.api.registry import ResourceType, by_message
from protos.v1 import apiserver_pb2 as pb
from protos.v1 import apiserver_pb2_grpc as pb_grpc
from protos.v1 import objects_pb2 as v1

T = TypeVar("T", bound=Message)


@dataclass(frozen=True)
class WatchEvent(Generic[T]):
    type: str
    """ADDED, MODIFIED, DELETED or BOOKMARK."""
    object: T | None
    """The object (None for BOOKMARK)."""
    resource_version: str


@dataclass(frozen=True)
class ObjectList(Generic[T]):
    items: list[T]
    resource_version: str
    """The revision the list was read at: watch from here to miss nothing."""


def _namespace(rtype: ResourceType, namespace: str, obj: Message | None = None) -> str:
    if not rtype.namespaced:
        return ""
    if obj is not None and obj.metadata.namespace:  # type: ignore[attr-defined]
        return str(obj.metadata.namespace)  # type: ignore[attr-defined]
    return namespace or "default"


class ApiClient:
    def __init__(
        self, address: str, *, timeout: float = 30.0, wait_for_ready: bool = True
    ) -> None:
        """``wait_for_ready``: while the server is unreachable, calls wait for it (up to
        ``timeout``) instead of failing at once, so daemons ride out an API server restart."""
        self.address = address
        self.timeout = timeout
        self.wait_for_ready = wait_for_ready
        self._channel = grpc.aio.insecure_channel(
            address,
            options=[
                ("grpc.max_receive_message_length", 256 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.keepalive_time_ms", 10_000),
                ("grpc.keepalive_timeout_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 2_000),
            ],
        )
        self._stub = pb_grpc.ApiServerStub(self._channel)  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        await self._channel.close(None)

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def channel(self) -> grpc.aio.Channel:
        return self._channel

    async def _unary(self, method: Any, request: Message) -> Any:
        try:
            return await method(
                request, timeout=self.timeout, wait_for_ready=self.wait_for_ready
            )
        except grpc.aio.AioRpcError as e:
            raise from_rpc_error(e) from e

    # ------------------------------------------------------------ typed verbs

    async def create(self, obj: T, namespace: str = "", *, dry_run: bool = False) -> T:
        rtype = by_message(type(obj))
        response = await self._unary(
            self._stub.Create,
            pb.CreateRequest(
                resource=rtype.plural,
                namespace=_namespace(rtype, namespace, obj),
                object=obj.SerializeToString(),
                dry_run=dry_run,
            ),
        )
        return rtype.decode(response.object)  # type: ignore[return-value]

    async def get(self, kind: type[T], name: str, namespace: str = "") -> T:
        rtype = by_message(kind)
        response = await self._unary(
            self._stub.Get,
            pb.GetRequest(
                resource=rtype.plural, namespace=_namespace(rtype, namespace), name=name
            ),
        )
        return rtype.decode(response.object)  # type: ignore[return-value]

    async def list(
        self,
        kind: type[T],
        namespace: str = "",
        *,
        label_selector: str = "",
        field_selector: str = "",
        page_size: int = 500,
    ) -> ObjectList[T]:
        """All matching objects (paged under the hood); ``namespace=""`` lists all namespaces."""
        rtype = by_message(kind)
        items: list[T] = []
        token = ""
        revision = ""
        while True:
            response = await self._unary(
                self._stub.List,
                pb.ListRequest(
                    resource=rtype.plural,
                    namespace=namespace if rtype.namespaced else "",
                    label_selector=label_selector,
                    field_selector=field_selector,
                    limit=page_size,
                    continue_token=token,
                ),
            )
            items.extend(rtype.decode(b) for b in response.items)  # type: ignore[misc]
            revision = revision or response.resource_version
            token = response.continue_token
            if not token:
                return ObjectList(items, revision)

    async def update(self, obj: T, *, dry_run: bool = False) -> T:
        rtype = by_message(type(obj))
        response = await self._unary(
            self._stub.Update,
            pb.UpdateRequest(
                resource=rtype.plural,
                namespace=_namespace(rtype, "", obj),
                object=obj.SerializeToString(),
                dry_run=dry_run,
            ),
        )
        return rtype.decode(response.object)  # type: ignore[return-value]

    async def update_status(self, obj: T) -> T:
        rtype = by_message(type(obj))
        response = await self._unary(
            self._stub.UpdateStatus,
            pb.UpdateRequest(
                resource=rtype.plural,
                namespace=_namespace(rtype, "", obj),
                object=obj.SerializeToString(),
            ),
        )
        return rtype.decode(response.object)  # type: ignore[return-value]

    async def patch(
        self,
        kind: type[T],
        name: str,
        patch: Mapping[str, Any] | Sequence[Any] | bytes,
        namespace: str = "",
        *,
        subresource: str = "",
        patch_type: str = "merge",
    ) -> T:
        """Patches the Kubernetes-shaped object (camelCase keys).

        ``patch_type``: "merge" (RFC 7386 JSON merge patch: lists are replaced whole),
        "strategic" (Kubernetes' strategic merge patch: containers, ports, env and the like
        merge by their keys) or "json" (RFC 6902: a list of operations). ``patch`` is the
        document, or its JSON text as bytes.
        """
        rtype = by_message(kind)
        body = patch if isinstance(patch, bytes) else json.dumps(patch).encode()
        response = await self._unary(
            self._stub.Patch,
            pb.PatchRequest(
                resource=rtype.plural,
                namespace=_namespace(rtype, namespace),
                name=name,
                patch_type=patch_type,
                patch=body,
                subresource=subresource,
            ),
        )
        return rtype.decode(response.object)  # type: ignore[return-value]

    async def delete(
        self,
        kind: type[T],
        name: str,
        namespace: str = "",
        *,
        grace_period_seconds: int | None = None,
        propagation_policy: str = "",
        uid: str = "",
        resource_version: str = "",
    ) -> T:
        """Deletes (or marks for deletion); returns the object as the server last had it."""
        rtype = by_message(kind)
        request = pb.DeleteRequest(
            resource=rtype.plural,
            namespace=_namespace(rtype, namespace),
            name=name,
            propagation_policy=propagation_policy,
            preconditions=pb.Preconditions(uid=uid, resource_version=resource_version),
        )
        if grace_period_seconds is not None:
            request.grace_period_seconds = grace_period_seconds
        response = await self._unary(self._stub.Delete, request)
        return rtype.decode(response.object)  # type: ignore[return-value]

    async def bind(self, namespace: str, name: str, node_name: str, uid: str = "") -> v1.Pod:
        response = await self._unary(
            self._stub.Bind,
            pb.BindRequest(namespace=namespace, name=name, node_name=node_name, pod_uid=uid),
        )
        pod = v1.Pod()
        pod.ParseFromString(response.object)
        return pod

    async def pod_logs(
        self, namespace: str, name: str, container: str = "", *, follow: bool = False,
        previous: bool = False, tail_lines: int = -1,
    ) -> AsyncIterator[bytes]:
        """A container's output, relayed by the API server from the pod's kubelet."""
        call = self._stub.PodLogs(
            pb.PodLogsRequest(namespace=namespace or "default", name=name, container=container,
                              follow=follow, previous=previous, tail_lines=tail_lines),
            timeout=None if follow else self.timeout,
        )
        try:
            async for chunk in call:
                yield chunk.data
        except grpc.aio.AioRpcError as e:
            raise from_rpc_error(e) from e
        finally:
            call.cancel()

    async def pod_exec(
        self, namespace: str, name: str, command: Sequence[str], container: str = "", *,
        stdin: bytes = b"", timeout: float | None = None,
    ) -> AsyncIterator[tuple[int, bytes]]:
        """(fd, data) pairs of the command's output; the last pair is (-1, exit code)."""
        call = self._stub.PodExec(
            pb.PodExecRequest(namespace=namespace or "default", name=name, container=container,
                              command=command, stdin=stdin, timeout_seconds=timeout or 0),
            timeout=timeout,
        )
        try:
            async for chunk in call:
                if chunk.fd == -1:
                    yield -1, str(chunk.exit_code).encode()
                else:
                    yield chunk.fd, chunk.data
        except grpc.aio.AioRpcError as e:
            raise from_rpc_error(e) from e
        finally:
            call.cancel()

    async def watch(
        self,
        kind: type[T],
        namespace: str = "",
        *,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
        allow_bookmarks: bool = True,
    ) -> AsyncIterator[WatchEvent[T]]:
        """Changes after ``resource_version`` (or the current state, then changes).

        Ends by raising: Expired when the version is too old (relist), Unavailable when the
        stream broke (resume from the last version seen).
        """
        rtype = by_message(kind)
        call = self._stub.Watch(
            pb.WatchRequest(
                resource=rtype.plural,
                namespace=namespace if rtype.namespaced else "",
                label_selector=label_selector,
                field_selector=field_selector,
                resource_version=resource_version,
                allow_watch_bookmarks=allow_bookmarks,
            ),
            wait_for_ready=self.wait_for_ready,
        )
        try:
            async for event in call:
                obj = rtype.decode(event.object) if event.type != "BOOKMARK" else None
                yield WatchEvent(event.type, obj, event.resource_version)  # type: ignore[arg-type]
        except grpc.aio.AioRpcError as e:
            raise from_rpc_error(e) from e
        finally:
            call.cancel()
        # The server ended the stream without an error: the caller resumes.
        raise Unavailable("watch stream closed by the server")
