"""`kubelite up` as a user runs it: the whole cluster from one command, the README's example
manifests, `status`, `down`, a restart on the same data dir keeping the objects, and two
clusters side by side on one machine."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kubelite.processes import INTERRUPTED_EXIT_CODE
from kubelite.testing.cluster import TestCluster, script
from kubelite.testing.ports import free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="pod volumes need mount namespaces (root)"),
]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "KUBELITE_CONFIG": str(tmp_path / "klctl-config")}


PORT_OPTIONS = ("--api-port", "--etcd-port", "--etcd-peer-port", "--scheduler-health-port",
                "--controller-manager-health-port", "--kubelet-port", "--kubelet-health-port",
                "--proxy-health-port", "--http-api-port")


_handed_out: set[int] = set()


def unused_port() -> int:
    """A free port no Options of this run has had: free_port alone may give one port twice
    (it is free again once probed), and `kubelite up` refuses a port used twice."""
    while True:
        port = free_port()
        if port not in _handed_out:
            _handed_out.add(port)
            return port


@dataclass
class Options:
    """What one `kubelite up` gets so that it collides with nothing else on the machine."""

    nodes: int = 3
    ports: dict[str, int] = field(
        default_factory=lambda: {option: unused_port() for option in PORT_OPTIONS})
    node_base: str = field(default_factory=lambda: f"127.0.{random.randint(100, 250)}.10")
    service_range: str = field(
        default_factory=lambda: f"127.{random.randint(97, 127)}.0.0/16")
    pod_network: str = field(
        default_factory=lambda: f"127.{random.randint(200, 250)}.0.0/16")

    def argv(self) -> list[str]:
        args = ["--nodes", str(self.nodes), "--node-address-base", self.node_base,
                "--service-cluster-ip-range", self.service_range,
                "--pod-network", self.pod_network]
        for option, port in self.ports.items():
            args += [option, str(port)]
        return args


def up(data: Path | None, env: dict[str, str], options: Options) -> subprocess.Popen[str]:
    """``kubelite up``; ``data`` None: the default data dir ($HOME/.kubelite)."""
    return subprocess.Popen(
        [script("kubelite"), "up", *(["--data-dir", str(data)] if data else []),
         *options.argv()],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )


def wait_ready(process: subprocess.Popen[str], timeout: float = 90) -> tuple[float, str]:
    started = time.monotonic()
    output: list[str] = []
    assert process.stdout is not None
    while time.monotonic() - started < timeout:
        line = process.stdout.readline()
        if not line:
            raise AssertionError("kubelite up exited:\n" + "".join(output))
        output.append(line)
        if "kubelite is ready" in line:
            return time.monotonic() - started, "".join(output)
    raise AssertionError("kubelite up not ready:\n" + "".join(output))


def klctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # No --server: klctl finds the cluster through the config file `kubelite up` wrote.
    return subprocess.run([script("klctl"), *args], capture_output=True, text=True, env=env,
                          timeout=30, check=False)


def test_up_apply_status_down_and_restart(tmp_path: Path, env: dict[str, str]) -> None:
    options = Options()
    data = tmp_path / "cluster"
    process = up(data, env, options)
    try:
        seconds, output = wait_ready(process)
        print(f"kubelite up: Ready cluster in {seconds:.1f}s")
        assert "etcd ready" in output and "kubelet-node-3 ready" in output
        applied = klctl(env, "apply", "-f", str(ROOT / "deploy" / "examples"))
        assert applied.returncode == 0, applied.stderr
        TestCluster.wait_for(lambda: _ready_pods(env) == 3, "the example's 3 pods", timeout=60)
        status = subprocess.run([script("kubelite"), "status", "--data-dir", str(data)],
                                capture_output=True, text=True, check=False)
        assert status.returncode == 0, status.stdout
        assert status.stdout.count("healthy") >= 10  # 4 control plane + 3 kubelets + 3 proxies
        down = subprocess.run([script("kubelite"), "down", "--data-dir", str(data)],
                              capture_output=True, text=True, check=False, timeout=90)
        assert down.returncode == 0, down.stderr
        process.wait(30)
        assert _leftovers(data) == [], "components or pods left running"
        # Up again on the same data dir: the objects are still there.
        process = up(data, env, options)
        wait_ready(process)
        listed = json.loads(klctl(env, "get", "deploy,svc,cm", "-o", "json").stdout)
        names = {item["metadata"]["name"] for item in listed["items"]}
        assert {"web", "web-config"} <= names
        TestCluster.wait_for(lambda: _ready_pods(env) == 3, "pods back after restart",
                             timeout=60)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C stops everything
            process.wait(90)
    assert _leftovers(data) == []


def test_sigterm_while_starting_stops_what_was_started(tmp_path: Path,
                                                       env: dict[str, str]) -> None:
    """SIGTERM (as from `kubelite down`, systemd or a test's teardown) before the cluster is
    up: the supervisor stops the components it had started instead of dying without them,
    and a second signal during that cleanup does not cut it short."""
    data = tmp_path / "cluster"
    process = up(data, env, Options(nodes=1))
    output: list[str] = []

    def read_until(text: str) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if text in line:
                return
        raise AssertionError(f"kubelite up exited before {text!r}:\n" + "".join(output))

    try:
        read_until("etcd ready")  # the API server is starting now
        process.send_signal(signal.SIGTERM)
        read_until("Stopping kubelite")
        process.send_signal(signal.SIGTERM)  # impatient: again, while it stops
        # The rest through the same file: communicate() would read the pipe itself and
        # miss the lines this file has already buffered. A hang is killed, and fails below.
        hung = threading.Timer(60, process.kill)
        hung.start()
        try:
            output.extend(process.stdout or ())
        finally:
            hung.cancel()
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
    text = "".join(output)
    assert process.returncode == INTERRUPTED_EXIT_CODE, text
    assert "kubelite is ready" not in text, text
    assert "interrupted while starting" in text and "Traceback" not in text, text
    assert "stopping etcd" in text, text
    assert _leftovers(data) == [], "components left running after SIGTERM:\n" + text


def _ready_pods(env: dict[str, str]) -> int:
    result = klctl(env, "get", "pods", "-o", "json")
    if result.returncode != 0:
        return -1
    items = json.loads(result.stdout).get("items", [])
    return sum(1 for p in items if any(c["type"] == "Ready" and c["status"] == "True"
                                       for c in p["status"].get("conditions", [])))


def _leftovers(data: Path) -> list[str]:
    """Processes still running from this cluster's data dir (components or pods' shims)."""
    result = subprocess.run(["pgrep", "-af", str(data)], capture_output=True, text=True,
                            check=False)
    own = str(os.getpid())
    return [line for line in result.stdout.splitlines()
            if line and not line.startswith(own) and "pgrep" not in line]


APP_PORT = 19480

APP = """
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: hello}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: netexec
      image: kubelite/agnhost
      args: ["netexec", "--http-port", "{port}"]
      ports: [{{containerPort: {port}}}]
      readinessProbe:
        httpGet: {{path: /healthz, port: {port}}}
        periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: hello
