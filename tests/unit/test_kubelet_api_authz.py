"""Who may call the kubelet API: the API server's kubelet client and system:masters pass,
anyone else is asked of the API server (a SubjectAccessReview of nodes/proxy), with answers
cached as upstream's webhook authorizer caches them; over TLS, denials are Forbidden with
upstream's message."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import cast

import grpc
import pytest

from kubelet.__main__ import parse_args
from kubelet.runtime.interface import ContainerState, ContainerStatus, Runtime
from kubelet.server import (
    AuthorizationError,
    AuthorizationSettings,
    CallerAuthorizer,
    KubeletServer,
    ServingTls,
)
from kubelet.settings import KubeletSettings
from kubelite.api.errors import Unavailable
from kubelite.auth.user import ALL_AUTHENTICATED, APISERVER_KUBELET_CLIENT, MASTERS, UserInfo
from kubelite.testing.tls import CertificateAuthority
from protos.v1 import kubelet_pb2 as kpb
from protos.v1 import kubelet_pb2_grpc as kpb_grpc
from protos.v1 import objects_pb2 as v1
from tests.unit.fakes import ManualClock

ALICE = UserInfo("alice", "uid-a", ("devs", ALL_AUTHENTICATED), {"scopes": ("x",)})


class FakeReviewer:
    """The API server's SubjectAccessReview: allows the users in ``allowed``."""

    def __init__(self, allowed: Sequence[str] = ()) -> None:
        self.allowed = set(allowed)
        self.reviews: list[v1.SubjectAccessReview] = []
        self.fail: Exception | None = None

    async def review(self, review: v1.SubjectAccessReview) -> v1.SubjectAccessReview:
        if self.fail is not None:
            raise self.fail
        self.reviews.append(review)
        answer = v1.SubjectAccessReview()
        answer.CopyFrom(review)
        answer.status.allowed = review.spec.user in self.allowed
        answer.status.reason = "bound" if answer.status.allowed else "no binding"
        return answer


def authorizer(reviewer: FakeReviewer, clock: ManualClock) -> CallerAuthorizer:
    return CallerAuthorizer("node-1", reviewer, AuthorizationSettings(), clock=clock)


async def test_the_review_asks_for_nodes_proxy_on_this_node_as_the_caller() -> None:
    reviewer = FakeReviewer(["alice"])
    decision = await authorizer(reviewer, ManualClock()).authorize(ALICE, "create")
    assert decision.allowed
    spec = reviewer.reviews[0].spec
    assert (spec.user, spec.uid, list(spec.groups)) == ("alice", "uid-a",
                                                        ["devs", ALL_AUTHENTICATED])
    assert list(spec.extra["scopes"].items) == ["x"]
    attrs = spec.resource_attributes
    assert (attrs.verb, attrs.group, attrs.version, attrs.resource, attrs.subresource,
            attrs.name, attrs.namespace) == ("create", "", "v1", "nodes", "proxy", "node-1", "")


async def test_the_api_server_s_kubelet_client_and_masters_are_not_reviewed() -> None:
    reviewer = FakeReviewer()
    authz = authorizer(reviewer, ManualClock())
    assert (await authz.authorize(UserInfo(APISERVER_KUBELET_CLIENT), "create")).allowed
    assert (await authz.authorize(UserInfo("root", groups=(MASTERS,)), "get")).allowed
    assert reviewer.reviews == []


async def test_allows_are_cached_five_minutes_and_denials_thirty_seconds() -> None:
    reviewer = FakeReviewer(["alice"])
    clock = ManualClock()
    authz = authorizer(reviewer, clock)
    bob = UserInfo("bob", groups=(ALL_AUTHENTICATED,))
    start = clock.now

    assert (await authz.authorize(ALICE, "create")).allowed
    assert not (await authz.authorize(bob, "create")).allowed
    clock.now = start + 29
    await authz.authorize(ALICE, "create")
    await authz.authorize(bob, "create")
    assert len(reviewer.reviews) == 2
    clock.now = start + 30
    await authz.authorize(bob, "create")
    assert [r.spec.user for r in reviewer.reviews] == ["alice", "bob", "bob"]
    clock.now = start + 299
    await authz.authorize(ALICE, "create")
    assert len(reviewer.reviews) == 3
    clock.now = start + 300
    await authz.authorize(ALICE, "create")
    assert [r.spec.user for r in reviewer.reviews][-1] == "alice"


