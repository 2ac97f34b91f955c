"""Container images for the containerd runtime, built on the node without a container engine or
network: OCI image layouts made with umoci from the node's busybox (Debian's busybox-static)
and, where installed, Debian's tini-static as the signal-handling init; exported to archives
with skopeo for ``ctr images import``.

Three images: ``busybox`` (as docker.io/library/busybox), ``pause`` (the pod sandbox) and
``testserver`` (an HTTP server on port 80 built on busybox, pushed by the tests as
library/nginx and kubelite/testserver). Each builder writes ``OUT_DIR/<name>`` once per content:
the recipe's hash (files, their sources' bytes, the image config) is kept in the layout, so a
second call with the same inputs returns at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BUSYBOX_BINARY = "/bin/busybox"
"""Debian's busybox-static installs the static busybox here."""
TINI_BINARY = "/usr/bin/tini-static"
"""Debian's tini package installs its static build here."""
AUTO = "auto"
"""``tini=AUTO``: use :data:`TINI_BINARY` where it exists, else build the image without it."""
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""PATH in the images' config, as docker.io/library/busybox sets it."""
SLEEP_FOREVER = "2147483647"
"""Seconds the pause image sleeps: the largest a signed 32-bit sleep accepts (68 years)."""
STAMP = "kubelite-recipe"
"""File in a built layout holding its recipe's hash (OCI tools ignore unknown files)."""
RECIPE_FORMAT = "1"
"""Changes when the way recipes become layouts changes, so old caches are rebuilt."""

BUSYBOX = "busybox"
PAUSE = "pause"
TESTSERVER = "testserver"


class ImageBuildError(RuntimeError):
    """A tool the build needs is missing or failed; the message says which and why."""


# -- what goes into an image -------------------------------------------------------------------


@dataclass(frozen=True)
class Dir:
    mode: int = 0o755


@dataclass(frozen=True)
class File:
    data: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class Copy:
    """A file copied from the node; its bytes are part of the recipe's hash."""

    source: str
    mode: int = 0o755


@dataclass(frozen=True)
class Symlink:
    target: str


Entry = Dir | File | Copy | Symlink
Layer = Mapping[str, Entry]
"""Paths relative to the image's root, each with what to put there."""


@dataclass(frozen=True)
class ImageConfig:
    """The parts of the OCI image config the images set."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = (f"PATH={IMAGE_PATH}",)
    exposed_ports: tuple[str, ...] = ()
    """As ``80/tcp``."""
    working_dir: str = ""
    user: str = ""
    """Empty: root, as nginx's and busybox's images."""


@dataclass(frozen=True)
class ImageRecipe:
    name: str
    """Directory name under the output directory."""
    layers: tuple[Layer, ...]
    config: ImageConfig
    base: ImageRecipe | None = None
    """An image whose layers come first (its layout is built, then copied and added to)."""
    tag: str = "latest"


@dataclass(frozen=True)
class OciImage:
    """A built image: an OCI image layout and the tag naming the image in it."""

    layout: Path
    """The OCI image layout's directory."""
    tag: str
    """The tag (``org.opencontainers.image.ref.name``) of the image in the layout."""

    @property
    def reference(self) -> str:
        """The image as skopeo and umoci name it: ``oci:LAYOUT:TAG``."""
        return f"oci:{self.layout}:{self.tag}"

    @property
    def digest(self) -> str:
        """The digest of the image's manifest."""
        index = json.loads((self.layout / "index.json").read_text())
        for manifest in index.get("manifests", []):
            if manifest.get("annotations", {}).get("org.opencontainers.image.ref.name") == \
                    self.tag:
                return str(manifest["digest"])
        raise ImageBuildError(f"{self.layout}: no image tagged {self.tag!r} in index.json")


# -- the three images --------------------------------------------------------------------------


