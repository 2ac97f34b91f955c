"""`kubelite`: run a whole cluster on this machine as separate processes.

    kubelite up [--nodes N] [--data-dir D]   start everything; Ctrl-C (or `kubelite down`) stops it
    kubelite status [--data-dir D]           each component's process and health
    kubelite down [--data-dir D]             stop a cluster started by `kubelite up`

Components: etcd, the API server, the scheduler, the controller manager, and per node a
kubelet and a proxy on its own loopback address (127.0.0.2, 127.0.0.3, ...). Every
component's log is ``<data-dir>/logs/<component>.log``; etcd keeps its data in
``<data-dir>/etcd``, so `up` again on the same data dir keeps the cluster's objects.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kubelite.processes import ManagedProcess
from kubelite.testing.etcd import find_etcd

STATE_FILE = "cluster.json"


@dataclass(frozen=True)
class LocalClusterSettings:
    data_dir: Path = Path(".kubelite")
    """Where etcd's data, the nodes' pods, the logs and the cluster's state file live."""
    nodes: int = 3
    """Nodes to start, each a kubelet + proxy on 127.0.0.2, 127.0.0.3, ..."""
    etcd_port: int = 2479
    """etcd client port on 127.0.0.1 (not 2379, so a system etcd can run beside it)."""
    api_port: int = 6443
    """API server port on 127.0.0.1."""
    kubelet_port: int = 10250
    """Kubelet API port on each node's address."""
    scheduler_health_port: int = 10259
    """Scheduler's gRPC health port on 127.0.0.1 (kube-scheduler's healthz port)."""
    controller_manager_health_port: int = 10257
    """Controller manager's gRPC health port on 127.0.0.1 (kube-controller-manager's)."""
    kubelet_health_port: int = 10248
    """Kubelet's gRPC health port on each node's address (the kubelet's healthz port)."""
    proxy_health_port: int = 10256
    """Proxy's gRPC health port on each node's address (kube-proxy's healthz port)."""
    ready_timeout: float = 60.0
    """Seconds each component gets to become healthy."""


@dataclass
class Component:
    process: ManagedProcess
    health: str
    """Space-separated checks, all of which must pass: ``http://...`` (answers "true"),
    ``grpc://host:port`` (gRPC health says SERVING), ``node:NAME`` (the Node is Ready) or
    ``process`` (the process runs)."""

    @property
    def name(self) -> str:
        return self.process.name


