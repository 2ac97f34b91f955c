"""Pod startup latency: create -> Running, as Kubernetes' SLO measures, on the process runtime
and on containerd in the same run.

For each runtime it starts etcd, the API server, the scheduler and two kubelets as real
processes (the e2e harness), creates N busybox pods (``sleep 3600``) at a steady rate, and takes
each pod's latency from the acknowledged create to the first watch event that shows it
Running. The runtimes are measured one after the other, each on its own cluster.

containerd: the bench makes a network namespace with a veth to this one; in it run a registry
holding the test images (busybox as docker.io/library/busybox) and one containerd per node,
each with its own directory, the pause image preloaded and docker.io mirrored to that registry.
The nodes' pod bridges (klbench1, klbench2 for 10.245.1.0/24 and 10.245.2.0/24) are made by
CNI inside the namespace. busybox is pulled into each containerd once before measuring and the
pods ask for IfNotPresent, so the figures are startup, not pull. Everything is removed at the
end: pods, containerds with their shims, the registry, the namespace (its bridges and veth go
with it) and the pods' cgroups.

Prints one JSON object with, per runtime, p50/p99/max and the ratio of p99 to Kubernetes' 5 s
SLO (below 1.0 meets it), and the ratio of containerd's p99 to the process runtime's.

Usage: python -m bench.pod_startup [--pods 50] [--rate 10] [--runtime process|containerd|both]
(default: both where containerd can run here -- root and its tools --, else process)
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench.harness import percentile, temporary_etcd
from kubelite import daemon, logs
from kubelite.cli.local_containerd import CNI_BIN_DIR, CNI_PLUGINS
from kubelite.client.client import ApiClient
from kubelite.containerd_process import ContainerdProcess
from kubelite.node_images import build_node_images, push_images
from kubelite.registry import LocalRegistry, LocalRegistrySettings
from kubelite.testing.cluster import NodeSpec, TestCluster
from kubelite.testing.images import missing_containerd_tools, node_containerd
from protos.cri.v1 import api_pb2 as cri
from protos.cri.v1 import api_pb2_grpc as cri_grpc
from protos.v1 import objects_pb2 as v1

SLO_SECONDS = 5.0
"""Kubernetes' pod startup SLO: p99 of create -> Running (image pulls excluded)."""
GOAL_P99_SECONDS = 2.0
"""kubelite's own goal for the same p99."""
RUNTIME_CHOICES = ("process", "containerd", "both")
IMAGE = "busybox"
CRI_IMAGE = "docker.io/library/busybox:latest"
"""What ``busybox`` names, as containerd stores it (pulled through the mirror)."""
NODE_ADDRESSES = ("127.0.0.2", "127.0.0.3")
POD_CIDRS = ("10.245.1.0/24", "10.245.2.0/24")
"""The containerd nodes' pod networks, inside the bench's namespace."""
BRIDGES = ("klbench1", "klbench2")
LINK_NETWORK = ipaddress.ip_network("10.245.0.0/30")
"""The veth between this namespace (.1) and the bench's (.2, where the registry listens)."""
REGISTRY_PORT = 5000
NAMESPACE_PREFIX = "klbench-"
CGROUP_FS = Path("/sys/fs/cgroup")


def busybox(name: str) -> v1.Pod:
    pod = v1.Pod(metadata=v1.ObjectMeta(name=name, labels={"bench": "startup"}))
    container = pod.spec.containers.add(name="main", image=IMAGE, command=["sleep", "3600"],
                                        image_pull_policy="IfNotPresent")
    container.resources.requests.update({"cpu": "10m", "memory": "8Mi"})
    pod.spec.termination_grace_period_seconds = 0
    return pod


