"""pods/log and pods/exec over the HTTP API, relayed to the pod's kubelet by the same
KubeletProxy as the gRPC API's PodLogs and PodExec.

- ``GET .../pods/NAME/log``: the container's output as ``text/plain``, streamed (chunked) while
  ``follow``; query ``container``, ``follow``, ``previous``, ``tailLines``, ``limitBytes``.
  Needs ``get`` on pods/log.
- ``GET|POST .../pods/NAME/exec``: a WebSocket (subprotocol ``v5.channel.k8s.io`` or
  ``v4.channel.k8s.io``, as kubectl 1.30+ and the official clients speak it): every message is
  one channel byte then data; 0 stdin, 1 stdout, 2 stderr, 3 error (a Status: Success, or
  NonZeroExitCode with the exit code in ``details.causes``), 4 resize; in v5 a message on
  channel 255 closes the client's stream it names. Exec is non-interactive: stdin is collected
  until the client closes it and sent with the command. Needs ``create`` on pods/exec (and
  ``get`` too for a GET upgrade, as upstream). SPDY upgrades (kubectl 1.29 and older) are
  refused with a message saying so.

Errors found before the stream starts (the pod, its container, the parameters, permissions)
are answered as Status objects with their HTTP codes; errors during an exec go to the error
channel; a log stream that fails once begun just ends (its status line is sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from apiserver.api import Api
from apiserver.http import status
from apiserver.kubelet_proxy import KubeletProxy, pick_container
from kubelite.api.errors import ApiError, BadRequest, InternalError, Invalid, RequestEntityTooLarge
from kubelite.api.field_errors import FieldError, FieldPath
from kubelite.api.registry import by_kind
from protos.v1 import apiserver_pb2 as pb
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

PODS = by_kind("Pod")

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
EXEC_PROTOCOLS = (V5, V4)
"""The remote command subprotocols served, preferred first (upstream's order)."""

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255
"""v5: a message ``[255, channel]`` closes that channel (the client is done with stdin)."""

NON_ZERO_EXIT_CODE = "NonZeroExitCode"
EXIT_CODE_CAUSE = "ExitCode"

Authorize = Callable[[str, str], Awaitable[None]]
"""Checks that the request's user may ``verb`` the pod's ``subresource`` (raises Forbidden)."""


@dataclass(frozen=True)
class StreamSettings:
    log_first_output_wait: float = 1.0
    """Seconds a log request waits for the kubelet's first output before it sends its
    response headers: an error the kubelet answers within it is the response's status; one
    later (or a log that stays empty) is answered 200 and the stream follows."""
    disconnect_check_interval: float = 1.0
    """Seconds between checks that a client still listens to a quiet followed log, so its
    kubelet stream ends when it leaves."""


# ------------------------------------------------------------------------- query parameters


def query_bool(query: Any, name: str) -> bool:
    """A boolean parameter as upstream converts one: absent is false, ``0`` or ``false`` (any
    case) is false, anything else (``true``, ``1``, even empty) is true."""
    values = query.getall(name, [])
    if not values:
        return False
    return not (values[0] == "0" or values[0].lower() == "false")


def query_int(query: Any, name: str) -> int | None:
    """An integer parameter; None when absent; BadRequest naming it when not an integer."""
    values = query.getall(name, [])
    if not values:
        return None
    try:
        return int(values[0])
    except ValueError:
        raise BadRequest(f'invalid value for "{name}": {values[0]!r} is not an integer'
                         ) from None


@dataclass(frozen=True)
class LogOptions:
    container: str = ""
    follow: bool = False
    previous: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None


def log_options(query: Any, name: str) -> LogOptions:
    """PodLogOptions from the query, validated as upstream (Invalid naming the field)."""
    for unsupported in ("sinceSeconds", "sinceTime"):
        if query.getall(unsupported, []):
            raise BadRequest(f"{unsupported} is not supported by this server: its kubelets keep"
                             " no timestamps with container output")
    if query_bool(query, "timestamps"):
        raise BadRequest("timestamps are not supported by this server: its kubelets keep no"
                         " timestamps with container output")
    options = LogOptions(
        container=query.get("container", ""),
        follow=query_bool(query, "follow"),
        previous=query_bool(query, "previous"),
        tail_lines=query_int(query, "tailLines"),
        limit_bytes=query_int(query, "limitBytes"),
    )
    errors: list[FieldError] = []
    if options.tail_lines is not None and options.tail_lines < 0:
        errors.append(FieldPath("tailLines").invalid(options.tail_lines,
                                                     "must be greater than or equal to 0"))
    if options.limit_bytes is not None and options.limit_bytes < 1:
        errors.append(FieldPath("limitBytes").invalid(options.limit_bytes,
                                                      "must be greater than 0"))
    if errors:
        raise Invalid.from_field_errors("PodLogOptions", name, errors)
    return options


@dataclass(frozen=True)
class ExecOptions:
    command: tuple[str, ...]
    container: str = ""
    stdin: bool = False
    stdout: bool = False
    stderr: bool = False
    tty: bool = False


def exec_options(query: Any) -> ExecOptions:
    options = ExecOptions(
        command=tuple(query.getall("command", [])),
        container=query.get("container", ""),
        stdin=query_bool(query, "stdin"),
        stdout=query_bool(query, "stdout"),
        stderr=query_bool(query, "stderr"),
        tty=query_bool(query, "tty"),
    )
    if not options.command:
        raise BadRequest("you must specify at least one command for the container")
    if not (options.stdin or options.stdout or options.stderr):
        raise BadRequest("you must specify at least 1 of stdin, stdout, stderr")
    if options.tty:
        raise BadRequest("tty: a terminal is not supported: exec on this server is"
                         " non-interactive (run it without -t)")
    return options


# ------------------------------------------------------------------------- checks on the pod


async def _pod(api: Api, namespace: str, name: str) -> v1.Pod:
    pod = await api.get(PODS, namespace, name)
    assert isinstance(pod, v1.Pod)
    return pod


def check_log_status(pod: v1.Pod, container: str, previous: bool) -> None:
    """Refuses, with the kubelet's upstream messages, logs that cannot exist yet: a container
    still waiting to start, or a previous instance that never terminated."""
    statuses = [*pod.status.container_statuses, *pod.status.init_container_statuses]
    status = next((s for s in statuses if s.name == container), None)
    name = pod.metadata.name
    if previous:
        if status is None or not status.last_state.HasField("terminated"):
            raise BadRequest(f'previous terminated container "{container}" in pod "{name}"'
                             " not found")
        return
    if status is None:
        raise BadRequest(f'container "{container}" in pod "{name}" is waiting to start - no'
                         " logs yet")
    state = status.state
    if (state.HasField("waiting") and not status.last_state.HasField("terminated")
            and not state.HasField("running") and not state.HasField("terminated")):
        reason = state.waiting.reason or "ContainerCreating"
        raise BadRequest(f'container "{container}" in pod "{name}" is waiting to start:'
                         f" {reason}")


def check_exec_target(pod: v1.Pod) -> None:
    """A pod exec can reach: bound to a node and not finished (upstream's messages)."""
    if pod.status.phase in ("Succeeded", "Failed"):
        raise BadRequest("cannot exec into a container in a completed pod; current phase is"
                         f" {pod.status.phase}")
    if not pod.spec.node_name:
        raise BadRequest(f"pod {pod.metadata.name} does not have a host assigned")


def failure_status(error: ApiError) -> dict[str, Any]:
    """A Status object for an error (what the error channel carries)."""
    return status.status(error)


def exit_status(exit_code: int, command: tuple[str, ...]) -> dict[str, Any]:
    """The error channel's last word on a command that ran: Success, or NonZeroExitCode with
    the code as an ExitCode cause (what clients turn into their own exit code)."""
    if exit_code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {}, "status": "Failure", "reason": NON_ZERO_EXIT_CODE,
        "message": f"command terminated with non-zero exit code: command"
                   f" '{' '.join(command)}' exited with {exit_code}",
        "details": {"causes": [{"reason": EXIT_CODE_CAUSE, "message": str(exit_code)}]},
    }


