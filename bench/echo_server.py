"""A do-nothing server of the API's gRPC service: the ceiling of a Python gRPC server here.

Create and Get answer at once with the request's object, touching no storage. The API
benchmark measures it beside the real API server so the report separates what gRPC in Python
costs from what kubelite's own work costs.
"""

from __future__ import annotations

import argparse

import grpc

from kubelite import daemon
from protos.v1 import apiserver_pb2 as pb
from protos.v1 import apiserver_pb2_grpc as pb_grpc


class EchoServicer(pb_grpc.ApiServerServicer):
    async def Create(self, request: pb.CreateRequest, context: object) -> pb.ObjectResponse:
        return pb.ObjectResponse(object=request.object)

    async def Get(self, request: pb.GetRequest, context: object) -> pb.ObjectResponse:
        return pb.ObjectResponse(object=b"")


async def serve(listen: str) -> None:
    server = grpc.aio.server()
    pb_grpc.add_ApiServerServicer_to_server(EchoServicer(), server)  # type: ignore[no-untyped-call]
    server.add_insecure_port(listen)

    async def start() -> None:
        await server.start()

    async def stop() -> None:
        await server.stop(0.5)

    await daemon.serve_until_signalled(start, stop)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    daemon.run(serve(p.parse_args().listen))


if __name__ == "__main__":
    main()
