"""A `kubelite up` cluster is secured by default, and each attack on it fails as it should:
no credentials, another CA, a user bound to `view` in one namespace, a kubelet's certificate
used against other nodes' objects, a pod's ServiceAccount token outside its RBAC, a token of a
deleted pod, an expired token; Secrets are ciphertext in etcd; a ResourceQuota holds under
concurrent creates and a LimitRange default lands in pods."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from apiserver.etcd import Etcd, EtcdSettings
from kubelite.api.errors import Forbidden, Unauthorized
from kubelite.auth import jwt
from kubelite.client.client import ApiClient
from kubelite.client.config import ClientConfig, load_kubeconfig, write_kubeconfig
from kubelite.pki import ClusterPki, issue, new_ca, new_rsa_key_pair
from kubelite.testing.cluster import TestCluster, script
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1
from tests.e2e.test_local_cluster import Options, unused_port, up, wait_ready

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="pod volumes need mount namespaces (root)"),
]

@dataclass
class Secured:
    data: Path
    env: dict[str, str]
    options: Options
    pki: ClusterPki

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.options.ports['--api-port']}"

    @property
    def admin(self) -> ClientConfig:
        return load_kubeconfig(self.pki.admin_conf)

    def klctl(self, *args: str, config: Path | None = None, stdin: str | None = None
              ) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if config is not None:
            env["KUBELITE_CONFIG"] = str(config)
        return subprocess.run([script("klctl"), *args], capture_output=True, text=True,
                              env=env, input=stdin, timeout=60, check=False)

    def user_config(self, name: str, groups: tuple[str, ...] = ()) -> Path:
        """A kubeconfig of a user with a certificate from the cluster CA."""
        cert, key = issue(self.pki.ca_cert.read_bytes(), self.pki.ca_key.read_bytes(), name,
                          groups, client=True)
        path = self.data / f"user-{name}.conf"
        write_kubeconfig(path, cluster="kubelite", server=f"https://{self.server}",
                         ca_pem=self.pki.ca_cert.read_bytes(), user=name, cert_pem=cert,
                         key_pem=key)
        return path


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    tmp = tmp_path_factory.mktemp("secured")
    env = {**os.environ, "KUBELITE_CONFIG": str(tmp / "klctl-config")}
    options = Options(nodes=2)
    data = tmp / "cluster"
    process = up(data, env, options)
    try:
        wait_ready(process, timeout=120)
        yield Secured(data, env, options, ClusterPki(data))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def apply(secured: Secured, manifest: str) -> None:
    result = secured.klctl("apply", "-f", "-", stdin=manifest)
    assert result.returncode == 0, result.stdout + result.stderr


def wait_running(secured: Secured, namespace: str, name: str, timeout: float = 60) -> None:
    def running() -> bool:
        got = secured.klctl("get", "pod", name, "-n", namespace, "-o", "json")
        return got.returncode == 0 and json.loads(got.stdout)["status"].get("phase") == "Running"

    TestCluster.wait_for(running, f"pod {namespace}/{name} Running", timeout=timeout)


def sleeper(name: str, namespace: str, *, node: str = "", sa: str = "",
            secret: str = "") -> str:
    lines = [
        "apiVersion: v1", "kind: Pod", "metadata:", f"  name: {name}",
        f"  namespace: {namespace}", "spec:", "  terminationGracePeriodSeconds: 1",
    ]
    if node:
        lines.append(f"  nodeName: {node}")
    if sa:
        lines.append(f"  serviceAccountName: {sa}")
    lines += ["  containers:", "  - name: main", "    image: busybox",
              "    command: [sleep, '3600']"]
    if secret:
        lines += ["    env:", "    - name: S", "      valueFrom:", "        secretKeyRef:",
                  f"          name: {secret}", "          key: k"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- no credentials

def _handshake_fails(address: tuple[str, int], context: ssl.SSLContext) -> bool:
    """Whether a TLS handshake (and a first read) with ``context`` is refused."""
    try:
        with socket.create_connection(address, timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=address[0]) as tls:
            tls.settimeout(5)
            tls.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            return tls.recv(1) == b""
    except (ssl.SSLError, ConnectionError, OSError):
        return True


async def test_no_credentials_are_unauthorized_on_every_port(secured: Secured) -> None:
    ca = secured.pki.ca_cert.read_bytes()
    # The API server: TLS with no identity is Unauthorized; plaintext never gets an answer.
    async with ApiClient(ClientConfig(secured.server, ca_pem=ca), timeout=5,
                         wait_for_ready=False) as anonymous:
        with pytest.raises(Unauthorized):
            await anonymous.list(v1.Pod, "default")
    async with ApiClient(secured.server, timeout=3, wait_for_ready=False) as plaintext:
        with pytest.raises(Exception) as refused:
            await plaintext.list(v1.Pod, "default")
        assert not isinstance(refused.value, Forbidden)
    # The kubelet API and etcd require a client certificate from their own CA.
    no_cert = ssl.create_default_context(cafile=str(secured.pki.ca_cert))
    no_cert.check_hostname = False
    node = json.loads(secured.klctl("get", "node", "node-1", "-o", "json").stdout)
    address = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    kubelet = (address, node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"])
    assert _handshake_fails(kubelet, no_cert)
    etcd_context = ssl.create_default_context(cafile=str(secured.pki.etcd_ca_cert))
    etcd_context.check_hostname = False
    assert _handshake_fails(("127.0.0.1", secured.options.ports["--etcd-port"]), etcd_context)


async def test_a_certificate_from_another_ca_fails_the_handshake(secured: Secured) -> None:
    other_ca, other_key = new_ca("someone-else")
    cert, key = issue(other_ca, other_key, "kubernetes-admin", ("system:masters",), client=True)
    config = ClientConfig(secured.server, ca_pem=secured.pki.ca_cert.read_bytes(),
                          cert_pem=cert, key_pem=key)
    async with ApiClient(config, timeout=5, wait_for_ready=False) as client:
        with pytest.raises(Exception) as refused:
            await client.list(v1.Pod, "default")
        assert not isinstance(refused.value, Forbidden)  # never got as far as authorization


# ---------------------------------------------------------------- RBAC

def test_a_view_user_reads_pods_of_its_namespace_only(secured: Secured) -> None:
    apply(secured, "\n---\n".join([
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-b\n",
        sleeper("web", "team-a"), sleeper("web", "team-b"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\n  namespace: team-a\n"
        "stringData:\n  password: hunter2\n",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n"
        "  name: alice-view\n  namespace: team-a\nroleRef:\n"
        "  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: view\n"
        "subjects:\n- kind: User\n  name: alice\n  apiGroup: rbac.authorization.k8s.io\n",
    ]))
    wait_running(secured, "team-a", "web")
    alice = secured.user_config("alice")
    listed = secured.klctl("get", "pods", "-n", "team-a", config=alice)
    assert listed.returncode == 0 and "web" in listed.stdout, listed.stderr
    other = secured.klctl("get", "pods", "-n", "team-b", config=alice)
    assert other.returncode != 0
    assert 'User "alice" cannot list resource "pods"' in other.stderr
    assert 'in the namespace "team-b"' in other.stderr
    secret = secured.klctl("get", "secret", "creds", "-n", "team-a", config=alice)
    assert secret.returncode != 0 and "forbidden" in secret.stderr.lower()
    assert "hunter2" not in secret.stdout
    execd = secured.klctl("exec", "web", "-n", "team-a", "--", "id", config=alice)
    assert execd.returncode != 0 and "forbidden" in execd.stderr.lower()
    # The administrator may ask what alice may do.
    yes = secured.klctl("auth", "can-i", "list", "pods", "-n", "team-a", "--as", "alice")
    no = secured.klctl("auth", "can-i", "list", "pods", "-n", "team-b", "--as", "alice")
    assert (yes.stdout.strip(), no.stdout.strip()) == ("yes", "no"), (yes, no)


async def test_a_kubelet_certificate_reaches_only_its_own_node(secured: Secured) -> None:
    apply(secured, "\n---\n".join([
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: nodes-test\n",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: used\n  namespace: nodes-test\n"
        "stringData:\n  k: v\n",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: unused\n  namespace: nodes-test\n"
        "stringData:\n  k: v\n",
        sleeper("consumer", "nodes-test", node="node-1", secret="used"),
    ]))
    wait_running(secured, "nodes-test", "consumer")
    node1 = load_kubeconfig(secured.pki.kubelet_conf("node-1"))
    async with ApiClient(node1, timeout=10) as kubelet:
        used = await kubelet.get(v1.Secret, "used", "nodes-test")
        assert used.data["k"] == b"v"
        with pytest.raises(Forbidden):
            await kubelet.get(v1.Secret, "unused", "nodes-test")
        other = await kubelet.get(v1.Node, "node-2")
        other.metadata.labels["owned-by"] = "node-1"
        with pytest.raises(Forbidden):
            await kubelet.update(other)
        with pytest.raises(Forbidden):
            await kubelet.delete(v1.Node, "node-2")


# ---------------------------------------------------------------- ServiceAccount tokens

async def test_a_pods_token_has_exactly_its_rbac_and_dies_with_the_pod(
    secured: Secured,
) -> None:
    apply(secured, "\n---\n".join([
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: sa-test\n",
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: reader\n"
        "  namespace: sa-test\n",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: pod-reader\n"
        "  namespace: sa-test\nrules:\n- apiGroups: ['']\n  resources: [pods]\n"
        "  verbs: [get, list, watch]\n",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n"
        "  name: reader\n  namespace: sa-test\nroleRef:\n"
        "  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: pod-reader\n"
        "subjects:\n- kind: ServiceAccount\n  name: reader\n  namespace: sa-test\n",
        sleeper("client", "sa-test", sa="reader"),
    ]))
    wait_running(secured, "sa-test", "client")
    read = secured.klctl("exec", "client", "-n", "sa-test", "--", "cat",
                         "/var/run/secrets/kubernetes.io/serviceaccount/token")
    assert read.returncode == 0, read.stderr
    token = read.stdout.strip()
    namespace = secured.klctl("exec", "client", "-n", "sa-test", "--", "cat",
                              "/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    assert namespace.stdout.strip() == "sa-test"
    config = ClientConfig(secured.server, ca_pem=secured.pki.ca_cert.read_bytes(),
                          token=token)
    async with ApiClient(config, timeout=10) as pod_client:
        pods = await pod_client.list(v1.Pod, "sa-test")
        assert [p.metadata.name for p in pods.items] == ["client"]
        with pytest.raises(Forbidden):
            await pod_client.list(v1.Secret, "sa-test")
        with pytest.raises(Forbidden):
            await pod_client.list(v1.Pod, "default")
        with pytest.raises(Forbidden):
            await pod_client.delete(v1.Pod, "client", "sa-test")
    # Replayed after its pod is gone, the same token is refused.
    assert secured.klctl("delete", "pod", "client", "-n", "sa-test").returncode == 0
    TestCluster.wait_for(
        lambda: secured.klctl("get", "pod", "client", "-n", "sa-test").returncode != 0,
        "the pod gone", timeout=30)
    async with ApiClient(config, timeout=10) as replayed:
        with pytest.raises(Unauthorized):
            await replayed.list(v1.Pod, "sa-test")


async def test_an_expired_or_foreign_token_is_unauthorized(secured: Secured) -> None:
    async with ApiClient(secured.admin) as admin:
        sa = await admin.get(v1.ServiceAccount, "default", "default")
    now = int(time.time())
    claims = {
        "iss": "https://kubernetes.default.svc.cluster.local",
        "aud": ["https://kubernetes.default.svc.cluster.local"],
        "sub": "system:serviceaccount:default:default", "iat": now - 7200,
        "nbf": now - 7200, "exp": now - 3600,
        "kubernetes.io": {"namespace": "default",
                          "serviceaccount": {"name": "default", "uid": sa.metadata.uid}},
    }
    expired = jwt.sign(claims, jwt.load_private_key(secured.pki.sa_key.read_bytes()))
    foreign_key = jwt.load_private_key(new_rsa_key_pair()[0])
    foreign = jwt.sign({**claims, "exp": now + 3600}, foreign_key)
    for token in (expired, foreign, "abcdef.0123456789abcdef"):
        config = ClientConfig(secured.server, ca_pem=secured.pki.ca_cert.read_bytes(),
                              token=token)
        async with ApiClient(config, timeout=5, wait_for_ready=False) as client:
            with pytest.raises(Unauthorized):
                await client.list(v1.Pod, "default")


# ---------------------------------------------------------------- at rest, admission

async def test_secrets_are_ciphertext_in_etcd(secured: Secured) -> None:
    apply(secured, "apiVersion: v1\nkind: Secret\nmetadata:\n  name: at-rest\n"
                   "  namespace: default\nstringData:\n  password: plaintext-canary\n")
    pki = secured.pki
    etcd = Etcd(EtcdSettings(
        endpoints=(f"127.0.0.1:{secured.options.ports['--etcd-port']}",),
        ca_file=str(pki.etcd_ca_cert), cert_file=str(pki.apiserver_etcd_client_cert),
        key_file=str(pki.apiserver_etcd_client_key)))
    try:
        stored = await etcd.range(b"/registry/secrets/default/at-rest")
    finally:
        await etcd.close()
    value = stored.kvs[0].value
    assert value.startswith(b"k8s:enc:aesgcm:v1:key1:")
    assert b"plaintext-canary" not in value
    shown = secured.klctl("get", "secret", "at-rest", "-o", "json")
    secret = json.loads(shown.stdout)
    assert base64.b64decode(secret["data"]["password"]) == b"plaintext-canary"
    # klctl apply's last-applied annotation does not carry the value either.
    assert "plaintext-canary" not in json.dumps(secret["metadata"].get("annotations", {}))


async def test_a_quota_of_five_pods_holds_under_twenty_concurrent_creates(
    secured: Secured,
) -> None:
    apply(secured, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: quota-test\n---\n"
                   "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: five\n"
                   "  namespace: quota-test\nspec:\n  hard:\n    pods: '5'\n")
    async with ApiClient(secured.admin, timeout=30) as admin:
        # As upstream, creates wait for the quota controller to have counted the namespace.
        async def counted() -> bool:
            quota = await admin.get(v1.ResourceQuota, "five", "quota-test")
            return quota.status.hard.get("pods") == "5"

        await eventually(counted, timeout=30, message="the quota controller counting")

        async def create(i: int) -> bool:
            pod = v1.Pod(metadata=v1.ObjectMeta(name=f"p{i}", namespace="quota-test"))
            pod.spec.containers.add(name="main", image="busybox", command=["sleep", "60"])
            try:
                await admin.create(pod)
            except Forbidden as e:
                assert "exceeded quota: five" in str(e)
                return False
            return True

        results = await asyncio.gather(*(create(i) for i in range(20)))
        assert sum(results) == 5
        assert len((await admin.list(v1.Pod, "quota-test")).items) == 5


async def test_a_limit_range_default_lands_in_created_pods(secured: Secured) -> None:
    apply(secured, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: limits-test\n---\n"
                   "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: defaults\n"
                   "  namespace: limits-test\nspec:\n  limits:\n  - type: Container\n"
                   "    default:\n      cpu: 500m\n      memory: 128Mi\n"
                   "    defaultRequest:\n      cpu: 100m\n")
    apply(secured, sleeper("plain", "limits-test"))
    async with ApiClient(secured.admin) as admin:
        pod = await admin.get(v1.Pod, "plain", "limits-test")
    resources = pod.spec.containers[0].resources
    assert dict(resources.limits) == {"cpu": "500m", "memory": "128Mi"}
    assert resources.requests["cpu"] == "100m"



def secret_value(secured: Secured, name: str) -> bytes:
    shown = secured.klctl("get", "secret", name, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    return base64.b64decode(json.loads(shown.stdout)["data"]["k"])


async def _stored_value(secured: Secured, key: bytes) -> bytes:
    pki = secured.pki
    etcd = Etcd(EtcdSettings(
        endpoints=(f"127.0.0.1:{secured.options.ports['--etcd-port']}",),
        ca_file=str(pki.etcd_ca_cert), cert_file=str(pki.apiserver_etcd_client_cert),
        key_file=str(pki.apiserver_etcd_client_key)))
    try:
        stored = await etcd.range(key)
    finally:
        await etcd.close()
    return bytes(stored.kvs[0].value)


async def test_key_rotation_keeps_old_secrets_readable(tmp_path: Path) -> None:
    """With one API server, upstream's rotation is: the new key first, the old one kept
    second, restart, rewrite. A Secret written under the old key stays readable."""
    env = {**os.environ, "KUBELITE_CONFIG": str(tmp_path / "klctl-config")}
    options = Options(nodes=1)
    data = tmp_path / "cluster"
    secured = Secured(data, env, options, ClusterPki(data))
    config_file = secured.pki.encryption_config

    def run_cluster() -> subprocess.Popen[str]:
        process = up(data, env, options)
        wait_ready(process, timeout=120)
        return process

    def stop(process: subprocess.Popen[str]) -> None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)

    process = run_cluster()
    try:
        apply(secured, "apiVersion: v1\nkind: Secret\nmetadata:\n  name: old\n"
                       "  namespace: default\nstringData:\n  k: written-under-key1\n")
        key = b"/registry/secrets/default/old"
        assert (await _stored_value(secured, key)).startswith(b"k8s:enc:aesgcm:v1:key1:")
    finally:
        stop(process)
    # key2 first, key1 still readable.
    config = yaml.safe_load(config_file.read_text())
    keys = config["resources"][0]["providers"][0]["aesgcm"]["keys"]
    keys.insert(0, {"name": "key2", "secret": base64.b64encode(os.urandom(32)).decode()})
    config_file.write_text(yaml.safe_dump(config))
    process = run_cluster()
    try:
        assert secret_value(secured, "old") == b"written-under-key1"
        # Rewriting it (an empty patch) stores it under key2.
        assert secured.klctl("patch", "secret", "old", "-p", "{}").returncode == 0
        assert (await _stored_value(secured, key)).startswith(b"k8s:enc:aesgcm:v1:key2:")
        assert secret_value(secured, "old") == b"written-under-key1"
    finally:
        stop(process)


def test_a_node_joins_with_a_bootstrap_token_and_the_ca_hash(secured: Secured) -> None:
    """kubeadm join's flow: the CA pinned by its hash, the token, CSRs the controller
    manager approves and signs, then a Node like any other that runs pods."""
    pki = secured.pki
    base = secured.options.node_base.rsplit(".", 1)
    address = f"{base[0]}.{int(base[1]) + 5}"
    node_dir = secured.data / "joined"
    wrong = subprocess.run(
        [script("kubelite"), "join", secured.server, "--token", pki.read_bootstrap_token(),
         "--discovery-token-ca-cert-hash", "sha256:" + "0" * 64, "--node-name", "joined",
         "--data-dir", str(node_dir), "--node-address", address],
        capture_output=True, text=True, timeout=60, check=False, env=secured.env)
    assert wrong.returncode != 0 and "hash" in (wrong.stdout + wrong.stderr).lower()
    join = subprocess.Popen(
        [script("kubelite"), "join", secured.server, "--token", pki.read_bootstrap_token(),
         "--discovery-token-ca-cert-hash", pki.ca_cert_hash(), "--node-name", "joined",
         "--data-dir", str(node_dir), "--node-address", address,
         "--kubelet-port", str(unused_port()), "--kubelet-health-port", str(unused_port()),
         "--proxy-health-port", str(unused_port())],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=secured.env)
    try:
        def ready() -> bool:
            got = secured.klctl("get", "node", "joined", "-o", "json")
            return got.returncode == 0 and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in json.loads(got.stdout)["status"].get("conditions", []))

        TestCluster.wait_for(ready, "the joined node Ready", timeout=90)
        csrs = json.loads(secured.klctl("get", "csr", "-o", "json").stdout)["items"]
        mine = [c for c in csrs if c["spec"].get("username", "").startswith("system:")]
        approved = {c["spec"]["signerName"] for c in mine
                    if any(x["type"] == "Approved" for x in c["status"].get("conditions", []))
                    and c["status"].get("certificate")}
        assert approved >= {"kubernetes.io/kube-apiserver-client-kubelet",
                            "kubernetes.io/kubelet-serving"}, csrs
        apply(secured, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: joined-test\n")
        apply(secured, sleeper("on-joined", "joined-test", node="joined"))
        wait_running(secured, "joined-test", "on-joined")
        logs = secured.klctl("exec", "on-joined", "-n", "joined-test", "--", "echo", "hi")
        assert logs.returncode == 0 and logs.stdout.strip() == "hi", logs.stderr
    finally:
        join.send_signal(signal.SIGTERM)
        try:
            join.wait(timeout=60)
        except subprocess.TimeoutExpired:
            join.kill()
            join.wait()
        secured.klctl("delete", "node", "joined")
