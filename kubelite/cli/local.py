"""`kubelite`: run a whole cluster on this machine as separate processes.

    kubelite up [--data-dir D] [--nodes N]   start everything; Ctrl-C (or `kubelite down`) stops
    kubelite status [--data-dir D]           each component's process and health
    kubelite down [--data-dir D]             stop a cluster started by `kubelite up`

Every component's log is ``<data-dir>/logs/<component>.log``; etcd keeps its data in
``<data-dir>/etcd``, so a restart on the same data dir keeps the cluster's objects.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from kubelite.testing.etcd import find_etcd

STATE_FILE = "cluster.json"


@dataclass(frozen=True)
class LocalClusterSettings:
    data_dir: Path = Path(".kubelite")
    """Where etcd's data, the logs and the cluster's state file live."""
    etcd_port: int = 2479
    """etcd client port on 127.0.0.1 (not 2379, so a system etcd can run beside it)."""
    api_port: int = 6443
    """API server port on 127.0.0.1."""
    nodes: int = 1
    """Nodes to start (each on its own 127.0.0.x address) once node components exist."""
    ready_timeout: float = 60.0
    """Seconds each component gets to become healthy."""


@dataclass
class Component:
    name: str
    argv: list[str]
    health: str
    """``http://...`` URL that answers when healthy, or ``grpc://host:port``."""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)


def _components(s: LocalClusterSettings) -> list[Component]:
    data = s.data_dir.resolve()
    etcd_client = f"http://127.0.0.1:{s.etcd_port}"
    etcd_peer = f"http://127.0.0.1:{s.etcd_port + 1}"
    api = f"127.0.0.1:{s.api_port}"
    py = sys.executable
    return [
        Component(
            "etcd",
            [find_etcd(), "--name", "kubelite", "--data-dir", str(data / "etcd"),
             "--listen-client-urls", etcd_client, "--advertise-client-urls", etcd_client,
             "--listen-peer-urls", etcd_peer, "--initial-advertise-peer-urls", etcd_peer,
             "--initial-cluster", f"kubelite={etcd_peer}", "--log-level", "warn",
             "--logger", "zap"],
            f"{etcd_client}/health",
        ),
        Component(
            "apiserver",
            [py, "-m", "apiserver", "--listen", api, "--etcd-servers",
             f"127.0.0.1:{s.etcd_port}"],
            f"grpc://{api}",
        ),
    ]


def _healthy(url: str) -> bool:
    if url.startswith("http://"):
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                return b"true" in r.read()
        except OSError:
            return False
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(url.removeprefix("grpc://")) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        except grpc.RpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


def _say(text: str) -> None:
    print(text, flush=True)


