"""Hollow nodes against a real API server: several pod workers mark every bound pod Running
and Ready once, heartbeats renew every node's Lease, and bench/hollow_nodes.py runs them as
a process of their own that says when it is ready and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys

import pytest

from apiserver.server import ApiServer
from bench.hollow_nodes import READY_LINE, node_names, parse_args
from kubelite.api import pods as podutil
from kubelite.client.client import ApiClient
from kubelite.testing.hollow import HollowCluster
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1


def bound_pod(name: str, node: str) -> v1.Pod:
    pod = v1.Pod(metadata=v1.ObjectMeta(name=name, namespace="default",
                                        labels={"test": "hollow"}))
    pod.spec.node_name = node
    pod.spec.containers.add(name="main", image="pause")
    return pod


async def test_workers_run_every_bound_pod_and_heartbeats_renew_every_node(
        client: ApiClient) -> None:
    nodes = ["hw-1", "hw-2", "hw-3"]
    cluster = HollowCluster(client, list(nodes), heartbeat=0.2, workers=4)
    await cluster.start()
    try:
        listed = await client.list(v1.Node)
        assert {n.metadata.name for n in listed.items} >= set(nodes)
        await asyncio.gather(*(client.create(bound_pod(f"hw-pod-{i}", nodes[i % 3]))
                               for i in range(30)))

        async def all_running() -> bool:
            pods = (await client.list(v1.Pod, "default", label_selector="test=hollow")).items
            return len(pods) == 30 and all(
                p.status.phase == "Running" and podutil.is_ready(p)
                and [c.name for c in p.status.container_statuses] == ["main"] for p in pods)

        await eventually(all_running, message="30 pods Running and Ready")

        async def leases() -> bool:
            names = {le.metadata.name for le in
                     (await client.list(v1.Lease, "kube-node-lease")).items}
            return names >= set(nodes)

        await eventually(leases, message="a Lease for every node")
    finally:
        await cluster.stop()


async def test_workers_must_be_positive(client: ApiClient) -> None:
    with pytest.raises(ValueError, match="workers"):
        HollowCluster(client, ["n"], workers=0)


@pytest.mark.parametrize(("argv", "message"), [
    (["--nodes", "0"], "--nodes"), (["--workers", "0"], "--workers"),
    (["--heartbeat", "0"], "--heartbeat"),
])
def test_hollow_nodes_flags_are_checked(argv: list[str], message: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--server", "127.0.0.1:1", *argv])
    assert message in capsys.readouterr().err


async def test_hollow_nodes_process_registers_nodes_and_stops_on_sigterm(
        api_server: ApiServer, client: ApiClient) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.hollow_nodes", "--server", api_server.address,
        "--nodes", "3", "--node-prefix", "hp-", "--heartbeat", "0.5",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.decode().strip() == READY_LINE
        listed = {n.metadata.name for n in (await client.list(v1.Node)).items}
        assert listed >= set(node_names(3, "hp-"))
        await client.create(bound_pod("hp-pod", "hp-1"))

        async def running() -> bool:
            pod = await client.get(v1.Pod, "hp-pod", "default")
            return pod.status.phase == "Running"

        await eventually(running, message="the process's hollow kubelet ran the pod")
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, err.decode()[-2000:]
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