async def test_the_cache_tells_verbs_and_groups_apart() -> None:
    reviewer = FakeReviewer(["alice"])
    authz = authorizer(reviewer, ManualClock())
    await authz.authorize(ALICE, "create")
    await authz.authorize(ALICE, "get")
    await authz.authorize(UserInfo("alice", "uid-a", ("other",)), "create")
    assert len(reviewer.reviews) == 3


async def test_an_unreachable_api_server_is_an_error_and_not_cached() -> None:
    reviewer = FakeReviewer(["alice"])
    authz = authorizer(reviewer, ManualClock())
    reviewer.fail = Unavailable("connection refused")
    with pytest.raises(AuthorizationError, match="connection refused"):
        await authz.authorize(ALICE, "create")
    reviewer.fail = None
    assert (await authz.authorize(ALICE, "create")).allowed


async def test_the_cache_holds_at_most_max_entries() -> None:
    reviewer = FakeReviewer()
    authz = CallerAuthorizer("node-1", reviewer, AuthorizationSettings(max_entries=2),
                             clock=ManualClock())
    for name in ("a", "b", "c"):
        await authz.authorize(UserInfo(name), "get")
    await authz.authorize(UserInfo("a"), "get")  # the oldest went first
    await authz.authorize(UserInfo("c"), "get")
    assert [r.spec.user for r in reviewer.reviews] == ["a", "b", "c", "a"]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="allowed_ttl"):
        AuthorizationSettings(allowed_ttl=-1)
    with pytest.raises(ValueError, match="denied_ttl"):
        AuthorizationSettings(denied_ttl=-1)


# ------------------------------------------------------------------------- over TLS


class OneContainer:
    """A runtime holding one running container whose exec prints the command."""

    async def list_containers(self, pod_uid: str | None = None) -> list[ContainerStatus]:
        return [ContainerStatus("c1", "main", "pod-1", 0, ContainerState.RUNNING)]

    async def exec_stream(self, container_id: str, command: Sequence[str],
                          stdin: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, bytes]]:
        yield 1, " ".join(command).encode()
        yield -1, b"0"


async def exec_as(port: int, ca: CertificateAuthority, name: str,
                  groups: tuple[str, ...] = ()) -> bytes:
    pair = ca.issue(name, organizations=groups, server=False)
    credentials = grpc.ssl_channel_credentials(ca.cert_pem, pair.key_pem, pair.cert_pem)
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        stub = kpb_grpc.KubeletStub(channel)  # type: ignore[no-untyped-call]
        output = b""
        async for chunk in stub.Exec(kpb.ContainerExecRequest(
                pod_uid="pod-1", container="main", command=["echo", "hi"]), timeout=10):
            output += chunk.data
        return output


async def test_over_tls_a_denied_caller_is_forbidden_with_upstream_s_message(
        tmp_path: Path) -> None:
    ca = CertificateAuthority()
    cert, key = ca.issue("node-1", ips=("127.0.0.1",), client=False).write(tmp_path, "serving")
    reviewer = FakeReviewer(["alice"])
    server = KubeletServer(
        cast(Runtime, OneContainer()), "127.0.0.1", 0,
        tls=ServingTls(str(cert), str(key), str(ca.write(tmp_path))),
        authorizer=CallerAuthorizer("node-1", reviewer))
    await server.start()
    try:
        assert await exec_as(server.port, ca, "alice") == b"echo hi"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await exec_as(server.port, ca, "mallory", ("devs",))
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert caught.value.details() == (
            "Forbidden (user=mallory, verb=create, resource=nodes, subresource=proxy)")
        # The certificate's O entries are the groups, with system:authenticated.
        assert list(reviewer.reviews[-1].spec.groups) == ["devs", ALL_AUTHENTICATED]
        reviewer.fail = Unavailable("connection refused")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await exec_as(server.port, ca, "bob")
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "Authorization error (user=bob" in (caught.value.details() or "")
    finally:
        await server.stop()


