"""The docker-compose stack run for real (deploy/), as a user runs it but without a network.

A dockerd of the test's own builds the image offline: its base is a Debian root made by
mmdebstrap from this host's Debian sources (cached, keyed by what it holds) and imported, and
kubelite's dependencies are wheels built on this host (cached, pinned to this venv's versions).
First the learning-only insecure override, up to 3 Ready nodes and down again, for its time
beside the secured one. Then `docker-compose up` of the secured stack and 3 Ready nodes (the
time to them is reported), each joined with the bootstrap token through CertificateSigningRequests the
controller manager approved; klctl on the host works with the admin kubeconfig the stack
exports and is Unauthorized without credentials; cluster DNS answers from pods that read the
API with their ServiceAccount's token; deploy/examples applied and its NodePort Service
reached from the host with exact round robin over every pod, the API server's and etcd's
containers restarted with no object lost, a fourth node, and `down -v` leaving no container,
network or volume. dockerd is stopped and its files removed, also when the test fails.

The engine changes nothing of the host's network: no default bridge, no iptables rules (the
ports the stack publishes go through docker-proxy), no IP forwarding; its address pool is its
own block. It skips only where dockerd cannot start.
"""

from __future__ import annotations

import base64
import collections
import ctypes
import hashlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from kubelite.client.config import load_kubeconfig, write_kubeconfig
from kubelite.pki import csr_subject
from kubelite.processes import ManagedProcess
from kubelite.testing.cluster import TestCluster, script
from kubelite.testing.ports import free_port
from tests.e2e.conftest import E2EReport

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
INSECURE = ROOT / "deploy" / "docker-compose.insecure.yml"
"""The learning-only override: brought up first, for the time to 3 Ready nodes without
security in the same run."""
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
EXAMPLES = ROOT / "deploy" / "examples"

CACHE_DIR = Path(os.environ.get("KUBELITE_COMPOSE_CACHE", "/var/cache/kubelite/compose"))
"""Where the Debian base tarball and the dependency wheels are kept between runs."""
BASE_PACKAGES = ("python3", "python3-venv")
"""What deploy/Dockerfile takes from its base; the base also holds every package the
Dockerfile would install, so its build never needs apt."""
BASE_IMAGE = "kubelite-base:e2e"
IMAGE = "kubelite:latest"
"""The image every service of the compose file runs."""
PROJECT = "kle2e"
"""The compose project: containers are kle2e_<service>_<n>, nodes kle2e-node-<n>."""
ADDRESS_POOL = "10.201.0.0/16"
"""The engine's networks' block (/24 each), apart from the other tests' test networks."""
NODE_PORT_COUNT = 8
"""How many NodePorts the stack serves and publishes (the API server's range)."""

ENGINE_START_TIMEOUT = 60.0
ENGINE_STOP_TIMEOUT = 30.0
BUILD_TIMEOUT = 600.0
COMPOSE_TIMEOUT = 180.0
NODES_READY_TIMEOUT = 120.0
PODS_READY_TIMEOUT = 90.0
RESTART_TIMEOUT = 90.0

# ---------------------------------------------------------------------------------------------
# The engine


class EngineUnavailable(Exception):
    """dockerd did not start or did not answer."""


def docker_client() -> str:
    """The docker CLI: the docker.io package's own (it matches its dockerd; a newer one elsewhere
    on PATH wants the buildx plugin for `build`)."""
    packaged = Path("/usr/bin/docker")
    found = str(packaged) if packaged.exists() else shutil.which("docker")
    if found is None:
        raise AssertionError("the docker CLI is not installed (Debian package docker.io)")
    return found


