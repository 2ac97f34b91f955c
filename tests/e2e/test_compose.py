"""deploy/docker-compose.yml is a valid compose file with the services the design names."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "docker-compose.yml"


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
    text = COMPOSE.read_text() + (ROOT / "deploy" / "node-entrypoint.sh").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    for script in ("kubelite-apiserver", "kubelite-scheduler", "kubelite-controller-manager",
                   "kubelite-kubelet", "kubelite-proxy"):
        assert script in text
        assert f"{script} =" in pyproject, f"{script} is not a console script"