def busybox_recipe(busybox: str = BUSYBOX_BINARY) -> ImageRecipe:
    """docker.io/library/busybox: /bin holds busybox and a link per applet; root, a user 1000
    and nobody; ``sh`` as its command."""
    applets = _busybox_applets(busybox)
    layer: dict[str, Entry] = {
        "bin": Dir(), "etc": Dir(), "home": Dir(), "home/user": Dir(0o777),
        "root": Dir(0o700), "tmp": Dir(0o1777), "var": Dir(), "usr": Dir(), "usr/bin": Dir(),
        "usr/sbin": Dir(), "sbin": Dir(),
        "bin/busybox": Copy(busybox),
        "etc/passwd": File(
            b"root:x:0:0:root:/root:/bin/sh\n"
            b"user:x:1000:1000:user:/home/user:/bin/sh\n"
            b"nobody:x:65534:65534:nobody:/home:/bin/false\n"),
        "etc/group": File(b"root:x:0:\nuser:x:1000:\nnobody:x:65534:\n"),
        # The runtime bind-mounts the pod's hostname over it; the file must exist.
        "etc/hostname": File(b""),
    }
    for applet in applets:
        layer[f"bin/{applet}"] = Symlink("busybox")
    return ImageRecipe(BUSYBOX, (layer,), ImageConfig(cmd=("sh",)))


def pause_recipe(busybox: str = BUSYBOX_BINARY, tini: str | None = AUTO) -> ImageRecipe:
    """The pod sandbox's image: a process that sleeps until it is signalled. Under tini (which
    reaps the pod's orphans and passes SIGTERM on) where the node has tini-static; else a
    busybox shell that exits on SIGTERM or SIGINT."""
    tini = _resolve_tini(tini)
    layer: dict[str, Entry] = {
        "bin": Dir(), "sbin": Dir(), "etc": Dir(), "tmp": Dir(0o1777),
        "bin/busybox": Copy(busybox), "bin/sleep": Symlink("busybox"),
        "etc/hostname": File(b""),
    }
    if tini is not None:
        layer["sbin/tini"] = Copy(tini)
        entrypoint: tuple[str, ...] = ("/sbin/tini", "--", "/bin/sleep", SLEEP_FOREVER)
    else:
        layer["bin/sh"] = Symlink("busybox")
        entrypoint = ("/bin/sh", "-c", f"trap 'exit 0' TERM INT; sleep {SLEEP_FOREVER} & wait")
    return ImageRecipe(PAUSE, (layer,), ImageConfig(entrypoint=entrypoint))


TESTSERVER_INDEX = b"""<!DOCTYPE html>
<html>
<head><title>Welcome to kubelite's test server!</title></head>
<body>
<h1>Welcome to nginx!</h1>
<p>This is kubelite's test server (busybox httpd) standing in for nginx.</p>
<p>GET /cgi-bin/hostname answers with the name of the pod that served it.</p>
</body>
</html>
"""

TESTSERVER_HOSTNAME_CGI = b"""#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
hostname
"""

TESTSERVER_COMMAND = ("httpd", "-f", "-v", "-p", "80", "-h", "/www")
"""busybox httpd in the foreground, logging requests to stderr, serving /www on port 80."""


def testserver_recipe(busybox: str = BUSYBOX_BINARY, tini: str | None = AUTO) -> ImageRecipe:
    """An HTTP server on port 80 built on the busybox image: /www/index.html, and
    /cgi-bin/hostname answering with the pod's hostname (so a client sees which pod answered).
    httpd runs under tini where the node has tini-static, so SIGTERM stops it at once as it
    stops nginx; else under a shell that exits on SIGTERM."""
    tini = _resolve_tini(tini)
    layer: dict[str, Entry] = {
        "www": Dir(), "www/cgi-bin": Dir(),
        "www/index.html": File(TESTSERVER_INDEX),
        "www/cgi-bin/hostname": File(TESTSERVER_HOSTNAME_CGI, 0o755),
    }
    if tini is not None:
        layer["sbin/tini"] = Copy(tini)
        config = ImageConfig(entrypoint=("/sbin/tini", "--"), cmd=TESTSERVER_COMMAND,
                             exposed_ports=("80/tcp",))
    else:
        config = ImageConfig(
            cmd=("/bin/sh", "-c", f"trap 'exit 0' TERM INT; {' '.join(TESTSERVER_COMMAND)} & wait"),
            exposed_ports=("80/tcp",))
    return ImageRecipe(TESTSERVER, (layer,), config, base=busybox_recipe(busybox))


def build_busybox_image(out_dir: Path, *, busybox: str = BUSYBOX_BINARY) -> OciImage:
    return build_image(busybox_recipe(busybox), out_dir)


def build_pause_image(
    out_dir: Path, *, busybox: str = BUSYBOX_BINARY, tini: str | None = AUTO,
) -> OciImage:
    return build_image(pause_recipe(busybox, tini), out_dir)


def build_testserver_image(
    out_dir: Path, *, busybox: str = BUSYBOX_BINARY, tini: str | None = AUTO,
) -> OciImage:
    return build_image(testserver_recipe(busybox, tini), out_dir)


