"""`kubelite up --runtime containerd`'s own parts: a containerd per node (its own root, state,
socket and CNI conf dir under the node's directory, the pause image preloaded) and, with
--local-registry, a registry on 127.0.0.1 holding the project's images under the names
manifests use, which every containerd pulls docker.io's images from.

Each is supervised like the other components: it has a name, a log and a pid, starts (and is
ready) in start(), and leaves no process behind after stop().
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from kubelite.containerd_process import ContainerdProcess, ContainerdSettings
from kubelite.node_images import build_node_images, import_node_images, push_images
from kubelite.registry import LocalRegistry, LocalRegistrySettings

CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
"""The CNI plugins each node's pod network uses (Debian's containernetworking-plugins)."""
CNI_BIN_DIR = Path("/usr/lib/cni")


def missing_for_containerd(local_registry: bool) -> list[str]:
    """What this machine lacks to run containerd nodes (and a local registry), each with the
    Debian package that brings it; empty when nothing is missing."""
    missing = [] if os.geteuid() == 0 else [
        "root (containerd, runc and the CNI plugins make namespaces, cgroups and bridges)"]
    programs = {"containerd": "containerd", "ctr": "containerd", "runc": "runc",
                "ip": "iproute2", "iptables": "iptables"}
    if local_registry:
        programs |= {"docker-registry": "docker-registry", "skopeo": "skopeo",
                     "umoci": "umoci"}
    for program, package in programs.items():
        if shutil.which(program) is None and not os.access(f"/usr/sbin/{program}", os.X_OK):
            missing.append(f"{program} (apt-get install {package})")
    for plugin in CNI_PLUGINS:
        if not os.access(CNI_BIN_DIR / plugin, os.X_OK):
            missing.append(f"{CNI_BIN_DIR / plugin} (apt-get install containernetworking-plugins)")
    if not os.access("/bin/busybox", os.X_OK):
        missing.append("/bin/busybox, the images' base (apt-get install busybox-static)")
    return missing


SOCKET_DIR = Path("/run/kubelite")
"""Where node sockets go when the node's directory is too deep for a unix socket's path."""
MAX_SOCKET_PATH = 100
"""Bytes a socket path may have, leaving room for containerd's ``.ttrpc`` twin (108 in all)."""


def socket_path(directory: Path) -> Path:
    """containerd's socket: in the node's directory, or under SOCKET_DIR by a hash of it when
    that path would be too long for a unix socket."""
    beside = Path(directory).absolute() / "containerd.sock"
    if len(str(beside).encode()) <= MAX_SOCKET_PATH:
        return beside
    digest = hashlib.sha256(str(beside).encode()).hexdigest()[:16]
    return SOCKET_DIR / digest / "containerd.sock"


class _Component:
    """What ContainerdNode and RegistryComponent share as supervised components: a log file,
    and a return code that says only whether the process still runs."""

    log_path: Path

    def running(self) -> bool:
        raise NotImplementedError

    @property
    def returncode(self) -> int | None:
        return None if self.running() else 1

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class ContainerdNode(_Component):
    """One node's containerd as a supervised component."""

    def __init__(self, name: str, directory: Path, images_dir: Path,
                 registry_url: str | None) -> None:
        self.name = name
        mirrors = {"docker.io": [registry_url]} if registry_url else {}
        self.settings = ContainerdSettings.under(
            directory, registry_mirrors=mirrors, socket=socket_path(directory))
        self.containerd = ContainerdProcess(self.settings)
        self.images_dir = images_dir
        self.log_path = Path(self.settings.log_path)

    @property
    def endpoint(self) -> str:
        return self.containerd.endpoint

    @property
    def cni_conf_dir(self) -> str:
        return str(self.settings.cni_conf_dir)

    @property
    def pid(self) -> int | None:
        return self.containerd.pid

    def start(self) -> None:
        build_node_images(self.images_dir)  # cached after the first node
        self.containerd.start()
        # The sandbox image (and kubelite's own images) come with the node: pods never wait for
        # (or fail on) their pull.
        import_node_images(self.containerd, self.images_dir)

    def running(self) -> bool:
        return self.containerd.running()

    def stop(self, timeout: float = 15.0) -> int | None:
        self.containerd.stop()
        return 0


class RegistryComponent(_Component):
    """The local registry as a supervised component: started, then filled with the images."""

    name = "registry"

    def __init__(self, directory: Path, images_dir: Path, port: int) -> None:
        self.registry = LocalRegistry(LocalRegistrySettings(directory, port=port))
        self.images_dir = images_dir
        self.log_path = self.registry.log_path

    @property
    def url(self) -> str:
        return self.registry.url

    @property
    def pid(self) -> int | None:
        return self.registry.pid

    def start(self) -> None:
        images = build_node_images(self.images_dir)
        self.registry.start()
        push_images(self.registry, images)

    def running(self) -> bool:
        return self.registry.running()

    def stop(self, timeout: float = 15.0) -> int | None:
        self.registry.stop()
        return 0
