"""`kubelite up --runtime containerd --local-registry` as a user runs it, inside a network
namespace the test makes (its loopback, bridges and ClusterIP interface are the namespace's
own): the README's nginx tour reaches Running with each pod its own IP, a pod reaches the
Service's ClusterIP with exact round robin, and `kubelite down` leaves nothing behind."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubelite.cli.local_containerd import missing_for_containerd
from kubelite.testing.cluster import TestCluster, script

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]


def _missing() -> list[str]:
    missing = missing_for_containerd(local_registry=True)
    if shutil.which("nsenter") is None:
        missing.append("nsenter (util-linux)")
    return missing


@pytest.fixture
def netns() -> Iterator[str]:
    missing = _missing()
    if missing:
        pytest.skip("containerd runtime needs: " + ", ".join(missing))
    name = f"klup-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def in_netns(netns: str, argv: list[str]) -> list[str]:
    # nsenter, not `ip netns exec`: that remounts /sys, hiding the cgroups runc needs.
    return ["nsenter", f"--net=/run/netns/{netns}", *argv]


def test_up_with_containerd_runs_the_nginx_tour(tmp_path: Path, netns: str) -> None:
    data = tmp_path / "cluster"
    env = {**os.environ, "KUBELITE_CONFIG": str(tmp_path / "klctl-config")}

    def klctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(in_netns(netns, [script("klctl"), *args]), capture_output=True,
                              text=True, env=env, timeout=60, check=False)

    process = subprocess.Popen(
        in_netns(netns, [script("kubelite"), "up", "--runtime", "containerd",
                         "--local-registry", "--nodes", "2", "--data-dir", str(data)]),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    output: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if "kubelite is ready" in line:
                break
        else:
            raise AssertionError("kubelite up exited:\n" + "".join(output))
        applied = klctl("apply", "-f", str(ROOT / "deploy" / "nginx"))
        assert applied.returncode == 0, applied.stderr

        def pods() -> list[dict[str, object]]:
            listed = klctl("get", "pods", "-l", "app=nginx", "-o", "json")
            return list(json.loads(listed.stdout)["items"]) if listed.returncode == 0 else []

        def running() -> bool:
            return len([p for p in pods() if p["status"]["phase"] == "Running"]) == 3  # type: ignore[index]

        TestCluster.wait_for(running, "3 nginx pods Running", timeout=90)
        ips = {p["status"]["podIP"] for p in pods()}  # type: ignore[index]
        assert len(ips) == 3 and all(str(ip).startswith("10.244.") for ip in ips), ips
        service = json.loads(klctl("get", "svc", "nginx", "-o", "json").stdout)
        cluster_ip = service["spec"]["clusterIP"]
        assert cluster_ip.startswith("10.96."), cluster_ip
        client = pods()[0]["metadata"]["name"]  # type: ignore[index]
        fetch = f"for i in $(seq 30); do wget -qO- http://{cluster_ip}/cgi-bin/hostname; done"

        def answers() -> list[str]:
            result = klctl("exec", str(client), "--", "sh", "-c", fetch)
            return result.stdout.split() if result.returncode == 0 else []

        counts: dict[str, int] = {}
        TestCluster.wait_for(lambda: len(answers()) == 30, "30 answers through the ClusterIP",
                             timeout=30)
        for name in answers():
            counts[name] = counts.get(name, 0) + 1
        assert sorted(counts.values()) == [10, 10, 10], counts
        down = subprocess.run(in_netns(netns, [script("kubelite"), "down", "--data-dir",
                                               str(data)]),
                              capture_output=True, text=True, timeout=120, check=False)
        assert down.returncode == 0, down.stderr
        process.wait(60)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(120)
    leftovers = subprocess.run(["pgrep", "-af", str(data)], capture_output=True, text=True,
                               check=False).stdout
    assert [line for line in leftovers.splitlines() if "pgrep" not in line] == []