def build_all_images(out_dir: Path, *, busybox: str = BUSYBOX_BINARY,
                     tini: str | None = AUTO) -> dict[str, OciImage]:
    """busybox, pause and testserver, by name."""
    return {
        BUSYBOX: build_busybox_image(out_dir, busybox=busybox),
        PAUSE: build_pause_image(out_dir, busybox=busybox, tini=tini),
        TESTSERVER: build_testserver_image(out_dir, busybox=busybox, tini=tini),
    }


# -- building ----------------------------------------------------------------------------------


def recipe_hash(recipe: ImageRecipe) -> str:
    """Hash of everything the layout is made from: files, copied files' bytes, config, base."""
    digest = hashlib.sha256()
    digest.update(f"format {RECIPE_FORMAT}\nname {recipe.name}\ntag {recipe.tag}\n".encode())
    if recipe.base is not None:
        digest.update(f"base {recipe_hash(recipe.base)}\n".encode())
    for number, layer in enumerate(recipe.layers):
        digest.update(f"layer {number}\n".encode())
        for path in sorted(layer):
            entry = layer[path]
            digest.update(f"{path}\0{type(entry).__name__}\0".encode())
            if isinstance(entry, File):
                digest.update(f"{entry.mode:o}\0".encode() + hashlib.sha256(entry.data).digest())
            elif isinstance(entry, Copy):
                digest.update(f"{entry.mode:o}\0".encode() + _file_sha256(entry.source))
            elif isinstance(entry, Dir):
                digest.update(f"{entry.mode:o}".encode())
            else:
                digest.update(entry.target.encode())
            digest.update(b"\n")
    digest.update(json.dumps(_config_json(recipe.config), sort_keys=True).encode())
    return digest.hexdigest()