class DockerEngine:
    """A dockerd of the test's own: data, exec root, socket, key and cgroup parent under one
    directory, its own managed containerd, and no change to the host's network."""

    def __init__(self, root: Path, dockerd: str) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self.cgroup_parent = f"kubelite-e2e-{root.name}"
        config = root / "daemon.json"
        # Its identity key would otherwise be written to /etc/docker.
        config.write_text(json.dumps({"deprecated-key-path": str(root / "key.json")}))
        self.process = ManagedProcess("dockerd", [
            dockerd, "--config-file", str(config),
            "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
            "--pidfile", str(root / "docker.pid"), "-H", f"unix://{self.socket}",
            "--bridge=none", "--iptables=false", "--ip-forward=false", "--ip-masq=false",
            "--default-address-pool", f"base={ADDRESS_POOL},size=24",
            "--cgroup-parent", self.cgroup_parent,
        ], root / "dockerd.log")
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}",
                    "DOCKER_CONFIG": str(root / "client"), "DOCKER_BUILDKIT": "0"}

    def start(self) -> None:
        self.process.start()
        deadline = time.monotonic() + ENGINE_START_TIMEOUT
        while time.monotonic() < deadline:
            if not self.process.running():
                raise EngineUnavailable(
                    f"dockerd exited with {self.process.returncode}:\n{self.process.tail(15)}")
            if self.answers():
                return
            time.sleep(0.2)
        raise EngineUnavailable(
            f"dockerd did not answer in {ENGINE_START_TIMEOUT}s:\n{self.process.tail(15)}")

    def answers(self) -> bool:
        result = subprocess.run([docker_client(), "version", "--format", "{{.Server.Version}}"],
                                env=self.env, capture_output=True, text=True, timeout=10,
                                check=False)
        return result.returncode == 0

    def docker(self, *args: str, timeout: float = COMPOSE_TIMEOUT) -> str:
        result = subprocess.run([docker_client(), *args], env=self.env, capture_output=True,
                                text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {result.stderr or result.stdout}")
        return result.stdout

    def leftovers(self) -> list[str]:
        """Containers, networks of its own and volumes the engine still has."""
        found = [f"container {name}" for name in
                 self.docker("ps", "-a", "--format", "{{.Names}}").split()]
        found += [f"network {name}" for name in
                  self.docker("network", "ls", "--filter", "type=custom",
                              "--format", "{{.Name}}").split()]
        found += [f"volume {name}" for name in
                  self.docker("volume", "ls", "--format", "{{.Name}}").split()]
        return found

    def remove_everything(self) -> None:
        """What a failed test left: every container (with its volumes), network and volume."""
        if not self.process.running():
            return
        containers = self.docker("ps", "-aq").split()
        if containers:
            self.docker("rm", "-f", "-v", *containers)
        self.docker("network", "prune", "-f")
        self.docker("volume", "prune", "-f")

    def stop(self) -> list[str]:
        """Stops dockerd (it stops its containerd); returns the processes, mounts and cgroups
        that were still left of it, which are then killed, unmounted and removed."""
        self.process.stop(ENGINE_STOP_TIMEOUT)
        left: list[str] = []
        for pid, argv in processes_mentioning(str(self.root)):
            left.append(f"process {pid}: {' '.join(argv)}")
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        for point in sorted(mounts_under(self.root), reverse=True):
            left.append(f"mount {point}")
            unmount(point)
        cgroups = Path("/sys/fs/cgroup")
        # cgroup v1: under each controller's hierarchy; v2: under the one hierarchy.
        for hierarchy in (cgroups, *(path for path in cgroups.iterdir() if path.is_dir())):
            parent = hierarchy / self.cgroup_parent
            if parent.is_dir():
                # Empty once its containers are gone; docker leaves the parent itself.
                for directory in sorted(parent.glob("**/"), key=lambda p: -len(p.parts)):
                    try:
                        directory.rmdir()
                    except OSError as e:
                        left.append(f"cgroup {directory}: {e.strerror}")
        return left


def processes_mentioning(text: str) -> list[tuple[int, list[str]]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(text in arg for arg in argv):
            found.append((int(entry.name), [arg for arg in argv if arg]))
    return found


def mounts_under(root: Path) -> list[str]:
    prefix = str(root) + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix):
            points.append(point)
    return points


def unmount(point: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    mnt_detach = 2
    if libc.umount2(point.encode(), mnt_detach) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"umount {point}: {os.strerror(errno)}")


@pytest.fixture
def engine() -> Iterator[DockerEngine]:
    if os.geteuid() != 0:
        pytest.skip("dockerd cannot start: it needs root")
    dockerd = shutil.which("dockerd") or shutil.which("dockerd", path="/usr/sbin:/usr/bin")
    if dockerd is None:
        pytest.skip("dockerd cannot start: it is not installed (Debian package docker.io)")
    # Short: unix socket paths under it must stay within 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="kl-docker-", dir="/tmp"))
    engine = DockerEngine(root, dockerd)
    try:
        engine.start()
    except EngineUnavailable as e:
        engine.stop()
        shutil.rmtree(root)
        pytest.skip(f"dockerd cannot start here: {e}")
    try:
        yield engine
    finally:
        try:
            engine.remove_everything()
        finally:
            left = engine.stop()
            shutil.rmtree(root)
    assert left == [], f"dockerd left behind: {left}"


# ---------------------------------------------------------------------------------------------
# The image, offline


def dockerfile_packages() -> list[str]:
    """The Debian packages deploy/Dockerfile installs when its base lacks them."""
    match = re.search(r"for package in ([^;]+); do", DOCKERFILE.read_text())
    assert match is not None, "deploy/Dockerfile names no packages (for package in ...; do)"
    return match.group(1).split()


def debian_suite() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    raise AssertionError("/etc/os-release names no VERSION_CODENAME: not a Debian host")


def apt_sources(suite: str) -> list[Path]:
    """This host's apt source files of ``suite`` (the Debian archive it installs from)."""
    candidates = [Path("/etc/apt/sources.list"),
                  *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    found = [path for path in candidates
             if path.suffix in (".list", ".sources") and path.is_file()
             and suite in path.read_text()]
    assert found, f"no apt sources of {suite} in /etc/apt to build the base image from"
    return found


def base_tarball(cache: Path) -> tuple[Path, bool]:
    """A Debian root holding Python and the Dockerfile's packages, as a tarball for `docker
    import`; built with mmdebstrap when the cache has none for these packages and sources.
    Returns it and whether it was built now."""
    suite = debian_suite()
    packages = sorted({*BASE_PACKAGES, *dockerfile_packages()})
    sources = apt_sources(suite)
    key = hashlib.sha256(json.dumps({
        "suite": suite, "packages": packages,
        "sources": [path.read_text() for path in sources]}).encode()).hexdigest()[:16]
    tarball = cache / f"debian-{suite}-{key}.tar"
    if tarball.exists():
        return tarball, False
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise AssertionError("mmdebstrap is not installed (Debian package mmdebstrap; "
                             "./dev test installs it)")
    partial = cache / f".partial-{os.getpid()}.tar"
    result = subprocess.run([
        mmdebstrap, "--variant=apt", "--include=" + ",".join(packages),
        # The host's archive may be a snapshot whose Release files are past Valid-Until.
        '--aptopt=Acquire::Check-Valid-Until "false"',
        "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        suite, str(partial), *map(str, sources),
    ], capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise AssertionError(f"mmdebstrap failed:\n{result.stderr[-3000:]}")
    for old in cache.glob(f"debian-{suite}-*.tar"):
        old.unlink()  # one base per cache: the packages or sources changed
    os.replace(partial, tarball)
    return tarball, True


def runtime_requirements() -> list[str]:
    """kubelite's dependencies (and setuptools, to build it), each pinned to the version this
    venv runs, with their own dependencies, as pip requirements."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = [Requirement(text) for text in
              (*pyproject["project"]["dependencies"], *pyproject["build-system"]["requires"])]
    found: dict[str, str] = {}
    while wanted:
        requirement = wanted.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = f"{name}{requirement.specifier}"  # not here: pip picks one
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            found[name] = f"{name}{requirement.specifier}"
            continue
        found[name] = f"{name}=={version}"
        wanted += [Requirement(text) for text in metadata.requires(name) or []]
    return sorted(found.values())


def dependency_wheels(cache: Path) -> tuple[Path, bool]:
    """A directory of wheels of runtime_requirements(), built by pip on this host when the
    cache has none for them. Returns it and whether it was built now."""
    requirements = runtime_requirements()
    key = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:16]
    directory = cache / f"wheels-{key}"
    if directory.is_dir():
        return directory, False
    partial = Path(tempfile.mkdtemp(prefix=".partial-wheels-", dir=cache))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
         "-w", str(partial), *requirements],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
    if result.returncode != 0:
        shutil.rmtree(partial)
        raise AssertionError(f"pip wheel {' '.join(requirements)} failed:\n{result.stderr}")
    for old in cache.glob("wheels-*"):
        shutil.rmtree(old)
    os.replace(partial, directory)
    return directory, True


def build_context(directory: Path, wheels: Path) -> Path:
    """The repository's files the Dockerfile copies, with ``wheels`` in deploy/wheels."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [pattern.rstrip("*") for pattern in
                pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    directory.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, directory / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.whl", ".kubelite")
    for name in (*packages, "deploy"):
        shutil.copytree(ROOT / name, directory / name, ignore=ignore)
    for wheel in wheels.glob("*.whl"):
        shutil.copy2(wheel, directory / "deploy" / "wheels" / wheel.name)
    return directory


def cache_dir() -> Path:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    return CACHE_DIR


# ---------------------------------------------------------------------------------------------
# The stack


def free_port_range(count: int) -> tuple[int, int]:
    """``count`` consecutive free ports on 127.0.0.1 in the NodePort range."""
    for _ in range(100):
        first = random.randrange(30000, 32768 - count)
        if all(port_free(port) for port in range(first, first + count)):
            return first, first + count - 1
    raise AssertionError(f"no {count} consecutive free ports in 30000-32767")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Stack:
    """The compose project on the test's engine, with its host ports and klctl's config."""

    engine: DockerEngine
    client_dir: Path
    api_port: int
    node_ports: tuple[int, int]
    files: tuple[Path, ...] = (COMPOSE,)
    """The compose files, merged in order."""

    @property
    def env(self) -> dict[str, str]:
        env = {key: value for key, value in self.engine.env.items()
               if key != "KUBELITE_SERVER" and not key.startswith("COMPOSE_")}
        env.update(KUBELITE_API_PORT=str(self.api_port),
                   KUBELITE_NODE_PORTS="{}-{}".format(*self.node_ports),
                   KUBELITE_CLIENT_DIR=str(self.client_dir),
                   # klctl finds the API server through the config the stack exports.
                   KUBELITE_CONFIG=str(self.client_dir / "config"))
        return env

    def compose(self, *args: str, timeout: float = COMPOSE_TIMEOUT) -> str:
        tool = shutil.which("docker-compose")
        if tool is None:
            raise AssertionError("docker-compose is not installed (Debian package "
                                 "docker-compose; ./dev test installs it)")
        files = [arg for path in self.files for arg in ("-f", str(path))]
        result = subprocess.run([tool, "-p", PROJECT, *files, *args], env=self.env,
                                capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)}:\n{result.stderr}")
        return result.stdout

    def container(self, service: str) -> str:
        container = self.compose("ps", "-q", service).split()[0]
        return container

    def klctl(self, *args: str) -> Any:
        """klctl's JSON output (``-o json`` is added)."""
        result = self.klctl_as(self.env, *args, "-o", "json")
        if result.returncode != 0:
            raise AssertionError(f"klctl {' '.join(args)}: {result.stderr}")
        return json.loads(result.stdout)

    def klctl_as(self, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([script("klctl"), *args], env=env, capture_output=True,
                              text=True, timeout=30, check=False)

    def exec(self, service: str, *argv: str) -> str:
        """A command's output in the service's (first) container."""
        return self.engine.docker("exec", self.container(service), *argv, timeout=60)

    def apply(self, path: Path) -> None:
        result = subprocess.run([script("klctl"), "apply", "-f", str(path)], env=self.env,
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr

    def logs(self) -> str:
        try:
            return self.compose("logs", "--no-color", "--tail", "40", timeout=60)
        except (AssertionError, subprocess.TimeoutExpired) as e:
            return f"(no logs: {e})"


def ready(item: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in item.get("status", {}).get("conditions", []))


def ready_nodes(stack: Stack) -> list[str]:
    return sorted(n["metadata"]["name"] for n in stack.klctl("get", "nodes")["items"]
                  if ready(n))


def ready_pods(stack: Stack, *args: str) -> list[str]:
    return sorted(p["metadata"]["name"] for p in stack.klctl("get", "pods", *args)["items"]
                  if ready(p))


def names_through(port: int, count: int) -> collections.Counter[str]:
    """The pods that answer ``count`` requests, each on a new connection, to 127.0.0.1:port."""
    names: collections.Counter[str] = collections.Counter()
    for _ in range(count):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            names[response.read().decode().strip()] += 1
    return names


def round_robin(port: int, pods: list[str], rounds: int = 3) -> bool:
    """Every pod answers exactly ``rounds`` of ``rounds`` * len(pods) requests."""
    counts = names_through(port, rounds * len(pods))
    return sorted(counts) == pods and set(counts.values()) == {rounds}


def joined_through_csrs(stack: Stack, nodes: list[str]) -> dict[str, list[str]]:
    """Each node's approved and issued CertificateSigningRequests: "client" (asked with a
    bootstrap token for system:node:N) and "serving" (asked by system:node:N itself)."""
    found: dict[str, list[str]] = {node: [] for node in nodes}
    for csr in stack.klctl("get", "csr")["items"]:
        status = csr.get("status", {})
        approved = any(c["type"] == "Approved" and c["status"] == "True"
                       for c in status.get("conditions", []))
        if not approved or not status.get("certificate"):
            continue
        spec = csr["spec"]
        subject = csr_subject(base64.b64decode(spec["request"])).common_name
        node = subject.removeprefix("system:node:")
        kinds = {("kubernetes.io/kube-apiserver-client-kubelet", "system:bootstrap:"): "client",
                 ("kubernetes.io/kubelet-serving", subject): "serving"}
        for (signer, requester), kind in kinds.items():
            if spec["signerName"] == signer and spec["username"].startswith(requester) \
                    and node in found:
                found[node].append(kind)
    return {node: sorted(kinds) for node, kinds in found.items()}


def no_credentials_refused(stack: Stack, tmp_path: Path) -> None:
    """klctl with the cluster's CA but no identity is Unauthorized; plaintext gets nowhere."""
    admin = load_kubeconfig(stack.client_dir / "config")
    assert admin.ca_pem is not None
    anonymous = write_kubeconfig(tmp_path / "anonymous.conf", cluster="kle2e",
                                 server=admin.server, ca_pem=admin.ca_pem, user="nobody")
    result = stack.klctl_as({**stack.env, "KUBELITE_CONFIG": str(anonymous)}, "get", "pods")
    assert result.returncode != 0 and "Unauthorized" in result.stderr, result
    plaintext = tmp_path / "plaintext.json"
    plaintext.write_text(json.dumps({"server": admin.server}))
    result = stack.klctl_as({**stack.env, "KUBELITE_CONFIG": str(plaintext)},
                            "--request-timeout", "5", "get", "pods")
    assert result.returncode != 0 and "NAME" not in result.stdout, result


def resolves(stack: Stack, name: str, address: str) -> bool:
    """Whether the cluster DNS Service, asked from a node, answers ``name`` with ``address``."""
    try:
        answer = stack.exec("node", "busybox", "nslookup", name, DNS_SERVICE_IP)
    except AssertionError:
        return False
    return address in answer.split("Name:", 1)[-1]


DNS_SERVICE_IP = "127.96.0.10"
"""The kube-dns Service's ClusterIP (deploy/addons/dns.yaml)."""
DURABLE_CONFIGMAPS = 30
"""ConfigMaps written before the restarts, beside the examples' and the addons' objects."""
KINDS = "namespaces,nodes,configmaps,services,endpoints,deployments,replicasets,pods"


def objects(stack: Stack) -> dict[str, str]:
    """Every object of KINDS: uid -> kind namespace/name."""
    return {item["metadata"]["uid"]: "{} {}/{}".format(
        item["kind"], item["metadata"].get("namespace", ""), item["metadata"]["name"])
        for item in stack.klctl("get", KINDS, "-A")["items"]}


def configmap_versions(stack: Stack) -> dict[str, str]:
    """The durable ConfigMaps: name -> resourceVersion (unchanged unless written)."""
    return {item["metadata"]["name"]: item["metadata"]["resourceVersion"]
            for item in stack.klctl("get", "configmaps", "-l", "e2e=durable")["items"]}


def restart_and_compare(stack: Stack, service: str, before: dict[str, str],
                        versions: dict[str, str]) -> float:
    """`docker restart`s the service's container; the API answers again with every object of
    ``before`` and the durable ConfigMaps unchanged. Returns the seconds until it answered."""
    started = time.monotonic()
    stack.engine.docker("restart", stack.container(service))
    TestCluster.wait_for(lambda: configmap_versions(stack) == versions,
                         f"the API back with the ConfigMaps after restarting {service}",
                         timeout=RESTART_TIMEOUT, interval=0.5)
    answered = time.monotonic() - started
    after = objects(stack)
    lost = sorted(name for uid, name in before.items() if uid not in after)
    assert lost == [], f"objects lost restarting {service}: {lost}"
    return answered


def insecure_up(engine: DockerEngine, client_dir: Path) -> float:
    """Brings the learning-only insecure stack up and down again; returns the seconds to
    3 Ready nodes. klctl reaches it with the plaintext config it exports."""
    stack = Stack(engine, client_dir, free_port(), free_port_range(NODE_PORT_COUNT),
                  files=(COMPOSE, INSECURE))
    try:
        started = time.monotonic()
        stack.compose("up", "-d", "--no-build")
        TestCluster.wait_for(lambda: len(ready_nodes(stack)) == 3, "3 Ready nodes (insecure)",
                             timeout=NODES_READY_TIMEOUT, interval=0.5)
        seconds = time.monotonic() - started
        assert json.loads((client_dir / "config").read_text()) == {
            "server": f"127.0.0.1:{stack.api_port}"}
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.compose("down", "-v", "--remove-orphans")
    assert stack.engine.leftovers() == []
    return seconds


def test_the_compose_stack_runs_a_cluster(engine: DockerEngine, tmp_path: Path,
                                          e2e_report: E2EReport) -> None:
    cache = cache_dir()
    began = time.monotonic()
    base, base_built = base_tarball(cache)
    wheels, wheels_built = dependency_wheels(cache)
    engine.docker("import", str(base), BASE_IMAGE, timeout=BUILD_TIMEOUT)
    context = build_context(tmp_path / "context", wheels)
    engine.docker("build", "-q", "-f", str(context / "deploy" / "Dockerfile"), "--build-arg",
                  f"BASE_IMAGE={BASE_IMAGE}", "--build-arg", "PIP_OPTIONS=--no-index",
                  "-t", IMAGE, str(context), timeout=BUILD_TIMEOUT)
    image_seconds = time.monotonic() - began

    insecure_seconds = insecure_up(engine, tmp_path / "insecure")

    client_dir = tmp_path / "client"
    stack = Stack(engine, client_dir, free_port(), free_port_range(NODE_PORT_COUNT))
    down = False
    try:
        started = time.monotonic()
        stack.compose("up", "-d", "--no-build")
        TestCluster.wait_for(lambda: len(ready_nodes(stack)) == 3, "3 Ready nodes",
                             timeout=NODES_READY_TIMEOUT, interval=0.5)
        up_seconds = time.monotonic() - started
        # The stack exported the admin's kubeconfig for the host (the API server on the
        # published loopback port); klctl found the cluster through it. Without credentials
        # it is Unauthorized.
        admin = load_kubeconfig(client_dir / "config")
        assert admin.server == f"127.0.0.1:{stack.api_port}"
        assert admin.cert_pem is not None and admin.ca_pem is not None
        no_credentials_refused(stack, tmp_path)
        nodes = [f"{PROJECT}-node-{n}" for n in (1, 2, 3)]
        assert ready_nodes(stack) == nodes
        # Each node joined with the bootstrap token: its client certificate and then its
        # serving certificate were asked for, approved and issued.
        TestCluster.wait_for(
            lambda: joined_through_csrs(stack, nodes) == {n: ["client", "serving"]
                                                          for n in nodes},
            "each node's client and serving CSRs approved", timeout=30, interval=0.5)
        # The addons service applied cluster DNS; its pods run on the nodes.
        TestCluster.wait_for(lambda: len(ready_pods(stack, "-n", "kube-system")) == 2,
                             "2 Ready kube-dns pods", timeout=PODS_READY_TIMEOUT, interval=0.5)

        stack.apply(EXAMPLES)
        TestCluster.wait_for(lambda: len(ready_pods(stack, "-l", "app=web")) == 3,
                             "the example's 3 Ready pods", timeout=PODS_READY_TIMEOUT,
                             interval=0.5)
        pods = ready_pods(stack, "-l", "app=web")
        web = stack.klctl("get", "service", "web")
        [port] = web["spec"]["ports"]
        node_port = int(port["nodePort"])
        # Cluster DNS, whose pods list Services with their ServiceAccount's token, answers.
        TestCluster.wait_for(
            lambda: resolves(stack, "web.default.svc.cluster.local", web["spec"]["clusterIP"]),
            "web.default.svc.cluster.local resolved by cluster DNS", timeout=30, interval=0.5)
        assert stack.node_ports[0] <= node_port <= stack.node_ports[1]
        TestCluster.wait_for(lambda: round_robin(node_port, pods),
                             f"round robin over {pods} on 127.0.0.1:{node_port}",
                             timeout=30, interval=0.5)

        durable = tmp_path / "durable.yaml"
        durable.write_text("".join(
            f"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: durable-{n}\n"
            f"  labels: {{e2e: durable}}\ndata:\n  n: \"{n}\"\n"
            for n in range(DURABLE_CONFIGMAPS)))
        stack.apply(durable)
        before = objects(stack)
        versions = configmap_versions(stack)
        assert len(versions) == DURABLE_CONFIGMAPS
        restarts = {service: restart_and_compare(stack, service, before, versions)
                    for service in ("apiserver", "etcd")}
        # The cluster works on: the nodes stay Ready and the Service still balances.
        TestCluster.wait_for(lambda: len(ready_nodes(stack)) == 3, "3 Ready nodes again",
                             timeout=NODES_READY_TIMEOUT, interval=0.5)
        TestCluster.wait_for(lambda: round_robin(node_port, pods),
                             "round robin after the restarts", timeout=60, interval=0.5)

        scaled = time.monotonic()
        stack.compose("up", "-d", "--no-build", "--scale", "node=4")
        TestCluster.wait_for(lambda: len(ready_nodes(stack)) == 4, "4 Ready nodes",
                             timeout=NODES_READY_TIMEOUT, interval=0.5)
        scale_seconds = time.monotonic() - scaled
        assert ready_nodes(stack) == [f"{PROJECT}-node-{n}" for n in (1, 2, 3, 4)]

        stopping = time.monotonic()
        down = True
        stack.compose("down", "-v", "--remove-orphans")
        down_seconds = time.monotonic() - stopping
        assert engine.leftovers() == []
    except BaseException:
        print(stack.logs())
        raise
    finally:
        if not down:
            try:
                stack.compose("down", "-v", "--remove-orphans")
            except (AssertionError, subprocess.TimeoutExpired) as e:
                # The engine fixture removes what is left; the test's own error stands.
                print(f"docker-compose down failed: {e}")

    cached = "; ".join(f"{what} {'built' if built else 'cached'}" for what, built in
                       (("base", base_built), ("wheels", wheels_built)))
    e2e_report.add(
        f"docker-compose: up -> 3 Ready nodes {up_seconds:.1f}s secured"
        f" ({insecure_seconds:.1f}s insecure, the same run);"
        f" image {image_seconds:.1f}s "
        f"({cached}); objects kept over restarts of "
        + ", ".join(f"{s} ({t:.1f}s to answer)" for s, t in restarts.items())
        + f": {len(before)}; scale to 4 Ready {scale_seconds:.1f}s; down {down_seconds:.1f}s")
