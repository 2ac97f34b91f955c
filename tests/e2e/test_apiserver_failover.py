"""Two API server processes over one etcd, every component given both (client-side round
robin): each component holds a connection to each server; one server is killed (SIGKILL) and
the cluster keeps working through the other: a new Deployment is scheduled and its pods run,
its Service's endpoints follow and the proxy forwards to them, klctl answers, and node
heartbeats go on (the nodes stay Ready past the grace period). Also: reads under way on the
killed server are answered by the other, and `kubelite up --apiservers 2` runs two secured
API servers that klctl reaches through either."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelite.api.errors import Unavailable
from kubelite.client.client import ApiClient
from kubelite.components import ApiServer
from kubelite.ports import free_port
from kubelite.processes import ManagedProcess
from kubelite.testing.cluster import NodeSpec, TestCluster, script
from kubelite.testing.etcd import EtcdProcess
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1
from tests.e2e.conftest import E2EReport

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="pod volumes need mount namespaces (root)"),
]

NODES = [NodeSpec(f"node-{i}", f"127.0.0.{60 + i}", cpu="4", pod_cidr=f"127.246.{60 + i}.0/24")
         for i in (1, 2)]
SERVICE_RANGE = "127.160.0.0/16"
"""A ClusterIP range of this module's own: proxies of other clusters on this machine bind
theirs on loopback too."""
PORT = 19480

APP = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: netexec
          image: kubelite/agnhost
          args: ["netexec", "--http-port", "{port}"]
          ports:
            - {{name: http, containerPort: {port}}}
          readinessProbe:
            httpGet: {{path: /readyz, port: http}}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{app: {name}}}
  ports:
    - name: http
      port: 80
      targetPort: http
"""


def distinct_ports(count: int) -> list[int]:
    """Free ports, no two alike (free_port alone may hand one out twice)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@dataclass
class TwoApiServers(TestCluster):
    """The e2e cluster with two API server processes (apiserver-1, apiserver-2) over the
    test etcd; every component and klctl is given both, comma-separated."""

    __test__ = False

    api_servers: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.api_servers = [f"127.0.0.1:{port}" for port in distinct_ports(2)]
        self.server = ",".join(self.api_servers)
        for i, address in enumerate(self.api_servers, start=1):
            self._start(f"apiserver-{i}", ApiServer(
                listen=address, etcd_servers=self.etcd_endpoint, etcd_prefix=self.prefix,
                service_cluster_ip_range=SERVICE_RANGE,
                watch_progress_interval=self.watch_progress_interval))
        for address in self.api_servers:
            # klctl's last --server wins: one server alone.
            self.wait_for(lambda a=address: self.klctl("--server", a, "get", "ns",
                                                       check=False).returncode == 0,
                          f"the API server at {address} to answer")
        self.start_scheduler()
        self.start_controller_manager()
        for node in self.nodes:
            self.start_kubelet(node)
            self.start_proxy(node)
        for node in self.nodes:
            self.wait_for(lambda n=node: self._node_ready(n.name), f"node {node.name} Ready")

    def stop(self) -> None:
        # Everything else first (kubelets stop their pods), the API servers last.
        for name in sorted(self.processes, key=lambda n: (n.startswith("apiserver"), n)):
            self.processes[name].stop()


FAILOVER_GRACE = 8.0
"""The node grace period here, twice the suite's: the nodes' heartbeats must move to the other
API server within it, and on a loaded machine one renewal can take longer than 4 s."""


@pytest.fixture(scope="module")
def cluster(etcd: EtcdProcess, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[TwoApiServers]:
    c = TwoApiServers(tmp_path_factory.mktemp("failover"), etcd.endpoint, list(NODES),
                      controller_manager=True, proxy=True,
                      controller_manager_timers=replace(
                          TestCluster.controller_manager_timers,
                          node_monitor_grace_period=FAILOVER_GRACE))
    try:
        c.start()
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.stop()


def get(cluster: TestCluster, *what: str) -> dict[str, Any]:
    return json.loads(cluster.klctl("get", *what, "-o", "json").stdout)  # type: ignore[no-any-return]


def remote_ports(pid: int) -> set[int]:
    """Ports on 127.0.0.1 that process ``pid`` holds established TCP connections to."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    # 127.0.0.1 as /proc shows it: IPv4, and IPv4-mapped IPv6 (gRPC's sockets are IPv6).
    loopback = {"0100007F", "0000000000000000FFFF00000100007F"}
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            address, _, port = remote.partition(":")
            if state == "01" and inode in inodes and address in loopback:  # ESTABLISHED
                ports.add(int(port, 16))
    return ports


def app_pods(cluster: TestCluster, app: str) -> list[dict[str, Any]]:
    return [p for p in get(cluster, "pods", "-l", f"app={app}")["items"]
            if not p["metadata"].get("deletionTimestamp")]


