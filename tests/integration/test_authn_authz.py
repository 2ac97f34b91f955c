"""A secure API server (real etcd, TLS with `kubelite init`'s certificates) authenticates and
authorizes every request: client certificates, ServiceAccount tokens, bootstrap tokens; the
Node authorizer and RBAC; access reviews and `klctl auth can-i`."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from apiserver.authn import AuthenticationSettings
from apiserver.server import ApiServer, TlsSettings
from apiserver.token_request import TokenRequestSettings
from kubelite.api.errors import Forbidden, Invalid, Unauthorized, Unavailable
from kubelite.auth import jwt, tokens
from kubelite.cli.klctl import main as klctl_main
from kubelite.client.client import ApiClient, Impersonation
from kubelite.client.config import ClientConfig, load_kubeconfig, write_kubeconfig
from kubelite.pki import (
    ClusterPki,
    bootstrap_token_secret_data,
    init_cluster,
    issue,
    new_ca,
    new_csr,
    new_rsa_key_pair,
)
from kubelite.testing.apiserver import server_settings
from kubelite.testing.etcd import EtcdProcess
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1

RBAC = "rbac.authorization.k8s.io"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ClusterPki:
    return init_cluster(tmp_path_factory.mktemp("cluster"),
                        nodes=[("node-a", ["127.0.0.2"]), ("node-b", ["127.0.0.3"])]).pki


@pytest.fixture
async def server(etcd: EtcdProcess, pki: ClusterPki) -> AsyncIterator[ApiServer]:
    settings = dataclasses.replace(
        server_settings(etcd.endpoint), insecure=False,
        tls=TlsSettings(str(pki.apiserver_cert), str(pki.apiserver_key), str(pki.ca_cert)),
        authentication=AuthenticationSettings(bootstrap_tokens=True,
                                              service_account_key_files=(str(pki.sa_pub),)),
        token_requests=TokenRequestSettings(str(pki.sa_key)),
    )
    api_server = ApiServer(settings)
    await api_server.start()
    yield api_server
    await api_server.stop()


def user_config(server: ApiServer, pki: ClusterPki, name: str, groups: list[str] | None = None
                ) -> ClientConfig:
    """A client config with a certificate the cluster CA issued for ``name``."""
    cert, key = issue(pki.ca_cert.read_bytes(), pki.ca_key.read_bytes(), name, groups or [],
                      client=True)
    return ClientConfig(server.address, ca_pem=pki.ca_cert.read_bytes(), cert_pem=cert,
                        key_pem=key)


def token_config(server: ApiServer, pki: ClusterPki, token: str) -> ClientConfig:
    return ClientConfig(server.address, ca_pem=pki.ca_cert.read_bytes(), token=token)


def conf_file(server: ApiServer, path: Path) -> ClientConfig:
    return dataclasses.replace(load_kubeconfig(path), server=server.address)


def client_of(config: ClientConfig) -> ApiClient:
    return ApiClient(config, timeout=10, wait_for_ready=False)


@pytest.fixture
async def admin(server: ApiServer, pki: ClusterPki) -> AsyncIterator[ApiClient]:
    async with client_of(conf_file(server, pki.admin_conf)) as client:
        for name in ("a", "b"):
            await client.create(v1.Namespace(metadata=v1.ObjectMeta(name=name)))
        yield client


def pod(name: str, namespace: str, *, node: str = "", account: str = "robot",
        secret: str = "") -> v1.Pod:
    obj = v1.Pod(metadata=v1.ObjectMeta(name=name, namespace=namespace))
    obj.spec.service_account_name = account
    obj.spec.node_name = node
    obj.spec.containers.add(name="c", image="busybox", command=["sleep", "3600"])
    if secret:
        obj.spec.volumes.add(name="s").secret.secret_name = secret
    return obj


async def bind(admin: ApiClient, namespace: str, name: str, role_kind: str, role: str,
               subject: v1.Subject) -> None:
    await admin.create(v1.RoleBinding(
        metadata=v1.ObjectMeta(name=name, namespace=namespace), subjects=[subject],
        role_ref=v1.RoleRef(api_group=RBAC, kind=role_kind, name=role)))


def user_subject(name: str) -> v1.Subject:
    return v1.Subject(kind="User", api_group=RBAC, name=name)


async def health(config: ClientConfig) -> str:
    async with client_of(config) as client:
        response = await health_pb2_grpc.HealthStub(client.channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


async def test_no_credentials_is_unauthorized_but_health_answers(
        server: ApiServer, pki: ClusterPki) -> None:
    anonymous = ClientConfig(server.address, ca_pem=pki.ca_cert.read_bytes())
    async with client_of(anonymous) as client:
        with pytest.raises(Unauthorized) as caught:
            await client.list(v1.Pod, "default")
    assert caught.value.message == "Unauthorized"
    assert await health(anonymous) == "SERVING"
    async with client_of(token_config(server, pki, "not-a-token")) as client:
        with pytest.raises(Unauthorized):
            await client.get(v1.Namespace, "default")


async def test_a_certificate_of_another_ca_fails_the_handshake(
        server: ApiServer, pki: ClusterPki) -> None:
    other_ca, other_key = new_ca("another")
    cert, key = issue(other_ca, other_key, "kubernetes-admin", ["system:masters"], client=True)
    config = ClientConfig(server.address, ca_pem=pki.ca_cert.read_bytes(), cert_pem=cert,
                          key_pem=key)
    async with client_of(config) as client:
        with pytest.raises(Unavailable):
            await client.list(v1.Pod, "default")
    with pytest.raises(grpc.aio.AioRpcError):
        await health(config)


async def test_a_viewer_of_one_namespace(server: ApiServer, pki: ClusterPki,
                                         admin: ApiClient) -> None:
    await admin.create(v1.ServiceAccount(metadata=v1.ObjectMeta(name="robot", namespace="a")))
    await admin.create(v1.Secret(metadata=v1.ObjectMeta(name="s", namespace="a")))
    await bind(admin, "a", "alice-views", "ClusterRole", "view", user_subject("alice"))
    async with client_of(user_config(server, pki, "alice", ["devs"])) as alice:
        await eventually(lambda: alice.list(v1.Pod, "a"), message="alice lists pods in a")
        with pytest.raises(Forbidden) as caught:
            await alice.list(v1.Pod, "b")
        assert caught.value.message == (
            'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in'
            ' the namespace "b"')
        with pytest.raises(Forbidden) as caught:
            await alice.get(v1.Secret, "s", "a")
        assert caught.value.message.startswith('secrets "s" is forbidden: User "alice" cannot'
                                               ' get resource "secrets"')
        with pytest.raises(Forbidden) as caught:
            async for _ in alice.pod_exec("a", "web", ["true"]):
                pass
        assert 'cannot create resource "pods/exec"' in caught.value.message
        with pytest.raises(Forbidden):
            await alice.create(pod("sneaky", "a"))
        with pytest.raises(Forbidden):
            async for _ in alice.watch(v1.Pod, "b"):
                pass


async def test_a_node_writes_its_own_node_and_reads_only_its_pods_secrets(
        server: ApiServer, pki: ClusterPki, admin: ApiClient) -> None:
    await admin.create(v1.Node(metadata=v1.ObjectMeta(name="node-b")))
    await admin.create(v1.ServiceAccount(metadata=v1.ObjectMeta(name="robot", namespace="a")))
    for name in ("used", "unused"):
        await admin.create(v1.Secret(metadata=v1.ObjectMeta(name=name, namespace="a"),
                                     data={"k": b"v"}))
    async with client_of(conf_file(server, pki.kubelet_conf("node-a"))) as node:
        mine = await node.create(v1.Node(metadata=v1.ObjectMeta(name="node-a")))
        mine.metadata.labels["seen"] = "yes"
        await node.update(mine)
        other = await node.get(v1.Node, "node-b")
        other.metadata.labels["taken"] = "yes"
        with pytest.raises(Forbidden) as caught:
            await node.update(other)
        assert caught.value.message.startswith(
            'nodes "node-b" is forbidden: User "system:node:node-a" cannot update resource'
            ' "nodes"')
        with pytest.raises(Forbidden):
            await node.patch(v1.Node, "node-b", {"metadata": {"labels": {"x": "y"}}})
        with pytest.raises(Forbidden) as caught:
            await node.get(v1.Secret, "used", "a")
        assert "no relationship found between node 'node-a' and this object" in (
            caught.value.message)
        await admin.create(pod("web", "a", node="node-a", secret="used"))
        secret = await eventually(lambda: node.get(v1.Secret, "used", "a"),
                                  message="node-a reads the secret its pod uses")
        assert secret.data["k"] == b"v"
        with pytest.raises(Forbidden):
            await node.get(v1.Secret, "unused", "a")
        # The kubelet's own watch of its pods.
        pods = await node.list(v1.Pod, field_selector="spec.nodeName=node-a")
        assert [p.metadata.name for p in pods.items] == ["web"]


async def test_a_service_account_token_has_exactly_its_rbac(
        server: ApiServer, pki: ClusterPki, admin: ApiClient) -> None:
    await admin.create(v1.ServiceAccount(metadata=v1.ObjectMeta(name="robot", namespace="a")))
    web = await admin.create(pod("web", "a"))
    await admin.create(v1.Secret(metadata=v1.ObjectMeta(name="s", namespace="a")))
    request = v1.TokenRequest()
    request.spec.bound_object_ref.CopyFrom(v1.BoundObjectReference(
        kind="Pod", api_version="v1", name="web", uid=web.metadata.uid))
    answer = await admin.request_token("a", "robot", request)
    assert answer.spec.expiration_seconds == 3600
    assert answer.spec.audiences == [tokens.DEFAULT_ISSUER]
    assert answer.status.expiration_timestamp
    async with client_of(token_config(server, pki, answer.status.token)) as robot:
        with pytest.raises(Forbidden) as caught:
            await robot.list(v1.Pod, "a")
        assert 'User "system:serviceaccount:a:robot"' in caught.value.message
        await admin.create(v1.Role(metadata=v1.ObjectMeta(name="pod-reader", namespace="a"),
                                   rules=[v1.PolicyRule(verbs=["list"], api_groups=[""],
                                                        resources=["pods"])]))
        await bind(admin, "a", "robot-reads", "Role", "pod-reader",
                   v1.Subject(kind="ServiceAccount", name="robot", namespace="a"))
        listed = await eventually(lambda: robot.list(v1.Pod, "a"), message="robot lists pods")
        assert [p.metadata.name for p in listed.items] == ["web"]
        with pytest.raises(Forbidden):
            await robot.list(v1.Pod, "b")
        with pytest.raises(Forbidden):
            await robot.get(v1.Secret, "s", "a")
        with pytest.raises(Forbidden):
            await robot.get(v1.Pod, "web", "a")

        await admin.delete(v1.Pod, "web", "a", grace_period_seconds=0)

        async def refused() -> bool:
            with pytest.raises(Unauthorized):
                await robot.list(v1.Pod, "a")
            return True

        await eventually(refused, message="the deleted pod's token is refused")


def _signed(key: rsa.RSAPrivateKey, account: v1.ServiceAccount, now: dt.datetime) -> str:
    return jwt.sign(tokens.service_account_claims(
        issuer=tokens.DEFAULT_ISSUER, audiences=[tokens.DEFAULT_ISSUER],
        namespace=account.metadata.namespace, name=account.metadata.name,
        uid=account.metadata.uid, pod=None, now=now, expiration_seconds=3600), key)


async def test_expired_and_foreign_tokens_are_refused(
        server: ApiServer, pki: ClusterPki, admin: ApiClient) -> None:
    account = await admin.create(v1.ServiceAccount(metadata=v1.ObjectMeta(
        name="robot", namespace="a")))
    await admin.create(v1.ClusterRoleBinding(
        metadata=v1.ObjectMeta(name="robot-views"),
        subjects=[v1.Subject(kind="ServiceAccount", name="robot", namespace="a")],
        role_ref=v1.RoleRef(api_group=RBAC, kind="ClusterRole", name="view")))
    key = jwt.load_private_key(pki.sa_key.read_bytes())
    now = dt.datetime.now(dt.UTC)
    async with client_of(token_config(server, pki, _signed(key, account, now))) as fresh:
        await eventually(lambda: fresh.list(v1.Pod, "a"), message="a valid token works")
    expired = _signed(key, account, now - dt.timedelta(hours=2))
    foreign = _signed(rsa.generate_private_key(public_exponent=65537, key_size=2048), account,
                      now)
    for token in (expired, foreign):
        async with client_of(token_config(server, pki, token)) as client:
            with pytest.raises(Unauthorized):
                await client.list(v1.Pod, "a")
    with pytest.raises(Invalid) as caught:
        await admin.request_token("a", "robot", v1.TokenRequest(
            spec=v1.TokenRequestSpec(expiration_seconds=60)))
    assert "may not specify a duration less than 10 minutes" in caught.value.message


async def test_a_bootstrap_token_works_while_its_secret_does(
        server: ApiServer, pki: ClusterPki, admin: ApiClient) -> None:
    token = "abcdef.0123456789abcdef"
    secret = await admin.create(v1.Secret(
        metadata=v1.ObjectMeta(name="bootstrap-token-abcdef", namespace="kube-system"),
        type=tokens.BOOTSTRAP_TOKEN_SECRET_TYPE,
        data={k: v.encode() for k, v in bootstrap_token_secret_data(token, 3600).items()}))
    async with client_of(token_config(server, pki, token)) as joiner:
        await eventually(lambda: joiner.list(v1.CertificateSigningRequest),
                         message="a bootstrapper lists CSRs")
        with pytest.raises(Forbidden) as caught:
            await joiner.list(v1.Pod, "a")
        assert 'User "system:bootstrap:abcdef"' in caught.value.message
        secret.data["expiration"] = b"2020-01-01T00:00:00Z"
        await admin.update(secret)
        with pytest.raises(Unauthorized):
            await joiner.list(v1.CertificateSigningRequest)
        secret = await admin.get(v1.Secret, "bootstrap-token-abcdef", "kube-system")
        del secret.data["expiration"]
        await admin.update(secret)
        await joiner.list(v1.CertificateSigningRequest)
        await admin.delete(v1.Secret, "bootstrap-token-abcdef", "kube-system")
        with pytest.raises(Unauthorized):
            await joiner.list(v1.CertificateSigningRequest)


async def test_access_reviews_and_impersonation(server: ApiServer, pki: ClusterPki,
                                               admin: ApiClient) -> None:
    await bind(admin, "a", "alice-views", "ClusterRole", "view", user_subject("alice"))

    def asking(verb: str, resource: str, namespace: str) -> v1.SelfSubjectAccessReview:
        review = v1.SelfSubjectAccessReview()
        review.spec.resource_attributes.CopyFrom(v1.ResourceAttributes(
            verb=verb, resource=resource, namespace=namespace))
        return review

    async with client_of(user_config(server, pki, "alice")) as alice:
        answer = await eventually(
            lambda: _allowed(alice.access_review(asking("list", "pods", "a"))))
        assert "view" in answer.status.reason
        assert not (await alice.access_review(asking("list", "pods", "b"))).status.allowed
        with pytest.raises(Forbidden):  # reviews about others need create on them
            await alice.access_review(v1.SubjectAccessReview(spec=v1.SubjectAccessReviewSpec(
                user="bob", resource_attributes=v1.ResourceAttributes(verb="get",
                                                                      resource="pods"))))
        with pytest.raises(Forbidden) as caught:
            await alice.access_review(asking("list", "pods", "a"),
                                      impersonate=Impersonation("bob"))
        assert caught.value.message.startswith('users "bob" is forbidden: User "alice" cannot'
                                               ' impersonate resource "users"')
    as_alice = await admin.access_review(asking("list", "pods", "a"),
                                         impersonate=Impersonation("alice"))
    assert as_alice.status.allowed
    review = await admin.access_review(v1.SubjectAccessReview(spec=v1.SubjectAccessReviewSpec(
        user="alice", resource_attributes=v1.ResourceAttributes(
            verb="get", resource="secrets", namespace="a"))))
    assert not review.status.allowed


async def _allowed(pending: object) -> v1.SelfSubjectAccessReview | None:
    answer = await pending  # type: ignore[misc]
    assert isinstance(answer, v1.SelfSubjectAccessReview)
    return answer if answer.status.allowed else None


async def klctl(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(klctl_main, list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_klctl_auth_can_i_and_create_token(
        server: ApiServer, pki: ClusterPki, admin: ApiClient, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    await bind(admin, "a", "alice-views", "ClusterRole", "view", user_subject("alice"))
    alice = user_config(server, pki, "alice")
    assert alice.cert_pem is not None and alice.key_pem is not None
    alice_conf = write_kubeconfig(tmp_path / "alice.conf", cluster="kubelite",
                                  server=server.address, ca_pem=pki.ca_cert.read_bytes(),
                                  user="alice", cert_pem=alice.cert_pem, key_pem=alice.key_pem)
    admin_conf = tmp_path / "admin.conf"
    admin_conf.write_text(pki.admin_conf.read_text().replace("127.0.0.1:6443", server.address))
    as_alice = ("--kubeconfig", str(alice_conf))

    async def yes() -> bool:
        return (await klctl(capsys, *as_alice, "auth", "can-i", "list", "pods", "-n", "a"))[
            :2] == (0, "yes\n")

    await eventually(yes, message="klctl auth can-i says yes")
    code, out, _ = await klctl(capsys, *as_alice, "auth", "can-i", "list", "pods", "-n", "b")
    assert (code, out) == (1, "no\n")
    code, out, _ = await klctl(capsys, *as_alice, "auth", "can-i", "get", "secrets", "-n", "a")
    assert code == 1
    code, out, _ = await klctl(capsys, *as_alice, "auth", "can-i", "create", "pods/exec",
                               "-n", "a")
    assert code == 1
    code, out, _ = await klctl(capsys, *as_alice, "auth", "can-i", "get", "pods/log", "-n", "a")
    assert (code, out) == (0, "yes\n")
    code, out, _ = await klctl(capsys, "--kubeconfig", str(admin_conf), "auth", "can-i",
                               "list", "pods", "-n", "a", "--as", "alice")
    assert (code, out) == (0, "yes\n")
    code, out, _ = await klctl(capsys, "--kubeconfig", str(admin_conf), "auth", "can-i",
                               "delete", "nodes", "--as", "alice")
    assert (code, out) == (1, "no\n")

    await admin.create(v1.ServiceAccount(metadata=v1.ObjectMeta(name="robot", namespace="a")))
    code, out, err = await klctl(capsys, "--kubeconfig", str(admin_conf), "create", "token",
                                 "robot", "-n", "a", "--duration", "20m")
    assert code == 0, err
    claims = jwt.verify(out.strip(), [jwt.load_private_key(pki.sa_key.read_bytes())
                                      .public_key()])
    assert claims["sub"] == "system:serviceaccount:a:robot"
    assert claims["exp"] - claims["iat"] == 1200
    code, _, err = await klctl(capsys, "--kubeconfig", str(admin_conf), "create", "token",
                               "nobody", "-n", "a")
    assert code == 1 and 'serviceaccounts "nobody" not found' in err


async def test_approving_a_csr_needs_approve_on_its_signer(
        server: ApiServer, pki: ClusterPki, admin: ApiClient) -> None:
    await admin.create(v1.ClusterRole(metadata=v1.ObjectMeta(name="csr-editor"), rules=[
        v1.PolicyRule(verbs=["create", "get", "update"], api_groups=["certificates.k8s.io"],
                      resources=["certificatesigningrequests",
                                 "certificatesigningrequests/status",
                                 "certificatesigningrequests/approval"])]))
    await admin.create(v1.ClusterRoleBinding(
        metadata=v1.ObjectMeta(name="alice-csrs"), subjects=[user_subject("alice")],
        role_ref=v1.RoleRef(api_group=RBAC, kind="ClusterRole", name="csr-editor")))
    key, _ = new_rsa_key_pair()
    request = v1.CertificateSigningRequest(metadata=v1.ObjectMeta(name="alice-cert"))
    request.spec.request = new_csr("alice", key_pem=key)
    request.spec.signer_name = "kubernetes.io/kube-apiserver-client"
    request.spec.usages.extend(["digital signature", "key encipherment", "client auth"])
    request.spec.username = "kubernetes-admin"  # the server says who asks, not the client
    async with client_of(user_config(server, pki, "alice", ["devs"])) as alice:
        csr = await eventually(lambda: alice.create(request), message="alice creates a CSR")
        assert csr.spec.username == "alice"
        assert "devs" in csr.spec.groups
        csr.status.conditions.add(type="Approved", status="True", reason="ByAlice")
        with pytest.raises(Forbidden) as caught:
            await alice.update_status(csr)
        assert caught.value.message == (
            'certificatesigningrequests.certificates.k8s.io "alice-cert" is forbidden: user not'
            ' permitted to approve requests with signerName'
            ' "kubernetes.io/kube-apiserver-client"')
        await admin.create(v1.ClusterRole(metadata=v1.ObjectMeta(name="approver"), rules=[
            v1.PolicyRule(verbs=["approve"], api_groups=["certificates.k8s.io"],
                          resources=["signers"], resource_names=["kubernetes.io/*"])]))
        await admin.create(v1.ClusterRoleBinding(
            metadata=v1.ObjectMeta(name="alice-approves"), subjects=[user_subject("alice")],
            role_ref=v1.RoleRef(api_group=RBAC, kind="ClusterRole", name="approver")))
        approved = await eventually(lambda: alice.update_status(csr),
                                    message="alice approves once she may")
        assert approved.status.conditions[0].type == "Approved"


async def test_a_namespace_admin_grants_only_what_it_holds(
        server: ApiServer, pki: ClusterPki, admin: ApiClient) -> None:
    await bind(admin, "a", "alice-admin", "ClusterRole", "admin", user_subject("alice"))
    async with client_of(user_config(server, pki, "alice")) as alice:
        async def bind_view() -> bool:
            await bind(alice, "a", "bob-views", "ClusterRole", "view", user_subject("bob"))
            return True

        await eventually(bind_view, message="alice binds view in her namespace")
        with pytest.raises(Forbidden) as caught:
            await bind(alice, "a", "bob-rules", "ClusterRole", "cluster-admin",
                       user_subject("bob"))
        assert "is attempting to grant RBAC permissions not currently held" in (
            caught.value.message)
        with pytest.raises(Forbidden):
            await alice.create(v1.Role(
                metadata=v1.ObjectMeta(name="god", namespace="a"),
                rules=[v1.PolicyRule(verbs=["*"], api_groups=["*"], resources=["*"])]))
        reader = await alice.create(v1.Role(
            metadata=v1.ObjectMeta(name="secret-reader", namespace="a"),
            rules=[v1.PolicyRule(verbs=["get"], api_groups=[""], resources=["secrets"])]))
        reader.rules.add(verbs=["create"], api_groups=[""], resources=["nodes"])
        with pytest.raises(Forbidden):
            await alice.update(reader)
        with pytest.raises(Forbidden):
            await alice.patch(v1.Role, "secret-reader", {"rules": [
                {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]}, "a")
