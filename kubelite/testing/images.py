"""Images, a registry and containerds for the containerd tiers: the test images built once into a
directory, a LocalRegistry serving them under the names manifests use, and containerds that
pull from it with the pause image preloaded. Plain functions and context managers (sync and
async) that any tier's fixtures wrap."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from kubelite.containerd_process import (
    ContainerdProcess,
    ContainerdSettings,
)
from kubelite.node_images import PAUSE_ARCHIVE as PAUSE_ARCHIVE
from kubelite.node_images import REGISTRY_IMAGES as REGISTRY_IMAGES
from kubelite.node_images import build_node_images, push_images
from kubelite.node_images import import_node_images as import_node_images
from kubelite.registry import LocalRegistry, LocalRegistrySettings, RegistryCredentials

# The node images, under the names the tiers know them by.
build_test_images = build_node_images
push_test_images = push_images


def missing_image_tools() -> list[str]:
    """Programs the image builds and the registry need that this host lacks (tests skip)."""
    wanted = {"umoci": "umoci", "skopeo": "skopeo", "docker-registry": "docker-registry"}
    missing = [f"{name} (Debian's {package})" for name, package in wanted.items()
               if shutil.which(name) is None]
    if not os.access("/bin/busybox", os.X_OK):
        missing.append("/bin/busybox (Debian's busybox-static)")
    return missing


def missing_containerd_tools() -> list[str]:
    """What running containerd needs that this host lacks: root and the programs."""
    missing = [] if os.geteuid() == 0 else ["root"]
    for name in ("containerd", "ctr", "runc", "containerd-shim-runc-v2"):
        if shutil.which(name) is None and not os.access(f"/usr/sbin/{name}", os.X_OK):
            missing.append(f"{name} (Debian's containerd and runc)")
    return missing + missing_image_tools()


def pause_archive(images_dir: Path) -> Path:
    """The pause image's archive in ``images_dir``, built when missing."""
    build_test_images(images_dir)
    return images_dir / PAUSE_ARCHIVE


@contextmanager
def image_registry(directory: Path, images_dir: Path, *,
                  credentials: RegistryCredentials | None = None) -> Iterator[LocalRegistry]:
    """A LocalRegistry in ``directory`` holding the test images (built into ``images_dir``)
    under :data:`REGISTRY_IMAGES`; stopped on exit."""
    images = build_test_images(images_dir)
    registry = LocalRegistry(LocalRegistrySettings(directory, credentials=credentials))
    registry.start()
    try:
        push_test_images(registry, images)
        yield registry
    finally:
        registry.stop()


def registry_mirrors(registry: LocalRegistry) -> dict[str, list[str]]:
    """docker.io's images from the test registry, in plain HTTP: ``busybox`` and ``nginx`` in
    a manifest pull library/busybox and library/nginx from it."""
    return {"docker.io": [registry.url]}


@contextmanager
def node_containerd(directory: Path, *, images_dir: Path,
                    registry: LocalRegistry | None = None,
                    **overrides: Any) -> Iterator[ContainerdProcess]:
    """A containerd with every path in ``directory``, docker.io mirrored to ``registry`` (when
    given), and the node's images (pause, kubelite/agnhost, kubelite/dns) imported; stopped on
    exit, leaving no process behind. ``overrides`` set other :class:`ContainerdSettings`
    fields."""
    if registry is not None:
        overrides.setdefault("registry_mirrors", registry_mirrors(registry))
    build_test_images(images_dir)
    containerd = ContainerdProcess(ContainerdSettings.under(directory, **overrides))
    containerd.start()
    try:
        import_node_images(containerd, images_dir)
        yield containerd
    finally:
        containerd.stop()


@asynccontextmanager
async def started_image_registry(
    directory: Path, images_dir: Path, *, credentials: RegistryCredentials | None = None,
) -> AsyncIterator[LocalRegistry]:
    """:func:`image_registry` for async code (the blocking parts run in a thread)."""
    manager = image_registry(directory, images_dir, credentials=credentials)
    registry = await asyncio.to_thread(manager.__enter__)
    try:
        yield registry
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


@asynccontextmanager
async def started_node_containerd(
    directory: Path, *, images_dir: Path, registry: LocalRegistry | None = None,
    **overrides: Any,
) -> AsyncIterator[ContainerdProcess]:
    """:func:`node_containerd` for async code (the blocking parts run in a thread)."""
    manager = node_containerd(directory, images_dir=images_dir, registry=registry, **overrides)
    containerd = await asyncio.to_thread(manager.__enter__)
    try:
        yield containerd
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)
