"""The images a containerd node of kubelite starts with, and a registry's worth of them.

Built on the node without any registry (kubelite/oci_images.py): from its busybox-static, and
from its own Python interpreter and kubelite for the Python images. The pause image (containerd's
sandbox image) and kubelite's Python servers (kubelite/agnhost, kubelite/dns) are imported into
each containerd, so pods start without pulling them; busybox and the test server can be pushed
into a local registry under the names manifests use (``busybox``, ``nginx``), for clusters
without access to Docker Hub.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kubelite.containerd_process import DEFAULT_SANDBOX_IMAGE, ContainerdProcess
from kubelite.oci_images import (
    AGNHOST,
    BUSYBOX,
    DNS,
    PAUSE,
    PYTHON,
    PYTHON_IMAGES_TAG,
    TESTSERVER,
    OciImage,
    build_all_images,
    build_python_images,
    export_archive,
)
from kubelite.registry import LocalRegistry

REGISTRY_IMAGES: Mapping[str, str] = {
    "library/busybox": BUSYBOX,
    "library/nginx": TESTSERVER,
    "kubelite/testserver": TESTSERVER,
    "kubelite/pause": PAUSE,
    "kubelite/python": PYTHON,
    "kubelite/agnhost": AGNHOST,
    "kubelite/dns": DNS,
}
"""Repository in a local registry -> the built image pushed there, under the image's tag
(``latest``; :data:`PYTHON_IMAGES_TAG` for the Python images). The test server stands in for
nginx: it serves HTTP on port 80 as nginx does."""
PAUSE_ARCHIVE = "pause.tar"
"""The pause image's archive, beside the built images, for ``ctr images import``."""
AGNHOST_IMAGE = f"docker.io/kubelite/agnhost:{PYTHON_IMAGES_TAG}"
"""kubelite's test server on containerd (``kubelite/agnhost:1.0`` in a manifest)."""
DNS_IMAGE = f"docker.io/kubelite/dns:{PYTHON_IMAGES_TAG}"
"""The cluster DNS server on containerd (``kubelite/dns:1.0`` in a manifest)."""
NODE_ARCHIVES: Mapping[str, tuple[str, str]] = {
    PAUSE_ARCHIVE: (PAUSE, DEFAULT_SANDBOX_IMAGE),
    "agnhost.tar": (AGNHOST, AGNHOST_IMAGE),
    "dns.tar": (DNS, DNS_IMAGE),
}
"""Archive beside the built images -> the image in it and the name containerd gives it: what
each containerd imports when it starts."""


def build_node_images(images_dir: Path) -> dict[str, OciImage]:
    """busybox, pause, testserver and the Python images in ``images_dir`` (cached there), and
    the archives of :data:`NODE_ARCHIVES`."""
    images = build_all_images(images_dir)
    images.update(build_python_images(images_dir))
    for archive, (image, name) in NODE_ARCHIVES.items():
        export_archive(images[image], images_dir / archive, name=name)
    return images


def node_archives(images_dir: Path) -> list[Path]:
    """The archives each containerd imports when it starts (built by :func:`build_node_images`):
    the sandbox image first."""
    return [images_dir / archive for archive in NODE_ARCHIVES]


def import_node_images(containerd: ContainerdProcess, images_dir: Path) -> None:
    """Imports :func:`node_archives` into a started containerd. Only the sandbox image is
    unpacked at once (every pod needs it); the Python images (100 MB each unpacked, mostly
    shared) are unpacked by their first container, so a node that runs none pays nothing."""
    for archive in node_archives(images_dir):
        containerd.import_image(archive, unpack=archive.name == PAUSE_ARCHIVE)


def push_images(registry: LocalRegistry, images: Mapping[str, OciImage]) -> dict[str, str]:
    """Pushes each of :data:`REGISTRY_IMAGES`; repository -> the reference it has there."""
    return {
        repository: registry.push(images[name].layout, images[name].tag, repository)
        for repository, name in REGISTRY_IMAGES.items()
    }