# ------------------------------------------------------------------------- pods/log


def _client_gone(request: web.BaseRequest) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def logs(
    request: web.Request, api: Api, kubelets: KubeletProxy, namespace: str, name: str, *,
    authorize: Authorize, settings: StreamSettings = StreamSettings(),
) -> web.StreamResponse:
    """GET pods/NAME/log."""
    await authorize("get", "log")
    options = log_options(request.query, name)
    pod = await _pod(api, namespace, name)
    container = pick_container(pod, options.container)
    if not pod.spec.node_name:
        raise BadRequest(f"pod {name} does not have a host assigned")
    check_log_status(pod, container, options.previous)
    chunks = kubelets.logs(pb.PodLogsRequest(
        namespace=namespace, name=name, container=container, follow=options.follow,
        previous=options.previous,
        tail_lines=-1 if options.tail_lines is None else options.tail_lines,
    ))
    step: asyncio.Future[pb.Chunk] = asyncio.ensure_future(anext(chunks))
    response: web.StreamResponse | None = None
    try:
        # The kubelet's refusal, when it comes at once, is this response's status.
        await asyncio.wait({step}, timeout=settings.log_first_output_wait)
        if step.done() and not isinstance(step.exception(), (StopAsyncIteration, type(None))):
            step.result()
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        left = options.limit_bytes
        while True:
            while not step.done():
                await asyncio.wait({step}, timeout=settings.disconnect_check_interval)
                if not step.done() and _client_gone(request):
                    return response
            try:
                chunk = step.result()
            except StopAsyncIteration:
                break
            except ApiError as e:
                log.warning("pod log stream ended by an error", namespace=namespace, pod=name,
                            container=container, error=str(e))
                break
            data = chunk.data if left is None else chunk.data[:left]
            await response.write(data)
            if left is not None:
                left -= len(data)
                if left <= 0:
                    break
            step = asyncio.ensure_future(anext(chunks))
        await response.write_eof()
        return response
    except ConnectionResetError:
        if response is None:
            raise
        return response  # the client left; its kubelet stream ends below
    finally:
        if not step.done():
            step.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, ApiError):
                await step
        close = getattr(chunks, "aclose", None)  # ends the kubelet call now, not at GC
        if close is not None:
            await close()


