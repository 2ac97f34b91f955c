"""A do-nothing server of the API's gRPC service: the ceiling of a Python gRPC server here.

Create answers at once with the request's object and Get with a ConfigMap made at start,
touching no storage. The API benchmark measures it beside the real API server so the report
separates what gRPC in Python costs from what kubelite's own work costs. With
``--tls-cert-file`` it serves TLS and requires client certificates as the secured API server
does, which separates what TLS costs.
"""

from __future__ import annotations

import argparse

import grpc

from apiserver.inflight import InflightSettings
from apiserver.server import TlsSettings, grpc_server_options, server_credentials
from kubelite import daemon
from protos.v1 import apiserver_pb2 as pb
from protos.v1 import apiserver_pb2_grpc as pb_grpc
from protos.v1 import objects_pb2 as v1


class EchoServicer(pb_grpc.ApiServerServicer):
    def __init__(self) -> None:
        # A Get answers the object the API benchmark's gets read, made once: the same bytes
        # on the wire and the same decoding in the client as through the API server.
        stored = v1.ConfigMap(metadata=v1.ObjectMeta(
            name="cm", namespace="bench", labels={"app": "bench"}, uid="0" * 36,
            resource_version="12345", creation_timestamp="2026-01-01T00:00:00Z"),
            data={"config.yaml": "replicas: 3\nimage: web:1.0\n" * 4})
        self._object = stored.SerializeToString()

    async def Create(self, request: pb.CreateRequest, context: object) -> pb.ObjectResponse:
        return pb.ObjectResponse(object=request.object)

    async def Get(self, request: pb.GetRequest, context: object) -> pb.ObjectResponse:
        return pb.ObjectResponse(object=self._object)


async def serve(listen: str, tls: TlsSettings) -> None:
    # The API server's options: the same transport, and the client's keepalive pings
    # between calls are welcome (gRPC's defaults end such a connection with "too many
    # pings" while the benchmark measures other servers).
    server = grpc.aio.server(options=grpc_server_options(InflightSettings.max_pending_calls))
    pb_grpc.add_ApiServerServicer_to_server(EchoServicer(), server)  # type: ignore[no-untyped-call]
    if tls.enabled:
        server.add_secure_port(listen, server_credentials(tls)[0])
    else:
        server.add_insecure_port(listen)

    async def start() -> None:
        await server.start()

    async def stop() -> None:
        await server.stop(0.5)

    await daemon.serve_until_signalled(start, stop)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--tls-cert-file", default="", help="serve TLS with this certificate (PEM)")
    p.add_argument("--tls-private-key-file", default="", help="its private key (PEM)")
    p.add_argument("--client-ca-file", default="",
                   help="CA of the client certificates (required, as the API server does)")
    a = p.parse_args()
    tls = TlsSettings(a.tls_cert_file, a.tls_private_key_file, a.client_ca_file)
    if tls.enabled and not (a.tls_cert_file and a.tls_private_key_file):
        p.error("--tls-cert-file and --tls-private-key-file go together")
    daemon.run(serve(a.listen, tls))


if __name__ == "__main__":
    main()