async def measure(server: str, pods: int, rate: float, timeout: float,
                  pod_networks: Sequence[str] = ()) -> dict[str, float]:
    """Latencies of ``pods`` pods created at ``rate`` per second; with ``pod_networks``, every
    pod must have had its IP from one of them (it ran in the runtime meant)."""
    created: dict[str, float] = {}
    running: dict[str, float] = {}
    pod_ips: dict[str, str] = {}
    async with ApiClient(server) as client:
        start = await client.list(v1.Pod, "default")
        done = asyncio.Event()

        async def watch() -> None:
            async for event in client.watch(v1.Pod, "default",
                                            resource_version=start.resource_version):
                p = event.object
                if p is not None and p.status.pod_ip:
                    pod_ips[p.metadata.name] = p.status.pod_ip
                if p is None or p.status.phase != "Running":
                    continue
                running.setdefault(p.metadata.name, time.perf_counter())
                if len(running) >= pods:
                    done.set()
                    return

        watcher = asyncio.create_task(watch())
        try:
            for i in range(pods):
                name = f"startup-{i:03d}"
                sent = time.perf_counter()
                await client.create(busybox(name))
                created[name] = sent
                await asyncio.sleep(1 / rate)
            try:
                await asyncio.wait_for(done.wait(), timeout)
            except TimeoutError:
                raise TimeoutError(f"{len(running)} of {pods} pods Running after "
                                   f"{timeout}s") from None
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            for name in created:
                await client.delete(v1.Pod, name, grace_period_seconds=0)
        latencies = [running[n] - created[n] for n in created]
    if pod_networks:
        networks = [ipaddress.ip_network(n) for n in pod_networks]
        for name in created:
            address = pod_ips.get(name, "")
            if not address or not any(ipaddress.ip_address(address) in n for n in networks):
                raise RuntimeError(f"pod {name} has IP {address!r}, outside the runtime's pod "
                                   f"networks {', '.join(pod_networks)}")
    return {
        "startup_latency_s_p50": round(percentile(latencies, 50), 3),
        "startup_latency_s_p99": round(percentile(latencies, 99), 3),
        "startup_latency_s_max": round(max(latencies), 3),
        "ratio_p99_to_slo": round(percentile(latencies, 99) / SLO_SECONDS, 3),
    }


def nothing() -> None:
    pass


def measure_cluster(workdir: Path, etcd_endpoint: str, nodes: list[NodeSpec],
                    a: argparse.Namespace, *, before: Callable[[], None] = nothing,
                    after_delete: Callable[[], None] = nothing,
                    pod_networks: Sequence[str] = ()) -> dict[str, float]:
    """Starts a cluster of ``nodes``, measures, and stops it. ``before`` waits for the
    runtimes to be ready once the kubelets run; ``after_delete`` waits for them to be rid of
    the deleted pods before the kubelets stop."""
    cluster = TestCluster(workdir, etcd_endpoint, nodes)
    figures: dict[str, float] = {}
    try:
        cluster.start()
        before()

        async def run() -> None:
            figures.update(await measure(cluster.server, a.pods, a.rate, a.timeout,
                                         pod_networks))

        daemon.run(run())
        after_delete()
    finally:
        cluster.stop()
    return figures


# -- containerd --------------------------------------------------------------------------------


def missing_for_containerd() -> list[str]:
    """What this host lacks for the containerd measurement (empty: it can run here)."""
    missing = missing_containerd_tools()
    for program, package in (("nsenter", "util-linux"), ("ip", "iproute2")):
        if shutil.which(program) is None and not os.access(f"/usr/sbin/{program}", os.X_OK):
            missing.append(f"{program} (Debian's {package})")
    for plugin in CNI_PLUGINS:
        if not os.access(CNI_BIN_DIR / plugin, os.X_OK):
            missing.append(f"{CNI_BIN_DIR / plugin} (Debian's containernetworking-plugins)")
    return missing


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False,
                          timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} exited {done.returncode}: "
                           f"{done.stderr.strip()}")
    return done.stdout


def interface_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", "dev", name], capture_output=True,
                          check=False, timeout=30).returncode == 0


@dataclass(frozen=True)
class BenchNamespace:
    name: str
    """The network namespace (/var/run/netns/NAME)."""
    host_veth: str
    """This namespace's end of the veth into it."""

    @property
    def launcher(self) -> tuple[str, ...]:
        return ("nsenter", f"--net=/var/run/netns/{self.name}")

    @property
    def address(self) -> str:
        """Its end of the veth: where the registry listens."""
        return str(LINK_NETWORK[2])


