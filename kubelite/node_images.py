"""The images a containerd node of kubelite starts with, and a registry's worth of them.

Built from the node's busybox-static (kubelite/oci_images.py), without any registry: the pause
image is imported into each containerd as its sandbox image, so pods start without pulling
it; busybox and the test server can be pushed into a local registry under the names manifests
use (``busybox``, ``nginx``), for clusters without access to Docker Hub.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kubelite.containerd_process import DEFAULT_SANDBOX_IMAGE
from kubelite.oci_images import (
    BUSYBOX,
    PAUSE,
    TESTSERVER,
    OciImage,
    build_all_images,
    export_archive,
)
from kubelite.registry import LocalRegistry

REGISTRY_IMAGES: Mapping[str, str] = {
    "library/busybox": BUSYBOX,
    "library/nginx": TESTSERVER,
    "kubelite/testserver": TESTSERVER,
    "kubelite/pause": PAUSE,
}
"""Repository in a local registry -> the built image pushed there (as ``latest``). The test
server stands in for nginx: it serves HTTP on port 80 as nginx does."""
PAUSE_ARCHIVE = "pause.tar"
"""The pause image's archive, beside the built images, for ``ctr images import``."""


def build_node_images(images_dir: Path) -> dict[str, OciImage]:
    """busybox, pause and testserver in ``images_dir`` (cached there) and the pause image's
    archive (:data:`PAUSE_ARCHIVE`) named as containerd's sandbox image."""
    images = build_all_images(images_dir)
    export_archive(images[PAUSE], images_dir / PAUSE_ARCHIVE, name=DEFAULT_SANDBOX_IMAGE)
    return images


def push_images(registry: LocalRegistry, images: Mapping[str, OciImage]) -> dict[str, str]:
    """Pushes each of :data:`REGISTRY_IMAGES`; repository -> the reference it has there."""
    return {
        repository: registry.push(images[name].layout, images[name].tag, repository,
                                  dest_tag="latest")
        for repository, name in REGISTRY_IMAGES.items()
    }