spec:
  selector: {{app: hello}}
  ports: [{{port: 80, targetPort: {port}}}]
"""


def test_two_clusters_side_by_side(tmp_path: Path) -> None:
    """Two `kubelite up` on one machine with their own ports, node addresses, ClusterIP ranges
    and data dirs: one on the default data dir ($HOME/.kubelite), one on another; both
    serve, each `status` and `down` finds its own, and each klctl config reaches its own."""
    home = tmp_path / "home"
    home.mkdir()
    first = Options(nodes=1, node_base="127.0.91.10", service_range="127.91.0.0/16",
                    pod_network="127.191.0.0/16")
    second = Options(nodes=1, node_base="127.0.92.10", service_range="127.92.0.0/16",
                     pod_network="127.192.0.0/16")
    # The first takes every default location: $HOME/.kubelite and $HOME/.kubelite/config.
    env_first = {k: v for k, v in os.environ.items() if k != "KUBELITE_CONFIG"}
    env_first["HOME"] = str(home)
    default_dir = home / ".kubelite"
    other_dir = tmp_path / "other"
    env_second = {**os.environ, "KUBELITE_CONFIG": str(tmp_path / "latest-config")}
    clusters = [("first", None, env_first, first), ("second", other_dir, env_second, second)]
    processes = [up(data, env, options) for _, data, env, options in clusters]
    try:
        for process in processes:
            wait_ready(process)
        # klctl reaches each cluster through the config in its data dir.
        own = {"first": {**env_first}, "second": {**env_second,
                                                  "KUBELITE_CONFIG": str(other_dir / "config")}}
        assert (default_dir / "config").exists() and (other_dir / "config").exists()
        for (name, data, _, options), elsewhere in zip(clusters, (tmp_path, ROOT), strict=True):
            status = subprocess.run(
                [script("kubelite"), "status", *(["--data-dir", str(data)] if data else [])],
                capture_output=True, text=True, check=False, cwd=elsewhere,
                env=own[name], timeout=60)
            assert status.returncode == 0, status.stdout + status.stderr
            assert status.stdout.count(" healthy") == 6, status.stdout  # 4 + kubelet + proxy
            nodes = json.loads(klctl(own[name], "get", "nodes", "-o", "json").stdout)["items"]
            addresses = [a["address"] for n in nodes for a in n["status"]["addresses"]
                         if a["type"] == "InternalIP"]
            assert addresses == [options.node_base], (name, addresses)
            applied = subprocess.run(
                [script("klctl"), "apply", "-f", "-"], capture_output=True, text=True,
                input=APP.format(name=f"hello-{name}", port=APP_PORT), env=own[name],
                timeout=30, check=False)
            assert applied.returncode == 0, applied.stderr
        # Each ClusterIP (same port, each cluster's own range) reaches its own cluster's pod.
        for name, _, _, options in clusters:
            svc = json.loads(klctl(own[name], "get", "svc", "hello", "-o", "json").stdout)
            ip = svc["spec"]["clusterIP"]
            assert ip.startswith(options.service_range.split(".0.0/")[0] + "."), ip
            TestCluster.wait_for(lambda ip=ip, name=name: _hostname(ip) == f"hello-{name}",
                                 f"the {name} cluster's ClusterIP to answer", timeout=60)
        for name, data, _, _ in clusters:
            down = subprocess.run(
                [script("kubelite"), "down", *(["--data-dir", str(data)] if data else [])],
                capture_output=True, text=True, check=False, timeout=90, env=own[name])
            assert down.returncode == 0, down.stdout + down.stderr
        for process in processes:
            process.wait(30)
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                process.wait(90)
    assert _leftovers(default_dir) == [] and _leftovers(other_dir) == []


def _hostname(ip: str) -> str:
    with urllib.request.urlopen(f"http://{ip}:80/hostname", timeout=2) as response:
        text: str = response.read().decode()
    return text.strip()