@contextmanager
def bench_namespace() -> Iterator[BenchNamespace]:
    """A network namespace with loopback up and a veth to this namespace; deleted on exit
    (with every device in it: the veth, the pods' bridges)."""
    for line in ip("-o", "addr", "show").splitlines():
        address = line.split()[3] if len(line.split()) > 3 else ""
        if "/" in address and ipaddress.ip_interface(address).network.overlaps(LINK_NETWORK):
            raise RuntimeError(f"{LINK_NETWORK} is in use here ({line.split()[1]} has "
                               f"{address}); the bench needs it for its veth")
    run = secrets.token_hex(2)
    namespace = BenchNamespace(f"{NAMESPACE_PREFIX}{run}", f"klb{run}-h")
    ip("netns", "add", namespace.name)
    try:
        ip("-n", namespace.name, "link", "set", "lo", "up")
        inside = f"klb{run}-n"
        ip("link", "add", namespace.host_veth, "type", "veth", "peer", "name", inside,
           "netns", namespace.name)
        ip("addr", "add", f"{LINK_NETWORK[1]}/{LINK_NETWORK.prefixlen}", "dev",
           namespace.host_veth)
        ip("link", "set", namespace.host_veth, "up")
        ip("-n", namespace.name, "addr", "add",
           f"{LINK_NETWORK[2]}/{LINK_NETWORK.prefixlen}", "dev", inside)
        ip("-n", namespace.name, "link", "set", inside, "up")
        yield namespace
    finally:
        ip("netns", "del", namespace.name)
        # The veth pair goes with the namespace once the kernel has torn it down.
        TestCluster.wait_for(lambda: not interface_exists(namespace.host_veth),
                             f"{namespace.host_veth} to go with {namespace.name}")


@contextmanager
def namespace_registry(directory: Path, images_dir: Path,
                       namespace: BenchNamespace) -> Iterator[LocalRegistry]:
    """The test images in a registry serving inside ``namespace``, pushed over the veth."""
    images = build_node_images(images_dir)
    registry = LocalRegistry(LocalRegistrySettings(
        directory, host=namespace.address, port=REGISTRY_PORT, launcher=namespace.launcher))
    registry.start()
    try:
        push_images(registry, images)
        yield registry
    finally:
        registry.stop()


def pre_pull(containerd: ContainerdProcess, timeout: float) -> None:
    """Pulls busybox through CRI, as the kubelet would (from the mirror)."""
    with grpc.insecure_channel(containerd.endpoint) as channel:
        images = cri_grpc.ImageServiceStub(channel)  # type: ignore[no-untyped-call]
        images.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=CRI_IMAGE)),
                         timeout=timeout)


def network_ready(containerd: ContainerdProcess) -> bool:
    """CRI's NetworkReady: the kubelet's CNI configuration is loaded."""
    with grpc.insecure_channel(containerd.endpoint) as channel:
        runtime = cri_grpc.RuntimeServiceStub(channel)  # type: ignore[no-untyped-call]
        status: cri.StatusResponse = runtime.Status(cri.StatusRequest(), timeout=5)
        return any(c.type == "NetworkReady" and c.status for c in status.status.conditions)


def sandboxes(containerd: ContainerdProcess) -> int:
    with grpc.insecure_channel(containerd.endpoint) as channel:
        runtime = cri_grpc.RuntimeServiceStub(channel)  # type: ignore[no-untyped-call]
        listed: cri.ListPodSandboxResponse = runtime.ListPodSandbox(
            cri.ListPodSandboxRequest(), timeout=5)
        return len(listed.items)


@dataclass(frozen=True)
class ContainerdNodes:
    nodes: list[NodeSpec]
    containerds: list[ContainerdProcess]
    timeout: float
    """Seconds each wait may take."""

    def wait_network_ready(self) -> None:
        TestCluster.wait_for(lambda: all(network_ready(c) for c in self.containerds),
                             "CRI NetworkReady on every containerd", self.timeout)

    def wait_no_sandboxes(self) -> None:
        TestCluster.wait_for(lambda: all(sandboxes(c) == 0 for c in self.containerds),
                             "the deleted pods' sandboxes to be removed", self.timeout)


def remove_cgroups(name: str) -> None:
    """Removes cgroup ``/NAME`` and everything under it in every hierarchy (the pods' cgroups,
    empty once containerd has stopped)."""
    hierarchies = [CGROUP_FS] if (CGROUP_FS / "cgroup.controllers").exists() else \
        sorted({p.resolve() for p in CGROUP_FS.iterdir() if p.is_dir()})
    failures = []
    for hierarchy in hierarchies:
        top = hierarchy / name
        if not top.is_dir():
            continue
        directories = [top, *(p for p in top.rglob("*") if p.is_dir())]
        for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
            try:
                directory.rmdir()
            except OSError as e:
                failures.append(f"{directory}: {e.strerror}")
    if failures:
        raise RuntimeError("cgroups left behind: " + "; ".join(failures))


