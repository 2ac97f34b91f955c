"""pods/log and pods/exec of the HTTP API (apiserver/http/streams.py) against a fake pod store
and fake kubelets, through a real aiohttp server and client: the query parameters and their
errors, the log stream, the remote command WebSocket protocol (channels, the v5 close
signal, the error channel's Status), SPDY refused, authorization asked, clients leaving."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from google.protobuf.message import Message

from apiserver.api import ApiSettings
from apiserver.http import streams
from kubelite.api.errors import ApiError, BadRequest, Forbidden, NotFound, Unavailable
from kubelite.api.registry import ResourceType
from kubelite.testing.wait import eventually
from protos.v1 import apiserver_pb2 as pb
from protos.v1 import objects_pb2 as v1

POD_URL = "/api/v1/namespaces/default/pods/web"


def running_pod(name: str = "web", containers: tuple[str, ...] = ("app",)) -> v1.Pod:
    pod = v1.Pod()
    pod.metadata.name = name
    pod.metadata.namespace = "default"
    pod.spec.node_name = "node-1"
    pod.status.phase = "Running"
    for c in containers:
        pod.spec.containers.add(name=c, image="busybox")
        status = pod.status.container_statuses.add(name=c)
        status.state.running.started_at = "2024-05-01T12:00:00Z"
    return pod


class FakeApi:
    def __init__(self) -> None:
        self.settings = ApiSettings(max_request_bytes=1024)
        self.pods: dict[str, v1.Pod] = {"web": running_pod()}

    async def get(self, rtype: ResourceType, namespace: str, name: str) -> Message:
        assert rtype.kind == "Pod"
        if name not in self.pods:
            raise NotFound(f'pods "{name}" not found')
        return self.pods[name]


@dataclass
class FakeKubelets:
    """Chunks a test scripts; an exception in the script is raised where it stands; an
    Event blocks the stream until set."""

    script: list[pb.Chunk | Exception | asyncio.Event] = field(default_factory=list)
    requests: list[Message] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: bool = False

    async def _play(self, request: Message) -> AsyncIterator[pb.Chunk]:
        self.requests.append(request)
        try:
            for item in self.script:
                if isinstance(item, Exception):
                    raise item
                if isinstance(item, asyncio.Event):
                    await item.wait()
                    continue
                yield item
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.ended.set()

    def logs(self, request: pb.PodLogsRequest) -> AsyncIterator[pb.Chunk]:
        return self._play(request)

    def exec(self, request: pb.PodExecRequest) -> AsyncIterator[pb.Chunk]:
        return self._play(request)


@dataclass
class Harness:
    client: aiohttp.ClientSession
    api: FakeApi
    kubelets: FakeKubelets
    asked: list[tuple[str, str]]
    denied: set[tuple[str, str]]


@web.middleware
async def statuses(request: web.Request,
                   handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
    """What the router does with errors: a Status with the error's HTTP code."""
    try:
        return await handler(request)
    except ApiError as e:
        return web.json_response(streams.failure_status(e), status=e.http_status)