def running_on_nodes(cluster: TestCluster, app: str) -> bool:
    pods = app_pods(cluster, app)
    return len(pods) == 2 and all(
        p["spec"].get("nodeName") in {n.name for n in NODES}
        and p["status"].get("phase") == "Running" for p in pods)


def endpoints(cluster: TestCluster, name: str) -> list[str]:
    ep = get(cluster, "endpoints", name)
    return sorted(a["targetRef"]["name"] for s in ep.get("subsets", [])
                  for a in s.get("addresses", []))


def hostname_through(host: str, port: int) -> str:
    with urllib.request.urlopen(f"http://{host}:{port}/hostname", timeout=3) as response:
        text: str = response.read().decode()
    return text.strip()


def rfc3339(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def renewed_after(cluster: TestCluster, node: str, moment: float) -> bool:
    lease = get(cluster, "lease", node, "-n", "kube-node-lease")
    return rfc3339(lease["spec"]["renewTime"]) > moment


def ready_since(cluster: TestCluster, node: str) -> float | None:
    """When the node's Ready condition last became True (None: it is not Ready)."""
    for condition in get(cluster, "node", node)["status"]["conditions"]:
        if condition["type"] == "Ready":
            return rfc3339(condition["lastTransitionTime"]) if condition["status"] == "True" \
                else None
    return None


def test_every_component_works_through_the_other_api_server(
    cluster: TwoApiServers, e2e_report: E2EReport
) -> None:
    ports = {int(address.rpartition(":")[2]) for address in cluster.api_servers}
    components = ["scheduler", "controller-manager",
                  *(f"{kind}-{n.name}" for kind in ("kubelet", "proxy") for n in NODES)]
    # Round robin: each component keeps a connection to each API server.
    for name in components:
        pid = cluster.processes[name].pid
        assert pid is not None
        cluster.wait_for(lambda p=pid: ports <= remote_ports(p),
                         f"{name} connected to both API servers")
    cluster.apply(APP.format(name="before", port=PORT))
    cluster.wait_for(lambda: running_on_nodes(cluster, "before"), "the first app running",
                     timeout=60)

    victim = cluster.processes["apiserver-1"]
    victim.kill()
    killed = time.time()
    started = time.monotonic()
    # klctl, given both servers, answers through the other.
    assert "node-1" in cluster.klctl("get", "nodes").stdout
    # A new Deployment: created (controller manager), scheduled (scheduler), run (kubelets).
    cluster.apply(APP.format(name="after", port=PORT + 1))
    cluster.wait_for(lambda: running_on_nodes(cluster, "after"), "the new app's pods running",
                     timeout=60)
    running = time.monotonic() - started
    # Its Service's endpoints follow its pods, and the proxy forwards to them.
    names = sorted(p["metadata"]["name"] for p in app_pods(cluster, "after"))
    cluster.wait_for(lambda: endpoints(cluster, "after") == names, "the new endpoints",
                     timeout=30)
    cluster_ip = get(cluster, "service", "after")["spec"]["clusterIP"]
    assert cluster_ip.startswith("127.160.")
    cluster.wait_for(lambda: hostname_through(cluster_ip, 80) in names,
                     "the proxy to forward to the new pods", timeout=30)
    served = time.monotonic() - started
    # Scaling the first app down reaches its endpoints too.
    cluster.klctl("scale", "deployment/before", "--replicas=1")
    cluster.wait_for(lambda: len(endpoints(cluster, "before")) == 1, "the first app scaled",
                     timeout=30)
    # Heartbeats: every node's Lease is renewed past the grace period after the kill, and no
    # node left Ready meanwhile.
    grace = cluster.controller_manager_timers.node_monitor_grace_period or 40.0
    for node in NODES:
        cluster.wait_for(lambda n=node.name: renewed_after(cluster, n, killed + grace),
                         f"{node.name}'s Lease renewed after the grace period", timeout=30)
        since = ready_since(cluster, node.name)
        assert since is not None and since <= killed, f"{node.name} left Ready"
    assert not victim.running()
    e2e_report.add(f"API server failover: one of two killed; a new Deployment's pods Running"
                   f" after {running:.1f}s, served through its ClusterIP after {served:.1f}s;"
                   f" nodes Ready past the {grace:.0f}s grace period")


async def test_reads_under_way_move_to_the_other_server(etcd: EtcdProcess,
                                                        tmp_path: Path) -> None:
    """Gets in flight when their server is killed are answered by the other one; writes in
    flight there fail as Unavailable (they may have been done), the others succeed."""
    addresses = [f"127.0.0.1:{port}" for port in distinct_ports(2)]
    prefix = f"/failover-{os.getpid()}-{time.monotonic_ns()}"
    processes = [ManagedProcess(f"apiserver-{i}", ApiServer(
        listen=address, etcd_servers=etcd.endpoint, etcd_prefix=prefix,
        service_cluster_ip_range=SERVICE_RANGE).argv(script(ApiServer.script)),
        tmp_path / f"apiserver-{i}.log") for i, address in enumerate(addresses, start=1)]
    try:
        for process in processes:
            process.start()
        for address in addresses:
            await eventually(functools.partial(serving, address), timeout=30,
                             message=f"the API server at {address}")
        async with ApiClient(",".join(addresses), timeout=10) as client:
            await client.create(v1.Namespace(metadata=v1.ObjectMeta(name="reads")))
            for i in range(20):
                await client.create(v1.ConfigMap(metadata=v1.ObjectMeta(name=f"cm-{i}")),
                                    "reads")
            read_errors: list[BaseException] = []
            write_errors: list[BaseException] = []
            written = 0
            kill = asyncio.Event()

            async def reader(k: int) -> None:
                for i in range(60):
                    if i == 10 and k == 0:
                        kill.set()
                    try:
                        await client.get(v1.ConfigMap, f"cm-{(k + i) % 20}", "reads")
                    except Exception as e:  # noqa: BLE001 - counted and reported
                        read_errors.append(e)

            async def writer(k: int) -> None:
                nonlocal written
                for i in range(30):
                    try:
                        await client.create(v1.ConfigMap(metadata=v1.ObjectMeta(
                            name=f"w-{k}-{i}")), "reads")
                        written += 1
                    except Exception as e:  # noqa: BLE001 - checked below
                        write_errors.append(e)

            async def killer() -> None:
                await kill.wait()
                await asyncio.to_thread(processes[0].kill)

            await asyncio.gather(killer(), *(reader(k) for k in range(16)),
                                 *(writer(k) for k in range(8)))
            assert not processes[0].running()
            assert read_errors == []
            assert all(isinstance(e, Unavailable) for e in write_errors), write_errors
            assert written + len(write_errors) == 8 * 30
            print(f"reads sent again to the other server: {client.stats.failover_retries};"
                  f" writes under way on the killed one: {len(write_errors)}")
            # Afterwards every call goes to the server that is left.
            listed = await client.list(v1.ConfigMap, "reads")
            assert len(listed.items) >= 20 + written
    finally:
        for process in processes:
            process.stop()


def free_run(length: int) -> int:
    """The first of ``length`` consecutive free ports on 127.0.0.1."""
    while True:
        first = free_port()
        if first + length > 65536:
            continue
        held = []
        try:
            for port in range(first, first + length):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for s in held:
                s.close()


def test_kubelite_up_runs_two_secured_api_servers(tmp_path: Path) -> None:
    """`kubelite up --apiservers 2`, secured: both servers healthy, the admin's kubeconfig
    names both, klctl works through either (one serving certificate for both ports)."""
    api = free_run(4)  # server 1: api, api + 1 (HTTP); server 2: api + 2, api + 3
    others = distinct_ports(20)
    ports = [p for p in others if not api <= p < api + 4][:7]
    data = tmp_path / "cluster"
    env = {**os.environ, "KUBELITE_CONFIG": str(tmp_path / "klctl-config")}
    argv = [script("kubelite"), "up", "--data-dir", str(data), "--nodes", "1",
            "--apiservers", "2", "--api-port", str(api), "--http-api-port", str(api + 1),
            "--node-address-base", "127.0.0.70", "--service-cluster-ip-range",
            "127.161.0.0/16", "--pod-network", "127.247.0.0/16"]
    for option, port in zip(("--etcd-port", "--etcd-peer-port", "--scheduler-health-port",
                             "--controller-manager-health-port", "--kubelet-port",
                             "--kubelet-health-port", "--proxy-health-port"), ports,
                            strict=True):
        argv += [option, str(port)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env)
    output: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 120
        while not any("kubelite is ready" in line for line in output):
            line = process.stdout.readline()
            assert line and time.monotonic() < deadline, "".join(output)
            output.append(line)
        servers = f"127.0.0.1:{api},127.0.0.1:{api + 2}"
        assert any(f"API servers: {servers}" in line for line in output), "".join(output)
        status = subprocess.run([script("kubelite"), "status", "--data-dir", str(data)],
                                capture_output=True, text=True, check=False, timeout=60)
        assert status.returncode == 0, status.stdout
        assert any(line.startswith("apiserver-2 ") and line.endswith("healthy")
                   for line in status.stdout.splitlines()), status.stdout
        admin = yaml.safe_load((data / "admin.conf").read_text())
        assert admin["clusters"][0]["cluster"]["server"] == (
            f"https://127.0.0.1:{api},https://127.0.0.1:{api + 2}")
        for server in ([], ["--server", f"127.0.0.1:{api}"],
                       ["--server", f"127.0.0.1:{api + 2}"]):
            nodes = subprocess.run([script("klctl"), *server, "get", "nodes"],
                                   capture_output=True, text=True, env=env, timeout=30,
                                   check=False)
            assert nodes.returncode == 0 and " Ready " in nodes.stdout, (server, nodes.stderr)
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C stops everything
        process.wait(90)


async def serving(address: str) -> bool:
    async with ApiClient(address, timeout=2, wait_for_ready=False) as client:
        await client.list(v1.Namespace)
    return True