@contextmanager
def containerd_nodes(directory: Path, images_dir: Path,
                     timeout: float) -> Iterator[ContainerdNodes]:
    """Two containerd nodes in a namespace of their own, busybox pulled into each.
    Everything goes on exit."""
    with ExitStack() as stack:
        namespace = stack.enter_context(bench_namespace())
        # Last out: the pods' cgroups, once every containerd has stopped.
        stack.callback(remove_cgroups, namespace.name)
        registry = stack.enter_context(
            namespace_registry(directory / "registry", images_dir, namespace))
        containerds = [
            stack.enter_context(node_containerd(
                directory / f"containerd-{i}", images_dir=images_dir, registry=registry,
                launcher=namespace.launcher))
            for i in (1, 2)
        ]
        for containerd in containerds:
            pre_pull(containerd, timeout)
        nodes = [
            NodeSpec(f"node-{i}", address, cpu="8", pod_cidr=cidr, runtime="containerd",
                     container_runtime_endpoint=containerd.endpoint,
                     cni_conf_dir=str(containerd.settings.cni_conf_dir), cni_bridge=bridge,
                     cgroup_root=f"/{namespace.name}/node-{i}")
            for i, (address, cidr, bridge, containerd) in enumerate(
                zip(NODE_ADDRESSES, POD_CIDRS, BRIDGES, containerds, strict=True), start=1)
        ]
        yield ContainerdNodes(nodes, containerds, timeout)


# -- main --------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pods", type=int, default=50)
    p.add_argument("--rate", type=float, default=10.0, help="pods created per second")
    p.add_argument("--runtime", choices=RUNTIME_CHOICES, default=None,
                   help="runtimes to measure (default: both where containerd can run here,"
                        " else process)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds for all pods to be Running (and for each set-up wait)")
    a = p.parse_args()
    logs.configure("info", "pod_startup")  # on stderr: stdout carries only the JSON
    if a.pods < 1:
        p.error(f"--pods: {a.pods} must be 1 or more")
    if a.rate <= 0:
        p.error(f"--rate: {a.rate} must be positive")
    if a.timeout <= 0:
        p.error(f"--timeout: {a.timeout} must be positive")
    missing = missing_for_containerd()
    result: dict[str, object] = {
        "benchmark": "pod_startup", "pods": a.pods, "create_rate_per_s": a.rate,
        "slo_seconds": SLO_SECONDS, "goal_p99_s": GOAL_P99_SECONDS,
    }
    if a.runtime is None:
        a.runtime = "both" if not missing else "process"
        if missing:
            result["note"] = ("containerd not measured: this host lacks "
                              + ", ".join(missing))
    elif a.runtime != "process" and missing:
        p.error(f"--runtime {a.runtime}: containerd cannot run here, missing "
                + ", ".join(missing))
    runtimes = ["process", "containerd"] if a.runtime == "both" else [a.runtime]
    figures: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="kubelite-startup-") as tmp, \
            temporary_etcd() as etcd:
        workdir = Path(tmp)
        for runtime in runtimes:
            if runtime == "process":
                nodes = [NodeSpec(f"node-{i}", address, cpu="8")
                         for i, address in enumerate(NODE_ADDRESSES, start=1)]
                figures[runtime] = dict(measure_cluster(workdir / runtime, etcd.endpoint,
                                                        nodes, a))
                continue
            with containerd_nodes(workdir / "containerd", workdir / "images",
                                  a.timeout) as bench_nodes:
                measured = measure_cluster(workdir / runtime, etcd.endpoint, bench_nodes.nodes,
                                           a, before=bench_nodes.wait_network_ready,
                                           after_delete=bench_nodes.wait_no_sandboxes,
                                           pod_networks=POD_CIDRS)
            figures[runtime] = {
                **measured,
                "image": f"{IMAGE} ({CRI_IMAGE}, imagePullPolicy IfNotPresent)",
                "image_pre_pulled": True,
                "note": ("busybox pulled from a local registry into each containerd before "
                         "measuring: the figures are pod startup, not image pull"),
            }
    result["runtimes"] = figures
    if "process" in figures and "containerd" in figures:
        process_p99 = figures["process"]["startup_latency_s_p99"]
        containerd_p99 = figures["containerd"]["startup_latency_s_p99"]
        assert isinstance(process_p99, float) and isinstance(containerd_p99, float)
        result["ratio_containerd_p99_to_process_p99"] = (
            round(containerd_p99 / process_p99, 3) if process_p99 > 0 else None)
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