@pytest.fixture(params=[True, False], ids=["handler-cancellation", "no-handler-cancellation"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """The streams served by aiohttp with and without handler cancellation (whether a
    handler is cancelled when its client leaves)."""
    api, kubelets = FakeApi(), FakeKubelets()
    asked: list[tuple[str, str]] = []
    denied: set[tuple[str, str]] = set()
    settings = streams.StreamSettings(log_first_output_wait=0.2, disconnect_check_interval=0.05)

    async def authorize(verb: str, subresource: str) -> None:
        asked.append((verb, subresource))
        if (verb, subresource) in denied:
            raise Forbidden(f'pods "web" is forbidden: User "u" cannot {verb} resource'
                            f' "pods/{subresource}" in API group "" in the namespace'
                            ' "default"')

    async def log_handler(request: web.Request) -> web.StreamResponse:
        return await streams.logs(request, api, kubelets,  # type: ignore[arg-type]
                                  "default", request.match_info["name"],
                                  authorize=authorize, settings=settings)

    async def exec_handler(request: web.Request) -> web.StreamResponse:
        return await streams.exec_(request, api, kubelets,  # type: ignore[arg-type]
                                   "default", request.match_info["name"],
                                   authorize=authorize)

    app = web.Application(middlewares=[statuses])
    app.router.add_get("/api/v1/namespaces/default/pods/{name}/log", log_handler)
    app.router.add_route("*", "/api/v1/namespaces/default/pods/{name}/exec", exec_handler)
    runner = web.AppRunner(app, handler_cancellation=request.param)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as client:
            yield Harness(client, api, kubelets, asked, denied)
    finally:
        await runner.cleanup()


def out(data: bytes, fd: int = 1) -> pb.Chunk:
    return pb.Chunk(fd=fd, data=data)


def exit_code(code: int) -> pb.Chunk:
    return pb.Chunk(fd=-1, exit_code=code)


# ------------------------------------------------------------------------- parameters


class Query(dict[str, list[str]]):
    def getall(self, name: str, default: list[str]) -> list[str]:
        return self.get(name, default)


def test_booleans_are_read_as_upstream_converts_them() -> None:
    q = Query(a=["true"], b=["1"], c=[""], d=["0"], e=["False"], f=["no"])
    assert [streams.query_bool(q, k) for k in "abcdefg"] == [
        True, True, True, False, False, True, False]


def test_log_options_refuse_bad_values_naming_the_field() -> None:
    with pytest.raises(ApiError) as bad:
        streams.log_options(Query(tailLines=["ten"]), "web")
    assert bad.value.http_status == 400 and '"tailLines"' in bad.value.message
    with pytest.raises(ApiError) as invalid:
        streams.log_options(Query(tailLines=["-1"], limitBytes=["0"]), "web")
    assert invalid.value.http_status == 422
    assert invalid.value.message == (
        'PodLogOptions "web" is invalid: [tailLines: Invalid value: -1: must be greater than'
        ' or equal to 0, limitBytes: Invalid value: 0: must be greater than 0]')
    assert [c["field"] for c in invalid.value.causes] == ["tailLines", "limitBytes"]


def test_exec_options_need_a_command_and_a_stream_and_no_terminal() -> None:
    for query, message in [
        (Query(stdout=["true"]), "you must specify at least one command"),
        (Query(command=["ls"]), "at least 1 of stdin, stdout, stderr"),
        (Query(command=["sh"], stdin=["1"], tty=["1"]), "tty: a terminal is not supported"),
    ]:
        with pytest.raises(BadRequest, match=message):
            streams.exec_options(query)
    options = streams.exec_options(Query(command=["sh", "-c", "ls"], stderr=["true"]))
    assert options.command == ("sh", "-c", "ls") and options.stderr and not options.stdout


# ------------------------------------------------------------------------- pods/log


async def test_logs_stream_the_containers_output_as_text(harness: Harness) -> None:
    harness.kubelets.script = [out(b"one\n"), out(b"two\n")]
    response = await harness.client.get(f"{POD_URL}/log",
                                        params={"follow": "true", "tailLines": "5",
                                                "container": "app"})
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain"
    assert await response.read() == b"one\ntwo\n"
    assert harness.asked == [("get", "log")]
    assert harness.kubelets.requests == [pb.PodLogsRequest(
        namespace="default", name="web", container="app", follow=True, tail_lines=5)]


async def test_logs_without_tail_ask_for_every_line(harness: Harness) -> None:
    response = await harness.client.get(f"{POD_URL}/log", params={"previous": "0"})
    assert response.status == 200 and await response.read() == b""
    request = harness.kubelets.requests[0]
    assert isinstance(request, pb.PodLogsRequest)
    assert request.tail_lines == -1 and not request.previous and not request.follow


async def test_limit_bytes_cut_the_stream(harness: Harness) -> None:
    harness.kubelets.script = [out(b"abcdef"), out(b"ghij"), out(b"never")]
    response = await harness.client.get(f"{POD_URL}/log", params={"limitBytes": "8"})
    assert await response.read() == b"abcdefgh"


async def test_log_errors_are_statuses(harness: Harness) -> None:
    harness.api.pods["two"] = running_pod("two", ("a", "b"))
    waiting = running_pod("waiting")
    waiting.status.container_statuses[0].state.Clear()
    waiting.status.container_statuses[0].state.waiting.reason = "ContainerCreating"
    harness.api.pods["waiting"] = waiting
    cases = [
        ("missing", {}, 404, 'pods "missing" not found'),
        ("two", {}, 400, "a container name must be specified for pod two, choose one of:"
                         " [a b]"),
        ("web", {"container": "nope"}, 400, "container nope is not valid for pod web"),
        ("web", {"tailLines": "-3"}, 422, "tailLines: Invalid value: -3"),
        ("web", {"sinceSeconds": "10"}, 400, "sinceSeconds is not supported"),
        ("web", {"timestamps": "true"}, 400, "timestamps are not supported"),
        ("web", {"previous": "true"}, 400,
         'previous terminated container "app" in pod "web" not found'),
        ("waiting", {}, 400,
         'container "app" in pod "waiting" is waiting to start: ContainerCreating'),
    ]
    for pod, params, code, message in cases:
        response = await harness.client.get(f"/api/v1/namespaces/default/pods/{pod}/log",
                                            params=params)
        body = await response.json()
        assert (response.status, body["code"]) == (code, code), (pod, params, body)
        assert message in body["message"], (pod, params, body)
    assert harness.kubelets.requests == []


async def test_forbidden_logs_never_reach_the_kubelet(harness: Harness) -> None:
    harness.denied.add(("get", "log"))
    response = await harness.client.get(f"{POD_URL}/log")
    assert response.status == 403
    assert 'cannot get resource "pods/log"' in (await response.json())["message"]
    assert harness.kubelets.requests == []


async def test_a_kubelet_refusing_at_once_is_the_status(harness: Harness) -> None:
    harness.kubelets.script = [Unavailable('node "node-1" has no kubelet endpoint')]
    response = await harness.client.get(f"{POD_URL}/log")
    assert response.status == 503
    assert (await response.json())["message"] == 'node "node-1" has no kubelet endpoint'


async def test_an_error_once_the_log_streams_ends_it(harness: Harness) -> None:
    harness.kubelets.script = [out(b"before\n"), Unavailable("kubelet went away")]
    response = await harness.client.get(f"{POD_URL}/log", params={"follow": "1"})
    assert response.status == 200
    assert await response.read() == b"before\n"


async def test_a_quiet_log_answers_and_follows(harness: Harness) -> None:
    release = asyncio.Event()
    harness.kubelets.script = [release, out(b"late\n")]
    response = await harness.client.get(f"{POD_URL}/log", params={"follow": "true"})
    assert response.status == 200  # headers came before any output
    release.set()
    assert await response.read() == b"late\n"


async def test_a_client_leaving_a_followed_log_ends_the_kubelet_stream(
        harness: Harness) -> None:
    never = asyncio.Event()
    harness.kubelets.script = [out(b"first\n"), never]
    response = await harness.client.get(f"{POD_URL}/log", params={"follow": "true"})
    assert await response.content.readline() == b"first\n"
    response.close()
    await asyncio.wait_for(harness.kubelets.ended.wait(), 5)
    assert harness.kubelets.cancelled


# ------------------------------------------------------------------------- pods/exec


@dataclass
class Frames:
    """What the client read on each channel, the Status, and the close code."""

    channels: dict[int, bytes] = field(default_factory=dict)
    first: tuple[int, bytes] | None = None
    status: dict[str, Any] | None = None
    close_code: int | None = None


async def read_all(ws: aiohttp.ClientWebSocketResponse) -> Frames:
    frames = Frames()
    async for msg in ws:
        assert msg.type is aiohttp.WSMsgType.BINARY, msg
        channel, data = msg.data[0], msg.data[1:]
        if frames.first is None:
            frames.first = (channel, data)
        frames.channels[channel] = frames.channels.get(channel, b"") + data
    frames.close_code = ws.close_code
    if frames.channels.get(streams.ERROR):
        frames.status = json.loads(frames.channels[streams.ERROR])
    return frames


def exec_params(*command: str, **flags: str) -> list[tuple[str, str]]:
    return [("command", c) for c in command] + list(flags.items())


async def test_exec_relays_output_and_a_success_status(harness: Harness) -> None:
    harness.kubelets.script = [out(b"hello\n"), out(b"oops\n", fd=2), exit_code(0)]
    async with harness.client.ws_connect(
        f"{POD_URL}/exec", protocols=(streams.V5, streams.V4),
        params=exec_params("sh", "-c", "echo hello", stdout="true", stderr="true"),
    ) as ws:
        assert ws.protocol == streams.V5
        frames = await read_all(ws)
    assert frames.first == (streams.STDOUT, b"")  # the stream is up
    assert frames.channels[streams.STDOUT] == b"hello\n"
    assert frames.channels[streams.STDERR] == b"oops\n"
    assert frames.status == {"metadata": {}, "status": "Success"}
    assert frames.close_code == 1000
    assert harness.asked == [("get", "exec"), ("create", "exec")]
    assert harness.kubelets.requests == [pb.PodExecRequest(
        namespace="default", name="web", container="app", command=["sh", "-c", "echo hello"])]


async def test_a_non_zero_exit_is_its_code_in_the_status(harness: Harness) -> None:
    harness.kubelets.script = [out(b"dropped: stdout not asked\n"), exit_code(3)]
    async with harness.client.ws_connect(
        f"{POD_URL}/exec", protocols=(streams.V4,),
        params=exec_params("false", stderr="true"),
    ) as ws:
        assert ws.protocol == streams.V4
        frames = await read_all(ws)
    assert frames.first == (streams.STDERR, b"")
    assert streams.STDOUT not in frames.channels
    assert frames.status is not None
    assert frames.status["status"] == "Failure"
    assert frames.status["reason"] == "NonZeroExitCode"
    assert frames.status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]


async def test_stdin_is_collected_until_the_client_closes_it(harness: Harness) -> None:
    harness.kubelets.script = [out(b"2\n"), exit_code(0)]
    async with harness.client.ws_connect(
        f"{POD_URL}/exec", protocols=(streams.V5,),
        params=exec_params("wc", "-l", stdin="true", stdout="true"),
    ) as ws:
        await ws.send_bytes(bytes([streams.STDIN]) + b"a\n")
        await ws.send_bytes(bytes([streams.RESIZE]) + b'{"Width":80,"Height":24}')
        await ws.send_str("\x00b\n")  # as text, as the Python client sends a str
        await ws.send_bytes(bytes([streams.CLOSE, streams.STDIN]))
        frames = await read_all(ws)
    assert frames.channels[streams.STDOUT] == b"2\n"
    request = harness.kubelets.requests[0]
    assert isinstance(request, pb.PodExecRequest) and request.stdin == b"a\nb\n"


async def test_stdin_over_the_limit_is_refused_on_the_error_channel(harness: Harness) -> None:
    async with harness.client.ws_connect(
        f"{POD_URL}/exec", protocols=(streams.V5,),
        params=exec_params("cat", stdin="true", stdout="true"),
    ) as ws:
        await ws.send_bytes(bytes([streams.STDIN]) + b"x" * 1000)
        await ws.send_bytes(bytes([streams.STDIN]) + b"x" * 1000)
        frames = await read_all(ws)
    assert frames.status is not None and frames.status["code"] == 413
    assert harness.kubelets.requests == []


async def test_kubelet_errors_go_to_the_error_channel(harness: Harness) -> None:
    harness.kubelets.script = [BadRequest('container "app" in pod "uid-web" not found')]
    async with harness.client.ws_connect(
        f"{POD_URL}/exec", protocols=(streams.V5,), params=exec_params("ls", stdout="1"),
    ) as ws:
        frames = await read_all(ws)
    assert frames.status is not None
    assert (frames.status["status"], frames.status["reason"], frames.status["code"]) == (
        "Failure", "BadRequest", 400)
    assert frames.status["message"] == 'container "app" in pod "uid-web" not found'


async def test_a_client_leaving_mid_command_ends_it(harness: Harness) -> None:
    never = asyncio.Event()
    harness.kubelets.script = [out(b"started\n"), never]
    async with harness.client.ws_connect(
        f"{POD_URL}/exec", protocols=(streams.V5,), params=exec_params("sleep", stdout="1"),
    ) as ws:
        assert (await ws.receive_bytes()) == bytes([streams.STDOUT])
        assert (await ws.receive_bytes()) == bytes([streams.STDOUT]) + b"started\n"
    await asyncio.wait_for(harness.kubelets.ended.wait(), 5)
    assert harness.kubelets.cancelled


async def test_exec_errors_before_the_upgrade_are_statuses(harness: Harness) -> None:
    done = running_pod("done")
    done.status.phase = "Succeeded"
    harness.api.pods["done"] = done
    unbound = running_pod("unbound")
    unbound.spec.node_name = ""
    harness.api.pods["unbound"] = unbound
    ws_headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                  "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    cases: list[tuple[str, list[tuple[str, str]], dict[str, str], int, str]] = [
        ("missing", exec_params("ls", stdout="1"), {}, 404, 'pods "missing" not found'),
        ("web", exec_params("ls", stdout="1", container="db"), {}, 400,
         "container db is not valid for pod web"),
        ("web", exec_params(stdout="1"), {}, 400, "at least one command"),
        ("web", exec_params("sh", stdin="1", tty="1"), {}, 400, "a terminal is not supported"),
        ("done", exec_params("ls", stdout="1"), {}, 400,
         "cannot exec into a container in a completed pod; current phase is Succeeded"),
        ("unbound", exec_params("ls", stdout="1"), {}, 400,
         "pod unbound does not have a host assigned"),
        ("web", exec_params("ls", stdout="1"), {"Upgrade": "SPDY/3.1", "Connection": "Upgrade",
                                                 "X-Stream-Protocol-Version": "v4.channel.k8s.io"},
         400, "pods/exec over SPDY is not supported by this server"),
        ("web", exec_params("ls", stdout="1"), {}, 400, "pods/exec is served over a WebSocket"),
        ("web", exec_params("ls", stdout="1"), ws_headers, 400,
         "no remote command subprotocol this server speaks was offered"),
        ("web", exec_params("cat", stdin="1"), {**ws_headers, "Sec-WebSocket-Protocol": streams.V4},
         400, "stdin needs the v5.channel.k8s.io subprotocol"),
    ]
    for pod, params, headers, code, message in cases:
        response = await harness.client.get(f"/api/v1/namespaces/default/pods/{pod}/exec",
                                            params=params, headers=headers)
        body = await response.json()
        assert (response.status, body["code"]) == (code, code), (pod, params, headers, body)
        assert message in body["message"], (pod, params, headers, body)
    assert harness.kubelets.requests == []