def _script(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else name


def _components(s: LocalClusterSettings) -> list[Component]:
    data = s.data_dir.resolve()
    logs = data / "logs"
    etcd_client = f"http://127.0.0.1:{s.etcd_port}"
    etcd_peer = f"http://127.0.0.1:{s.etcd_port + 1}"
    api = f"127.0.0.1:{s.api_port}"
    scheduler_health = f"127.0.0.1:{s.scheduler_health_port}"
    cm_health = f"127.0.0.1:{s.controller_manager_health_port}"

    def managed(name: str, argv: list[str]) -> ManagedProcess:
        return ManagedProcess(name, argv, logs / f"{name}.log",
                              {**os.environ, "PYTHONUNBUFFERED": "1"})

    components = [
        Component(managed("etcd", [
            find_etcd(), "--name", "kubelite", "--data-dir", str(data / "etcd"),
            "--listen-client-urls", etcd_client, "--advertise-client-urls", etcd_client,
            "--listen-peer-urls", etcd_peer, "--initial-advertise-peer-urls", etcd_peer,
            "--initial-cluster", f"kubelite={etcd_peer}", "--log-level", "warn",
            "--logger", "zap"]), f"{etcd_client}/health"),
        Component(managed("apiserver", [
            _script("kubelite-apiserver"), "--listen", api, "--etcd-servers",
            f"127.0.0.1:{s.etcd_port}"]), f"grpc://{api}"),
        Component(managed("scheduler", [
            _script("kubelite-scheduler"), "--server", api,
            "--health-address", scheduler_health]), f"grpc://{scheduler_health}"),
        Component(managed("controller-manager", [
            _script("kubelite-controller-manager"), "--server", api,
            "--health-address", cm_health]), f"grpc://{cm_health}"),
    ]
    for i in range(1, s.nodes + 1):
        name, address = f"node-{i}", f"127.0.0.{i + 1}"
        kubelet_health = f"{address}:{s.kubelet_health_port}"
        proxy_health = f"{address}:{s.proxy_health_port}"
        components.append(Component(managed(f"kubelet-{name}", [
            _script("kubelite-kubelet"), "--node-name", name, "--address", address,
            "--server", api, "--root-dir", str(data / "nodes" / name),
            "--port", str(s.kubelet_port), "--health-address", kubelet_health,
            "--stop-pods-on-exit"]), f"grpc://{kubelet_health} node:{name}"))
        if Path(_script("kubelite-proxy")).exists():
            components.append(Component(managed(f"proxy-{name}", [
                _script("kubelite-proxy"), "--node-name", name, "--node-ip", address,
                "--server", api, "--health-address", proxy_health]), f"grpc://{proxy_health}"))
    return components


def _grpc_healthy(address: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        except grpc.RpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


def _node_ready(server: str, name: str) -> bool:
    from kubelite.api.errors import ApiError
    from kubelite.client.client import ApiClient
    from protos.v1 import objects_pb2 as v1

    async def check() -> bool:
        async with ApiClient(server, timeout=2, wait_for_ready=False) as client:
            try:
                node = await client.get(v1.Node, name)
            except ApiError:
                return False
            return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)

    return asyncio.run(check())


def healthy(health: str, pid_alive: bool, server: str) -> bool:
    """Whether the process runs and every check in ``health`` (see Component) passes."""
    if not pid_alive:
        return False
    return all(_check(check, server) for check in health.split())


def _check(health: str, server: str) -> bool:
    if health.startswith("http://"):
        try:
            with urllib.request.urlopen(health, timeout=1) as r:
                return b"true" in r.read()
        except OSError:
            return False
    if health.startswith("grpc://"):
        return _grpc_healthy(health.removeprefix("grpc://"))
    if health.startswith("node:"):
        return _node_ready(server, health.removeprefix("node:"))
    return True


def _say(text: str) -> None:
    print(text, flush=True)


class LocalCluster:
    def __init__(self, settings: LocalClusterSettings) -> None:
        self.settings = settings
        self.components = _components(settings)
        self.server = f"127.0.0.1:{settings.api_port}"
        self.logs = settings.data_dir.resolve() / "logs"

    def start(self) -> None:
        # Control plane one by one (each needs the previous); nodes together, then wait.
        nodes = [c for c in self.components if c.name.startswith(("kubelet-", "proxy-"))]
        for c in self.components:
            if c in nodes:
                continue
            self._start(c)
            self._wait(c)
        for c in nodes:
            self._start(c)
        for c in nodes:
            self._wait(c)
        self._write_state()

    def _start(self, c: Component) -> None:
        _say(f"  starting {c.name} ...")
        c.process.start()

    def _wait(self, c: Component) -> None:
        started = time.monotonic()
        deadline = started + self.settings.ready_timeout
        while not healthy(c.health, c.process.running(), self.server):
            if not c.process.running():
                raise RuntimeError(f"{c.name} exited with code {c.process.returncode};"
                                   f" see {c.process.log_path}:\n{c.process.tail(15)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{c.name} not healthy after {self.settings.ready_timeout}s;"
                                   f" see {c.process.log_path}")
            time.sleep(0.1)
        _say(f"  {c.name} ready ({time.monotonic() - started:.1f}s)")

    def _write_state(self) -> None:
        state = {
            "supervisor": os.getpid(),
            "server": self.server,
            "components": {c.name: {"pid": c.process.pid, "health": c.health}
                           for c in self.components},
        }
        (self.settings.data_dir / STATE_FILE).write_text(json.dumps(state, indent=2))

    def stop(self) -> None:
        # Nodes first (kubelets stop their pods), the API server and etcd last.
        for c in reversed(self.components):
            if c.process.running():
                _say(f"  stopping {c.name}")
                c.process.stop()
        (self.settings.data_dir / STATE_FILE).unlink(missing_ok=True)

    def supervise(self) -> int:
        """Blocks until a signal (0) or until a component dies (1)."""
        stopping = False

        def on_signal(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while not stopping:
            for c in self.components:
                if not c.process.running():
                    _say(f"{c.name} exited with code {c.process.returncode};"
                         f" see {c.process.log_path}")
                    return 1
            time.sleep(0.2)
        return 0


def _write_klctl_config(server: str) -> Path:
    from kubelite.cli.config import default_config_path, write_config

    path = default_config_path()
    write_config(path, server)
    return path


def _alive(pid: int) -> bool:
    """Running (an exited process its parent has not reaped yet does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def _running_supervisor(data_dir: Path) -> int | None:
    state = data_dir / STATE_FILE
    if not state.exists():
        return None
    pid = json.loads(state.read_text()).get("supervisor")
    return int(pid) if pid and _alive(int(pid)) else None


def up(settings: LocalClusterSettings) -> int:
    pid = _running_supervisor(settings.data_dir)
    if pid is not None:
        print(f"a cluster is already running from {settings.data_dir} (pid {pid})",
              file=sys.stderr)
        return 1
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster(settings)
    _say(f"Starting kubelite ({settings.nodes} nodes) in {settings.data_dir.resolve()}")
    started = time.monotonic()
    try:
        cluster.start()
        config = _write_klctl_config(cluster.server)
        _say(
            f"\nkubelite is ready in {time.monotonic() - started:.1f}s."
            f" API server: {cluster.server}\n"
            f"klctl is configured through {config}; try:\n"
            f"  klctl get nodes\n"
            f"  klctl apply -f deploy/examples/\n"
            f"  klctl get pods -o wide\n"
            f"Logs: {cluster.logs}/. Stop with Ctrl-C or `kubelite down`.\n"
        )
        code = cluster.supervise()
    except (RuntimeError, TimeoutError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        code = 1
    finally:
        _say("Stopping kubelite")
        cluster.stop()
    return code


def down(settings: LocalClusterSettings, timeout: float = 60.0) -> int:
    pid = _running_supervisor(settings.data_dir)
    if pid is None:
        (settings.data_dir / STATE_FILE).unlink(missing_ok=True)
        print(f"no cluster is running from {settings.data_dir}", file=sys.stderr)
        return 1
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        print(f"the cluster (pid {pid}) did not stop within {timeout}s", file=sys.stderr)
        return 1
    print("kubelite stopped")
    return 0


def status(settings: LocalClusterSettings) -> int:
    state_file = settings.data_dir / STATE_FILE
    if _running_supervisor(settings.data_dir) is None:
        print(f"no cluster is running from {settings.data_dir}")
        return 1
    state = json.loads(state_file.read_text())
    print(f"{'COMPONENT':<22}{'PID':<10}{'PROCESS':<10}HEALTH")
    all_ok = True
    check: Callable[[str, bool, str], bool] = healthy
    for name, info in state["components"].items():
        alive = info["pid"] is not None and _alive(int(info["pid"]))
        ok = check(info["health"], alive, state["server"])
        all_ok = all_ok and ok
        print(f"{name:<22}{info['pid']!s:<10}{'running' if alive else 'stopped':<10}"
              f"{'healthy' if ok else 'unhealthy'}")
    return 0 if all_ok else 1


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="kubelite", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    probe = sub.add_parser("health", help="exit 0 when a component's gRPC health is SERVING")
    probe.add_argument("address", help="host:port of the component's health service")
    for name in ("up", "down", "status"):
        s = sub.add_parser(name)
        s.add_argument("--data-dir", type=Path, default=Path(".kubelite"))
        if name == "up":
            s.add_argument("--nodes", type=int, default=3)
            s.add_argument("--api-port", type=int, default=6443)
            s.add_argument("--etcd-port", type=int, default=2479)
            s.add_argument("--kubelet-port", type=int, default=10250)
    a = p.parse_args(argv)
    if a.command == "health":
        serving = _grpc_healthy(a.address)
        print("SERVING" if serving else "NOT_SERVING")
        raise SystemExit(0 if serving else 1)
    if a.command == "up":
        settings = LocalClusterSettings(a.data_dir, a.nodes, a.etcd_port, a.api_port,
                                        a.kubelet_port)
    else:
        settings = LocalClusterSettings(a.data_dir)
    code = {"up": up, "down": down, "status": status}[a.command](settings)
    raise SystemExit(code)