def build_image(recipe: ImageRecipe, out_dir: Path) -> OciImage:
    """``OUT_DIR/<recipe.name>``, an OCI layout holding the image under ``recipe.tag``; built
    only when missing or made from other inputs. Safe to call from several processes at once."""
    out_dir = Path(out_dir).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / recipe.name
    image = OciImage(target, recipe.tag)
    wanted = recipe_hash(recipe)
    if _stamp(target) == wanted:
        return image
    base = build_image(recipe.base, out_dir) if recipe.base is not None else None
    with _locked(out_dir / f".{recipe.name}.lock"):
        if _stamp(target) == wanted:  # built meanwhile by another process
            return image
        umoci = _tool("umoci", "umoci")
        work = Path(tempfile.mkdtemp(prefix=f".{recipe.name}.", dir=out_dir))
        try:
            layout = work / "layout"
            ref = f"{layout}:{recipe.tag}"
            if base is not None:
                shutil.copytree(base.layout, layout, symlinks=True)
                (layout / STAMP).unlink()
                if base.tag != recipe.tag:
                    _run([umoci, "tag", "--image", f"{layout}:{base.tag}", recipe.tag])
            else:
                _run([umoci, "init", "--layout", str(layout)])
                _run([umoci, "new", "--image", ref])
            for layer in recipe.layers:
                _add_layer(umoci, ref, work / "bundle", layer)
            _run([umoci, "config", "--image", ref, *_config_flags(recipe.config)])
            _run([umoci, "gc", "--layout", str(layout)])
            (layout / STAMP).write_text(wanted + "\n")
            if target.exists():
                shutil.rmtree(target)
            layout.rename(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return image


def export_archive(image: OciImage, archive: Path, *, name: str) -> Path:
    """Writes ``image`` to an oci-archive tar at ``archive`` naming it ``name`` (a full
    reference such as ``docker.io/kubelite/pause:latest``, which ``ctr images import`` gives
    the imported image). Skipped when ``archive`` already holds this image under this name."""
    archive = Path(archive).absolute()
    source = archive.with_name(archive.name + ".source")
    wanted = f"{image.digest} {name}\n"
    if archive.exists() and source.exists() and source.read_text() == wanted:
        return archive
    skopeo = _tool("skopeo", "skopeo")
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(f".{archive.name}.{os.getpid()}.tmp")
    partial.unlink(missing_ok=True)
    try:
        _run([skopeo, "--insecure-policy", "copy", "--quiet", image.reference,
              f"oci-archive:{partial}:{name}"])
        partial.rename(archive)
    finally:
        partial.unlink(missing_ok=True)
    source.write_text(wanted)
    return archive


# -- helpers -----------------------------------------------------------------------------------


def _add_layer(umoci: str, ref: str, bundle: Path, layer: Layer) -> None:
    """One more layer: unpack the image, write the layer's entries, repack (umoci stores the
    difference as a new layer)."""
    unpack = [umoci, "unpack"]
    if os.geteuid() != 0:
        # Files the build user owns are stored as root's.
        unpack.append("--rootless")
    _run([*unpack, "--image", ref, str(bundle)])
    rootfs = bundle / "rootfs"
    for path in sorted(layer):
        _write_entry(rootfs, path, layer[path])
    _run([umoci, "repack", "--image", ref, str(bundle)])
    shutil.rmtree(bundle)


def _write_entry(rootfs: Path, path: str, entry: Entry) -> None:
    if path.startswith("/") or ".." in Path(path).parts:
        raise ImageBuildError(f"image path {path!r} must be relative and stay in the image")
    dest = rootfs / path
    dest.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(entry, Dir):
        dest.mkdir(exist_ok=True)
        os.chmod(dest, entry.mode)
    elif isinstance(entry, File):
        dest.write_bytes(entry.data)
        os.chmod(dest, entry.mode)
    elif isinstance(entry, Copy):
        shutil.copyfile(entry.source, dest)
        os.chmod(dest, entry.mode)
    else:
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        os.symlink(entry.target, dest)


def _config_json(config: ImageConfig) -> dict[str, object]:
    return {
        "Entrypoint": list(config.entrypoint), "Cmd": list(config.cmd), "Env": list(config.env),
        "ExposedPorts": sorted(config.exposed_ports), "WorkingDir": config.working_dir,
        "User": config.user,
    }


def _config_flags(config: ImageConfig) -> list[str]:
    # Clearing first makes a derived image's config exactly the recipe's, not a merge with
    # its base's.
    flags = ["--clear=config.entrypoint", "--clear=config.cmd", "--clear=config.env",
             "--clear=config.exposedports"]
    flags += [f"--config.entrypoint={arg}" for arg in config.entrypoint]
    flags += [f"--config.cmd={arg}" for arg in config.cmd]
    flags += [f"--config.env={env}" for env in config.env]
    flags += [f"--config.exposedports={port}" for port in config.exposed_ports]
    flags += [f"--config.workingdir={config.working_dir}", f"--config.user={config.user}"]
    return flags


def _busybox_applets(busybox: str) -> list[str]:
    if not os.path.isfile(busybox) or not os.access(busybox, os.X_OK):
        raise ImageBuildError(
            f"no busybox at {busybox}: install Debian's busybox-static "
            "(apt-get install busybox-static)")
    listed = _run([busybox, "--list"])
    applets = sorted(a for a in listed.split() if "/" not in a and a not in (".", "..", "busybox"))
    if "sh" not in applets:
        raise ImageBuildError(f"{busybox} has no sh applet: install Debian's busybox-static")
    return applets


def _resolve_tini(tini: str | None) -> str | None:
    if tini == AUTO:
        return TINI_BINARY if os.access(TINI_BINARY, os.X_OK) else None
    if tini is not None and not os.access(tini, os.X_OK):
        raise ImageBuildError(f"no tini at {tini}: install Debian's tini (apt-get install tini)")
    return tini


def _file_sha256(path: str) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()


def _stamp(layout: Path) -> str | None:
    try:
        return (layout / STAMP).read_text().strip()
    except OSError:
        return None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ImageBuildError(f"{name} not found: install Debian's {package} "
                              f"(apt-get install {package})")
    return found


def _run(argv: Sequence[str], timeout: float = 120.0) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ImageBuildError(f"{' '.join(argv)}: {e}") from e
    if done.returncode != 0:
        raise ImageBuildError(
            f"{' '.join(argv)} exited with {done.returncode}: "
            f"{done.stderr.decode(errors='replace').strip()}")
    return done.stdout.decode(errors="replace")


__all__ = [
    "AUTO", "BUSYBOX", "PAUSE", "TESTSERVER", "Copy", "Dir", "File", "ImageBuildError",
    "ImageConfig", "ImageRecipe", "OciImage", "Symlink", "build_all_images",
    "build_busybox_image", "build_image", "build_pause_image", "build_testserver_image",
    "busybox_recipe", "export_archive", "pause_recipe", "recipe_hash", "testserver_recipe",
]