async def test_spdy_is_refused_with_a_clear_message(harness: Harness) -> None:
    response = await harness.client.post(
        f"{POD_URL}/exec", params=exec_params("ls", stdout="true"),
        headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1"})
    assert response.status == 400
    assert (await response.json())["message"] == streams.SPDY_REFUSED
    assert harness.asked == [("create", "exec")]  # POST: create alone, as upstream


async def test_a_get_upgrade_needs_create_as_well(harness: Harness) -> None:
    harness.denied.add(("create", "exec"))
    response = await harness.client.get(f"{POD_URL}/exec", params=exec_params("ls", stdout="1"))
    assert response.status == 403
    assert 'cannot create resource "pods/exec"' in (await response.json())["message"]
    assert harness.asked == [("get", "exec"), ("create", "exec")]


async def test_exec_waits_for_every_output_before_the_status(harness: Harness) -> None:
    gate = asyncio.Event()
    harness.kubelets.script = [out(b"a"), gate, out(b"b"), exit_code(0)]
    async with harness.client.ws_connect(
        f"{POD_URL}/exec", protocols=(streams.V5,), params=exec_params("x", stdout="1"),
    ) as ws:
        assert await ws.receive_bytes() == bytes([streams.STDOUT])
        assert await ws.receive_bytes() == bytes([streams.STDOUT]) + b"a"
        await eventually(lambda: len(harness.kubelets.requests) == 1)
        gate.set()
        frames = await read_all(ws)
    assert frames.channels == {streams.STDOUT: b"b",
                               streams.ERROR: b'{"metadata": {}, "status": "Success"}'}