# ------------------------------------------------------------------------- pods/exec

SPDY_REFUSED = (
    "pods/exec over SPDY is not supported by this server: use a client that speaks the"
    f" WebSocket protocol {V5} (kubectl 1.30 or newer, the official client libraries)"
)


async def exec_(
    request: web.Request, api: Api, kubelets: KubeletProxy, namespace: str, name: str, *,
    authorize: Authorize,
) -> web.StreamResponse:
    """GET or POST pods/NAME/exec, upgraded to a WebSocket."""
    if request.method == "GET":
        await authorize("get", "exec")
    # Reading with GET must not open a shell: the upgrade needs create too (upstream's
    # AuthorizePodWebsocketUpgradeCreatePermission).
    await authorize("create", "exec")
    options = exec_options(request.query)
    pod = await _pod(api, namespace, name)
    container = pick_container(pod, options.container)
    check_exec_target(pod)
    if "spdy" in request.headers.get("Upgrade", "").lower():
        raise BadRequest(SPDY_REFUSED)
    ws = web.WebSocketResponse(protocols=EXEC_PROTOCOLS,
                               max_msg_size=api.settings.max_request_bytes + 1)
    ready = ws.can_prepare(request)
    if not ready.ok:
        raise BadRequest(f"pods/exec is served over a WebSocket: send a GET with Connection:"
                         f" Upgrade, Upgrade: websocket and Sec-WebSocket-Protocol {V5} or {V4}")
    if ready.protocol is None:
        raise BadRequest(f"no remote command subprotocol this server speaks was offered"
                         f" (Sec-WebSocket-Protocol): it speaks {V5} and {V4}")
    if options.stdin and ready.protocol != V5:
        raise BadRequest(f"stdin needs the {V5} subprotocol: exec on this server is"
                         " non-interactive and runs the command once the client closes stdin")
    await ws.prepare(request)
    session = _ExecSession(ws, options, api.settings.max_request_bytes)
    await session.run(kubelets, pb.PodExecRequest(namespace=namespace, name=name,
                                                  container=container,
                                                  command=list(options.command)))
    return ws


