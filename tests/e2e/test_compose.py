"""deploy/docker-compose.yml is a valid compose file with the services the design names, and
it and deploy/node-entrypoint.sh run the commands kubelite.components builds (which the
daemons' parsers take: tests/unit/test_components.py)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelite.components import (
    DAEMONS,
    ApiServer,
    ControllerManager,
    Daemon,
    Etcd,
    Kubelet,
    Proxy,
    Scheduler,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
ENTRYPOINT = ROOT / "deploy" / "node-entrypoint.sh"
SERVER = "apiserver:6443"

ETCD = Etcd(name="etcd", data_dir="/var/lib/etcd", client_urls=("http://0.0.0.0:2379",),
            advertise_client_urls=("http://etcd:2379",), log_level=None, logger=None)
DAEMONS_OF_SERVICES: dict[str, Daemon] = {
    "apiserver": ApiServer(listen="0.0.0.0:6443", etcd_servers="etcd:2379"),
    "scheduler": Scheduler(server=SERVER),
    "controller-manager": ControllerManager(server=SERVER),
}
"""The compose file's control-plane services besides etcd, as specs."""
KUBELET = Kubelet(node_name="$NODE_NAME", address="$NODE_IP", server="$SERVER",
                  root_dir="/var/lib/kubelite/kubelet", stop_pods_on_exit=True)
PROXY = Proxy(node_name="$NODE_NAME", node_ip="$NODE_IP", server="$SERVER")
"""node-entrypoint.sh's commands, as specs (shell variables as values)."""


def services() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


def healthcheck(service: dict[str, Any]) -> str:
    return " ".join(service["healthcheck"]["test"][1:])


def test_compose_file_is_valid() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed (Debian package docker-compose)")
    result = subprocess.run([tool, "-f", str(COMPOSE), "config"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert {"etcd", "apiserver", "scheduler", "controller-manager",
            "node-1", "node-2", "node-3"} <= set(services)
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
    for name in ("etcd", "apiserver", "scheduler", "controller-manager", "node-1", "node-2",
                 "node-3"):
        assert "healthcheck" in services[name], name
    assert all(services[f"node-{i}"]["privileged"] for i in (1, 2, 3))


def test_every_console_script_the_compose_file_runs_exists() -> None:
    text = COMPOSE.read_text() + ENTRYPOINT.read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    for script in (daemon.script for daemon in DAEMONS):
        assert script in text
        assert f"{script} =" in pyproject, f"{script} is not a console script"


def test_control_plane_services_run_the_specs_commands() -> None:
    found = services()
    assert found["etcd"]["command"] == ETCD.argv()
    assert found["etcd"]["healthcheck"]["test"] == ["CMD", "curl", "-fs", ETCD.health_url]
    for name, spec in DAEMONS_OF_SERVICES.items():
        assert found[name]["command"] == spec.argv(), name
        assert healthcheck(found[name]) == f"kubelite health {spec.health}", name


def entrypoint_command(script: str) -> list[str]:
    """The words of the line of node-entrypoint.sh that runs ``script`` in the background."""
    text = ENTRYPOINT.read_text().replace("\\\n", " ")
    lines = [line for line in text.splitlines() if line.startswith(f"{script} ")]
    assert len(lines) == 1, f"{script}: {lines}"
    words = shlex.split(lines[0])
    assert words[-1] == "&"
    return words[:-1]


def test_node_entrypoint_runs_the_specs_commands() -> None:
    assert entrypoint_command(Kubelet.script) == [*KUBELET.argv(), "$@"]
    assert entrypoint_command(Proxy.script) == PROXY.argv()


def test_node_healthcheck_asks_the_node_daemons_default_health_ports() -> None:
    # The node's daemons serve health on NODE_IP (the container's first address) at their
    # default ports, which the healthcheck asks.
    check = healthcheck(services()["node-1"])
    node_ip = "$$(hostname -i | cut -d' ' -f1)"
    for spec, port in ((KUBELET, Kubelet.HEALTH_PORT), (PROXY, Proxy.HEALTH_PORT)):
        assert spec.health == f"$NODE_IP:{port}"
        assert f'kubelite health "{node_ip}:{port}"' in check
