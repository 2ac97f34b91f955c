"""pods/log and pods/exec: find the pod's node and relay the stream to its kubelet.

On a secure cluster the server reaches kubelets over TLS as ``kube-apiserver-kubelet-client``
(--kubelet-client-certificate/--kubelet-client-key) and verifies each kubelet's serving
certificate against --kubelet-certificate-authority (the cluster CA); without them, plaintext.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from apiserver.api import Api
from kubelite.api.errors import BadRequest, Unavailable, from_rpc_error
from kubelite.api.registry import by_kind
from protos.v1 import apiserver_pb2 as pb
from protos.v1 import kubelet_pb2 as kpb
from protos.v1 import kubelet_pb2_grpc as kpb_grpc
from protos.v1 import objects_pb2 as v1

PODS = by_kind("Pod")
NODES = by_kind("Node")


@dataclass(frozen=True)
class KubeletClientSettings:
    client_certificate: str = ""
    """--kubelet-client-certificate: the certificate (PEM) the server presents to kubelets."""
    client_key: str = ""
    """--kubelet-client-key: its private key (PEM)."""
    certificate_authority: str = ""
    """--kubelet-certificate-authority: the CA kubelets' serving certificates are verified
    against; empty: kubelets are reached in plaintext."""

    def __post_init__(self) -> None:
        if bool(self.client_certificate) != bool(self.client_key):
            raise ValueError("--kubelet-client-certificate and --kubelet-client-key go together")
        if self.client_certificate and not self.certificate_authority:
            raise ValueError("--kubelet-client-certificate needs --kubelet-certificate-authority"
                             " to verify the kubelets it talks to")


def _read(flag: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"{flag}: cannot read {path}: {e}") from e


def kubelet_credentials(settings: KubeletClientSettings) -> grpc.ChannelCredentials | None:
    """TLS credentials for kubelet connections; None for plaintext."""
    if not settings.certificate_authority:
        return None
    ca = _read("--kubelet-certificate-authority", settings.certificate_authority)
    if not settings.client_certificate:
        return grpc.ssl_channel_credentials(root_certificates=ca)
    return grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=_read("--kubelet-client-key", settings.client_key),
        certificate_chain=_read("--kubelet-client-certificate", settings.client_certificate),
    )


def pick_container(pod: v1.Pod, requested: str) -> str:
    """The container a request means, with kubectl's errors when it is ambiguous or wrong."""
    names = [c.name for c in pod.spec.containers]
    init_names = [c.name for c in pod.spec.init_containers]
    if requested:
        if requested in names or requested in init_names:
            return requested
        raise BadRequest(
            f"container {requested} is not valid for pod {pod.metadata.name}"
        )
    if len(names) == 1:
        return names[0]
    raise BadRequest(
        f"a container name must be specified for pod {pod.metadata.name}, choose one of:"
        f" [{' '.join(names)}]"
        + (f" or one of the init containers: [{' '.join(init_names)}]" if init_names else "")
    )


class KubeletProxy:
    def __init__(self, api: Api, settings: KubeletClientSettings = KubeletClientSettings()
                 ) -> None:
        self.api = api
        self._credentials = kubelet_credentials(settings)
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()

    async def _target(self, namespace: str, name: str, container: str
                      ) -> tuple[kpb_grpc.KubeletStub, v1.Pod, str]:
        pod = await self.api.get(PODS, namespace or "default", name)
        assert isinstance(pod, v1.Pod)
        chosen = pick_container(pod, container)
        if not pod.spec.node_name:
            raise BadRequest(f'pod "{name}" is not scheduled to a node yet')
        node = await self.api.get(NODES, "", pod.spec.node_name)
        assert isinstance(node, v1.Node)
        address = next((a.address for a in node.status.addresses if a.type == "InternalIP"), "")
        port = node.status.daemon_endpoints.kubelet_endpoint.port
        if not address or not port:
            raise Unavailable(f'node "{node.metadata.name}" has no kubelet endpoint')
        target = f"{address}:{port}"
        channel = self._channels.get(target)
        if channel is None:
            channel = (grpc.aio.insecure_channel(target) if self._credentials is None
                       else grpc.aio.secure_channel(target, self._credentials))
            self._channels[target] = channel
        return kpb_grpc.KubeletStub(channel), pod, chosen  # type: ignore[no-untyped-call]

    async def logs(self, request: pb.PodLogsRequest) -> AsyncIterator[pb.Chunk]:
        stub, pod, container = await self._target(request.namespace, request.name,
                                                  request.container)
        call = stub.ContainerLogs(kpb.ContainerLogsRequest(
            pod_uid=pod.metadata.uid, container=container, follow=request.follow,
            previous=request.previous, tail_lines=request.tail_lines,
        ))
        async for chunk in self._relay(call):
            yield chunk

    async def exec(self, request: pb.PodExecRequest) -> AsyncIterator[pb.Chunk]:
        if not request.command:
            raise BadRequest("you must specify at least one command for the container")
        stub, pod, container = await self._target(request.namespace, request.name,
                                                  request.container)
        call = stub.Exec(kpb.ContainerExecRequest(
            pod_uid=pod.metadata.uid, container=container, command=list(request.command),
            stdin=request.stdin, timeout_seconds=request.timeout_seconds,
        ))
        async for chunk in self._relay(call):
            yield chunk

    @staticmethod
    async def _relay(call: grpc.aio.UnaryStreamCall) -> AsyncIterator[pb.Chunk]:  # type: ignore[type-arg]
        try:
            async for chunk in call:
                yield chunk
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                raise BadRequest(e.details() or "not found") from e
            raise from_rpc_error(e) from e
        finally:
            call.cancel()
