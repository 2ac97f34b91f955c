"""The real ``klctl`` console script against an API server running as its own process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubelite.testing.etcd import EtcdProcess
from kubelite.testing.ports import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "deploy" / "examples"


def klctl_path() -> str:
    beside = Path(sys.executable).parent / "klctl"
    if beside.exists():
        return str(beside)
    found = shutil.which("klctl")
    if found is None:
        pytest.skip("the klctl console script is not installed")
    return found


@pytest.fixture
def api_process(etcd: EtcdProcess, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    address = f"127.0.0.1:{free_port()}"
    log = open(tmp_path / "apiserver.log", "wb")  # noqa: SIM115  # closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "apiserver", "--listen", address,
         "--etcd-servers", etcd.endpoint, "--etcd-prefix", f"/e2e-{uuid.uuid4().hex[:10]}",
         "--insecure"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        yield process, address
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


def run_klctl(address: str, tmp_path: Path, *args: str,
              stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KUBELITE_SERVER": address,
        # Keep a developer's own ~/.kubelite/config out of the test.
        "KUBELITE_CONFIG": str(tmp_path / "no-config"),
    }
    return subprocess.run(
        [klctl_path(), *args], input=stdin, capture_output=True, text=True, env=env,
        timeout=60, check=False,
    )


def wait_ready(address: str, tmp_path: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    last = ""
    while time.monotonic() < deadline:
        assert process.poll() is None, "the API server exited during startup"
        result = run_klctl(address, tmp_path, "get", "ns", "--request-timeout", "2s")
        if result.returncode == 0 and "default" in result.stdout:
            return
        last = result.stderr
        time.sleep(0.2)
    raise AssertionError(f"API server not ready within 30s: {last}")


def test_klctl_console_script_against_apiserver_process(
    api_process: tuple[subprocess.Popen[bytes], str], tmp_path: Path
) -> None:
    process, address = api_process
    wait_ready(address, tmp_path, process)

    applied = run_klctl(address, tmp_path, "apply", "-f", str(EXAMPLES))
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines() == [
        "configmap/web-config created", "deployment.apps/web created", "service/web created",
    ]
    again = run_klctl(address, tmp_path, "apply", "-f", str(EXAMPLES))
    assert again.stdout.splitlines() == [
        "configmap/web-config unchanged", "deployment.apps/web unchanged",
        "service/web unchanged",
    ]

    table = run_klctl(address, tmp_path, "get", "deploy")
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE",
                                                    "AGE"]
    as_json = json.loads(run_klctl(address, tmp_path, "get", "cm", "web-config", "-o",
                                   "json").stdout)
    assert as_json["kind"] == "ConfigMap" and as_json["data"]["color"] == "green"

    from_stdin = run_klctl(address, tmp_path, "apply", "-f", "-",
                           stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: piped}\n")
    assert from_stdin.stdout.strip() == "configmap/piped created"

    # Failures: exit status 1, one readable line, no traceback, nothing written.
    bad = run_klctl(address, tmp_path, "apply", "-f", "-", stdin=(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad}\nspec:\n"
        "  replicas: -1\n  selector: {matchLabels: {a: b}}\n"
        "  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i}]}}\n"
    ))
    assert bad.returncode == 1
    assert "spec.replicas: Invalid value: -1: must be greater than or equal to 0" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = run_klctl(address, tmp_path, "get", "deploy", "bad")
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        'Error from server (NotFound): deployments.apps "bad" not found'
    )

    deleted = run_klctl(address, tmp_path, "delete", "-f", str(EXAMPLES))
    assert deleted.returncode == 0, deleted.stderr
    assert 'deployment.apps "web" deleted' in deleted.stdout
    empty = run_klctl(address, tmp_path, "get", "deploy,svc", "-o", "name")
    # Only the API server's own kubernetes Service is left.
    assert empty.returncode == 0 and empty.stdout.splitlines() == ["service/kubernetes"]
    none = run_klctl(address, tmp_path, "get", "deploy")
    assert none.returncode == 0 and none.stderr.strip() == (
        "No resources found in default namespace.")

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=5) == 0

    unreachable = run_klctl(address, tmp_path, "get", "pods", "--request-timeout", "5s")
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith(f"error: cannot reach the API server at {address}")