def test_tls_needs_an_authorizer_and_readable_files(tmp_path: Path) -> None:
    runtime = cast(Runtime, OneContainer())
    tls = ServingTls(str(tmp_path / "missing.crt"), str(tmp_path / "missing.key"),
                     str(tmp_path / "ca.crt"))
    with pytest.raises(ValueError, match="needs an authorizer"):
        KubeletServer(runtime, "127.0.0.1", 0, tls=tls)
    with pytest.raises(ValueError, match="--tls-cert-file .*missing.crt: cannot read"):
        KubeletServer(runtime, "127.0.0.1", 0, tls=tls,
                      authorizer=CallerAuthorizer("n", FakeReviewer()))


# ------------------------------------------------------------------------- flags


def test_kubelet_security_flags() -> None:
    settings, _ = parse_args(["--node-name", "n1"])
    assert settings.serving_tls is None and settings.kubeconfig == ""
    assert settings.authorization == AuthorizationSettings(allowed_ttl=300, denied_ttl=30)
    settings, _ = parse_args([
        "--node-name", "n1", "--kubeconfig", "/etc/kubelite/kubelet.conf",
        "--tls-cert-file", "s.crt", "--tls-private-key-file", "s.key",
        "--client-ca-file", "ca.crt", "--authorization-webhook-cache-authorized-ttl", "1m",
        "--authorization-webhook-cache-unauthorized-ttl", "5s"])
    assert settings.kubeconfig == "/etc/kubelite/kubelet.conf"
    assert settings.serving_tls == ServingTls("s.crt", "s.key", "ca.crt")
    assert settings.authorization == AuthorizationSettings(allowed_ttl=60, denied_ttl=5)


def test_tls_flags_go_together(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--node-name", "n1", "--tls-cert-file", "s.crt"])
    assert ("--tls-private-key-file, --client-ca-file: required with --tls-cert-file"
            in capsys.readouterr().err)
    with pytest.raises(ValueError, match="go together"):
        KubeletSettings(node_name="n1", tls_cert_file="s.crt", tls_private_key_file="s.key")


async def test_a_rotated_serving_certificate_and_ca_are_served_without_a_restart(
        tmp_path: Path) -> None:
    old, new = CertificateAuthority("old"), CertificateAuthority("new")
    cert, key = old.issue("node-1", ips=("127.0.0.1",), client=False).write(tmp_path, "serving")
    ca_file = old.write(tmp_path)
    server = KubeletServer(
        cast(Runtime, OneContainer()), "127.0.0.1", 0,
        tls=ServingTls(str(cert), str(key), str(ca_file)),
        authorizer=CallerAuthorizer("node-1", FakeReviewer()))
    await server.start()
    try:
        assert await exec_as(server.port, old, APISERVER_KUBELET_CLIENT) == b"echo hi"
        with pytest.raises(grpc.aio.AioRpcError):
            await exec_as(server.port, new, APISERVER_KUBELET_CLIENT)

        new.issue("node-1", ips=("127.0.0.1",), client=False).write(tmp_path, "serving")
        new.write(tmp_path)

        assert await exec_as(server.port, new, APISERVER_KUBELET_CLIENT) == b"echo hi"
        with pytest.raises(grpc.aio.AioRpcError):
            await exec_as(server.port, old, APISERVER_KUBELET_CLIENT)
    finally:
        await server.stop()