class LocalCluster:
    def __init__(self, settings: LocalClusterSettings) -> None:
        self.settings = settings
        self.components = _components(settings)
        self.logs = settings.data_dir / "logs"

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        for c in self.components:
            started = time.monotonic()
            _say(f"  starting {c.name} ...")
            with open(self.logs / f"{c.name}.log", "ab") as log:
                c.process = subprocess.Popen(
                    c.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            self._wait_healthy(c)
            _say(f"  {c.name} ready ({time.monotonic() - started:.1f}s)")
        self._write_state()

    def _wait_healthy(self, c: Component) -> None:
        deadline = time.monotonic() + self.settings.ready_timeout
        while not _healthy(c.health):
            assert c.process is not None
            if c.process.poll() is not None:
                raise RuntimeError(
                    f"{c.name} exited with code {c.process.returncode};"
                    f" see {self.logs / (c.name + '.log')}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"{c.name} not healthy after {self.settings.ready_timeout}s")
            time.sleep(0.1)

    def _write_state(self) -> None:
        state = {
            "supervisor": os.getpid(),
            "server": f"127.0.0.1:{self.settings.api_port}",
            "components": {
                c.name: {"pid": c.process.pid if c.process else None, "health": c.health}
                for c in self.components
            },
        }
        (self.settings.data_dir / STATE_FILE).write_text(json.dumps(state, indent=2))

    def stop(self) -> None:
        for c in reversed(self.components):
            p = c.process
            if p is None or p.poll() is not None:
                continue
            _say(f"  stopping {c.name}")
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        (self.settings.data_dir / STATE_FILE).unlink(missing_ok=True)

    def watch(self) -> int:
        """Blocks until a signal or a component dies; returns the exit code for `up`."""
        stopping = False

        def on_signal(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while not stopping:
            for c in self.components:
                if c.process is not None and c.process.poll() is not None:
                    _say(f"{c.name} exited with code {c.process.returncode};"
                         f" see {self.logs / (c.name + '.log')}")
                    return 1
            time.sleep(0.2)
        return 0


def _write_klctl_config(server: str) -> Path:
    from kubelite.cli.config import default_config_path, write_config

    path = default_config_path()
    write_config(path, server)
    return path


def up(settings: LocalClusterSettings) -> int:
    state = settings.data_dir / STATE_FILE
    if state.exists():
        pid = json.loads(state.read_text()).get("supervisor")
        if pid and _alive(pid):
            print(f"a cluster is already running from {settings.data_dir} (pid {pid})",
                  file=sys.stderr)
            return 1
    cluster = LocalCluster(settings)
    _say(f"Starting kubelite in {settings.data_dir.resolve()}")
    started = time.monotonic()
    try:
        cluster.start()
        server = f"127.0.0.1:{settings.api_port}"
        config = _write_klctl_config(server)
        _say(
            f"\nkubelite is ready in {time.monotonic() - started:.1f}s. API server: {server}\n"
            f"klctl is configured through {config}; try:\n"
            f"  klctl get namespaces\n"
            f"  klctl apply -f deploy/examples/\n"
            f"Logs: {cluster.logs}/. Stop with Ctrl-C or `kubelite down`.\n"
        )
        code = cluster.watch()
    except (RuntimeError, TimeoutError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        code = 1
    finally:
        _say("Stopping kubelite")
        cluster.stop()
    return code


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def down(settings: LocalClusterSettings, timeout: float = 30.0) -> int:
    state = settings.data_dir / STATE_FILE
    if not state.exists():
        print(f"no cluster is running from {settings.data_dir}", file=sys.stderr)
        return 1
    pid = int(json.loads(state.read_text())["supervisor"])
    if not _alive(pid):
        state.unlink()
        print("the cluster was not running (stale state removed)")
        return 0
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
    if not state_file.exists():
        print(f"no cluster is running from {settings.data_dir}")
        return 1
    state = json.loads(state_file.read_text())
    print(f"{'COMPONENT':<22}{'PID':<10}{'PROCESS':<10}HEALTH")
    all_ok = True
    for name, info in state["components"].items():
        alive = info["pid"] is not None and _alive(int(info["pid"]))
        healthy = alive and _healthy(info["health"])
        all_ok = all_ok and healthy
        print(f"{name:<22}{info['pid']!s:<10}{'running' if alive else 'stopped':<10}"
              f"{'healthy' if healthy else 'unhealthy'}")
    return 0 if all_ok else 1


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="kubelite", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("up", "down", "status"):
        s = sub.add_parser(name)
        s.add_argument("--data-dir", type=Path, default=Path(".kubelite"))
        if name == "up":
            s.add_argument("--nodes", type=int, default=1)
            s.add_argument("--api-port", type=int, default=6443)
            s.add_argument("--etcd-port", type=int, default=2479)
    a = p.parse_args(argv)
    settings = LocalClusterSettings(
        data_dir=a.data_dir,
        **({"nodes": a.nodes, "api_port": a.api_port, "etcd_port": a.etcd_port}
           if a.command == "up" else {}),
    )
    code = {"up": up, "down": down, "status": status}[a.command](settings)
    raise SystemExit(code)
