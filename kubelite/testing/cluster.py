"""A cluster of real processes for e2e tests: API server, scheduler, kubelets (and, when asked,
controller manager and proxies), each started through its console script against a shared
test etcd, with short timers; their command lines come from kubelite.components. klctl is run
as a process too."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kubelite.components import (
    ApiServer,
    ControllerManager,
    ControllerManagerTimers,
    Kubelet,
    KubeletTimers,
    LeaderElection,
    Proxy,
    Scheduler,
    SchedulerTimers,
    Spec,
    installed_script,
)
from kubelite.ports import free_port
from kubelite.processes import ManagedProcess


def script(name: str) -> str:
    """A console script installed beside this interpreter (the venv's bin)."""
    candidate = installed_script(name)
    if not candidate.exists():
        raise FileNotFoundError(f"{name} is not installed (pip install -e .)")
    return str(candidate)


RUNTIMES = ("process", "containerd")
"""The kubelet's container runtimes."""

TEST_LEADER_ELECTION = LeaderElection(lease_duration=2, renew_deadline=1.5, retry_period=0.2)
"""Leader election of test clusters: a standby takes over within seconds."""


@dataclass(frozen=True)
class NodeSpec:
    """A node of the test cluster: what its kubelet is started with."""

    name: str
    address: str
    cpu: str = "4"
    memory: str = "8Gi"
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[str, ...] = ()
    pod_cidr: str = ""
    """The kubelet's --pod-cidr: with the process runtime a loopback block (each pod its own
    loopback IP; empty: pods use the node's), with containerd the block its bridge hands out
    (any CIDR)."""
    runtime: str = "process"
    """The kubelet's --container-runtime: process (pods are host processes) or containerd."""
    container_runtime_endpoint: str = ""
    """containerd runtime: its CRI socket, ``unix:///path/containerd.sock`` (required)."""
    cni_conf_dir: str = ""
    """containerd runtime: the containerd's CNI conf dir, where the kubelet writes the pod
    network's configuration (empty: the kubelet's default)."""
    cni_bridge: str = ""
    """containerd runtime: the node's pod bridge; nodes sharing a network namespace need one
    each (empty: the kubelet's default)."""
    cgroup_root: str = ""
    """containerd runtime: parent cgroup of the pods' cgroups; nodes sharing a host need one
    each (empty: the kubelet's default)."""

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime: {self.runtime!r} is not one of {', '.join(RUNTIMES)}")
        if self.runtime == "containerd" and \
                not self.container_runtime_endpoint.startswith("unix://"):
            raise ValueError(
                f"container_runtime_endpoint: {self.container_runtime_endpoint!r} must be a "
                "unix:// socket with the containerd runtime")
        if self.runtime == "process":
            for name in ("container_runtime_endpoint", "cni_conf_dir", "cni_bridge",
                         "cgroup_root"):
                if getattr(self, name):
                    raise ValueError(f"{name}: only for the containerd runtime")


@dataclass
class TestCluster:
    __test__ = False  # not a pytest test class

    workdir: Path
    etcd_endpoint: str
    nodes: list[NodeSpec]
    scheduler: bool = True
    controller_manager: bool = False
    proxy: bool = False
    watch_progress_interval: float = 0.2
    """API server: seconds between bookmarks on quiet watches."""
    scheduler_timers: SchedulerTimers = SchedulerTimers(pod_initial_backoff=0.5,
                                                        pod_max_backoff=2)
    controller_manager_timers: ControllerManagerTimers = ControllerManagerTimers(
        node_monitor_period=0.5, node_monitor_grace_period=4, cronjob_check_period=0.5,
        cron_time_scale=60)
    kubelet_timers: KubeletTimers = KubeletTimers(
        node_status_update_frequency=2, node_lease_duration=8, sync_frequency=2,
        housekeeping_interval=0.2, backoff_initial=1, backoff_max=8)
    leader_election: LeaderElection = TEST_LEADER_ELECTION
    prefix: str = field(default_factory=lambda: f"/e2e-{uuid.uuid4().hex[:10]}")
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    server: str = ""
    health: dict[str, str] = field(default_factory=dict)
    """Each component's gRPC health address (host:port) by process name; every one gets a
    free port, so several clusters and standbys never collide."""

    def _start(self, name: str, spec: Spec) -> ManagedProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "KUBELITE_SERVER": self.server}
        process = ManagedProcess(name, spec.argv(script(spec.script)),
                                 self.workdir / "logs" / f"{name}.log", env)
        process.start()
        self.processes[name] = process
        return process

    def start(self) -> None:
        self.server = f"127.0.0.1:{free_port()}"
        self._start("apiserver", ApiServer(
            listen=self.server, etcd_servers=self.etcd_endpoint, etcd_prefix=self.prefix,
            watch_progress_interval=self.watch_progress_interval))
        self.wait_for(
            lambda: self.klctl("get", "ns", check=False).returncode == 0, "the API server to answer"
        )
        if self.scheduler:
            self.start_scheduler()
        if self.controller_manager:
            self.start_controller_manager()
        for node in self.nodes:
            self.start_kubelet(node)
            if self.proxy:
                self.start_proxy(node)
        for node in self.nodes:
            self.wait_for(lambda n=node: self._node_ready(n.name), f"node {node.name} Ready")

    def _health_address(self, name: str, host: str = "127.0.0.1") -> str:
        address = self.health[name] = f"{host}:{free_port(host)}"
        return address

    def health_status(self, name: str, timeout: float = 1.0) -> str:
        """What component ``name``'s gRPC health service reports for service ``""``:
        SERVING, NOT_SERVING, or UNREACHABLE when it does not answer."""
        with grpc.insecure_channel(self.health[name]) as channel:
            try:
                response = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=timeout
                )
            except grpc.RpcError:
                return "UNREACHABLE"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    def start_scheduler(self, name: str = "scheduler") -> ManagedProcess:
        return self._start(name, Scheduler(
            server=self.server, health_address=self._health_address(name), identity=name,
            leader_election=self.leader_election, timers=self.scheduler_timers))

    def start_controller_manager(self, name: str = "controller-manager") -> ManagedProcess:
        return self._start(name, ControllerManager(
            server=self.server, health_address=self._health_address(name), identity=name,
            leader_election=self.leader_election, timers=self.controller_manager_timers))

    def start_proxy(self, node: NodeSpec) -> ManagedProcess:
        name = f"proxy-{node.name}"
        return self._start(name, Proxy(
            node_name=node.name, node_ip=node.address, server=self.server,
            health_address=self._health_address(name, node.address)))

    def start_kubelet(self, node: NodeSpec) -> ManagedProcess:
        return self._start(f"kubelet-{node.name}", self.kubelet_spec(node))

    def kubelet_spec(self, node: NodeSpec) -> Kubelet:
        """The kubelet of ``node`` (its health address gets a free port on each call)."""
        name = f"kubelet-{node.name}"
        return Kubelet(
            node_name=node.name, address=node.address, server=self.server,
            root_dir=str(self.workdir / node.name), port=0, cpu=node.cpu, memory=node.memory,
            labels=node.labels or None, taints=node.taints or None,
            pod_cidr=node.pod_cidr or None, health_address=self._health_address(name, node.address),
            timers=self.kubelet_timers, stop_pods_on_exit=True,
            # The process runtime is the kubelet's default: its flags stay as they were.
            container_runtime=None if node.runtime == "process" else node.runtime,
            container_runtime_endpoint=node.container_runtime_endpoint or None,
            cni_conf_dir=node.cni_conf_dir or None, cni_bridge=node.cni_bridge or None,
            cgroup_root=node.cgroup_root or None)

    def _node_ready(self, name: str) -> bool:
        result = self.klctl("get", "node", name, "--no-headers", check=False)
        return result.returncode == 0 and " Ready " in f" {result.stdout} "

    def stop(self) -> None:
        # Kubelets first (they stop their pods), the API server last.
        order = sorted(self.processes, key=lambda n: (n == "apiserver", n))
        for name in order:
            self.processes[name].stop()

    def klctl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [script("klctl"), "--server", self.server, *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"klctl {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def apply(self, manifest: str) -> str:
        return self.klctl("apply", "-f", "-", input=manifest).stdout

    @staticmethod
    def wait_for(check: object, what: str, timeout: float = 30.0, interval: float = 0.1) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if check():  # type: ignore[operator]
                    return
            except Exception as e:  # noqa: BLE001 - "not yet"; reported at the deadline
                last = e
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from last

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{p.tail()}" for n, p in self.processes.items())


async def wait_async(check: object, what: str, timeout: float = 30.0) -> None:
    await asyncio.to_thread(TestCluster.wait_for, check, what, timeout)
