"""The kubelet's API (protos/v1/kubelet.proto): container logs and exec, for the API server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import structlog

from kubelet.runtime.interface import Runtime
from protos.v1 import apiserver_pb2 as api_pb
from protos.v1 import kubelet_pb2 as pb
from protos.v1 import kubelet_pb2_grpc as pb_grpc

log = structlog.get_logger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]


class KubeletServicer(pb_grpc.KubeletServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def _container_id(self, pod_uid: str, name: str, previous: bool, context: Context) -> str:
        instances = sorted(
            (c for c in await self.runtime.list_containers(pod_uid) if c.name == name),
            key=lambda c: c.attempt,
            reverse=True,
        )
        index = 1 if previous else 0
        if len(instances) <= index:
            what = "previous terminated container" if previous else "container"
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f'{what} "{name}" in pod "{pod_uid}" not found'
            )
        return instances[index].id

    async def ContainerLogs(
        self, request: pb.ContainerLogsRequest, context: Context
    ) -> AsyncIterator[api_pb.Chunk]:
        cid = await self._container_id(
            request.pod_uid, request.container, request.previous, context
        )
        tail = int(request.tail_lines) if request.tail_lines >= 0 else -1
        async for data in self.runtime.read_logs(cid, follow=request.follow, tail=tail):
            yield api_pb.Chunk(fd=1, data=data)

    async def Exec(
        self, request: pb.ContainerExecRequest, context: Context
    ) -> AsyncIterator[api_pb.Chunk]:
        cid = await self._container_id(request.pod_uid, request.container, False, context)

        async def stdin() -> AsyncIterator[bytes]:
            if request.stdin:
                yield request.stdin

        async for fd, data in self.runtime.exec_stream(cid, list(request.command), stdin()):
            if fd == -1:
                yield api_pb.Chunk(fd=-1, exit_code=int(data or b"0"))
            else:
                yield api_pb.Chunk(fd=fd, data=data)


class KubeletServer:
    def __init__(self, runtime: Runtime, address: str, port: int) -> None:
        self._server = grpc.aio.server()
        pb_grpc.add_KubeletServicer_to_server(  # type: ignore[no-untyped-call]
            KubeletServicer(runtime), self._server
        )
        self.port = self._server.add_insecure_port(f"{address}:{port}")
        if self.port == 0:
            raise OSError(f"kubelet API cannot listen on {address}:{port}")

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop(1.0)
