"""The busybox image's directory: the node's busybox binary and a link per applet."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess

import structlog

from kubelet.runtime import images
from kubelet.runtime.interface import RuntimeError_
from kubelet.runtime.nodefs import _rmtree

log = structlog.get_logger(__name__)


def busybox_applets(busybox: str, images_dir: str, image: str) -> str:
    """A directory under ``images_dir`` holding the node's busybox and a link per applet (made
    once per busybox binary). ErrImagePull when the node has no busybox that runs."""
    wanted = busybox
    found = wanted if "/" in wanted else shutil.which(wanted, path=images.DEFAULT_PATH)
    hint = "install Debian's busybox-static (apt-get install busybox-static)"
    if not found or not os.path.isfile(found) or not os.access(found, os.X_OK):
        raise RuntimeError_(
            "ErrImagePull",
            f'image "{image}" runs the node\'s busybox, but there is no {wanted!r} on this '
            f"node: {hint}",
        )
    st = os.stat(found)
    target = os.path.join(
        images_dir, f"busybox-{st.st_dev:x}-{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}")
    if os.path.isdir(target):
        return target
    try:
        listed = subprocess.run([found, "--list"], capture_output=True, timeout=30,
                                check=True)
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError_(
            "ErrImagePull", f'image "{image}": {found} does not run as busybox ({e}): {hint}'
        ) from e
    applets = [a for a in listed.stdout.decode(errors="replace").split()
               if "/" not in a and a not in (".", "..", "busybox")]
    if "sh" not in applets:
        raise RuntimeError_(
            "ErrImagePull", f'image "{image}": {found} has no sh applet: {hint}')
    build = f"{target}.{secrets.token_hex(4)}.tmp"
    os.makedirs(build)
    try:
        shutil.copy2(found, os.path.join(build, "busybox"))
        for applet in applets:
            os.symlink("busybox", os.path.join(build, applet))
        os.rename(build, target)
    except OSError:
        if not os.path.isdir(target):  # not made meanwhile by another runtime on this root
            raise
    finally:
        _rmtree(build)
    log.info("busybox image ready", busybox=found, applets=len(applets), path=target)
    return target