class _ClientGone(Exception):
    """The client closed the WebSocket (or the connection broke)."""


class _ExecSession:
    def __init__(self, ws: web.WebSocketResponse, options: ExecOptions, max_stdin: int) -> None:
        self.ws = ws
        self.options = options
        self.max_stdin = max_stdin

    async def send(self, channel: int, data: bytes) -> None:
        await self.ws.send_bytes(bytes([channel]) + data)

    async def run(self, kubelets: KubeletProxy, request: pb.PodExecRequest) -> None:
        tasks: list[asyncio.Task[Any]] = []
        try:
            # An empty message on the first channel the client reads says the stream is up.
            first = STDOUT if self.options.stdout else STDERR if self.options.stderr else ERROR
            await self.send(first, b"")
            try:
                if self.options.stdin:
                    request.stdin = await self._stdin()
            except ApiError as e:
                await self.send(ERROR, json.dumps(failure_status(e)).encode())
                return
            # Reading on keeps answering the client's pings and notices it leaving.
            reader = asyncio.create_task(self._drain())
            runner = asyncio.create_task(self._run(kubelets, request))
            tasks += [reader, runner]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if not runner.done():
                log.info("exec client left before the command ended", pod=request.name,
                         namespace=request.namespace)
                return
            await self.send(ERROR, json.dumps(runner.result()).encode())
        except (_ClientGone, ConnectionResetError):
            log.info("exec client left", pod=request.name, namespace=request.namespace)
        finally:
            # Also when the handler is cancelled (its connection lost): nothing runs on.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.ws.close()

    async def _stdin(self) -> bytes:
        """Everything the client sends on stdin until it closes it (v5's close message)."""
        data = bytearray()
        while True:
            msg = await self.ws.receive()
            if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                # Text frames carry the same bytes (the official Python client sends str
                # stdin as text), as upstream reads them.
                payload: bytes = msg.data if msg.type is WSMsgType.BINARY else msg.data.encode()
                if not payload:
                    continue
                if payload[0] == STDIN:
                    data += payload[1:]
                    if len(data) > self.max_stdin:
                        raise RequestEntityTooLarge(
                            f"exec stdin is larger than the server takes: limit is"
                            f" {self.max_stdin} bytes")
                elif payload[0] == CLOSE and payload[1:2] == bytes([STDIN]):
                    return bytes(data)
                # Anything else (a resize) means nothing to a command without a terminal.
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                              WSMsgType.ERROR):
                raise _ClientGone()

    async def _drain(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                            WSMsgType.ERROR):
                return

    async def _run(self, kubelets: KubeletProxy, request: pb.PodExecRequest
                   ) -> dict[str, Any]:
        """Relays the command's output; its final Status."""
        exit_code: int | None = None
        try:
            async for chunk in kubelets.exec(request):
                if chunk.fd == -1:
                    exit_code = chunk.exit_code
                elif chunk.fd == STDOUT and self.options.stdout:
                    await self.send(STDOUT, chunk.data)
                elif chunk.fd == STDERR and self.options.stderr:
                    await self.send(STDERR, chunk.data)
        except ApiError as e:
            return failure_status(e)
        except ConnectionResetError:
            raise
        except Exception as e:
            log.exception("exec failed", pod=request.name, namespace=request.namespace)
            return failure_status(InternalError(
                f"error executing command in container: {type(e).__name__}: {e}"))
        if exit_code is None:
            return failure_status(InternalError(
                "error executing command in container: the kubelet ended the stream without"
                " an exit code"))
        return exit_status(exit_code, self.options.command)
